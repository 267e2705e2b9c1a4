/* SPDX-License-Identifier: MIT */
/*
 * An HTTP/1.1 guest and an upstream that chose h2 (ALPN is negotiated on each side, tls.c):
 * proxy.c runs the connection exactly as toward an HTTP/1.1 upstream -- admission, secret
 * substitution, the leak check, request bodies, response scrubbing all happen there, once --
 * and this file sits under it and speaks h2 on the wire. Each rewritten request proxy.c
 * queues in req_out becomes one stream of an nghttp2 client session; its response comes back
 * into resp_in as HTTP/1.1 bytes, which proxy.c parses and scrubs as any other.
 *
 * Translation: the request line and Host make :method, :path and :authority (:scheme https);
 * connection-specific fields (Connection and the fields it names, Keep-Alive, Transfer-Encoding,
 * Upgrade, TE but "trailers") are dropped and names go lower case; a chunked body becomes
 * DATA and its trailers a HEADERS frame. A response keeps its Content-Length when it has one,
 * else it is chunked (its trailers after the last chunk); a 1xx passes as it is. WebSocket
 * upgrades need HTTP/1.1 on both sides (proxy.c refuses them here: 501).
 *
 * One request at a time, as HTTP/1.1 orders them: the next head is taken from req_out once the
 * previous exchange ended (the guest's pipelined requests wait in req_out, bounded by it).
 * Flow control is tied across: body bytes are taken from req_out only while the stream's queue
 * is short (the guest stops being read when req_out is full), and the upstream's DATA is
 * acknowledged only as it moves into resp_in, whose bound stops the reading. A stream reset
 * before its response head answers 502; after it, the guest's connection is cut (HTTP/1.1
 * has no other way to say a body is incomplete). A GOAWAY ends the guest's connection once
 * the exchange in progress is over.
 */
#define _GNU_SOURCE
#include "flow.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

#define UP2_STREAM_WINDOW (256 * 1024) /* SETTINGS_INITIAL_WINDOW_SIZE we announce */
#define UP2_CONN_WINDOW (1024 * 1024)
#define UP2_QUEUE_MAX (64u * 1024) /* request body bytes taken from req_out ahead of DATA */

enum up2_state {
	UP2_HEAD, /* the next request head in req_out starts a stream */
	UP2_BODY, /* its body is moved from req_out to the stream */
	UP2_WAIT, /* the request was all taken: the response is awaited */
};

struct up2 {
	struct flow *f;
	nghttp2_session *s;
	struct buf wire; /* frames for the upstream */
	enum up2_state st;
	int32_t sid; /* the stream of the exchange in progress; 0: none, -1: closed */
	struct http_body body; /* the request body's framing in req_out */
	struct buf up; /* its data, for the stream */
	bool up_end;
	struct buf trailers; /* its chunked trailer lines */
	bool head_request;
	/* The response, as HTTP/1.1 bytes for resp_in. */
	struct buf fields; /* "name: value\r\n" of the header block being received */
	int status;
	bool rs_final, rs_chunked, rs_end;
	struct buf down;
	size_t down_owed; /* DATA received and not acknowledged */
	bool broken; /* the guest's connection is cut once down is drained */
	bool goaway;
};

static const char *reason_phrase(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 206:
		return "Partial Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 304:
		return "Not Modified";
	case 307:
		return "Temporary Redirect";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 409:
		return "Conflict";
	case 413:
		return "Content Too Large";
	case 429:
		return "Too Many Requests";
	case 500:
		return "Internal Server Error";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "";
	}
}

/* Whether a request field belongs to the HTTP/1.1 connection only (conn: its Connection). */
static bool hop_field(const uint8_t *n, size_t nl, const uint8_t *conn, size_t cl)
{
	static const char *const names[] = { "connection",	  "keep-alive", "proxy-connection",
					     "transfer-encoding", "upgrade",	"host",
					     "http2-settings",	  NULL };
	for (unsigned i = 0; names[i]; i++)
		if (strlen(names[i]) == nl && !strncasecmp((const char *)n, names[i], nl))
			return true;
	/* Fields the Connection header names are for this hop only. */
	for (size_t i = 0; conn && i < cl;) {
		while (i < cl && (conn[i] == ',' || conn[i] == ' ' || conn[i] == '\t'))
			i++;
		size_t j = i;
		while (j < cl && conn[j] != ',' && conn[j] != ' ' && conn[j] != '\t')
			j++;
		if (j - i == nl && !strncasecmp((const char *)conn + i, (const char *)n, nl))
			return true;
		i = j;
	}
	return false;
}

/* ---- the upstream's session ---------------------------------------------------------------- */

static ssize_t send_cb(nghttp2_session *s, const uint8_t *p, size_t n, int flags, void *ud)
{
	(void)s, (void)flags, (void)ud;
	(void)p;
	return (ssize_t)n; /* unused: frames are taken with nghttp2_session_mem_send */
}

/* The stream reads the request body from here. */
static ssize_t read_body(nghttp2_session *sess, int32_t id, uint8_t *out, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	(void)src;
	struct up2 *x = ud;
	size_t n = buf_used(&x->up) < len ? buf_used(&x->up) : len;
	if (!n && !x->up_end)
		return NGHTTP2_ERR_DEFERRED;
	if (n)
		memcpy(out, buf_head(&x->up), n);
	buf_consume_wiped(&x->up, n);
	if (x->up_end && !buf_used(&x->up)) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		/* The chunked body's trailers: a HEADERS frame, names lower case. */
		nghttp2_nv nv[HTTP_MAX_HEADERS];
		size_t k = 0;
		struct rd r = rd_make(buf_head(&x->trailers), buf_used(&x->trailers));
		const uint8_t *line;
		size_t ll;
		while (k < HTTP_MAX_HEADERS && (line = rd_line(&r, &ll)) && ll) {
			uint8_t *l = (uint8_t *)line, *colon = memchr(l, ':', ll);
			if (!colon || colon == l || hop_field(l, (size_t)(colon - l), NULL, 0))
				continue;
			size_t nl = (size_t)(colon - l), vo = nl + 1;
			while (vo < ll && (l[vo] == ' ' || l[vo] == '\t'))
				vo++;
			for (size_t i = 0; i < nl; i++)
				l[i] = (uint8_t)tolower(l[i]);
			nv[k++] = (nghttp2_nv){ l, l + vo, nl, ll - vo, NGHTTP2_NV_FLAG_NONE };
		}
		if (k && nghttp2_submit_trailer(sess, id, nv, k) == 0)
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
	}
	return (ssize_t)n;
}

static int on_header(nghttp2_session *sess, const nghttp2_frame *fr, const uint8_t *name,
		     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	(void)sess, (void)flags;
	struct up2 *x = ud;
	if (fr->hd.type != NGHTTP2_HEADERS || fr->hd.stream_id != x->sid)
		return 0;
	if (nlen == 7 && !memcmp(name, ":status", 7)) {
		x->status = 0;
		for (size_t i = 0; i < vlen && i < 3; i++)
			x->status = x->status * 10 + (value[i] - '0');
		return 0;
	}
	if (nlen && name[0] == ':')
		return 0;
	/* nghttp2 checked the bytes (no CR, LF or NUL; lower-case names); bounded by it too. */
	buf_append(&x->fields, name, nlen);
	buf_append(&x->fields, ": ", 2);
	buf_append(&x->fields, value, vlen);
	buf_append(&x->fields, "\r\n", 2);
	return 0;
}

static bool fields_have(const struct buf *b, const char *name)
{
	size_t n = strlen(name);
	struct rd r = rd_make(buf_head(b), buf_used(b));
	const uint8_t *line;
	size_t ll;
	while ((line = rd_line(&r, &ll)))
		if (ll > n && line[n] == ':' && !memcmp(line, name, n))
			return true;
	return false;
}

/* A header block ended: a response head (1xx or final) or the trailers. */
static void on_headers_end(struct up2 *x, bool end)
{
	char line[64];
	if (x->rs_final) {
		/* Trailers: after the last chunk (a Content-Length body has nowhere for them). */
		if (x->rs_chunked) {
			buf_append(&x->down, "0\r\n", 3);
			buf_append(&x->down, buf_head(&x->fields), buf_used(&x->fields));
			buf_append(&x->down, "\r\n", 2);
		}
		x->rs_end = true;
		buf_wipe(&x->fields);
		return;
	}
	int k =
	    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", x->status, reason_phrase(x->status));
	buf_append(&x->down, line, (size_t)k);
	buf_append(&x->down, buf_head(&x->fields), buf_used(&x->fields));
	if (x->status >= 200) {
		x->rs_final = true;
		bool bodyless = x->head_request || x->status == 204 || x->status == 304;
		if (!bodyless && end && !fields_have(&x->fields, "content-length"))
			buf_append(&x->down, "content-length: 0\r\n", 19);
		else if (!bodyless && !end && !fields_have(&x->fields, "content-length")) {
			buf_append(&x->down, "transfer-encoding: chunked\r\n", 28);
			x->rs_chunked = true;
		}
		x->rs_end = end;
	}
	buf_append(&x->down, "\r\n", 2);
	buf_wipe(&x->fields);
}

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *fr, void *ud)
{
	(void)sess;
	struct up2 *x = ud;
	bool end = fr->hd.flags & NGHTTP2_FLAG_END_STREAM;
	if (fr->hd.type == NGHTTP2_GOAWAY) {
		x->goaway = true;
		return 0;
	}
	if (fr->hd.stream_id != x->sid || x->sid <= 0)
		return 0;
	if (fr->hd.type == NGHTTP2_HEADERS)
		on_headers_end(x, end);
	else if (fr->hd.type == NGHTTP2_DATA && end && !x->rs_end) {
		if (x->rs_chunked)
			buf_append(&x->down, "0\r\n\r\n", 5);
		x->rs_end = true;
	}
	return 0;
}

static int on_data(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
		   void *ud)
{
	(void)flags;
	struct up2 *x = ud;
	if (id != x->sid || !x->rs_final) {
		nghttp2_session_consume(sess, id, n);
		return 0;
	}
	char sz[24];
	if (x->rs_chunked && n)
		buf_append(&x->down, sz, (size_t)snprintf(sz, sizeof(sz), "%zx\r\n", n));
	buf_append(&x->down, p, n);
	if (x->rs_chunked && n)
		buf_append(&x->down, "\r\n", 2);
	x->down_owed += n;
	return 0;
}

static int on_stream_close(nghttp2_session *sess, int32_t id, uint32_t code, void *ud)
{
	(void)sess;
	struct up2 *x = ud;
	if (id != x->sid)
		return 0;
	if (!x->rs_end) {
		if (!x->rs_final) {
			/* No answer came: the guest gets one that says why. */
			char why[400];
			snprintf(why, sizeof(why),
				 "matchlock: request to %s failed: the upstream reset the HTTP/2 "
				 "stream (%s)",
				 x->f->name, nghttp2_http2_strerror(code));
			buf_wipe(&x->fields);
			http_build_error(&x->down, 502, why);
			x->rs_end = true;
		} else {
			x->broken = true; /* the body cannot end cleanly in HTTP/1.1 */
		}
	}
	x->sid = -1;
	return 0;
}

/* ---- the flow's side ------------------------------------------------------------------------ */

int up2_start(struct flow *f)
{
	struct up2 *x = calloc(1, sizeof(*x));
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_option *opt = NULL;
	if (!x || nghttp2_session_callbacks_new(&cb) || nghttp2_option_new(&opt))
		goto fail;
	x->f = f;
	nghttp2_session_callbacks_set_send_callback(cb, send_cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	/* The window opens only as resp_in takes the bytes (up2_pull). */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	if (nghttp2_session_client_new2(&x->s, cb, x, opt))
		goto fail;
	nghttp2_settings_entry set[] = {
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, UP2_STREAM_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HTTP_MAX_RESPONSE_HEAD },
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
	};
	if (nghttp2_submit_settings(x->s, NGHTTP2_FLAG_NONE, set, 3) ||
	    nghttp2_session_set_local_window_size(x->s, NGHTTP2_FLAG_NONE, 0, UP2_CONN_WINDOW))
		goto fail;
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	f->up2 = x;
	/* The upstream's first frames (its SETTINGS) may have come during the guest's handshake. */
	if (buf_used(&f->resp_in)) {
		struct buf early = f->resp_in;
		f->resp_in = (struct buf){ 0 };
		up2_recv(f, buf_head(&early), buf_used(&early));
		buf_wipe(&early);
	}
	return 0;
fail:
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (x)
		nghttp2_session_del(x->s);
	free(x);
	return -ENOMEM;
}

void up2_free(struct up2 *x)
{
	if (!x)
		return;
	nghttp2_session_del(x->s);
	buf_wipe(&x->wire);
	buf_wipe(&x->up);
	buf_wipe(&x->trailers);
	buf_wipe(&x->fields);
	buf_wipe(&x->down);
	explicit_bzero(x, sizeof(*x));
	free(x);
}

struct buf *up2_wire(const struct flow *f)
{
	return &f->up2->wire;
}

bool up2_idle(const struct flow *f)
{
	const struct up2 *x = f->up2;
	return x->st == UP2_HEAD && x->sid <= 0 && !buf_used(&x->down);
}

/* The next request head in req_out: a stream. false: not complete yet (or broken). */
static bool push_head(struct up2 *x)
{
	struct flow *f = x->f;
	long hl = http_head_len(buf_head(&f->req_out), buf_used(&f->req_out), 4 * HTTP_MAX_HEAD);
	if (hl == 0)
		return false;
	struct http_msg m;
	const char *why;
	const uint8_t *h = buf_head(&f->req_out);
	if (hl < 0 || http_parse_request(h, (size_t)hl, &m, &why) < 0) {
		/* proxy.c wrote it: it parsed once already. */
		flow_event(f, NET_EV_HTTP, false,
			   "HTTP/2 upstream: a request head that does not parse", NULL);
		x->broken = true;
		return false;
	}
	const uint8_t *conn = NULL, *host = NULL;
	size_t cl = 0, hostl = 0;
	for (unsigned i = 0; i < m.nfields; i++) {
		if (http_field_is(h, &m.field[i], "connection"))
			conn = h + m.field[i].value_off, cl = m.field[i].value_len;
		if (http_field_is(h, &m.field[i], "host"))
			host = h + m.field[i].value_off, hostl = m.field[i].value_len;
	}
	/* An absolute-form target names the host itself (proxy.c checked it is the flow's). */
	const uint8_t *path = h + m.target_off;
	size_t pl = m.target_len;
	if (pl && path[0] != '/' && !(pl == 1 && path[0] == '*')) {
		const uint8_t *sep = memmem(path, pl, "://", 3);
		const uint8_t *slash =
		    sep ? memchr(sep + 3, '/', pl - (size_t)(sep + 3 - path)) : NULL;
		if (!host && sep) {
			host = sep + 3;
			hostl = slash ? (size_t)(slash - host) : pl - (size_t)(host - path);
		}
		path = slash ? slash : (const uint8_t *)"/";
		pl = slash ? m.target_len - (size_t)(slash - (h + m.target_off)) : 1;
	}
	nghttp2_nv nv[HTTP_MAX_HEADERS + 4];
	size_t k = 0;
	nv[k++] = (nghttp2_nv){ (uint8_t *)":method", (uint8_t *)m.method, 7, strlen(m.method),
				NGHTTP2_NV_FLAG_NONE };
	nv[k++] =
	    (nghttp2_nv){ (uint8_t *)":scheme", (uint8_t *)"https", 7, 5, NGHTTP2_NV_FLAG_NONE };
	nv[k++] = (nghttp2_nv){ (uint8_t *)":authority",
				(uint8_t *)(host ? host : (const uint8_t *)f->name), 10,
				host ? hostl : strlen(f->name), NGHTTP2_NV_FLAG_NONE };
	nv[k++] = (nghttp2_nv){ (uint8_t *)":path", (uint8_t *)path, 5, pl, NGHTTP2_NV_FLAG_NONE };
	/* Names lower case, in place: these bytes are consumed below. */
	uint8_t *w = (uint8_t *)h;
	for (unsigned i = 0; i < m.nfields && k < HTTP_MAX_HEADERS + 4; i++) {
		const struct http_field *fl = &m.field[i];
		uint8_t *n = w + fl->name_off, *v = w + fl->value_off;
		if (hop_field(n, fl->name_len, conn, cl))
			continue;
		if (fl->name_len == 2 && !strncasecmp((const char *)n, "te", 2) &&
		    !(fl->value_len == 8 && !strncasecmp((const char *)v, "trailers", 8)))
			continue;
		for (size_t j = 0; j < fl->name_len; j++)
			n[j] = (uint8_t)tolower(n[j]);
		nv[k++] = (nghttp2_nv){ n, v, fl->name_len, fl->value_len, NGHTTP2_NV_FLAG_NONE };
	}
	bool body = m.framing != HTTP_BODY_NONE;
	nghttp2_data_provider dp = { .read_callback = read_body };
	int32_t id = nghttp2_submit_request(x->s, NULL, nv, k, body ? &dp : NULL, x);
	if (id < 0) {
		/* No new stream on this connection (GOAWAY): the guest's connection ends. */
		x->goaway = true;
		return false;
	}
	x->sid = id;
	x->status = 0;
	x->rs_final = x->rs_chunked = x->rs_end = false;
	x->up_end = !body;
	x->head_request = !strcmp(m.method, "HEAD");
	http_body_init(&x->body, m.framing, m.length);
	explicit_bzero(w, (size_t)hl);
	buf_consume(&f->req_out, (size_t)hl);
	x->st = body ? UP2_BODY : UP2_WAIT;
	return true;
}

/* Request body bytes from req_out to the stream, while its queue is short. */
static bool push_body(struct up2 *x)
{
	struct flow *f = x->f;
	if (buf_used(&x->up) >= UP2_QUEUE_MAX)
		return false;
	size_t used, off, dl;
	bool trailer = http_body_in_trailer(&x->body);
	int r = http_body_step(&x->body, buf_head(&f->req_out), buf_used(&f->req_out), false, &used,
			       &off, &dl);
	if (r < 0) {
		x->broken = true;
		return false;
	}
	/* A stream already closed (answered early, reset) drops the rest. */
	if (dl && x->sid > 0)
		buf_append(&x->up, buf_head(&f->req_out) + off, dl);
	if (trailer && used)
		buf_append(&x->trailers, buf_head(&f->req_out), used);
	buf_consume_wiped(&f->req_out, used);
	if (r == 1) {
		x->up_end = true;
		x->st = UP2_WAIT;
	}
	if (x->sid > 0 && (dl || r == 1))
		nghttp2_session_resume_data(x->s, x->sid);
	return used != 0 || r == 1;
}

void up2_push(struct flow *f)
{
	struct up2 *x = f->up2;
	for (bool more = true; more && !x->broken;) {
		switch (x->st) {
		case UP2_HEAD:
			more = !x->goaway && x->sid <= 0 && !buf_used(&x->down) && push_head(x);
			break;
		case UP2_BODY:
			more = push_body(x);
			break;
		case UP2_WAIT:
			more = false;
			if (x->sid < 0 && x->up_end && !buf_used(&x->down)) {
				buf_wipe(&x->trailers);
				x->sid = 0;
				x->st = UP2_HEAD;
				more = true;
			}
			break;
		}
	}
	const uint8_t *d;
	ssize_t n = 0;
	while (buf_used(&x->wire) < FLOW_BUF_HIGH && (n = nghttp2_session_mem_send(x->s, &d)) > 0)
		buf_append(&x->wire, d, (size_t)n);
	if (n < 0)
		x->broken = true;
}

void up2_recv(struct flow *f, const uint8_t *p, size_t n)
{
	struct up2 *x = f->up2;
	if (x->broken)
		return;
	ssize_t k = nghttp2_session_mem_recv(x->s, p, n);
	if (k < 0) {
		char why[200];
		snprintf(why, sizeof(why), "HTTP/2 from the upstream: %s",
			 nghttp2_strerror((int)k));
		flow_event(f, NET_EV_HTTP, false, why, NULL);
		if (x->sid > 0 && !x->rs_final) {
			http_build_error(&x->down, 502,
					 "matchlock: the upstream broke the HTTP/2 protocol");
			x->rs_end = true;
		} else if (x->sid > 0 && !x->rs_end) {
			x->broken = true;
		}
		x->goaway = true;
		x->sid = -1;
	}
}

void up2_pull(struct flow *f)
{
	struct up2 *x = f->up2;
	size_t room =
	    buf_used(&f->resp_in) < FLOW_BUF_HIGH ? FLOW_BUF_HIGH - buf_used(&f->resp_in) : 0;
	size_t n = buf_used(&x->down) < room ? buf_used(&x->down) : room;
	if (n) {
		buf_append(&f->resp_in, buf_head(&x->down), n);
		buf_consume_wiped(&x->down, n);
		/* Framing bytes are counted too: what is owed is acknowledged once drained. */
		size_t ack =
		    buf_used(&x->down) ? (n < x->down_owed ? n : x->down_owed) : x->down_owed;
		x->down_owed -= ack;
		if (ack) {
			nghttp2_session_consume_connection(x->s, ack);
			if (x->sid > 0)
				nghttp2_session_consume_stream(x->s, x->sid, ack);
		}
	}
	if (buf_used(&x->down))
		return;
	/* Nothing more can come: proxy.c sees the connection end (a cut body fails the flow). */
	bool done = x->broken || (x->goaway && x->sid <= 0 && x->st != UP2_BODY) ||
		    (!nghttp2_session_want_read(x->s) && !nghttp2_session_want_write(x->s));
	if (done && !f->u_eof)
		f->u_eof = true;
}
