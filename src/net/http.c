/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool is_tchar(uint8_t c);

int http_authority_host(const uint8_t *a, size_t n, char *host, size_t hostn)
{
	size_t end = 0;
	if (n && a[0] == '[') {
		while (end < n && a[end] != ']')
			end++;
		if (end == n || end < 3 || end + 1 >= hostn)
			return -EPROTO;
		for (size_t i = 1; i < end; i++)
			if (!isxdigit(a[i]) && a[i] != ':' && a[i] != '.')
				return -EPROTO;
		for (size_t i = 0; i <= end; i++)
			host[i] = (char)tolower(a[i]);
		host[end + 1] = 0;
		size_t i = end + 1;
		if (i < n && a[i++] != ':')
			return -EPROTO;
		for (; i < n; i++)
			if (!isdigit(a[i]))
				return -EPROTO;
		return 0;
	}
	while (end < n && a[end] != ':')
		end++;
	if (end == 0 || end >= hostn)
		return -EPROTO;
	for (size_t i = 0; i < end; i++) {
		if (!isalnum(a[i]) && a[i] != '-' && a[i] != '.' && a[i] != '_')
			return -EPROTO; /* IP literals in brackets, userinfo, spaces... */
		host[i] = (char)tolower(a[i]);
	}
	if (host[end - 1] == '.')
		end--;
	host[end] = 0;
	for (size_t i = end + (end < n ? 1 : 0); i < n; i++)
		if (!isdigit(a[i]))
			return -EPROTO;
	return 0;
}

size_t http_leading_empty(const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n && (p[i] == '\r' || p[i] == '\n'))
		i++;
	return i;
}

int http_sniff_request(const uint8_t *p, size_t n)
{
	size_t i = http_leading_empty(p, n);
	size_t tok = i;
	while (i < n && is_tchar(p[i]))
		i++;
	if (i == n)
		return n >= HTTP_MAX_HEAD ? 1 : 0;
	if (i == tok || (p[i] != ' ' && p[i] != '\t'))
		return -1;
	const uint8_t *nl = memchr(p + i, '\n', n - i);
	if (!nl)
		return n >= HTTP_MAX_HEAD ? 1 : 0;
	/* Any version word at all: what a lenient server might take for HTTP is checked. */
	for (const uint8_t *q = p + i; q + 5 <= nl; q++)
		if (!strncasecmp((const char *)q, "http/", 5))
			return 1;
	return -1;
}

int http_build_403(struct buf *out, const char *reason)
{
	char head[256];
	size_t blen = strlen(reason) + 1;
	int k =
	    snprintf(head, sizeof(head),
		     "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\nX-Matchlock-Denied: 1\r\n\r\n",
		     blen);
	if (buf_append(out, head, (size_t)k) < 0 || buf_append(out, reason, blen - 1) < 0 ||
	    buf_append(out, "\n", 1) < 0)
		return -ENOMEM;
	return 0;
}

int http_build_error(struct buf *out, int status, const char *reason)
{
	char head[300];
	const char *text = status == 400   ? "Bad Request"
			   : status == 403 ? "Forbidden"
			   : status == 502 ? "Bad Gateway"
			   : status == 413 ? "Content Too Large"
			   : status == 415 ? "Unsupported Media Type"
			   : status == 431 ? "Request Header Fields Too Large"
			   : status == 501 ? "Not Implemented"
			   : status == 503 ? "Service Unavailable"
					   : "Error";
	size_t blen = strlen(reason) + 1;
	int k =
	    snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\nX-Matchlock-Denied: 1\r\n\r\n",
		     status, text, blen);
	if (buf_append(out, head, (size_t)k) < 0 || buf_append(out, reason, blen - 1) < 0 ||
	    buf_append(out, "\n", 1) < 0)
		return -ENOMEM;
	return 0;
}

long http_head_len(const uint8_t *p, size_t n, size_t max)
{
	size_t lim = n < max ? n : max;
	for (size_t i = 0; i + 3 < lim; i++)
		if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
			return (long)(i + 4);
	return n >= max ? -EPROTO : 0;
}

static bool is_tchar(uint8_t c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Whether a comma-separated header value lists token (case-insensitive). */
static bool list_has(const uint8_t *v, size_t n, const char *token)
{
	size_t tl = strlen(token), i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == tl && !strncasecmp((const char *)v + s, token, tl))
			return true;
	}
	return false;
}

/* The last element of a comma-separated list is token. */
static bool list_last_is(const uint8_t *v, size_t n, const char *token)
{
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	size_t s = n;
	while (s && v[s - 1] != ',')
		s--;
	while (s < n && (v[s] == ' ' || v[s] == '\t'))
		s++;
	size_t tl = strlen(token);
	return n - s == tl && !strncasecmp((const char *)v + s, token, tl);
}

static int parse_u64(const uint8_t *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;
	if (n == 0 || n > 18)
		return -EPROTO;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit(v[i]))
			return -EPROTO;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

/* One header line (without its CRLF) at line[0..len) of the head at base: checked, as a span. */
static int field_tokenise(const uint8_t *base, const uint8_t *line, size_t len,
			  struct http_field *f, const char **why)
{
	if (line[0] == ' ' || line[0] == '\t') {
		*why = "obsolete line folding in a header";
		return -EPROTO;
	}
	const uint8_t *colon = memchr(line, ':', len);
	if (!colon || colon == line) {
		*why = "a header line without a name";
		return -EPROTO;
	}
	for (const uint8_t *q = line; q < colon; q++) {
		if (!is_tchar(*q)) {
			*why = "a header name with a character not allowed there";
			return -EPROTO;
		}
	}
	const uint8_t *v = colon + 1, *end = line + len;
	for (const uint8_t *q = v; q < end; q++) {
		if ((*q < 0x20 && *q != '\t') || *q == 0x7f) {
			*why = "a control character in a header value";
			return -EPROTO;
		}
	}
	f->name_off = (uint32_t)(line - base);
	f->name_len = (uint32_t)(colon - line);
	f->end = (uint32_t)(end - base);
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	f->value_off = (uint32_t)(v - base);
	f->value_len = (uint32_t)(end - v);
	return 0;
}

/* What the header fields said so far about framing and the connection. */
struct head_flags {
	bool have_cl, have_te, te_chunked, conn_upgrade, upgrade_ws, keep_alive, have_host;
};

/* The meaning of field f (of head base) for framing, the connection and the Host. */
static int field_apply(const uint8_t *base, const struct http_field *f, bool request,
		       struct head_flags *hf, struct http_msg *m, const char **why)
{
	const uint8_t *v = base + f->value_off;
	size_t vl = f->value_len;
	if (http_field_is(base, f, "content-length")) {
		uint64_t x;
		if (parse_u64(v, vl, &x) < 0 || (hf->have_cl && x != m->length)) {
			*why = "a bad or conflicting Content-Length";
			return -EPROTO;
		}
		hf->have_cl = true;
		m->length = x;
	} else if (http_field_is(base, f, "transfer-encoding")) {
		if (hf->have_te) {
			*why = "more than one Transfer-Encoding";
			return -EPROTO;
		}
		hf->have_te = true;
		hf->te_chunked = request ? (vl == 7 && !strncasecmp((const char *)v, "chunked", 7))
					 : list_last_is(v, vl, "chunked");
		if (request && !hf->te_chunked) {
			*why = "a Transfer-Encoding other than chunked";
			return -EPROTO;
		}
	} else if (http_field_is(base, f, "connection")) {
		m->close |= list_has(v, vl, "close");
		hf->keep_alive |= list_has(v, vl, "keep-alive");
		hf->conn_upgrade |= list_has(v, vl, "upgrade");
	} else if (http_field_is(base, f, "upgrade")) {
		hf->upgrade_ws = list_has(v, vl, "websocket");
	} else if (request && http_field_is(base, f, "expect")) {
		m->expect_continue = vl == 12 && !strncasecmp((const char *)v, "100-continue", 12);
	} else if (request && http_field_is(base, f, "host")) {
		if (hf->have_host) {
			*why = "more than one Host header";
			return -EPROTO;
		}
		hf->have_host = true;
		char h[256];
		if (http_authority_host(v, vl, h, sizeof(h)) < 0) {
			*why = "a Host header that is not a host name";
			return -EPROTO;
		}
		if (m->host[0] && strcmp(m->host, h)) {
			*why = "the Host header and the request target name different hosts";
			return -EPROTO;
		}
		memcpy(m->host, h, sizeof(h));
	}
	return 0;
}

/*
 * The header lines after the start line, into m's spans: checks names and values, fills
 * framing and the connection flags.
 */
static int parse_headers(struct rd *r, struct http_msg *m, bool request, const char **why)
{
	struct head_flags hf = { 0 };
	size_t len;
	const uint8_t *line;
	while ((line = rd_line(r, &len)) && len) {
		if (m->nfields >= HTTP_MAX_HEADERS) {
			*why = "too many header fields";
			return -EPROTO;
		}
		struct http_field *f = &m->field[m->nfields];
		if (field_tokenise(r->p, line, len, f, why) < 0 ||
		    field_apply(r->p, f, request, &hf, m, why) < 0)
			return -EPROTO;
		m->nfields++;
	}
	if (!line) {
		*why = "an incomplete head";
		return -EPROTO;
	}
	m->head_len = r->off;
	if (hf.have_cl && hf.have_te) {
		*why = "both Content-Length and Transfer-Encoding (ambiguous framing)";
		return -EPROTO;
	}
	if (request && !m->host[0]) {
		*why = "no Host header";
		return -EPROTO;
	}
	if (m->minor == 0 && !hf.keep_alive)
		m->close = true;
	m->upgrade = hf.conn_upgrade && hf.upgrade_ws;
	if (hf.te_chunked)
		m->framing = HTTP_BODY_CHUNKED;
	else if (hf.have_te)
		m->framing = HTTP_BODY_CLOSE; /* responses only, checked above */
	else if (hf.have_cl)
		m->framing = m->length ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	else
		m->framing = request ? HTTP_BODY_NONE : HTTP_BODY_CLOSE;
	return 0;
}

static int parse_version(const uint8_t *v, size_t n, int *minor)
{
	if (n != 8 || memcmp(v, "HTTP/1.", 7) || (v[7] != '0' && v[7] != '1'))
		return -EPROTO;
	*minor = v[7] - '0';
	return 0;
}

int http_parse_request(const uint8_t *p, size_t n, struct http_msg *m, const char **why)
{
	memset(m, 0, sizeof(*m));
	struct rd r = rd_make(p, n);
	size_t len;
	const uint8_t *line = rd_line(&r, &len);
	*why = "a malformed request line";
	if (!line)
		return -EPROTO;
	m->line_len = len;
	const uint8_t *sp1 = memchr(line, ' ', len);
	const uint8_t *sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line)) : NULL;
	if (!sp1 || !sp2 || sp1 == line || (size_t)(sp1 - line) >= sizeof(m->method) ||
	    sp2 == sp1 + 1)
		return -EPROTO;
	for (const uint8_t *q = line; q < sp1; q++)
		if (!is_tchar(*q))
			return -EPROTO;
	memcpy(m->method, line, (size_t)(sp1 - line));
	m->target_off = (size_t)(sp1 + 1 - p);
	m->target_len = (size_t)(sp2 - sp1 - 1);
	for (const uint8_t *q = sp1 + 1; q < sp2; q++)
		if (*q <= 0x20 || *q >= 0x7f)
			return -EPROTO;
	if (parse_version(sp2 + 1, (size_t)(line + len - sp2 - 1), &m->minor) < 0)
		return -EPROTO;
	if (!strcmp(m->method, "CONNECT")) {
		*why = "CONNECT (a tunnel to another host) is not relayed";
		return -EPROTO;
	}
	const uint8_t *t = sp1 + 1;
	size_t tl = m->target_len;
	/* Absolute form, any scheme (http://, https://, ws://...): its authority is the host. */
	size_t sl = 0;
	while (sl < tl && (isalnum(t[sl]) || t[sl] == '+' || t[sl] == '-' || t[sl] == '.'))
		sl++;
	if (sl && isalpha(t[0]) && tl - sl >= 3 && !memcmp(t + sl, "://", 3)) {
		size_t as = sl + 3, al = 0;
		while (as + al < tl && t[as + al] != '/' && t[as + al] != '?' && t[as + al] != '#')
			al++;
		if (http_authority_host(t + as, al, m->host, sizeof(m->host)) < 0) {
			*why = "a request target whose authority is not a host name";
			return -EPROTO;
		}
	} else if (t[0] != '/' && !(tl == 1 && t[0] == '*')) {
		*why = "a request target that is neither a path nor an absolute URL";
		return -EPROTO;
	}
	return parse_headers(&r, m, true, why);
}

int http_parse_response(const uint8_t *p, size_t n, bool head_request, struct http_msg *m,
			const char **why)
{
	memset(m, 0, sizeof(*m));
	struct rd r = rd_make(p, n);
	size_t len;
	const uint8_t *line = rd_line(&r, &len);
	*why = "a malformed status line";
	if (!line || len < 12 || parse_version(line, 8, &m->minor) < 0 || line[8] != ' ' ||
	    !isdigit(line[9]) || !isdigit(line[10]) || !isdigit(line[11]) ||
	    (len > 12 && line[12] != ' '))
		return -EPROTO;
	m->line_len = len;
	m->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	if (m->status < 100)
		return -EPROTO;
	int r2 = parse_headers(&r, m, false, why);
	if (r2 < 0)
		return r2;
	if (head_request || m->status < 200 || m->status == 204 || m->status == 304)
		m->framing = HTTP_BODY_NONE;
	return 0;
}

bool http_field_is(const uint8_t *head, const struct http_field *f, const char *name)
{
	return f->name_len == strlen(name) &&
	       !strncasecmp((const char *)head + f->name_off, name, f->name_len);
}

int http_head_filter(const uint8_t *head, const struct http_msg *m, const char *const *drop,
		     const char *add, struct buf *out)
{
	buf_append(out, head, m->line_len + 2);
	for (unsigned i = 0; i < m->nfields; i++) {
		const struct http_field *f = &m->field[i];
		bool skip = false;
		for (const char *const *d = drop; d && *d && !skip; d++)
			skip = http_field_is(head, f, *d);
		if (!skip)
			buf_append(out, head + f->name_off, f->end + 2 - f->name_off);
	}
	if (add)
		buf_append(out, add, strlen(add));
	buf_append(out, "\r\n", 2);
	return out->bad ? -ENOMEM : 0;
}

void http_target_redacted(const uint8_t *t, size_t n, char *out, size_t outn)
{
	size_t k = 0;
	bool in_value = false, in_query = false;
	for (size_t i = 0; i < n && k + 1 < outn; i++) {
		uint8_t c = t[i];
		if (c == '#')
			break;
		if (!in_query && c == '?')
			in_query = true;
		else if (in_query && c == '&')
			in_value = false;
		else if (in_query && c == '=' && !in_value) {
			in_value = true;
			out[k++] = '=';
			continue;
		}
		if (!in_value)
			out[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[k] = 0;
}

enum { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER, CH_DONE };

void http_body_init(struct http_body *b, enum http_framing f, uint64_t length)
{
	*b = (struct http_body){ .framing = f, .left = length, .st = CH_SIZE };
}

static int hexval(uint8_t c)
{
	if (isdigit(c))
		return c - '0';
	c = (uint8_t)tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int http_body_step(struct http_body *b, const uint8_t *p, size_t n, bool eof, size_t *used,
		   size_t *data_off, size_t *data_len)
{
	*used = *data_off = *data_len = 0;
	switch (b->framing) {
	case HTTP_BODY_NONE:
		return 1;
	case HTTP_BODY_CLOSE:
		*data_len = *used = n;
		return eof ? 1 : 0;
	case HTTP_BODY_LENGTH:
		if (!b->left)
			return 1;
		*data_len = *used = n < b->left ? n : (size_t)b->left;
		b->left -= *used;
		if (!b->left)
			return 1;
		return eof && n == *used ? -EPROTO : 0;
	case HTTP_BODY_CHUNKED:
		break;
	}
	struct rd r = rd_make(p, n);
	size_t len;
	const uint8_t *line;
	switch (b->st) {
	case CH_SIZE:
		line = rd_line(&r, &len);
		if (!line)
			return n >= HTTP_MAX_CHUNK_LINE || eof ? -EPROTO : 0;
		if (len > HTTP_MAX_CHUNK_LINE)
			return -EPROTO;
		{
			uint64_t x = 0;
			size_t i = 0;
			for (; i < len && hexval(line[i]) >= 0; i++) {
				if (i >= 15)
					return -EPROTO;
				x = x * 16 + (uint64_t)hexval(line[i]);
			}
			if (i == 0 ||
			    (i < len && line[i] != ';' && line[i] != ' ' && line[i] != '\t'))
				return -EPROTO;
			b->left = x;
			b->st = x ? CH_DATA : CH_TRAILER;
		}
		*used = r.off;
		return 0;
	case CH_DATA:
		if (!n)
			return eof ? -EPROTO : 0;
		*data_len = *used = n < b->left ? n : (size_t)b->left;
		b->left -= *used;
		if (!b->left)
			b->st = CH_DATA_END;
		return 0;
	case CH_DATA_END:
		if (n < 2)
			return eof ? -EPROTO : 0;
		if (p[0] != '\r' || p[1] != '\n')
			return -EPROTO;
		*used = 2;
		b->st = CH_SIZE;
		return 0;
	case CH_TRAILER:
		line = rd_line(&r, &len);
		if (!line)
			return n >= HTTP_MAX_TRAILERS || eof ? -EPROTO : 0;
		*used = r.off;
		b->trailer_bytes += r.off;
		if (b->trailer_bytes > HTTP_MAX_TRAILERS)
			return -EPROTO;
		if (len == 0) {
			b->st = CH_DONE;
			return 1;
		}
		return 0;
	default:
		return 1;
	}
}

bool http_body_in_trailer(const struct http_body *b)
{
	return b->framing == HTTP_BODY_CHUNKED && b->st == CH_TRAILER;
}

int http_walk_step(struct http_walk *w, const uint8_t *p, size_t n, bool eof, size_t *used,
		   struct http_msg *m, const char **why)
{
	*used = 0;
	w->data_off = w->data_len = 0;
	switch (w->st) {
	case HTTP_WALK_TUNNEL:
		*used = n;
		return 0;
	case HTTP_WALK_HOLD:
		return 0;
	case HTTP_WALK_BODY: {
		size_t doff, dl;
		int r = http_body_step(&w->body, p, n, eof, used, &doff, &dl);
		if (r < 0) {
			*why = "a request body whose framing is malformed or cut short";
			return -EPROTO;
		}
		w->data_off = doff;
		w->data_len = dl;
		if (r == 1)
			w->st = HTTP_WALK_HEAD;
		return 0;
	}
	case HTTP_WALK_HEAD:
		break;
	}
	size_t skip = http_leading_empty(p, n);
	if (skip) {
		*used = skip;
		return 0;
	}
	if (!n)
		return 0;
	long hl = http_head_len(p, n, HTTP_MAX_HEAD);
	if (hl == 0 && !eof)
		return 0;
	if (hl <= 0) {
		*why = hl < 0 ? "a request head larger than 16 KiB"
			      : "a request head cut short by the end of the stream";
		return -EPROTO;
	}
	if (http_parse_request(p, (size_t)hl, m, why) < 0)
		return -EPROTO;
	if (m->upgrade && (w->nreq || m->framing != HTTP_BODY_NONE)) {
		*why =
		    "a WebSocket upgrade over plain HTTP must be the connection's first request, "
		    "without a body";
		return -EPROTO;
	}
	*used = (size_t)hl;
	return 1;
}

void http_walk_accept(struct http_walk *w, const struct http_msg *m)
{
	w->nreq++;
	http_body_init(&w->body, m->framing, m->length);
	w->st = m->upgrade		       ? HTTP_WALK_HOLD
		: m->framing == HTTP_BODY_NONE ? HTTP_WALK_HEAD
					       : HTTP_WALK_BODY;
}

bool http_walk_upgrade_answer(struct http_walk *w, const uint8_t *p, size_t n)
{
	if (n < 12)
		return false;
	bool switched = !memcmp(p, "HTTP/1.1 101", 12) || !memcmp(p, "HTTP/1.0 101", 12);
	w->st = switched ? HTTP_WALK_TUNNEL : HTTP_WALK_HEAD;
	return true;
}
