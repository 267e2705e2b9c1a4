/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define CODEC_STEP (64u * 1024) /* output room asked for per zlib call */

struct codec {
	z_stream z;
	enum codec_kind kind;
	bool encode, raw, started, ended, failed;
	uint64_t in, out; /* decoder: bytes read and produced, for the expansion bound */
	uint8_t first[2]; /* decoder: the first bytes, to tell zlib-wrapped from raw deflate */
	unsigned nfirst;
};

enum codec_kind codec_kind_of(const uint8_t *v, size_t n)
{
	while (n && (*v == ' ' || *v == '\t'))
		v++, n--;
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (!v || !n || (n == 8 && !strncasecmp((const char *)v, "identity", 8)))
		return CODEC_IDENTITY;
	if ((n == 4 && !strncasecmp((const char *)v, "gzip", 4)) ||
	    (n == 6 && !strncasecmp((const char *)v, "x-gzip", 6)))
		return CODEC_GZIP;
	if (n == 7 && !strncasecmp((const char *)v, "deflate", 7))
		return CODEC_DEFLATE;
	return CODEC_OTHER;
}

struct codec *codec_new(enum codec_kind kind, bool encode, bool raw)
{
	if (kind != CODEC_GZIP && kind != CODEC_DEFLATE)
		return NULL;
	struct codec *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->kind = kind;
	c->encode = encode;
	c->raw = raw;
	if (encode) {
		int bits = kind == CODEC_GZIP ? 15 + 16 : raw ? -15 : 15;
		/* Level 1: the proxy re-encodes on the fly; speed matters more than size. */
		if (deflateInit2(&c->z, 1, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
			free(c);
			return NULL;
		}
		c->started = true;
	}
	return c;
}

bool codec_raw(const struct codec *c)
{
	return c->raw;
}

/* Start the decoder once the first two bytes tell deflate's two formats apart. */
static int dec_start(struct codec *c)
{
	int bits = 15 + 16; /* gzip */
	if (c->kind == CODEC_DEFLATE) {
		unsigned h = (unsigned)c->first[0] << 8 | c->first[1];
		c->raw = (c->first[0] & 0x0f) != 8 || h % 31 != 0;
		bits = c->raw ? -15 : 15;
	}
	if (inflateInit2(&c->z, bits) != Z_OK)
		return -ENOMEM;
	c->started = true;
	return 0;
}

static int dec_feed(struct codec *c, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	if (!c->started) {
		while (c->nfirst < 2 && n) {
			c->first[c->nfirst++] = *p++;
			n--;
		}
		if (c->nfirst < 2 && !final)
			return 0;
		if (c->nfirst < 2)
			return c->nfirst ? -EPROTO : 0;
		int r = dec_start(c);
		if (r < 0)
			return r;
		uint8_t first[2] = { c->first[0], c->first[1] };
		c->nfirst = 0;
		r = dec_feed(c, first, 2, final && !n, out);
		if (r < 0 || !n)
			return r;
	}
	c->in += n;
	c->z.next_in = (Bytef *)p;
	c->z.avail_in = (uInt)n;
	for (;;) {
		if (c->ended && c->z.avail_in) {
			/* gzip allows members back to back; anything else after the end is wrong */
			if (c->kind != CODEC_GZIP || inflateReset(&c->z) != Z_OK)
				return -EPROTO;
			c->ended = false;
		}
		uint8_t *room = buf_reserve(out, CODEC_STEP);
		if (!room)
			return -ENOMEM;
		c->z.next_out = room;
		c->z.avail_out = CODEC_STEP;
		int r = inflate(&c->z, Z_NO_FLUSH);
		size_t made = CODEC_STEP - c->z.avail_out;
		out->len += made;
		c->out += made;
		if (c->out > c->in * CODEC_MAX_RATIO + CODEC_SLACK)
			return -EFBIG;
		if (r == Z_STREAM_END)
			c->ended = true;
		else if (r == Z_BUF_ERROR && !made)
			break; /* needs more input */
		else if (r != Z_OK)
			return r == Z_MEM_ERROR ? -ENOMEM : -EPROTO;
		if (!c->z.avail_in && c->z.avail_out)
			break;
	}
	if (final && !c->ended)
		return -EPROTO; /* cut short */
	return 0;
}

static int enc_feed(struct codec *c, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	if (c->ended)
		return n ? -EPROTO : 0;
	c->z.next_in = (Bytef *)p;
	c->z.avail_in = (uInt)n;
	int flush = final ? Z_FINISH : Z_SYNC_FLUSH;
	if (!n && !final)
		return 0;
	for (;;) {
		uint8_t *room = buf_reserve(out, CODEC_STEP);
		if (!room)
			return -ENOMEM;
		c->z.next_out = room;
		c->z.avail_out = CODEC_STEP;
		int r = deflate(&c->z, flush);
		out->len += CODEC_STEP - c->z.avail_out;
		if (r == Z_STREAM_END) {
			c->ended = true;
			return 0;
		}
		if (r != Z_OK && r != Z_BUF_ERROR)
			return -EPROTO;
		if (c->z.avail_out)
			return 0; /* all in, all flushed */
	}
}

int codec_feed(struct codec *c, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	if (c->failed)
		return -EPROTO;
	int r = c->encode ? enc_feed(c, p, n, final, out) : dec_feed(c, p, n, final, out);
	if (r < 0)
		c->failed = true;
	return r;
}

void codec_free(struct codec *c)
{
	if (!c)
		return;
	if (c->started) {
		if (c->encode)
			deflateEnd(&c->z);
		else
			inflateEnd(&c->z);
	}
	explicit_bzero(c, sizeof(*c));
	free(c);
}
