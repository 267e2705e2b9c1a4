/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the intercepting proxy's parsers on hostile bytes. The first input byte picks the
 * target: 0 request head (parse, then secret rewrite), 1 response head, 2 chunked body decode
 * (split at a fuzzed point), 3 response scrubbing (split at a fuzzed point), 4 ClientHello SNI,
 * 5 the plain-HTTP walk over a connection's guest bytes (pipelined heads, bodies between them;
 * split at a fuzzed point, the split byte's low bit answers an upgrade with 101 or 200).
 * Invariants are checked, not only crashes: the spans of every parsed head re-assemble into
 * exactly its bytes (spans_check); a rewrite toward the secret's host leaves no
 * placeholder of it; a scrubbed stream never contains the value.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "net/http.h"
#include "net/secrets.h"
#include "net/tlshello.h"

/*
 * The spans of a parsed head cover it exactly: the start line, then every field line in order
 * (each name ends at its colon, each value lies inside its line with only whitespace around
 * it), then the empty line. Re-assembling them reproduces the head byte for byte.
 */
static void spans_check(const uint8_t *p, size_t hl, const struct http_msg *m)
{
	struct buf re = { 0 };
	if (m->head_len != hl || m->line_len + 2 > hl || m->nfields > HTTP_MAX_HEADERS)
		__builtin_trap();
	size_t at = m->line_len + 2;
	buf_append(&re, p, at);
	for (unsigned i = 0; i < m->nfields; i++) {
		const struct http_field *f = &m->field[i];
		size_t colon = f->name_off + f->name_len;
		if (f->name_off != at || !f->name_len || f->end + 2 > hl || colon >= f->end + 1 ||
		    p[colon] != ':' || f->value_off < colon + 1 ||
		    f->value_off + f->value_len > f->end)
			__builtin_trap();
		for (size_t k = colon + 1; k < f->value_off; k++)
			if (p[k] != ' ' && p[k] != '\t')
				__builtin_trap();
		for (size_t k = f->value_off + f->value_len; k < f->end; k++)
			if (p[k] != ' ' && p[k] != '\t')
				__builtin_trap();
		if (f->value_len &&
		    (p[f->value_off] == ' ' || p[f->value_off + f->value_len - 1] == ' '))
			__builtin_trap();
		buf_append(&re, p + f->name_off, f->name_len);
		buf_append(&re, ":", 1);
		buf_append(&re, p + colon + 1, f->value_off - colon - 1);
		buf_append(&re, p + f->value_off, f->value_len);
		buf_append(&re, p + f->value_off + f->value_len,
			   f->end - f->value_off - f->value_len);
		buf_append(&re, "\r\n", 2);
		at = f->end + 2;
	}
	buf_append(&re, "\r\n", 2);
	if (re.bad || buf_used(&re) != hl || memcmp(buf_head(&re), p, hl))
		__builtin_trap();
	buf_fini(&re);
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

#define PLACEHOLDER "SANDBOX_SECRET_0123456789abcdef0123456789abcdef"
#define VALUE "sk-real-value"

static struct secrets ss;

static void setup(void)
{
	if (ss.n)
		return;
	char err[200];
	secrets_add(&ss, "KEY", (const uint8_t *)VALUE, strlen(VALUE), "api.test", err,
		    sizeof(err));
	memcpy(ss.s[0].placeholder, PLACEHOLDER, sizeof(PLACEHOLDER));
}

static void body_run(const uint8_t *p, size_t n, size_t cut)
{
	struct http_body b;
	http_body_init(&b, HTTP_BODY_CHUNKED, 0);
	size_t off = 0, avail = cut < n ? cut : n;
	for (int guard = 0; guard < 100000; guard++) {
		size_t used, doff, dl;
		int r = http_body_step(&b, p + off, avail - off, avail == n, &used, &doff, &dl);
		if (r != 0)
			return;
		if (used > avail - off || doff + dl > used)
			__builtin_trap();
		off += used;
		if (!used) {
			if (avail == n)
				return;
			avail = n;
		}
	}
}

/* Walk p as a connection's bytes arriving in two pieces; every accepted head names a host. */
static void walk_run(const uint8_t *p, size_t n, size_t cut)
{
	struct http_walk w = { 0 };
	size_t off = 0, avail = cut < n ? cut : n;
	for (int guard = 0; guard < 100000; guard++) {
		size_t used;
		struct http_msg m;
		const char *why = NULL;
		int r = http_walk_step(&w, p + off, avail - off, avail == n, &used, &m, &why);
		if (r < 0) {
			if (!why)
				__builtin_trap();
			return;
		}
		if (used > avail - off || w.data_off + w.data_len > used)
			__builtin_trap();
		if (r == 1) {
			spans_check(p + off, used, &m);
			if (!m.host[0] || http_head_len(p + off, used, HTTP_MAX_HEAD) != (long)used)
				__builtin_trap();
			http_walk_accept(&w, &m);
		}
		off += used;
		if (w.st == HTTP_WALK_HOLD)
			http_walk_upgrade_answer(
			    &w, (const uint8_t *)(cut & 1 ? "HTTP/1.1 101 S" : "HTTP/1.1 200 O"),
			    14);
		if (!used && w.st != HTTP_WALK_HOLD) {
			if (avail == n)
				return;
			avail = n;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	setup();
	if (n < 2)
		return 0;
	uint8_t mode = p[0] % 6, cut = p[1];
	p += 2, n -= 2;
	struct http_msg m;
	const char *why;
	struct buf out = { 0 };
	switch (mode) {
	case 0: {
		long hl = http_head_len(p, n, HTTP_MAX_HEAD);
		if (hl > 0 && http_parse_request(p, (size_t)hl, &m, &why) == 0) {
			if (m.target_off + m.target_len > m.line_len)
				__builtin_trap();
			spans_check(p, (size_t)hl, &m);
			const struct secret *leak;
			int r = secrets_rewrite_request(&ss, "api.test", p, &m, true, &out, &leak,
							NULL);
			if (r >= 0 && memmem(buf_head(&out), buf_used(&out), PLACEHOLDER,
					     strlen(PLACEHOLDER)))
				__builtin_trap();
			buf_fini(&out);
			r = secrets_rewrite_request(&ss, "other.test", p, &m, false, &out, &leak,
						    NULL);
			if (r >= 0 &&
			    memmem(buf_head(&out), buf_used(&out), VALUE, strlen(VALUE)) &&
			    !memmem(p, (size_t)hl, VALUE, strlen(VALUE)))
				__builtin_trap(); /* a value appeared toward a host it is not for */
		}
		break;
	}
	case 1: {
		long hl = http_head_len(p, n, HTTP_MAX_RESPONSE_HEAD);
		if (hl > 0 && http_parse_response(p, (size_t)hl, cut & 1, &m, &why) == 0) {
			static const char *const drop[] = { "content-length", NULL };
			spans_check(p, (size_t)hl, &m);
			http_head_filter(p, &m, drop, "X: y\r\n", &out);
		}
		break;
	}
	case 2:
		body_run(p, n, cut);
		break;
	case 3: {
		struct scrub sc = { 0 };
		size_t k = cut < n ? cut : n;
		scrub_feed(&ss, &sc, p, k, false, &out);
		scrub_feed(&ss, &sc, p + k, n - k, true, &out);
		if (buf_used(&out) && memmem(buf_head(&out), buf_used(&out), VALUE, strlen(VALUE)))
			__builtin_trap();
		scrub_fini(&sc);
		break;
	}
	case 5:
		walk_run(p, n, cut);
		break;
	default: {
		char sni[256];
		if (tlshello_sni(p, n, sni, sizeof(sni)) == 1 && strlen(sni) >= sizeof(sni))
			__builtin_trap();
		break;
	}
	}
	buf_fini(&out);
	return 0;
}
