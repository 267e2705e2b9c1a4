/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the proxy's translation between HTTP/2 and HTTP/1.1 (ALPN negotiated on each side),
 * without TLS, on hostile bytes from both sides. Input: byte 0 (bit 0: the connection's host is
 * other.test, to which the secret may not go, else api.test, its host; bit 7: the pairing --
 * clear: an h2 guest over an HTTP/1.1 upstream (proxy_h2.c), set: an HTTP/1.1 guest over an h2
 * upstream (proxy.c over proxy_up2.c); bits 1..6: the chunk size), byte 1 (how the rest splits
 * into the guest's bytes and the upstream's), then the guest's bytes (h2 frames after the
 * client preface the harness sends, or HTTP/1.1) and the upstream's (HTTP/1.1, or h2 frames
 * after an empty SETTINGS). Chunks of each side alternate.
 *
 * Invariants, on every byte the proxy sends either way: upstream, no placeholder (in HTTP/1.1
 * bytes, across writes too; in h2, in any HPACK-decoded field or any stream's DATA, also split
 * across frames); to the guest, no real value (likewise).
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

/* Plain bytes (HTTP/1.1), followed across calls as one stream. */
static void check_plain(struct checker *c, const uint8_t *p, size_t n)
{
	if (n)
		check_data(c, 0, p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	setup();
	if (n < 2)
		return 0;
	bool other = p[0] & 1, h1_guest = p[0] & 0x80;
	size_t chunk = ((p[0] >> 1) & 0x3f) + 1u;
	size_t rest = n - 2, gn = rest * p[1] / 255;
	const uint8_t *g = p + 2, *u = p + 2 + gn;
	size_t un = rest - gn;

	struct flow *f = calloc(1, sizeof(*f));
	/* Upstream: no placeholder (h2 frames when the guest speaks HTTP/1.1). Guest: no value. */
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
	f->u_hs = true;
	f->u_h2 = h1_guest;
	if (h1_guest) {
		buf_append(&f->resp_in, "\0\0\0\4\0\0\0\0\0", 9); /* the upstream's SETTINGS */
		if (up2_start(f) < 0)
			goto out;
	} else {
		if (h2_start(f, H2_UP_HTTP1) < 0)
			goto out;
		buf_append(&f->req_in, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
	}
	for (int round = 0; round < 10000 && (gn || un || buf_used(&f->req_in)); round++) {
		size_t k = gn < chunk ? gn : chunk;
		buf_append(&f->req_in, g, k);
		g += k, gn -= k;
		proxy_requests_run(f);
		k = un < chunk ? un : chunk;
		if (h1_guest) {
			up2_push(f);
			up2_recv(f, u, k);
		} else {
			buf_append(&f->resp_in, u, k);
		}
		u += k, un -= k;
		proxy_responses_run(f);
		if (h1_guest) {
			up2_push(f);
			struct buf *w = up2_wire(f);
			checker_feed(&c, buf_head(w), buf_used(w));
			buf_consume(w, buf_used(w));
			check_plain(&gc, buf_head(&f->g_plain), buf_used(&f->g_plain));
		} else {
			check_plain(&c, buf_head(&f->req_out), buf_used(&f->req_out));
			checker_feed(&gc, buf_head(&f->g_plain), buf_used(&f->g_plain));
		}
		buf_consume(&f->req_out, buf_used(&f->req_out));
		buf_consume(&f->g_plain, buf_used(&f->g_plain));
		if (f->h2 && h2_finished(f))
			break;
		if (f->rq == RQ_STOPPED && !f->h2)
			break;
	}
	f->u_eof = true; /* the upstream goes away: every stream is answered */
	proxy_responses_run(f);
	proxy_requests_run(f);
	if (h1_guest) {
		up2_push(f);
		checker_feed(&c, buf_head(up2_wire(f)), buf_used(up2_wire(f)));
		check_plain(&gc, buf_head(&f->g_plain), buf_used(&f->g_plain));
	} else {
		check_plain(&c, buf_head(&f->req_out), buf_used(&f->req_out));
		checker_feed(&gc, buf_head(&f->g_plain), buf_used(&f->g_plain));
	}
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
