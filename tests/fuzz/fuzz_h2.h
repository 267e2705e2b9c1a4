/* SPDX-License-Identifier: MIT */
/*
 * What fuzz_h2.c and fuzz_h2x.c share: one secret (its placeholder and value), the mitm they
 * run the proxy with, and the checker that walks the HTTP/2 frames the proxy sends one way --
 * header blocks inflated with libnghttp2's HPACK decoder, each stream's DATA followed across
 * frames -- and traps on a pattern (the placeholder upstream, the value toward the guest).
 * Included by both harnesses only.
 */
#ifndef MATCHLOCK_FUZZ_H2_H
#define MATCHLOCK_FUZZ_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "common/buf.h"
#include "net/flow.h"
#include "net/secrets.h"

#define PLACEHOLDER "SANDBOX_SECRET_0123456789abcdef0123456789abcdef"
#define VALUE "sk-real-value"
#define PL (sizeof(PLACEHOLDER) - 1)
#define MAX_TRACKED 256 /* streams whose DATA the checker follows across frames */

static struct secrets ss;
static struct mitm m;

static void setup(void)
{
	if (ss.n)
		return;
	char err[200];
	secrets_add(&ss, "KEY", (const uint8_t *)VALUE, strlen(VALUE), "api.test", err,
		    sizeof(err));
	memcpy(ss.s[0].placeholder, PLACEHOLDER, sizeof(PLACEHOLDER));
	m.ss = &ss;
}

static void on_event(void *opaque, const struct net_event *ev)
{
	(void)opaque, (void)ev;
}

/* The upstream's view: frames walked, header blocks inflated, DATA followed per stream. */
struct checker {
	const char *pat; /* what may not appear */
	size_t plen;
	bool magic; /* the stream starts with the client preface */
	nghttp2_hd_inflater *inf;
	struct buf in; /* bytes not walked yet */
	bool preface_done;
	struct buf block; /* a header block across CONTINUATION */
	struct {
		int32_t id;
		uint8_t tail[PL];
		size_t len;
	} data[MAX_TRACKED];
	unsigned ndata;
};

static void check_bytes(const struct checker *c, const uint8_t *p, size_t n)
{
	if (n && memmem(p, n, c->pat, c->plen))
		__builtin_trap();
}

static void check_block(struct checker *c)
{
	const uint8_t *p = buf_head(&c->block);
	size_t n = buf_used(&c->block);
	for (;;) {
		nghttp2_nv nv;
		int fl = 0;
		ssize_t k = nghttp2_hd_inflate_hd2(c->inf, &nv, &fl, p, n, 1);
		if (k < 0)
			__builtin_trap(); /* the relay's own encoder produced it */
		p += k, n -= (size_t)k;
		if (fl & NGHTTP2_HD_INFLATE_EMIT) {
			check_bytes(c, nv.name, nv.namelen);
			check_bytes(c, nv.value, nv.valuelen);
		}
		if (fl & NGHTTP2_HD_INFLATE_FINAL) {
			nghttp2_hd_inflate_end_headers(c->inf);
			break;
		}
		if (!k && !(fl & NGHTTP2_HD_INFLATE_EMIT))
			break;
	}
	buf_fini(&c->block);
}

static void check_data(struct checker *c, int32_t id, const uint8_t *p, size_t n)
{
	check_bytes(c, p, n);
	unsigned i = 0;
	while (i < c->ndata && c->data[i].id != id)
		i++;
	if (i == c->ndata) {
		if (c->ndata == MAX_TRACKED)
			return;
		c->data[c->ndata++].id = id;
		c->data[i].len = 0;
	}
	uint8_t seam[2 * PL];
	size_t k = n < c->plen ? n : c->plen, t = c->data[i].len;
	memcpy(seam, c->data[i].tail, t);
	memcpy(seam + t, p, k);
	check_bytes(c, seam, t + k);
	size_t keep = c->plen - 1, have = t + k;
	const uint8_t *src = n >= keep ? p + n - keep : seam + (have > keep ? have - keep : 0);
	c->data[i].len = have < keep ? have : keep;
	memmove(c->data[i].tail, src, c->data[i].len);
}

static void checker_feed(struct checker *c, const uint8_t *p, size_t n)
{
	buf_append(&c->in, p, n);
	if (c->magic && !c->preface_done) {
		if (buf_used(&c->in) < NGHTTP2_CLIENT_MAGIC_LEN)
			return;
		if (memcmp(buf_head(&c->in), NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN))
			__builtin_trap();
		buf_consume(&c->in, NGHTTP2_CLIENT_MAGIC_LEN);
		c->preface_done = true;
	}
	for (;;) {
		struct rd r = rd_make(buf_head(&c->in), buf_used(&c->in));
		uint32_t len = rd_be24(&r);
		uint8_t type = rd_u8(&r), flags = rd_u8(&r);
		int32_t id = (int32_t)(rd_be32(&r) & 0x7fffffff);
		struct rd pl = rd_sub(&r, len);
		if (r.bad)
			return;
		uint8_t pad = 0;
		if ((type == NGHTTP2_DATA || type == NGHTTP2_HEADERS) &&
		    (flags & NGHTTP2_FLAG_PADDED))
			pad = rd_u8(&pl);
		if (type == NGHTTP2_HEADERS && (flags & NGHTTP2_FLAG_PRIORITY))
			rd_bytes(&pl, 5);
		size_t left = rd_left(&pl);
		const uint8_t *body = rd_bytes(&pl, left >= pad ? left - pad : 0);
		if (pl.bad || left < pad)
			__builtin_trap(); /* the relay's own framing */
		size_t bl = left - pad;
		if (type == NGHTTP2_DATA)
			check_data(c, id, body, bl);
		if (type == NGHTTP2_HEADERS || type == NGHTTP2_CONTINUATION) {
			buf_append(&c->block, body, bl);
			if (flags & NGHTTP2_FLAG_END_HEADERS)
				check_block(c);
		}
		buf_consume(&c->in, 9 + len);
	}
}

#endif
