/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the content-coding decoders (codec.h) on hostile bytes, and the encoders' round
 * trip. Input: a byte choosing the coding (gzip, deflate, br, zstd), a byte choosing where the
 * input is split, then the bytes. They are decoded in two pieces (the result must respect the
 * expansion bound, and a failure must be sticky), then encoded in two pieces and decoded again,
 * which must give them back exactly.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "net/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

static const enum codec_kind kinds[] = { CODEC_GZIP, CODEC_DEFLATE, CODEC_BR, CODEC_ZSTD };

/* Feed p[0..n) to c in two pieces cut at cut. */
static int feed2(struct codec *c, const uint8_t *p, size_t n, size_t cut, struct buf *out)
{
	int r = codec_feed(c, p, cut, false, out);
	if (r == 0)
		r = codec_feed(c, p + cut, n - cut, true, out);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	if (n < 2)
		return 0;
	enum codec_kind kind = kinds[p[0] % 4];
	bool raw = p[0] & 4;
	p += 2, n -= 2;
	size_t cut = n ? p[-1] % (n + 1) : 0;

	struct buf out = { 0 };
	struct codec *d = codec_new(kind, false, false);
	if (!d)
		return 0;
	int r = feed2(d, p, n, cut, &out);
	if (buf_used(&out) > (uint64_t)n * CODEC_MAX_RATIO + CODEC_SLACK + (64u << 10))
		__builtin_trap();
	if (r < 0 && codec_feed(d, (const uint8_t *)"x", 1, true, &out) == 0)
		__builtin_trap();
	codec_free(d);
	buf_fini(&out);

	struct buf enc = { 0 }, back = { 0 };
	struct codec *e = codec_new(kind, true, raw);
	d = codec_new(kind, false, false);
	if (e && d && feed2(e, p, n, cut, &enc) == 0) {
		size_t ecut = buf_used(&enc) / 2;
		if (feed2(d, buf_head(&enc), buf_used(&enc), ecut, &back) != 0 ||
		    buf_used(&back) != n || (n && memcmp(buf_head(&back), p, n)))
			__builtin_trap();
	}
	codec_free(e);
	codec_free(d);
	buf_fini(&enc);
	buf_fini(&back);
	return 0;
}
