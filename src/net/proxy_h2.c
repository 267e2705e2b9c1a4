/* SPDX-License-Identifier: MIT */
/*
 * HTTP/2 inside an intercepted TLS connection (a flow; tls.c moves its bytes), with libnghttp2
 * for the framing, HPACK and the protocol's rules: a server session faces the guest, a client
 * session faces the upstream, and each guest stream is relayed as one upstream stream.
 *
 * Which HTTP version: tls.c negotiates ALPN on each side and gives the guest the upstream's
 * choice when it offers it. This file runs when the guest speaks h2: over an h2 upstream (the
 * client session above), or over an HTTP/1.1 upstream (an h2-only guest, or one speaking h2
 * with prior knowledge), where each stream becomes one exchange on the upstream's keep-alive
 * connection, in turn ("an HTTP/1.1 upstream" below: h1_request, h1_send, h1_recv); the
 * stream's admission, substitution and scrubbing are the same either way. An HTTP/1.1 guest
 * over an h2 upstream is proxy.c's, with proxy_up2.c under it.
 *
 * A stream's states and transitions (struct h2s):
 *   HEADERS    the guest's request fields arrive (on_header), bounded by H2_MAX_REQ_LIST;
 *              at the end of the block (request_start) they are checked (:authority = the TLS
 *              server name, the upstream is up, no placeholder headed elsewhere), rewritten
 *              (secrets_rewrite_field, the same per-field rule as HTTP/1) and submitted
 *              upstream -> RELAYING; refused -> LOCAL (a 4xx/502 answered on the stream).
 *   RELAYING   DATA streams both ways. The guest's DATA goes through the body substituter
 *              (secrets_body, as HTTP/1 bodies: replaced toward the secret's host, a leak
 *              answers 403 and resets the upstream stream; a compressed body is only checked,
 *              decoded beside) and is queued for the upstream. The upstream's response fields
 *              and trailers are scrubbed (scrub_all), its DATA as a stream (scrub_feed; a
 *              compressed body decoded and encoded again; Content-Length dropped). gRPC bodies
 *              (application/grpc) are length-prefixed messages: each is collected whole,
 *              rewritten and sent with its new length (grpc_feed). Flow control is tied
 *              across: bytes received on one side are acknowledged (WINDOW_UPDATE, by
 *              nghttp2_session_consume) only once the other side's session took them, so a
 *              stream never holds more than the window it announced (a gRPC message being
 *              collected is acknowledged as it comes, within H2_GRPC_HELD_MAX).
 *   closing    RST_STREAM on either side resets the other (the upstream's code reaches the
 *              guest: REFUSED_STREAM lets it retry); a GOAWAY from the upstream is passed
 *              to the guest (no new streams; the upstream's refused streams are refused to the
 *              guest, who may retry); the upstream's connection ending answers 502 to streams
 *              without a response and resets the others. A stream is freed once both sessions
 *              closed it (or never had it).
 * The connection ends when the guest's session has nothing left to read or write (GOAWAY
 * either way and no streams), or the guest's TLS ends.
 *
 * Bounds: H2_MAX_STREAMS concurrent streams (SETTINGS_MAX_CONCURRENT_STREAMS; more are
 * refused), header lists of H2_MAX_REQ_LIST / H2_MAX_RESP_LIST bytes and HTTP_MAX_HEADERS
 * fields, H2_CONN_WINDOW bytes in flight each way per connection, gRPC messages of
 * H2_GRPC_MAX_MSG and H2_GRPC_HELD_MAX of partial ones per connection.
 */
#define _GNU_SOURCE
#include "flow.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <nghttp2/nghttp2.h>

#include "codec.h"
#include "proxy_hooks.h"
#include "secrets.h"
#include "sigv4.h"

#define H2_MAX_STREAMS 100 /* SETTINGS_MAX_CONCURRENT_STREAMS we announce to the guest */
/* Streams alive at once, counting those closed on one side and still open on the other. */
#define H2_MAX_LIVE (2 * H2_MAX_STREAMS)
#define H2_MAX_REQ_LIST HTTP_MAX_HEAD /* a request's fields (RFC 9113 size), as HTTP/1 */
#define H2_MAX_RESP_LIST HTTP_MAX_RESPONSE_HEAD
#define H2_STREAM_WINDOW (256 * 1024) /* SETTINGS_INITIAL_WINDOW_SIZE, both sides */
#define H2_CONN_WINDOW (1024 * 1024) /* the connection's receive window, both sides */
#define H2_FIELD_OVERHEAD 32 /* RFC 9113 6.5.2: a field's size is name + value + 32 */
#define H2_GRPC_MAX_MSG (4u * 1024 * 1024) /* gRPC's own default limit on a message */
/* Partial gRPC messages a connection holds before senders wait for windows (both ways). */
#define H2_GRPC_HELD_MAX (16u * 1024 * 1024)

/*
 * gRPC's length-prefixed messages (a compressed flag, a 4-byte length, the message) inside a
 * stream's DATA: a substitution or a scrub changes a message's length, so each message is
 * collected whole (at most H2_GRPC_MAX_MSG), rewritten, and sent with its new length.
 */
struct grpc_msgs {
	uint8_t head[5];
	size_t head_len;
	struct buf msg;
};

/* A header list as HPACK decoded it: packed (u32 name length, u32 value length, name, value). */
struct hlist {
	struct buf b;
	unsigned n;
	size_t size; /* name + value + 32 per field */
	bool over; /* a field did not fit (too many, too long): the list is refused */
};

struct h2;

struct h2s {
	struct h2 *h;
	struct h2s *prev, *next; /* h->streams */
	int32_t gid, uid; /* the guest's and the upstream's stream id (uid 0: none) */
	bool g_open, u_open; /* the session still has the stream */
	struct hlist rq, rs; /* request fields (then trailers); response fields (then trailers) */
	struct hlist rq_trailers, rs_trailers; /* rewritten / scrubbed, sent after the DATA */
	struct buf up; /* the guest's DATA not taken by the upstream's session yet */
	bool up_end; /* the guest ended its request */
	size_t up_owed; /* received from the guest, not acknowledged yet */
	struct secrets_body body; /* placeholders in the guest's DATA, split across frames too */
	struct codec *rq_inspect; /* a compressed request body, decoded only to be checked */
	enum codec_kind rs_coding;
	struct codec *rs_dec, *rs_enc; /* a compressed response: decoded, scrubbed, re-encoded */
	bool rq_wide, rs_wide; /* rq_inspect, rs_dec: counted in the sandbox's br/zstd budget */
	/* The request's (response's) DATA is gRPC messages, collected and rewritten whole. */
	bool grpc_rq, grpc_rs;
	enum codec_kind grpc_coding; /* the request's grpc-encoding (compressed messages) */
	struct grpc_msgs gq, gr;
	struct buf down; /* scrubbed DATA for the guest */
	bool down_end; /* the upstream ended its response */
	size_t down_owed; /* received from the upstream, not acknowledged yet */
	bool resp_sent, local, head_request, scrubbing, logged, reset_by_upstream;
	struct scrub scrub;
	/*
	 * An HTTP/1.1 upstream (h->h1): the request head rendered from the rewritten fields, the
	 * body framing chosen, and whether all of the request was written.
	 */
	struct h2s *h1_next; /* h->h1_q */
	struct buf h1_head;
	bool h1_chunked, h1_sent, h1_drop; /* h1_drop: its response is read and dropped */
	bool h1_expect; /* Expect: 100-continue: its head goes before any of its body came */
	/* For the request event. */
	char method[16];
	char url[8 + POLICY_NAME_MAX + 6 + 400];
	int status;
	uint64_t t0, n_up, n_down;
	uint64_t hk_matched; /* hook rules whose response edits apply (proxy_hooks.h) */
	uint32_t hk_gen;
	struct hooks_body *hk_body; /* its body replacements, or NULL */
};

struct h2 {
	struct flow *f;
	nghttp2_session *g; /* the guest's: we are the server */
	nghttp2_session *u; /* the upstream's: we are the client; NULL when it failed */
	struct h2s *streams;
	unsigned nlive;
	size_t grpc_held; /* bytes of partial gRPC messages held, every stream, both ways */
	bool u_gone; /* the upstream's connection ended: its streams were answered */
	bool g_fatal;
	/*
	 * The upstream speaks HTTP/1.1 (it chose it, or offered nothing): its one connection
	 * carries one stream's request and response at a time, in the order the streams came
	 * (h1_q; the first is on the connection). h1_broken: a request was cut off mid-way, the
	 * connection is reset and the streams are answered at the next step.
	 */
	bool h1, h1_head_out, h1_in_body, h1_broken;
	struct h2s *h1_q, *h1_tail;
	struct http_body h1_body;
	bool h1_close; /* the response on the connection ends it */
	bool h1_end_sent; /* its HEADERS ended the guest's stream (no body) */
	bool goaway_due; /* the upstream is gone: GOAWAY once the guest's streams are answered */
	struct buf h1_trailers; /* the response's chunked trailer lines */
	char h1_why[200];
};

/* ---- header lists ------------------------------------------------------------------------- */

static void hlist_add(struct hlist *l, size_t max, const uint8_t *name, size_t nlen,
		      const uint8_t *v, size_t vlen)
{
	if (l->over || l->n >= HTTP_MAX_HEADERS ||
	    l->size + nlen + vlen + H2_FIELD_OVERHEAD > max) {
		l->over = true;
		return;
	}
	l->n++;
	l->size += nlen + vlen + H2_FIELD_OVERHEAD;
	buf_put_u32(&l->b, (uint32_t)nlen);
	buf_put_u32(&l->b, (uint32_t)vlen);
	buf_append(&l->b, name, nlen);
	buf_append(&l->b, v, vlen);
	if (l->b.bad)
		l->over = true;
}

/* The next field of l from cursor r; false at the end. */
static bool hlist_next(struct rd *r, const uint8_t **name, size_t *nlen, const uint8_t **v,
		       size_t *vlen)
{
	*nlen = rd_u32(r);
	*vlen = rd_u32(r);
	*name = rd_bytes(r, *nlen);
	*v = rd_bytes(r, *vlen);
	return !r->bad;
}

static void hlist_wipe(struct hlist *l)
{
	buf_wipe(&l->b);
	memset(l, 0, sizeof(*l));
}

/* The value of the field named name (lower case), or NULL. */
static const uint8_t *hlist_get(const struct hlist *l, const char *name, size_t *vlen)
{
	struct rd r = rd_make(buf_head(&l->b), buf_used(&l->b));
	const uint8_t *n, *v;
	size_t nl, vl, want = strlen(name);
	while (hlist_next(&r, &n, &nl, &v, &vl))
		if (nl == want && !memcmp(n, name, nl)) {
			*vlen = vl;
			return v;
		}
	return NULL;
}

/* An nghttp2_nv array over l's bytes (valid while l is unchanged). */
struct nvs {
	nghttp2_nv nv[HTTP_MAX_HEADERS];
	size_t n;
};

static void nvs_from(struct nvs *o, const struct hlist *l)
{
	struct rd r = rd_make(buf_head(&l->b), buf_used(&l->b));
	const uint8_t *n, *v;
	size_t nl, vl;
	o->n = 0;
	while (o->n < HTTP_MAX_HEADERS && hlist_next(&r, &n, &nl, &v, &vl))
		o->nv[o->n++] =
		    (nghttp2_nv){ (uint8_t *)n, (uint8_t *)v, nl, vl, NGHTTP2_NV_FLAG_NONE };
}

static size_t grpc_held(const struct grpc_msgs *g)
{
	return g->head_len + buf_used(&g->msg);
}

/*
 * How many of the bytes a gRPC message being collected took (held went from before to g's
 * now) to acknowledge at once: the message cannot wait for the other side to take them. All,
 * while the stream's queue for the other side is short and the connection holds at most
 * H2_GRPC_HELD_MAX in partial messages; none beyond (the sender waits for windows, and the
 * rest is acknowledged as the queue drains).
 */
static size_t grpc_ackable(struct h2 *h, const struct grpc_msgs *g, size_t before,
			   const struct buf *queue)
{
	size_t now = grpc_held(g);
	h->grpc_held = h->grpc_held + now - before;
	return now > before && buf_used(queue) < H2_STREAM_WINDOW &&
		       h->grpc_held <= H2_GRPC_HELD_MAX
		   ? now - before
		   : 0;
}

/* ---- streams ------------------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct h2s *stream_new(struct h2 *h, int32_t gid)
{
	struct h2s *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->h = h;
	s->gid = gid;
	s->g_open = true;
	s->t0 = now_ns();
	snprintf(s->method, sizeof(s->method), "?");
	snprintf(s->url, sizeof(s->url), "https://%s/", h->f->name);
	s->next = h->streams;
	if (h->streams)
		h->streams->prev = s;
	h->streams = s;
	h->nlive++;
	return s;
}

static void stream_free(struct h2s *s)
{
	struct h2 *h = s->h;
	if (s->prev)
		s->prev->next = s->next;
	else
		h->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	h->nlive--;
	h->grpc_held -= grpc_held(&s->gq) + grpc_held(&s->gr);
	hlist_wipe(&s->rq);
	hlist_wipe(&s->rs);
	hooks_body_free(s->hk_body);
	hlist_wipe(&s->rq_trailers);
	hlist_wipe(&s->rs_trailers);
	secrets_body_fini(&s->body);
	codec_release(h->f, &s->rq_inspect, NULL, &s->rq_wide);
	codec_release(h->f, &s->rs_dec, &s->rs_enc, &s->rs_wide);
	buf_wipe(&s->gq.msg);
	buf_wipe(&s->gr.msg);
	buf_wipe(&s->up);
	buf_wipe(&s->down);
	buf_wipe(&s->h1_head);
	scrub_fini(&s->scrub);
	explicit_bzero(s, sizeof(*s));
	free(s);
}

/* Free s once neither session has it. */
static void stream_maybe_free(struct h2s *s)
{
	if (!s->g_open && !s->u_open)
		stream_free(s);
}

static void stream_event(struct h2s *s, int status, bool allowed, const char *reason,
			 enum net_event_kind kind, const char *secret)
{
	struct net_request rq = { s->method, s->url,	status,
				  s->n_up,   s->n_down, (now_ns() - s->t0) / 1000000u,
				  secret };
	flow_event(s->h->f, kind, allowed, reason, &rq);
}

/* Acknowledge n bytes of the guest's DATA on s (they left for the upstream, or were dropped). */
static void ack_guest(struct h2s *s, size_t n)
{
	if (!n)
		return;
	n = n > s->up_owed ? s->up_owed : n;
	s->up_owed -= n;
	if (!s->h->h1) /* HTTP/1.1 upstream: opened as the bytes came (request_data) */
		nghttp2_session_consume_connection(s->h->g, n);
	if (s->g_open)
		nghttp2_session_consume_stream(s->h->g, s->gid, n);
}

static void ack_upstream(struct h2s *s, size_t n)
{
	n = n > s->down_owed ? s->down_owed : n;
	if (!n || !s->h->u)
		return;
	s->down_owed -= n;
	nghttp2_session_consume_connection(s->h->u, n);
	if (s->u_open)
		nghttp2_session_consume_stream(s->h->u, s->uid, n);
}

/* The upstream's session reads s's request body from here. */
static ssize_t read_up(nghttp2_session *sess, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *ud)
{
	(void)ud;
	struct h2s *s = src->ptr;
	size_t n = buf_used(&s->up) < len ? buf_used(&s->up) : len;
	if (!n && !s->up_end)
		return NGHTTP2_ERR_DEFERRED;
	if (n) {
		memcpy(out, buf_head(&s->up), n);
		buf_consume_wiped(&s->up, n);
	}
	s->n_up += n;
	/* Substitution changes lengths: acknowledge what came in once the queue is empty. */
	ack_guest(s, buf_used(&s->up) ? n : s->up_owed);
	if (s->up_end && !buf_used(&s->up)) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (s->rq_trailers.n) {
			struct nvs t;
			nvs_from(&t, &s->rq_trailers);
			if (nghttp2_submit_trailer(sess, id, t.nv, t.n) == 0)
				*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		}
	}
	return (ssize_t)n;
}

/* The guest's session reads s's response body from here. */
static ssize_t read_down(nghttp2_session *sess, int32_t id, uint8_t *out, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	(void)ud;
	struct h2s *s = src->ptr;
	size_t n = buf_used(&s->down) < len ? buf_used(&s->down) : len;
	if (!n && !s->down_end)
		return NGHTTP2_ERR_DEFERRED;
	if (n) {
		memcpy(out, buf_head(&s->down), n);
		buf_consume(&s->down, n);
	}
	s->n_down += n;
	/* Scrubbing changes lengths: acknowledge what came in once the queue is empty. */
	ack_upstream(s, buf_used(&s->down) ? n : s->down_owed);
	if (s->down_end && !buf_used(&s->down)) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (s->rs_trailers.n) {
			struct nvs t;
			nvs_from(&t, &s->rs_trailers);
			if (nghttp2_submit_trailer(sess, id, t.nv, t.n) == 0)
				*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		}
	}
	return (ssize_t)n;
}

/* Answer s on the guest's side with status and a one-line body; nothing goes upstream. */
static void stream_answer(struct h2s *s, int status, const char *reason)
{
	struct h2 *h = s->h;
	char st[8], len[24];
	s->local = true;
	s->status = status;
	/* Scrubbed like any byte for the guest (a reason may quote what the guest sent). */
	buf_wipe(&s->down);
	scrub_all(h->f->m->ss, NULL, (const uint8_t *)reason, strlen(reason), &s->down);
	buf_append(&s->down, "\n", 1);
	snprintf(st, sizeof(st), "%d", status);
	snprintf(len, sizeof(len), "%zu", buf_used(&s->down));
	nghttp2_nv nv[] = {
		{ (uint8_t *)":status", (uint8_t *)st, 7, strlen(st), NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"content-type", (uint8_t *)"text/plain; charset=utf-8", 12, 25,
		  NGHTTP2_NV_FLAG_NONE },
		{ (uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len),
		  NGHTTP2_NV_FLAG_NONE },
	};
	s->down_end = true;
	s->resp_sent = true;
	nghttp2_data_provider dp = { .source.ptr = s, .read_callback = read_down };
	if (nghttp2_submit_response(h->g, s->gid, nv, 3, &dp) < 0)
		nghttp2_submit_rst_stream(h->g, NGHTTP2_FLAG_NONE, s->gid, NGHTTP2_INTERNAL_ERROR);
	/* What the guest sends on it from now on is dropped. */
	ack_guest(s, s->up_owed);
	buf_wipe(&s->up);
}

/* ---- gRPC messages ---------------------------------------------------------------------- */

/* What a gRPC message becomes (appended to out), or a negative errno that refuses the stream. */
typedef int (*grpc_msg_fn)(struct h2s *s, bool compressed, const uint8_t *p, size_t n,
			   struct buf *out);

/* Append a message with its prefix. */
static void grpc_put(struct buf *out, uint8_t flag, const struct buf *m)
{
	buf_put_u8(out, flag);
	buf_put_be32(out, (uint32_t)buf_used(m));
	buf_append(out, buf_head(m), buf_used(m));
}

/*
 * Collect the messages in p[0..n): each whole one goes through fn into out. Returns 0,
 * -EMSGSIZE (a message over H2_GRPC_MAX_MSG), -EPROTO (final inside a message) or fn's error.
 */
static int grpc_feed(struct h2s *s, struct grpc_msgs *g, const uint8_t *p, size_t n, bool final,
		     grpc_msg_fn fn, struct buf *out)
{
	for (;;) {
		if (g->head_len < 5) {
			size_t k = 5 - g->head_len < n ? 5 - g->head_len : n;
			if (!k)
				break; /* p may be NULL (the end of the stream) */
			memcpy(g->head + g->head_len, p, k);
			g->head_len += k, p += k, n -= k;
			if (g->head_len < 5)
				break;
		}
		struct rd r = rd_make(g->head + 1, 4);
		uint32_t len = rd_be32(&r);
		if (len > H2_GRPC_MAX_MSG)
			return -EMSGSIZE;
		size_t k = len - buf_used(&g->msg) < n ? len - buf_used(&g->msg) : n;
		if (k) {
			if (buf_append(&g->msg, p, k) < 0)
				return -ENOMEM;
			p += k, n -= k;
		}
		if (buf_used(&g->msg) < len)
			break;
		/* A whole message (an empty one too: google.protobuf.Empty). */
		int e = fn(s, g->head[0] & 1, buf_head(&g->msg), len, out);
		buf_wipe(&g->msg);
		g->head_len = 0;
		if (e < 0)
			return e;
	}
	if (final && grpc_held(g))
		return -EPROTO;
	return 0;
}

/*
 * A request message: placeholders replaced. A compressed one (grpc-encoding) passes as it is,
 * decoded beside to be checked: a placeholder inside refuses it (-ENOTSUP, or -EPERM toward
 * another host); a coding the proxy cannot read refuses it too.
 */
static int grpc_request_msg(struct h2s *s, bool compressed, const uint8_t *p, size_t n,
			    struct buf *out)
{
	struct secrets_body b;
	struct buf t = { 0 }, dec = { 0 };
	int r = 0;
	secrets_body_init(&b, s->h->f->m->ss, s->h->f->name, SECRETS_BODY_RAW, compressed);
	if (compressed) {
		struct codec *c = NULL;
		bool wide = false;
		r = s->grpc_coding == CODEC_IDENTITY || s->grpc_coding == CODEC_OTHER
			? -ENOTSUP
			: codec_take(s->h->f, s->grpc_coding, &c, &wide);
		if (r == 0)
			r = codec_feed(c, p, n, true, &dec);
		if (r == 0)
			r = secrets_body_feed(&b, buf_head(&dec), buf_used(&dec), true, &t);
		codec_release(s->h->f, &c, NULL, &wide);
		buf_wipe(&t);
		if (r == 0)
			r = buf_append(&t, p, n);
	} else {
		r = secrets_body_feed(&b, p, n, true, &t);
	}
	if (r < 0)
		s->body.leak = b.leak;
	else
		grpc_put(out, compressed, &t);
	secrets_body_fini(&b);
	buf_wipe(&t);
	buf_wipe(&dec);
	return r < 0 ? r : out->bad ? -ENOMEM : 0;
}

/* A response message: scrubbed (a compressed one cannot be: the stream is refused). */
static int grpc_response_msg(struct h2s *s, bool compressed, const uint8_t *p, size_t n,
			     struct buf *out)
{
	if (compressed)
		return -ENOTSUP;
	struct buf t = { 0 };
	int r = scrub_all(s->h->f->m->ss, &s->scrub, p, n, &t);
	if (r == 0)
		grpc_put(out, 0, &t);
	buf_wipe(&t);
	return r < 0 ? r : out->bad ? -ENOMEM : 0;
}

/* ---- requests ----------------------------------------------------------------------------- */

static void up_cancel(struct h2s *s);
static int h1_request(struct h2s *s, const struct hlist *l, bool end_stream, char *reason,
		      size_t rn);

static void leak_refuse(struct h2s *s, const struct secret *leak)
{
	struct flow *f = s->h->f;
	char hosts[300] = "", reason[1024]; /* two names and the list of hosts */
	for (unsigned i = 0, k = 0; i < leak->nhosts && k < sizeof(hosts) - 1; i++)
		k += (unsigned)snprintf(hosts + k, sizeof(hosts) - k, "%s%s", i ? "," : "",
					leak->hosts[i]);
	if (leak->kind == SECRET_AWS_SECRET_KEY)
		snprintf(
		    reason, sizeof(reason),
		    "matchlock: request to %s blocked: it carries the placeholder of %s, the "
		    "AWS secret access key, which is never sent anywhere: the proxy signs with "
		    "it (secret_leak)",
		    f->name, leak->name);
	else
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s blocked: it carries the "
			 "placeholder of secret %s, which may only be sent to %s (secret_leak)",
			 f->name, leak->name, hosts);
	stream_event(s, 403, false, reason, NET_EV_SECRET_LEAK, leak->name);
	stream_event(s, 403, false, reason, NET_EV_REQUEST, leak->name);
	s->logged = true;
	if (!s->resp_sent) {
		stream_answer(s, 403, reason);
	} else {
		nghttp2_submit_rst_stream(s->h->g, NGHTTP2_FLAG_NONE, s->gid,
					  NGHTTP2_REFUSED_STREAM);
	}
	up_cancel(s);
}

/*
 * Rewrite the fields of in for the upstream into out: Accept-Encoding becomes identity when
 * strip (so that responses can be scrubbed), Content-Length goes when drop_length (the body's
 * substitutions change it). Returns 0, or -EPERM with *leak.
 */
static int fields_rewrite(struct h2s *s, const struct hlist *in, bool strip, bool drop_length,
			  struct hlist *out, const struct secret **leak)
{
	const struct secrets *ss = s->h->f->m->ss;
	struct rd r = rd_make(buf_head(&in->b), buf_used(&in->b));
	const uint8_t *n, *v;
	size_t nl, vl;
	struct buf val = { 0 };
	int ret = 0;
	while (hlist_next(&r, &n, &nl, &v, &vl)) {
		if ((strip && nl == 15 && !memcmp(n, "accept-encoding", 15)) ||
		    (strip && nl == 20 && !memcmp(n, "grpc-accept-encoding", 20)) ||
		    (drop_length && nl == 14 && !memcmp(n, "content-length", 14)))
			continue;
		if (!ss || !ss->n) {
			hlist_add(out, SIZE_MAX, n, nl, v, vl);
			continue;
		}
		buf_wipe(&val);
		bool path = nl == 5 && !memcmp(n, ":path", 5);
		int k = secrets_rewrite_field(ss, s->h->f->name, n, nl, v, vl, path, &val, leak,
					      &s->scrub);
		if (k < 0) {
			ret = k;
			break;
		}
		hlist_add(out, SIZE_MAX, n, nl, buf_head(&val), buf_used(&val));
	}
	buf_wipe(&val);
	/* Compressed responses (and gRPC messages) could not be scrubbed. */
	if (!ret && strip)
		hlist_add(out, SIZE_MAX, (const uint8_t *)"accept-encoding", 15,
			  (const uint8_t *)"identity", 8);
	if (!ret && strip && s->grpc_rq)
		hlist_add(out, SIZE_MAX, (const uint8_t *)"grpc-accept-encoding", 20,
			  (const uint8_t *)"identity", 8);
	if (!ret && out->over)
		ret = -ENOMEM;
	return ret;
}

/* Whether a Content-Type value names gRPC (application/grpc, application/grpc+proto...). */
static bool is_grpc(const uint8_t *ct, size_t n)
{
	return ct && n >= 16 && !strncasecmp((const char *)ct, "application/grpc", 16) &&
	       (n == 16 || ct[16] == '+' || ct[16] == ';');
}

/*
 * AWS SigV4 over HTTP/2 (proxy_sigv4.c does the work): the fields l as a request whose "host"
 * is :authority. Without signed (the guest's fields): sigv4_start, *sv set when the request is
 * signed with the sandbox's credential (a body whose hash is the payload hash cannot be held
 * here: refused). With signed (the rewritten fields): sigv4_resign, and the new signature
 * written over the guest's in l. Returns 0 or a refusal's status with its reason.
 */
static int sigv4_of_fields(struct h2s *s, struct hlist *l, bool end_stream, struct sigv4_flow **sv,
			   struct sigv4_flow *signed_, char *reason, size_t rn)
{
	struct flow *f = s->h->f;
	struct sigv4_field fs[HTTP_MAX_HEADERS + 1];
	struct rd r = rd_make(buf_head(&l->b), buf_used(&l->b));
	const uint8_t *n, *v, *meth = NULL, *path = NULL, *authz = NULL;
	size_t nl, vl, ml = 0, pl = 0, al = 0;
	unsigned k = 0;
	while (k < HTTP_MAX_HEADERS && hlist_next(&r, &n, &nl, &v, &vl)) {
		if (nl == 7 && !memcmp(n, ":method", 7))
			meth = v, ml = vl;
		else if (nl == 5 && !memcmp(n, ":path", 5))
			path = v, pl = vl;
		else if (nl == 10 && !memcmp(n, ":authority", 10))
			fs[k++] = (struct sigv4_field){ (const uint8_t *)"host", 4, v, vl };
		else if (nl && n[0] != ':')
			fs[k++] = (struct sigv4_field){ n, nl, v, vl };
		if (nl == 13 && !memcmp(n, "authorization", 13))
			authz = v, al = vl;
	}
	char method[16];
	if (!meth || !path || ml >= sizeof(method))
		return 0; /* nghttp2 lets no such request through */
	snprintf(method, sizeof(method), "%.*s", (int)ml, (const char *)meth);
	struct sigv4_req rq = { method, path, pl, fs, k };
	if (!signed_) {
		int st = sigv4_start(f, &rq, end_stream ? SIGV4_BODY_NONE : SIGV4_BODY_STREAMED, sv,
				     reason, rn);
		if (st || !sigv4_signs_chunks(*sv))
			return st;
		sigv4_state_free(*sv);
		*sv = NULL;
		snprintf(reason, rn,
			 "matchlock: request to %s refused: signed aws-chunked bodies "
			 "(STREAMING-AWS4-HMAC-SHA256-PAYLOAD) are signed again over HTTP/1.1 only",
			 f->name);
		return 501;
	}
	char sig[SIGV4_SIG_LEN + 1];
	int st = sigv4_resign(f, signed_, &rq, NULL, 0, sig, reason, rn);
	/* The values are l's own bytes: the signature is written over in place. */
	if (!st && !sigv4_put_signature(signed_, (uint8_t *)path, pl, (uint8_t *)authz, al, sig)) {
		snprintf(
		    reason, rn,
		    "matchlock: request to %s failed: its SigV4 signature could not be replaced",
		    f->name);
		st = 400;
	}
	explicit_bzero(sig, sizeof(sig));
	return st;
}

/* The guest's request fields are complete: check, rewrite and send them upstream. */
/* Answer the stream here with status and reason, logged as the request's event. */
static void stream_refuse(struct h2s *s, int status, const char *reason)
{
	stream_event(s, status, false, reason, NET_EV_REQUEST, NULL);
	s->logged = true;
	stream_answer(s, status, reason);
}

/* The method and the URL (target redacted) that events and the log name the request by. */
static void request_name(struct h2s *s)
{
	struct flow *f = s->h->f;
	size_t ml = 0, pl = 0;
	const uint8_t *meth = hlist_get(&s->rq, ":method", &ml);
	const uint8_t *path = hlist_get(&s->rq, ":path", &pl);
	if (meth)
		snprintf(s->method, sizeof(s->method), "%.*s", (int)ml, meth);
	s->head_request = ml == 4 && !memcmp(meth, "HEAD", 4);
	char t[400] = "/";
	if (path)
		http_target_redacted(path, pl, t, sizeof(t));
	if (f->port == 443)
		snprintf(s->url, sizeof(s->url), "https://%s%s", f->name, t[0] == '/' ? t : "/");
	else
		snprintf(s->url, sizeof(s->url), "https://%s:%u%s", f->name, f->port,
			 t[0] == '/' ? t : "/");
}

/* Whether the request may go upstream at all: its size, its :authority, the upstream. */
static bool request_admitted(struct h2s *s)
{
	struct h2 *h = s->h;
	struct flow *f = h->f;
	char reason[1024], host[256] = "";
	size_t al = 0;
	const uint8_t *auth = hlist_get(&s->rq, ":authority", &al);
	if (!auth)
		auth = hlist_get(&s->rq, "host", &al);
	if (s->rq.over) {
		snprintf(reason, sizeof(reason),
			 "matchlock: bad request to %s: header fields larger than %u bytes",
			 f->name, H2_MAX_REQ_LIST);
		stream_refuse(s, 431, reason);
		return false;
	}
	if (!auth || http_authority_host(auth, al, host, sizeof(host)) < 0 ||
	    strcmp(host, f->name)) {
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s blocked: :authority %.*s does not "
			 "match the TLS server name %s",
			 f->name, auth ? (int)(al > 255 ? 255 : al) : 6,
			 auth ? (const char *)auth : "(none)", f->name);
		stream_refuse(s, 403, reason);
		return false;
	}
	bool up = h->u || h->h1;
	if (h->h1 && h->u_gone) {
		/* Never sent: the guest retries it on a new connection (GOAWAY is on its way). */
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s refused (the guest may retry): the upstream "
			 "closed the connection",
			 f->name);
		stream_event(s, 0, false, reason, NET_EV_REQUEST, NULL);
		s->logged = s->local = true;
		nghttp2_submit_rst_stream(h->g, NGHTTP2_FLAG_NONE, s->gid, NGHTTP2_REFUSED_STREAM);
		return false;
	}
	if (!up || h->u_gone) {
		/* The log gets why; the guest gets what it may know. */
		snprintf(reason, sizeof(reason), "matchlock: request to %s failed: %s", f->name,
			 up ? "the upstream closed the connection" : f->u_why);
		stream_event(s, 502, false, reason, NET_EV_REQUEST, NULL);
		s->logged = true;
		snprintf(reason, sizeof(reason), "matchlock: request to %s failed: %s", f->name,
			 up ? "the upstream closed the connection" : f->u_guest);
		stream_answer(s, 502, reason);
		return false;
	}
	return true;
}

/*
 * A body in a Content-Encoding: one the proxy cannot read is refused (415); gzip, deflate, br
 * and zstd take a decoder to look inside (503 when the sandbox has as many as it may). Returns
 * whether the request goes on; *coded says whether the body is encoded.
 */
static bool request_coding(struct h2s *s, bool end_stream, bool *coded)
{
	struct flow *f = s->h->f;
	const struct secrets *ss = f->m->ss;
	char reason[600];
	size_t el = 0;
	const uint8_t *ce = hlist_get(&s->rq, "content-encoding", &el);
	enum codec_kind kind = codec_kind_of(ce, el);
	*coded = kind != CODEC_IDENTITY;
	if (!ss || !ss->n || end_stream || !*coded)
		return true;
	if (kind == CODEC_OTHER) {
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s refused: its body is Content-Encoding %.*s, "
			 "which the proxy cannot look inside for secret placeholders (send it "
			 "uncompressed, gzip or deflate)",
			 f->name, (int)(el < 40 ? el : 40), (const char *)ce);
		stream_refuse(s, 415, reason);
		return false;
	}
	int busy = codec_take(f, kind, &s->rq_inspect, &s->rq_wide);
	if (busy < 0) {
		snprintf(reason, sizeof(reason), "matchlock: request to %s failed: %s", f->name,
			 busy == -EBUSY ? "the sandbox decodes as many br/zstd bodies as it may "
					  "at once; retry"
					: "out of memory");
		stream_refuse(s, 503, reason);
		return false;
	}
	return true;
}

static void request_start(struct h2s *s, bool end_stream)
{
	struct h2 *h = s->h;
	struct flow *f = h->f;
	const struct secrets *ss = f->m->ss;
	char reason[1024];
	request_name(s);
	s->up_end = end_stream;
	if (!request_admitted(s))
		return;
	if (!proxy_hooks_h2_request(f, &s->rq.b, &s->hk_matched, &s->hk_gen, reason,
				    sizeof(reason))) {
		stream_refuse(s, 403, reason);
		return;
	}
	request_name(s); /* the path a rule rewrote */
	/* Signed with the sandbox's AWS credential: checked now, signed again once rewritten. */
	struct sigv4_flow *sv = NULL;
	int st = ss && ss->n
		     ? sigv4_of_fields(s, &s->rq, end_stream, &sv, NULL, reason, sizeof(reason))
		     : 0;
	if (st) {
		stream_refuse(s, st, reason);
		return;
	}
	bool coded;
	if (!request_coding(s, end_stream, &coded)) {
		sigv4_state_free(sv);
		return;
	}
	struct hlist out = { 0 };
	const struct secret *leak = NULL;
	size_t cl = 0, gl = 0;
	const uint8_t *ct = hlist_get(&s->rq, "content-type", &cl);
	/* A SigV4-signed body is never changed: its signature covers it. */
	secrets_body_init(&s->body, ss, f->name, secrets_body_enc_for(ct, ct ? cl : 0),
			  coded || sv);
	s->grpc_rq = ss && ss->n && is_grpc(ct, cl);
	const uint8_t *ge = hlist_get(&s->rq, "grpc-encoding", &gl);
	s->grpc_coding = codec_kind_of(ge, gl);
	bool bound = !end_stream && secrets_host_bound(ss, f->name) && !coded && !sv;
	int r = fields_rewrite(s, &s->rq, ss && ss->n, bound, &out, &leak);
	hlist_wipe(&s->rq);
	if (r == -EPERM) {
		sigv4_state_free(sv);
		leak_refuse(s, leak);
		hlist_wipe(&out);
		return;
	}
	st = r == 0 && sv ? sigv4_of_fields(s, &out, end_stream, &sv, sv, reason, sizeof(reason))
			  : 0;
	sigv4_state_free(sv);
	if (st) {
		const struct secret *key = secrets_aws(ss, SECRET_AWS_SECRET_KEY);
		const char *name = st == 403 ? key->name : NULL;
		if (name)
			stream_event(s, st, false, reason, NET_EV_SECRET_LEAK, name);
		stream_event(s, st, false, reason, NET_EV_REQUEST, name);
		s->logged = true;
		hlist_wipe(&out);
		stream_answer(s, st, reason);
		return;
	}
	if (r < 0) {
		hlist_wipe(&out);
		snprintf(reason, sizeof(reason), "matchlock: request to %s: out of memory",
			 f->name);
		stream_answer(s, 502, reason);
		return;
	}
	if (h->h1) {
		r = h1_request(s, &out, end_stream, reason, sizeof(reason));
		hlist_wipe(&out);
		if (r < 0)
			stream_refuse(s, 501, reason);
		return;
	}
	struct nvs nv;
	nvs_from(&nv, &out);
	nghttp2_data_provider dp = { .source.ptr = s, .read_callback = read_up };
	int32_t uid = nghttp2_submit_request(h->u, NULL, nv.nv, nv.n, end_stream ? NULL : &dp, s);
	hlist_wipe(&out); /* nghttp2 copied the fields */
	if (uid < 0) {
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s failed: the upstream takes no more "
			 "streams on this connection (%s)",
			 f->name, nghttp2_strerror(uid));
		stream_refuse(s, 502, reason);
		return;
	}
	s->uid = uid;
	s->u_open = true;
}

/* Trailers from the guest (gRPC clients rarely send them): rewritten like the fields. */
static void request_trailers(struct h2s *s)
{
	const struct secret *leak = NULL;
	int r = fields_rewrite(s, &s->rq, false, false, &s->rq_trailers, &leak);
	hlist_wipe(&s->rq);
	if (r == -EPERM)
		leak_refuse(s, leak);
	else if (r < 0)
		nghttp2_submit_rst_stream(s->h->g, NGHTTP2_FLAG_NONE, s->gid,
					  NGHTTP2_INTERNAL_ERROR);
}

/* A placeholder in the request body that cannot go (or cannot be replaced): 403, both reset. */
static void body_refuse(struct h2s *s, int r)
{
	if (r == -EPERM) {
		leak_refuse(s, s->body.leak);
		return;
	}
	char reason[600];
	const char *name = s->h->f->name;
	int status = 403;
	if (s->grpc_rq && (r == -EMSGSIZE || r == -EPROTO)) {
		snprintf(reason, sizeof(reason), "matchlock: request to %s reset: %s", name,
			 r == -EMSGSIZE ? "a gRPC message larger than 4 MiB"
					: "the request ended inside a gRPC message");
		status = 0; /* reset, no answer */
	} else if (r == -ENOTSUP && !s->body.leak) {
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s refused: a compressed gRPC message in a coding "
			 "the proxy cannot look inside for secret placeholders",
			 name);
		status = 415;
	} else if (r == -ENOTSUP) {
		snprintf(
		    reason, sizeof(reason),
		    "matchlock: request to %s refused: the placeholder of secret %s is inside "
		    "a compressed (Content-Encoding) body, where the proxy does not replace it; "
		    "send the body uncompressed",
		    name, s->body.leak ? s->body.leak->name : "?");
		status = 415;
	} else if (r == -EFBIG) {
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s refused: its compressed body expands more than "
			 "%ux",
			 name, CODEC_MAX_RATIO);
		status = 413;
	} else if (r == -EPROTO) {
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s refused: its body is not valid data of its "
			 "Content-Encoding",
			 name);
		status = 400;
	} else {
		snprintf(reason, sizeof(reason), "matchlock: request to %s failed: out of memory",
			 name);
		status = 503;
	}
	stream_event(s, status, false, reason, NET_EV_REQUEST, NULL);
	s->logged = true;
	if (status && !s->resp_sent)
		stream_answer(s, status, reason);
	else
		nghttp2_submit_rst_stream(s->h->g, NGHTTP2_FLAG_NONE, s->gid,
					  NGHTTP2_INTERNAL_ERROR);
	up_cancel(s);
}

/* A compressed request body passes as it is; it is decoded beside only to be checked. */
static int request_inspect(struct h2s *s, const uint8_t *p, size_t n, bool final)
{
	struct buf dec = { 0 }, sink = { 0 };
	int r = buf_append(&s->up, p, n);
	if (r == 0)
		r = codec_feed(s->rq_inspect, p, n, final, &dec);
	if (r == 0)
		r = secrets_body_feed(&s->body, buf_head(&dec), buf_used(&dec), final, &sink);
	buf_wipe(&dec);
	buf_wipe(&sink);
	return r;
}

/*
 * The guest's DATA for s (NULL, final: its end): placeholders replaced toward the secret's
 * host, refused toward any other (secrets_body), queued for the upstream.
 */
/*
 * gRPC: the messages are rewritten one by one (grpc_request_msg); the raw stream is scanned as
 * well, so that a placeholder laid across a message's length prefix and its bytes cannot reach
 * a host it is not for. Only that refusal (-EPERM) counts from the scan: what it would have
 * substituted is the messages' business.
 */
static int grpc_request_data(struct h2s *s, const uint8_t *p, size_t n, bool final)
{
	struct buf scratch = { 0 };
	int r = secrets_body_feed(&s->body, p, n, final, &scratch);
	buf_wipe(&scratch);
	if (r == -EPERM || r == -ENOMEM)
		return r;
	return grpc_feed(s, &s->gq, p, n, final, grpc_request_msg, &s->up);
}

static void request_data(struct h2s *s, const uint8_t *p, size_t n, bool final)
{
	s->up_owed += n;
	/* Streams wait their turn on an HTTP/1.1 upstream: only their own windows hold them. */
	if (s->h->h1)
		nghttp2_session_consume_connection(s->h->g, n);
	if (s->local || !s->u_open) {
		ack_guest(s, n);
		return;
	}
	size_t before = buf_used(&s->up), held = grpc_held(&s->gq);
	int r = s->grpc_rq	? grpc_request_data(s, p, n, final)
		: s->rq_inspect ? request_inspect(s, p, n, final)
				: secrets_body_feed(&s->body, p, n, final, &s->up);
	/* A gRPC message being collected: acknowledged as it comes while the queue is short
	   (read_up acknowledges the rest as it drains). */
	size_t gack = s->grpc_rq ? grpc_ackable(s->h, &s->gq, held, &s->up) : 0;
	if (r < 0) {
		ack_guest(s, s->up_owed);
		buf_wipe(&s->up);
		body_refuse(s, r);
		return;
	}
	if (s->grpc_rq) {
		ack_guest(s, gack);
	} else if (buf_used(&s->up) == before) {
		ack_guest(s, n); /* all held back (under one placeholder's length) */
	}
	if (final)
		s->up_end = true;
	if (s->h->u)
		nghttp2_session_resume_data(s->h->u, s->uid);
}

/* ---- responses ---------------------------------------------------------------------------- */

/* Scrub every value of in into out; Content-Length dropped when drop_length. */
static void fields_scrub(struct h2s *s, const struct hlist *in, bool drop_length, struct hlist *out)
{
	const struct secrets *ss = s->h->f->m->ss;
	struct rd r = rd_make(buf_head(&in->b), buf_used(&in->b));
	const uint8_t *n, *v;
	size_t nl, vl;
	struct buf val = { 0 };
	while (hlist_next(&r, &n, &nl, &v, &vl)) {
		if (drop_length && nl == 14 && !memcmp(n, "content-length", 14))
			continue;
		buf_wipe(&val);
		scrub_all(ss, &s->scrub, v, vl, &val);
		hlist_add(out, SIZE_MAX, n, nl, buf_head(&val), buf_used(&val));
	}
	buf_wipe(&val);
}

/* The upstream's response fields for s, complete: scrubbed and sent to the guest. */
static void response_head(struct h2s *s, bool end_stream)
{
	struct h2 *h = s->h;
	const struct secrets *ss = h->f->m->ss;
	size_t sl = 0;
	const uint8_t *st = hlist_get(&s->rs, ":status", &sl);
	int status = 0;
	for (size_t i = 0; st && i < sl && i < 3; i++)
		status = status * 10 + (st[i] - '0');
	if (s->rs.over || status < 100) {
		char reason[600];
		snprintf(reason, sizeof(reason),
			 "matchlock: bad response from %s: header fields larger than %u bytes",
			 h->f->name, H2_MAX_RESP_LIST);
		stream_event(s, 502, true, reason, NET_EV_REQUEST, NULL);
		s->logged = true;
		stream_answer(s, 502, reason);
		up_cancel(s);
		hlist_wipe(&s->rs);
		return;
	}
	s->hk_body = s->head_request ? NULL
				     : proxy_hooks_body_start(h->f, s->hk_body, s->hk_matched,
							      s->hk_gen, status);
	s->scrubbing = (ss && ss->n) || s->hk_body; /* hook body edits re-frame it too */
	size_t cl = 0;
	const uint8_t *ct = hlist_get(&s->rs, "content-type", &cl);
	s->grpc_rs = s->scrubbing && is_grpc(ct, cl);
	if (s->scrubbing && status >= 200 && !s->grpc_rs) {
		/* A compressed body is scrubbed decoded (the guest asked for identity anyway). */
		size_t el = 0;
		const uint8_t *ce = hlist_get(&s->rs, "content-encoding", &el);
		s->rs_coding = codec_kind_of(ce, el);
		int r = s->rs_coding == CODEC_OTHER ? -EPROTONOSUPPORT
			: s->rs_coding == CODEC_IDENTITY
			    ? 0
			    : codec_take(h->f, s->rs_coding, &s->rs_dec, &s->rs_wide);
		if (r < 0) {
			char reason[600];
			snprintf(
			    reason, sizeof(reason), "matchlock: bad response from %s: %s",
			    h->f->name,
			    r == -ENOMEM ? "out of memory"
			    : r == -EBUSY
				? "the sandbox decodes as many br/zstd responses as it may at "
				  "once"
				: "a Content-Encoding the proxy cannot decode to scrub secrets "
				  "from (it decodes gzip, deflate, br and zstd)");
			stream_event(s, 502, false, reason, NET_EV_REQUEST, NULL);
			s->logged = true;
			stream_answer(s, 502, reason);
			up_cancel(s);
			hlist_wipe(&s->rs);
			return;
		}
	}
	if (status >= 200)
		proxy_hooks_h2_response(h->f, s->hk_matched, s->hk_gen, &s->rs.b);
	struct hlist out = { 0 };
	fields_scrub(s, &s->rs, s->scrubbing && !s->head_request, &out);
	hlist_wipe(&s->rs);
	struct nvs nv;
	nvs_from(&nv, &out);
	if (status < 200) {
		/* 100 Continue and friends pass; the final response follows. */
		nghttp2_submit_headers(h->g, NGHTTP2_FLAG_NONE, s->gid, NULL, nv.nv, nv.n, NULL);
		hlist_wipe(&out);
		return;
	}
	s->status = status;
	s->resp_sent = true;
	s->down_end = end_stream;
	nghttp2_data_provider dp = { .source.ptr = s, .read_callback = read_down };
	if (nghttp2_submit_response(h->g, s->gid, nv.nv, nv.n, end_stream ? NULL : &dp) < 0)
		nghttp2_submit_rst_stream(h->g, NGHTTP2_FLAG_NONE, s->gid, NGHTTP2_INTERNAL_ERROR);
	hlist_wipe(&out);
}

/*
 * A compressed response piece: decoded, scrubbed and encoded again in the same coding (as
 * proxy.c's response_recode does for HTTP/1). Returns 0 or a negative errno (corrupt, cut
 * short, a bomb).
 */
static int response_recode(struct h2s *s, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	struct buf dec = { 0 }, clean = { 0 };
	int r = codec_feed(s->rs_dec, p, n, final, &dec);
	if (r == 0)
		r = proxy_hooks_scrub_feed(s->h->f->m->ss, &s->scrub, s->hk_body, buf_head(&dec),
					   buf_used(&dec), final, &clean);
	if (r == 0 && !s->rs_enc && buf_used(&clean)) {
		s->rs_enc = codec_new(s->rs_coding, true, codec_raw(s->rs_dec));
		if (!s->rs_enc)
			r = -ENOMEM;
	}
	if (r == 0 && s->rs_enc && (buf_used(&clean) || final))
		r = codec_feed(s->rs_enc, buf_head(&clean), buf_used(&clean), final, out);
	buf_wipe(&dec);
	buf_wipe(&clean);
	return r;
}

/* A response body piece (final: its end) through the scrubber chosen for it. */
static int response_body(struct h2s *s, const uint8_t *p, size_t n, bool final)
{
	if (s->grpc_rs)
		return grpc_feed(s, &s->gr, p, n, final, grpc_response_msg, &s->down);
	if (s->rs_dec)
		return response_recode(s, p, n, final, &s->down);
	return proxy_hooks_scrub_feed(s->h->f->m->ss, &s->scrub, s->hk_body, p, n, final, &s->down);
}

/* A response body that cannot be relayed safely: both streams reset. */
static void response_refuse(struct h2s *s, int r)
{
	char reason[600];
	snprintf(reason, sizeof(reason), "matchlock: response from %s reset: %s", s->h->f->name,
		 r == -ENOTSUP	  ? "a compressed gRPC message (it could not be scrubbed)"
		 : r == -EMSGSIZE ? "a gRPC message larger than 4 MiB"
		 : r == -EFBIG	  ? "its compressed body expands more than the bound on decoding"
		 : r == -EPROTO	  ? (s->grpc_rs ? "the response ended inside a gRPC message"
						: "its compressed body cannot be decoded")
				  : "out of memory");
	stream_event(s, s->status, false, reason, NET_EV_REQUEST, NULL);
	s->logged = true;
	nghttp2_submit_rst_stream(s->h->g, NGHTTP2_FLAG_NONE, s->gid, NGHTTP2_INTERNAL_ERROR);
	up_cancel(s);
}

/* The upstream ended s's response: flush the scrubber's held bytes, let the guest have it. */
static void response_end(struct h2s *s)
{
	int r = response_body(s, NULL, 0, true);
	if (r < 0) {
		response_refuse(s, r);
		return;
	}
	s->down_end = true;
	nghttp2_session_resume_data(s->h->g, s->gid);
}

/* ---- an HTTP/1.1 upstream ----------------------------------------------------------------- */
/*
 * An h2 guest and an upstream that speaks HTTP/1.1 (it chose http/1.1, or offered no ALPN):
 * each stream becomes one request and response on the flow's one upstream connection, kept
 * alive between them. Serialised, not pooled: the egress engine gives a flow one upstream socket
 * (its policy decided and its connection logged once), HTTP/1.1 pipelining is not safe with
 * real servers, and the guest's streams are what a browser's six connections would carry one
 * by one anyway. A stream waits in h1_q with its body held up to the window it announced
 * (the guest's connection window is opened as bytes come, so a waiting stream cannot starve
 * the one on the connection; H2_H1_MAX_STREAMS bound them). Fields: :method, :path and
 * :authority make the request line and Host, cookies are joined, connection-specific fields
 * never pass (nghttp2 refuses them from the guest; they are dropped from responses); a body
 * whose length is unknown or changes goes chunked, with the guest's trailers after the last
 * chunk; a chunked response becomes DATA, its trailers HEADERS. Admission, substitution, the
 * leak check and scrubbing are the relay's own (request_start, request_data, response_head,
 * response_body): only the framing is HTTP/1.1's.
 */
#define H2_H1_MAX_STREAMS 16 /* SETTINGS_MAX_CONCURRENT_STREAMS over an HTTP/1.1 upstream */

static void upstream_gone(struct h2 *h, const char *why);

/* Whether a field name (value) can go on an HTTP/1.1 line as it is. */
static bool h1_bytes_ok(const uint8_t *p, size_t n, bool value)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\r' || p[i] == '\n' || p[i] == 0 ||
		    (!value && (p[i] <= ' ' || p[i] == ':' || p[i] >= 0x7f)))
			return false;
	return value || n;
}

/* Fields that belong to one HTTP/1.1 connection, never relayed between the versions. */
static bool h1_connection_field(const uint8_t *n, size_t nl)
{
	static const char *const names[] = { "connection",	  "keep-alive", "proxy-connection",
					     "transfer-encoding", "upgrade",	"te",
					     "http2-settings",	  "host",	NULL };
	for (unsigned i = 0; names[i]; i++)
		if (strlen(names[i]) == nl && !strncasecmp((const char *)n, names[i], nl))
			return true;
	return false;
}

/*
 * The rewritten fields l of s as an HTTP/1.1 request head (s->h1_head), s queued for the
 * connection. -EPROTO (reason written) for a request HTTP/1.1 cannot carry.
 */
static int h1_request(struct h2s *s, const struct hlist *l, bool end_stream, char *reason,
		      size_t rn)
{
	struct h2 *h = s->h;
	struct rd r = rd_make(buf_head(&l->b), buf_used(&l->b));
	const uint8_t *n, *v, *meth = NULL, *path = NULL, *auth = NULL;
	size_t nl, vl, ml = 0, pl = 0, al = 0;
	bool length = false, ok = true;
	while (hlist_next(&r, &n, &nl, &v, &vl)) {
		if (nl == 7 && !memcmp(n, ":method", 7))
			meth = v, ml = vl;
		else if (nl == 5 && !memcmp(n, ":path", 5))
			path = v, pl = vl;
		else if (nl == 10 && !memcmp(n, ":authority", 10))
			auth = v, al = vl;
		else if (nl == 4 && !memcmp(n, "host", 4) && !auth)
			auth = v, al = vl;
		else if (nl == 14 && !memcmp(n, "content-length", 14))
			length = true;
		else if (nl == 6 && !memcmp(n, "expect", 6))
			s->h1_expect = true;
	}
	if (!meth || !path || !auth || (ml == 7 && !memcmp(meth, "CONNECT", 7))) {
		snprintf(reason, rn,
			 "matchlock: request to %s refused: the upstream speaks HTTP/1.1 only, and "
			 "this request (CONNECT, or one without :path) has no HTTP/1.1 form",
			 h->f->name);
		return -EPROTO;
	}
	struct buf *o = &s->h1_head, cookie = { 0 };
	s->h1_chunked = !end_stream && !length;
	ok = h1_bytes_ok(meth, ml, false) && memchr(auth, ' ', al) == NULL &&
	     h1_bytes_ok(auth, al, true);
	for (size_t i = 0; ok && i < pl; i++)
		ok = path[i] > ' ' && path[i] < 0x7f;
	buf_append(o, meth, ml);
	buf_append(o, " ", 1);
	buf_append(o, path, pl);
	buf_append(o, " HTTP/1.1\r\nHost: ", 17);
	buf_append(o, auth, al);
	buf_append(o, "\r\n", 2);
	r = rd_make(buf_head(&l->b), buf_used(&l->b));
	while (ok && hlist_next(&r, &n, &nl, &v, &vl)) {
		if ((nl && n[0] == ':') || h1_connection_field(n, nl))
			continue;
		ok = h1_bytes_ok(n, nl, false) && h1_bytes_ok(v, vl, true);
		if (nl == 6 && !memcmp(n, "cookie", 6)) {
			/* HTTP/2 splits cookies into fields; HTTP/1.1 wants one line. */
			if (buf_used(&cookie))
				buf_append(&cookie, "; ", 2);
			buf_append(&cookie, v, vl);
			continue;
		}
		buf_append(o, n, nl);
		buf_append(o, ": ", 2);
		buf_append(o, v, vl);
		buf_append(o, "\r\n", 2);
	}
	if (buf_used(&cookie)) {
		buf_append(o, "cookie: ", 8);
		buf_append(o, buf_head(&cookie), buf_used(&cookie));
		buf_append(o, "\r\n", 2);
	}
	buf_wipe(&cookie);
	if (s->h1_chunked)
		buf_append(o, "transfer-encoding: chunked\r\n", 28);
	buf_append(o, "\r\n", 2);
	if (!ok || o->bad) {
		buf_wipe(o);
		snprintf(
		    reason, rn, "matchlock: request to %s refused: %s", h->f->name,
		    ok ? "out of memory"
		       : "a header field HTTP/1.1 cannot carry (the upstream speaks HTTP/1.1)");
		return -EPROTO;
	}
	s->uid = 1; /* no stream id on HTTP/1.1; non-zero: the request went upstream */
	s->u_open = true;
	if (h->h1_tail)
		h->h1_tail->h1_next = s;
	else
		h->h1_q = s;
	h->h1_tail = s;
	return 0;
}

/* Take s out of the queue (not the one on the connection). */
static void h1_dequeue(struct h2 *h, struct h2s *s)
{
	struct h2s **pp = &h->h1_q, *prev = NULL;
	while (*pp && *pp != s)
		prev = *pp, pp = &(*pp)->h1_next;
	if (!*pp)
		return;
	*pp = s->h1_next;
	if (h->h1_tail == s)
		h->h1_tail = prev;
	s->h1_next = NULL;
}

/*
 * The upstream's side of s is not wanted any more (refused, reset by the guest). HTTP/2: a
 * RST_STREAM. HTTP/1.1: a request still queued is dropped; one on the connection with all its
 * bytes out has its response read and dropped; one cut off mid-way leaves the connection in no
 * state to carry another: it is reset, and the other streams are answered (h1_broken, at the
 * next step: this may run inside nghttp2's callbacks).
 */
static void up_cancel(struct h2s *s)
{
	struct h2 *h = s->h;
	if (!s->u_open)
		return;
	if (h->u) {
		if (s->uid > 0)
			nghttp2_submit_rst_stream(h->u, NGHTTP2_FLAG_NONE, s->uid, NGHTTP2_CANCEL);
		return;
	}
	if (!h->h1)
		return;
	if (s != h->h1_q || !h->h1_head_out) {
		h1_dequeue(h, s);
		s->u_open = false;
		return;
	}
	s->h1_drop = true;
	if (!s->h1_sent && !h->h1_broken) {
		tls_upstream_reset(h->f);
		snprintf(h->h1_why, sizeof(h->h1_why),
			 "a request was cut off mid-way, so the HTTP/1.1 connection was reset");
		h->h1_broken = true;
	}
}

/* The HTTP/1.1 connection can carry nothing more: streams never sent may be retried. */
static void h1_gone(struct h2 *h, const char *why)
{
	for (struct h2s *s = h->h1_q, *next; s; s = next) {
		next = s->h1_next;
		s->h1_next = NULL;
		if (s == h->h1_q && h->h1_head_out)
			continue; /* on the connection: upstream_gone answers it */
		s->u_open = false;
		if (s->g_open && !s->local) {
			s->reset_by_upstream = true;
			nghttp2_submit_rst_stream(h->g, NGHTTP2_FLAG_NONE, s->gid,
						  NGHTTP2_REFUSED_STREAM);
		}
	}
	h->h1_q = h->h1_tail = NULL;
	buf_wipe(&h->h1_trailers);
	upstream_gone(h, why);
}

/* Write the request on the connection (head, then body) as far as req_out has room. */
static void h1_send(struct h2 *h)
{
	struct flow *f = h->f;
	struct h2s *s = h->h1_q;
	if (!s || h->u_gone || h->h1_broken)
		return;
	if (!h->h1_head_out) {
		/*
		 * The head waits for the first body bytes: a placeholder refused in them then costs
		 * nothing (a request cut off mid-way costs the connection).
		 */
		if (!buf_used(&s->up) && !s->up_end && !s->h1_expect)
			return;
		buf_append(&f->req_out, buf_head(&s->h1_head), buf_used(&s->h1_head));
		buf_wipe(&s->h1_head);
		h->h1_head_out = true;
	}
	while (!s->h1_sent && buf_used(&f->req_out) < FLOW_BUF_HIGH) {
		size_t n = buf_used(&s->up), room = FLOW_BUF_HIGH - buf_used(&f->req_out);
		n = n < room ? n : room;
		if (n) {
			char sz[24];
			if (s->h1_chunked)
				buf_append(&f->req_out, sz,
					   (size_t)snprintf(sz, sizeof(sz), "%zx\r\n", n));
			buf_append(&f->req_out, buf_head(&s->up), n);
			if (s->h1_chunked)
				buf_append(&f->req_out, "\r\n", 2);
			buf_consume_wiped(&s->up, n);
			s->n_up += n;
			/* As read_up: what came in is acknowledged once the queue is empty. */
			ack_guest(s, buf_used(&s->up) ? n : s->up_owed);
			continue;
		}
		if (!s->up_end)
			break;
		if (s->h1_chunked) {
			struct rd r =
			    rd_make(buf_head(&s->rq_trailers.b), buf_used(&s->rq_trailers.b));
			const uint8_t *tn, *tv;
			size_t tnl, tvl;
			buf_append(&f->req_out, "0\r\n", 3);
			while (hlist_next(&r, &tn, &tnl, &tv, &tvl))
				if (tnl && tn[0] != ':' && !h1_connection_field(tn, tnl) &&
				    h1_bytes_ok(tn, tnl, false) && h1_bytes_ok(tv, tvl, true)) {
					buf_append(&f->req_out, tn, tnl);
					buf_append(&f->req_out, ": ", 2);
					buf_append(&f->req_out, tv, tvl);
					buf_append(&f->req_out, "\r\n", 2);
				}
			buf_append(&f->req_out, "\r\n", 2);
			hlist_wipe(&s->rq_trailers);
		}
		s->h1_sent = true;
	}
}

/* Trailer lines ("name: value\r\n", then an empty line) as a header list, names lower case. */
static void h1_trailer_fields(const struct buf *t, struct hlist *out)
{
	struct rd r = rd_make(buf_head(t), buf_used(t));
	const uint8_t *line;
	size_t len;
	while ((line = rd_line(&r, &len)) && len) {
		const uint8_t *colon = memchr(line, ':', len);
		if (!colon || colon == line)
			continue;
		size_t nl = (size_t)(colon - line), vo = nl + 1;
		while (vo < len && (line[vo] == ' ' || line[vo] == '\t'))
			vo++;
		size_t ve = len;
		while (ve > vo && (line[ve - 1] == ' ' || line[ve - 1] == '\t'))
			ve--;
		char name[256];
		if (nl >= sizeof(name) || !h1_bytes_ok(line, nl, false) ||
		    h1_connection_field(line, nl) ||
		    (nl == 14 && !strncasecmp((const char *)line, "content-length", 14)))
			continue;
		for (size_t i = 0; i < nl; i++)
			name[i] = (char)tolower(line[i]);
		hlist_add(out, H2_MAX_RESP_LIST, (const uint8_t *)name, nl, line + vo, ve - vo);
	}
}

/* The response head on the connection, for s: to the guest as HEADERS. false: more bytes. */
static bool h1_response_head(struct h2 *h, struct h2s *s)
{
	struct flow *f = h->f;
	long hl =
	    http_head_len(buf_head(&f->resp_in), buf_used(&f->resp_in), HTTP_MAX_RESPONSE_HEAD);
	if (hl == 0 && !f->u_eof)
		return false;
	struct http_msg m;
	const char *why = "an incomplete response head";
	if (hl <= 0 ||
	    http_parse_response(buf_head(&f->resp_in), (size_t)hl, s->head_request, &m, &why) < 0 ||
	    m.status == 101) {
		if (hl > 0 && m.status == 101)
			why = "101 Switching Protocols, which no request asked for";
		else if (hl < 0)
			why = "a response head larger than 64 KiB";
		snprintf(h->h1_why, sizeof(h->h1_why), "the upstream sent %s", why);
		h->h1_broken = true;
		return true;
	}
	bool end = m.framing == HTTP_BODY_NONE && m.status >= 200;
	if (s->g_open && !s->local && !s->h1_drop) {
		const uint8_t *head = buf_head(&f->resp_in);
		char st[8];
		hlist_wipe(&s->rs);
		hlist_add(&s->rs, H2_MAX_RESP_LIST, (const uint8_t *)":status", 7,
			  (const uint8_t *)st, (size_t)snprintf(st, sizeof(st), "%d", m.status));
		for (unsigned i = 0; i < m.nfields; i++) {
			const struct http_field *fl = &m.field[i];
			const uint8_t *n = head + fl->name_off;
			char name[256];
			if (h1_connection_field(n, fl->name_len) || fl->name_len >= sizeof(name))
				continue;
			for (size_t k = 0; k < fl->name_len; k++)
				name[k] = (char)tolower(n[k]);
			hlist_add(&s->rs, H2_MAX_RESP_LIST, (const uint8_t *)name, fl->name_len,
				  head + fl->value_off, fl->value_len);
		}
		response_head(s, end);
	}
	buf_consume_wiped(&f->resp_in, (size_t)hl);
	if (m.status < 200)
		return true; /* 100 Continue and friends: the response follows */
	h->h1_close = m.close || m.framing == HTTP_BODY_CLOSE;
	h->h1_end_sent = end;
	http_body_init(&h->h1_body, m.framing, m.length);
	h->h1_in_body = true;
	return true;
}

/* The exchange on the connection ended: the next stream's turn, if the connection stays. */
static void h1_exchange_end(struct h2 *h, struct h2s *s)
{
	if (s->g_open && !s->local && !s->h1_drop) {
		if (buf_used(&h->h1_trailers)) {
			struct hlist t = { 0 };
			h1_trailer_fields(&h->h1_trailers, &t);
			fields_scrub(s, &t, false, &s->rs_trailers);
			hlist_wipe(&t);
		}
		if (!h->h1_end_sent)
			response_end(s);
	}
	buf_wipe(&h->h1_trailers);
	h->h1_in_body = h->h1_head_out = false;
	h->h1_q = s->h1_next;
	if (!h->h1_q)
		h->h1_tail = NULL;
	s->h1_next = NULL;
	bool sent = s->h1_sent;
	s->u_open = false;
	stream_maybe_free(s);
	if (h->h1_close || !sent) {
		snprintf(h->h1_why, sizeof(h->h1_why), "%s",
			 h->h1_close ? "the upstream closed the connection"
				     : "the upstream answered before the request's body was sent");
		if (!sent)
			tls_upstream_reset(h->f);
		h->h1_broken = true;
	}
}

/* A step of the response body on the connection. false: more bytes (or guest credit). */
static bool h1_response_body(struct h2 *h, struct h2s *s)
{
	struct flow *f = h->f;
	bool deliver = s->g_open && !s->local && !s->h1_drop;
	if (deliver && buf_used(&s->down) >= H2_STREAM_WINDOW)
		return false; /* the guest's window: read_down takes it, then this goes on */
	size_t n = buf_used(&f->resp_in), step = n < H2_STREAM_WINDOW ? n : H2_STREAM_WINDOW;
	size_t used, off, dl;
	bool trailer = http_body_in_trailer(&h->h1_body);
	int r = http_body_step(&h->h1_body, buf_head(&f->resp_in), step, f->u_eof && step == n,
			       &used, &off, &dl);
	if (r < 0) {
		snprintf(h->h1_why, sizeof(h->h1_why),
			 "the upstream's response ended early or was malformed");
		h->h1_broken = true;
		return true;
	}
	if (dl && deliver) {
		int e = response_body(s, buf_head(&f->resp_in) + off, dl, false);
		if (e < 0) {
			buf_wipe(&s->down);
			response_refuse(s, e);
			s->h1_drop = true;
		} else {
			nghttp2_session_resume_data(h->g, s->gid);
		}
	}
	if (trailer && used)
		buf_append(&h->h1_trailers, buf_head(&f->resp_in), used);
	buf_consume_wiped(&f->resp_in, used);
	if (r == 1) {
		h1_exchange_end(h, s);
		return true;
	}
	return used != 0;
}

/* What the HTTP/1.1 upstream sent: responses for the streams on the connection, in turn. */
static void h1_recv(struct h2 *h)
{
	struct flow *f = h->f;
	while (!h->u_gone) {
		struct h2s *s = h->h1_q;
		if (h->h1_broken) {
			h1_gone(h, h->h1_why);
			break;
		}
		if (!s || !h->h1_head_out) {
			if (buf_used(&f->resp_in))
				h1_gone(h, "the upstream sent a response nobody asked for");
			else if (f->u_eof)
				h1_gone(h, "the upstream closed the connection");
			break;
		}
		if (!(h->h1_in_body ? h1_response_body(h, s) : h1_response_head(h, s)))
			break;
	}
	if (h->u_gone) {
		explicit_bzero(buf_head(&f->resp_in), buf_used(&f->resp_in));
		buf_consume(&f->resp_in, buf_used(&f->resp_in));
	}
}

/* ---- the guest's session's callbacks ------------------------------------------------------ */

static int g_begin_headers(nghttp2_session *sess, const nghttp2_frame *fr, void *ud)
{
	struct h2 *h = ud;
	if (fr->hd.type != NGHTTP2_HEADERS || fr->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (h->nlive >= H2_MAX_LIVE) {
		nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, fr->hd.stream_id,
					  NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	struct h2s *s = stream_new(h, fr->hd.stream_id);
	if (!s || nghttp2_session_set_stream_user_data(sess, fr->hd.stream_id, s) < 0) {
		if (s)
			stream_free(s);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

static int g_header(nghttp2_session *sess, const nghttp2_frame *fr, const uint8_t *name,
		    size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	(void)flags, (void)ud;
	struct h2s *s = nghttp2_session_get_stream_user_data(sess, fr->hd.stream_id);
	if (s && fr->hd.type == NGHTTP2_HEADERS)
		hlist_add(&s->rq, H2_MAX_REQ_LIST, name, nlen, value, vlen);
	return 0;
}

static int g_frame_recv(nghttp2_session *sess, const nghttp2_frame *fr, void *ud)
{
	struct h2 *h = ud;
	struct h2s *s =
	    fr->hd.stream_id ? nghttp2_session_get_stream_user_data(sess, fr->hd.stream_id) : NULL;
	bool end = fr->hd.flags & NGHTTP2_FLAG_END_STREAM;
	switch (fr->hd.type) {
	case NGHTTP2_HEADERS:
		if (!s)
			break;
		if (fr->headers.cat == NGHTTP2_HCAT_REQUEST)
			request_start(s, end);
		else if (!s->local)
			request_trailers(s);
		if (end && !s->local && s->u_open)
			request_data(s, NULL, 0, true);
		break;
	case NGHTTP2_DATA:
		if (s && end)
			request_data(s, NULL, 0, true);
		break;
	case NGHTTP2_GOAWAY:
		/* The guest opens no more streams: tell the upstream likewise. */
		if (h->u)
			nghttp2_submit_goaway(h->u, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL,
					      0);
		break;
	}
	return 0;
}

static int g_data(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
		  void *ud)
{
	(void)flags;
	struct h2 *h = ud;
	struct h2s *s = nghttp2_session_get_stream_user_data(sess, id);
	if (!s) {
		nghttp2_session_consume_connection(h->g, n);
		nghttp2_session_consume_stream(h->g, id, n);
		return 0;
	}
	request_data(s, p, n, false);
	return 0;
}

static int g_stream_close(nghttp2_session *sess, int32_t id, uint32_t code, void *ud)
{
	(void)ud;
	struct h2s *s = nghttp2_session_get_stream_user_data(sess, id);
	if (!s)
		return 0;
	if (!s->logged) {
		s->logged = true;
		stream_event(s, s->status, true,
			     s->reset_by_upstream	? "reset by the upstream"
			     : code == NGHTTP2_NO_ERROR ? "rule matched"
							: "reset by the guest",
			     NET_EV_REQUEST, NULL);
	}
	s->g_open = false;
	ack_guest(s, s->up_owed);
	if (s->u_open && (!s->up_end || buf_used(&s->up) || !s->down_end))
		up_cancel(s);
	stream_maybe_free(s);
	return 0;
}

/* ---- the upstream's session's callbacks --------------------------------------------------- */

static int u_header(nghttp2_session *sess, const nghttp2_frame *fr, const uint8_t *name,
		    size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	(void)flags, (void)ud;
	struct h2s *s = nghttp2_session_get_stream_user_data(sess, fr->hd.stream_id);
	if (s && fr->hd.type == NGHTTP2_HEADERS)
		hlist_add(&s->rs, H2_MAX_RESP_LIST, name, nlen, value, vlen);
	return 0;
}

static int u_frame_recv(nghttp2_session *sess, const nghttp2_frame *fr, void *ud)
{
	struct h2 *h = ud;
	struct h2s *s =
	    fr->hd.stream_id ? nghttp2_session_get_stream_user_data(sess, fr->hd.stream_id) : NULL;
	bool end = fr->hd.flags & NGHTTP2_FLAG_END_STREAM;
	switch (fr->hd.type) {
	case NGHTTP2_HEADERS:
		if (!s || s->local)
			break;
		if (!s->resp_sent) {
			response_head(s, end);
			break;
		}
		/* Trailers (grpc-status): scrubbed, sent after the last DATA. */
		fields_scrub(s, &s->rs, false, &s->rs_trailers);
		hlist_wipe(&s->rs);
		if (end)
			response_end(s);
		break;
	case NGHTTP2_DATA:
		if (s && end && !s->local)
			response_end(s);
		break;
	case NGHTTP2_GOAWAY:
		/* No new streams on the guest's connection either; those in progress finish. */
		nghttp2_submit_goaway(h->g, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(h->g),
				      NGHTTP2_NO_ERROR, NULL, 0);
		break;
	}
	return 0;
}

static int u_data(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
		  void *ud)
{
	(void)flags;
	struct h2 *h = ud;
	struct h2s *s = nghttp2_session_get_stream_user_data(sess, id);
	if (!s || s->local || !s->g_open) {
		nghttp2_session_consume_connection(h->u, n);
		nghttp2_session_consume_stream(h->u, id, n);
		return 0;
	}
	s->down_owed += n;
	size_t before = buf_used(&s->down), held = grpc_held(&s->gr);
	int r = response_body(s, p, n, false);
	size_t gack = s->grpc_rs ? grpc_ackable(h, &s->gr, held, &s->down) : 0;
	if (r < 0) {
		buf_wipe(&s->down);
		response_refuse(s, r);
		return 0;
	}
	if (s->grpc_rs) {
		ack_upstream(s, gack);
	} else if (buf_used(&s->down) == before) {
		ack_upstream(s, s->down_owed); /* all held back by the scrubber (bounded) */
	}
	nghttp2_session_resume_data(h->g, s->gid);
	return 0;
}

static int u_stream_close(nghttp2_session *sess, int32_t id, uint32_t code, void *ud)
{
	struct h2 *h = ud;
	struct h2s *s = nghttp2_session_get_stream_user_data(sess, id);
	if (!s)
		return 0;
	s->u_open = false;
	/* Reset before the response ended (REFUSED_STREAM too: the guest may retry): the same
	   code to the guest. */
	if (s->g_open && !s->local && !s->down_end) {
		nghttp2_submit_rst_stream(h->g, NGHTTP2_FLAG_NONE, s->gid, code);
		s->reset_by_upstream = true;
	}
	stream_maybe_free(s);
	return 0;
}

/* ---- the flow's side ---------------------------------------------------------------------- */

static nghttp2_session *session_new(struct h2 *h, bool server)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	nghttp2_session *s = NULL;
	if (nghttp2_session_callbacks_new(&cb))
		return NULL;
	if (nghttp2_option_new(&opt)) {
		nghttp2_session_callbacks_del(cb);
		return NULL;
	}
	/* Windows open only as the other side takes the bytes (ack_guest, ack_upstream). */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_send_header_block_length(opt, H2_MAX_RESP_LIST + 1024);
	if (server) {
		nghttp2_session_callbacks_set_on_begin_headers_callback(cb, g_begin_headers);
		nghttp2_session_callbacks_set_on_header_callback(cb, g_header);
		nghttp2_session_callbacks_set_on_frame_recv_callback(cb, g_frame_recv);
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, g_data);
		nghttp2_session_callbacks_set_on_stream_close_callback(cb, g_stream_close);
		nghttp2_session_server_new2(&s, cb, h, opt);
	} else {
		nghttp2_session_callbacks_set_on_header_callback(cb, u_header);
		nghttp2_session_callbacks_set_on_frame_recv_callback(cb, u_frame_recv);
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, u_data);
		nghttp2_session_callbacks_set_on_stream_close_callback(cb, u_stream_close);
		nghttp2_session_client_new2(&s, cb, h, opt);
	}
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (!s)
		return NULL;
	nghttp2_settings_entry set[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
		  h->h1 ? H2_H1_MAX_STREAMS : H2_MAX_STREAMS },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
		  server ? H2_MAX_REQ_LIST : H2_MAX_RESP_LIST },
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
	};
	if (nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, set, server ? 3 : 4) ||
	    nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW)) {
		nghttp2_session_del(s);
		return NULL;
	}
	return s;
}

int h2_start(struct flow *f, enum h2_upstream up)
{
	struct h2 *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->f = f;
	h->h1 = up == H2_UP_HTTP1;
	h->g = session_new(h, true);
	h->u = up == H2_UP_H2 ? session_new(h, false) : NULL;
	if (!h->g || (up == H2_UP_H2 && !h->u)) {
		h2_free(h);
		return -ENOMEM;
	}
	f->h2 = h;
	return 0;
}

void h2_free(struct h2 *h)
{
	if (!h)
		return;
	/* Sessions first: nghttp2 calls nothing back while deleting, and holds stream pointers. */
	nghttp2_session_del(h->g);
	nghttp2_session_del(h->u);
	while (h->streams)
		stream_free(h->streams);
	buf_wipe(&h->h1_trailers);
	free(h);
}

/* Frames for both sides, as far as their buffers have room. */
static void h2_send(struct h2 *h)
{
	struct flow *f = h->f;
	const uint8_t *d;
	ssize_t n;
	if (h->h1)
		h1_send(h);
	if (h->goaway_due) {
		bool busy = false;
		for (struct h2s *s = h->streams; s && !busy; s = s->next)
			busy = s->g_open;
		if (!busy) {
			h->goaway_due = false;
			nghttp2_submit_goaway(h->g, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(h->g),
					      NGHTTP2_NO_ERROR, NULL, 0);
		}
	}
	while (h->u && !h->u_gone && buf_used(&f->req_out) < FLOW_BUF_HIGH &&
	       (n = nghttp2_session_mem_send(h->u, &d)) > 0)
		buf_append(&f->req_out, d, (size_t)n);
	while (!h->g_fatal && buf_used(&f->g_plain) + buf_used(&f->to_guest) < FLOW_BUF_HIGH &&
	       (n = nghttp2_session_mem_send(h->g, &d)) > 0)
		tls_guest_write(f, d, (size_t)n);
}

/* The upstream's connection ended or broke: answer what it owed, stop the guest's new streams. */
static void upstream_gone(struct h2 *h, const char *why)
{
	if (h->u_gone)
		return;
	h->u_gone = true;
	char reason[400];
	snprintf(reason, sizeof(reason), "matchlock: request to %s failed: %s", h->f->name, why);
	for (struct h2s *s = h->streams; s; s = s->next) {
		if (!s->u_open)
			continue;
		s->u_open = false;
		if (!s->g_open || s->local || s->down_end)
			continue;
		if (!s->resp_sent) {
			stream_event(s, 502, true, reason, NET_EV_REQUEST, NULL);
			s->logged = true;
			stream_answer(s, 502, reason);
		} else {
			nghttp2_submit_rst_stream(h->g, NGHTTP2_FLAG_NONE, s->gid,
						  NGHTTP2_INTERNAL_ERROR);
		}
	}
	/*
	 * Over HTTP/1.1 the GOAWAY waits for the streams' answers (h2_send): clients treat one
	 * as the end of what is in flight, and those answers are often why the connection ended.
	 */
	if (h->h1)
		h->goaway_due = true;
	else
		nghttp2_submit_goaway(h->g, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(h->g),
				      NGHTTP2_NO_ERROR, NULL, 0);
	/* Streams that only the upstream's session held. */
	for (struct h2s *s = h->streams, *next; s; s = next) {
		next = s->next;
		stream_maybe_free(s);
	}
}

void h2_requests_run(struct flow *f)
{
	struct h2 *h = f->h2;
	if (buf_used(&f->req_in) && !h->g_fatal) {
		ssize_t k =
		    nghttp2_session_mem_recv(h->g, buf_head(&f->req_in), buf_used(&f->req_in));
		if (k < 0) {
			char why[200];
			snprintf(why, sizeof(why), "HTTP/2 from the guest: %s",
				 nghttp2_strerror((int)k));
			flow_event(f, NET_EV_HTTP, false, why, NULL);
			h->g_fatal = true; /* nghttp2 queued a GOAWAY; it goes out below */
			nghttp2_session_terminate_session(h->g, NGHTTP2_PROTOCOL_ERROR);
			const uint8_t *d;
			ssize_t n;
			while ((n = nghttp2_session_mem_send(h->g, &d)) > 0)
				tls_guest_write(f, d, (size_t)n);
		}
		explicit_bzero(buf_head(&f->req_in), buf_used(&f->req_in));
		buf_consume(&f->req_in, buf_used(&f->req_in));
	}
	h2_send(h);
}

void h2_responses_run(struct flow *f)
{
	struct h2 *h = f->h2;
	if (h->h1) {
		h1_recv(h);
		h2_send(h);
		return;
	}
	if (h->u && !h->u_gone && buf_used(&f->resp_in)) {
		ssize_t k =
		    nghttp2_session_mem_recv(h->u, buf_head(&f->resp_in), buf_used(&f->resp_in));
		if (k < 0) {
			char why[200];
			snprintf(why, sizeof(why), "HTTP/2 from the upstream: %s",
				 nghttp2_strerror((int)k));
			flow_event(f, NET_EV_HTTP, false, why, NULL);
			upstream_gone(h, "the upstream broke the HTTP/2 protocol");
		}
	}
	explicit_bzero(buf_head(&f->resp_in), buf_used(&f->resp_in));
	buf_consume(&f->resp_in, buf_used(&f->resp_in));
	if (h->u && !h->u_gone &&
	    (f->u_eof || (!nghttp2_session_want_read(h->u) && !nghttp2_session_want_write(h->u))))
		upstream_gone(h, "the upstream closed the connection");
	h2_send(h);
}

bool h2_finished(const struct flow *f)
{
	const struct h2 *h = f->h2;
	return f->g_eof || h->g_fatal ||
	       (!nghttp2_session_want_read(h->g) && !nghttp2_session_want_write(h->g));
}
