/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the proxy's HTTP/2 relay (src/net/proxy_h2.c) on hostile frames from both sides,
 * without TLS: a flow whose guest speaks h2 to an upstream that speaks h2. Input: byte 0 (bit 0:
 * the connection's host is other.test, to which the secret may not go; else api.test, its
 * host; bits 1..7: the chunk size), byte 1 (how the rest splits into the guest's bytes and the
 * upstream's), then the guest's frames (after the client preface the harness sends) and the
 * upstream's (after an empty SETTINGS). Chunks of each side alternate.
 *
 * Invariants, checked on every byte the relay sends either way, decoded with libnghttp2's HPACK
 * inflater: upstream, no placeholder in any header field or in any stream's DATA (also split
 * across frames) -- toward other.test each was refused, toward api.test each was substituted;
 * to the guest, no real value in any header field or DATA (scrubbed; a compressed body is
 * re-encoded, so only identity bodies are looked into).
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "net/flow.h"
#include "net/secrets.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

#include "fuzz_h2.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	setup();
	if (n < 2)
		return 0;
	bool other = p[0] & 1;
	size_t chunk = (p[0] >> 1) + 1u;
	size_t rest = n - 2, gn = rest * p[1] / 255;
	const uint8_t *g = p + 2, *u = p + 2 + gn;
	size_t un = rest - gn;

	struct flow *f = calloc(1, sizeof(*f));
	/* Upstream: no placeholder. Guest: no real value. */
	struct checker c = { .pat = PLACEHOLDER, .plen = PL, .magic = true };
	struct checker gc = { .pat = VALUE, .plen = strlen(VALUE) };
	if (!f || nghttp2_hd_inflate_new(&c.inf) || nghttp2_hd_inflate_new(&gc.inf)) {
		nghttp2_hd_inflate_del(c.inf);
		free(f);
		return 0;
	}
	f->m = &m;
	strcpy(f->name, other ? "other.test" : "api.test");
	f->port = 443;
	f->ev = on_event;
	f->fd = -1;
	f->u_hs = f->u_h2 = true;
	if (h2_start(f, H2_UP_H2) < 0)
		goto out;
	buf_append(&f->req_in, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
	buf_append(&f->resp_in, "\0\0\0\4\0\0\0\0\0", 9); /* the upstream's SETTINGS */
	for (int round = 0; round < 10000 && (gn || un || buf_used(&f->req_in)); round++) {
		size_t k = gn < chunk ? gn : chunk;
		buf_append(&f->req_in, g, k);
		g += k, gn -= k;
		h2_requests_run(f);
		k = un < chunk ? un : chunk;
		buf_append(&f->resp_in, u, k);
		u += k, un -= k;
		h2_responses_run(f);
		checker_feed(&c, buf_head(&f->req_out), buf_used(&f->req_out));
		buf_consume(&f->req_out, buf_used(&f->req_out));
		checker_feed(&gc, buf_head(&f->g_plain), buf_used(&f->g_plain));
		buf_consume(&f->g_plain, buf_used(&f->g_plain));
		if (h2_finished(f))
			break;
	}
	f->u_eof = true; /* the upstream goes away: every stream is answered */
	h2_responses_run(f);
	h2_requests_run(f);
	checker_feed(&c, buf_head(&f->req_out), buf_used(&f->req_out));
	checker_feed(&gc, buf_head(&f->g_plain), buf_used(&f->g_plain));
out:
	nghttp2_hd_inflate_del(c.inf);
	nghttp2_hd_inflate_del(gc.inf);
	buf_fini(&c.in);
	buf_fini(&c.block);
	buf_fini(&gc.in);
	buf_fini(&gc.block);
	flow_free(f);
	return 0;
}
