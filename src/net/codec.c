/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "codec.h"

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

#define CODEC_STEP (64u * 1024) /* output room asked for per library call */
/*
 * A zstd frame names the window its decoder must keep; a hostile one would ask for 2 GiB.
 * 8 MiB is what zstd's own levels up to 19 use and what RFC 8878 asks HTTP decoders to accept.
 */
#define CODEC_ZSTD_WINDOW_LOG 23

struct codec {
	enum codec_kind kind;
	bool encode, raw, started, ended, failed;
	uint64_t in, out; /* decoder: bytes read and produced, for the expansion bound */
	uint8_t first[2]; /* deflate decoder: the first bytes, zlib-wrapped or raw */
	unsigned nfirst;
	z_stream z;
	BrotliDecoderState *bd;
	BrotliEncoderState *be;
	ZSTD_DStream *zd;
	ZSTD_CCtx *ze;
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
	if (n == 2 && !strncasecmp((const char *)v, "br", 2))
		return CODEC_BR;
	if (n == 4 && !strncasecmp((const char *)v, "zstd", 4))
		return CODEC_ZSTD;
	return CODEC_OTHER;
}

const char *codec_name(enum codec_kind kind)
{
	static const char *const names[] = { "identity", "gzip", "deflate", "br", "zstd", "other" };
	_Static_assert(sizeof(names) / sizeof(names[0]) == CODEC_OTHER + 1, "codec names");
	return kind <= CODEC_OTHER ? names[kind] : "?";
}

/* Set up the library's state (a deflate decoder waits for its first bytes). */
static int codec_start(struct codec *c)
{
	switch (c->kind) {
	case CODEC_GZIP:
	case CODEC_DEFLATE:
		if (c->encode) {
			int bits = c->kind == CODEC_GZIP ? 15 + 16 : c->raw ? -15 : 15;
			/* Level 1: the proxy re-encodes on the fly; speed matters more than size.
			 */
			if (deflateInit2(&c->z, 1, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
				return -ENOMEM;
		} else {
			int bits = c->kind == CODEC_GZIP ? 15 + 16 : c->raw ? -15 : 15;
			if (inflateInit2(&c->z, bits) != Z_OK)
				return -ENOMEM;
		}
		break;
	case CODEC_BR:
		if (c->encode) {
			c->be = BrotliEncoderCreateInstance(NULL, NULL, NULL);
			if (!c->be)
				return -ENOMEM;
			BrotliEncoderSetParameter(c->be, BROTLI_PARAM_QUALITY, 1);
		} else if (!(c->bd = BrotliDecoderCreateInstance(NULL, NULL, NULL))) {
			return -ENOMEM;
		}
		break;
	case CODEC_ZSTD:
		if (c->encode) {
			c->ze = ZSTD_createCCtx();
			if (!c->ze)
				return -ENOMEM;
			ZSTD_CCtx_setParameter(c->ze, ZSTD_c_compressionLevel, 1);
		} else {
			c->zd = ZSTD_createDStream();
			if (!c->zd || ZSTD_isError(ZSTD_DCtx_setParameter(
					  c->zd, ZSTD_d_windowLogMax, CODEC_ZSTD_WINDOW_LOG)))
				return -ENOMEM;
		}
		break;
	default:
		return -EINVAL;
	}
	c->started = true;
	return 0;
}

struct codec *codec_new(enum codec_kind kind, bool encode, bool raw)
{
	if (kind == CODEC_IDENTITY || kind >= CODEC_OTHER)
		return NULL;
	struct codec *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->kind = kind;
	c->encode = encode;
	c->raw = raw;
	if ((encode || kind != CODEC_DEFLATE) && codec_start(c) < 0) {
		codec_free(c);
		return NULL;
	}
	return c;
}

bool codec_raw(const struct codec *c)
{
	return c->raw;
}

/*
 * One decoding call of the library over the input (*p and *n, both advanced) into room[0..*made): 1
 * the stream (or gzip member, zstd frame) ended, 0 more input or room needed, -EPROTO, -ENOMEM.
 */
static int dec_call(struct codec *c, const uint8_t **p, size_t *n, uint8_t *room, size_t *made)
{
	switch (c->kind) {
	case CODEC_GZIP:
	case CODEC_DEFLATE: {
		c->z.next_in = (Bytef *)*p;
		c->z.avail_in = (uInt)*n;
		c->z.next_out = room;
		c->z.avail_out = CODEC_STEP;
		int r = inflate(&c->z, Z_NO_FLUSH);
		*made = CODEC_STEP - c->z.avail_out;
		*p += *n - c->z.avail_in;
		*n = c->z.avail_in;
		if (r == Z_STREAM_END)
			return 1;
		if (r == Z_OK || (r == Z_BUF_ERROR && !*made))
			return 0;
		return r == Z_MEM_ERROR ? -ENOMEM : -EPROTO;
	}
	case CODEC_BR: {
		size_t room_n = CODEC_STEP;
		uint8_t *o = room;
		BrotliDecoderResult r =
		    BrotliDecoderDecompressStream(c->bd, n, p, &room_n, &o, NULL);
		*made = CODEC_STEP - room_n;
		if (r == BROTLI_DECODER_RESULT_SUCCESS)
			return 1;
		return r == BROTLI_DECODER_RESULT_ERROR ? -EPROTO : 0;
	}
	case CODEC_ZSTD: {
		ZSTD_inBuffer in = { *p, *n, 0 };
		ZSTD_outBuffer out = { room, CODEC_STEP, 0 };
		size_t r = ZSTD_decompressStream(c->zd, &out, &in);
		*made = out.pos;
		*p += in.pos;
		*n -= in.pos;
		if (ZSTD_isError(r))
			return -EPROTO;
		return r == 0 ? 1 : 0;
	}
	default:
		return -EINVAL;
	}
}

/* The stream ended with bytes after it: gzip members and zstd frames may follow each other. */
static int dec_next_member(struct codec *c)
{
	if (c->kind == CODEC_GZIP)
		return inflateReset(&c->z) == Z_OK ? 0 : -EPROTO;
	return c->kind == CODEC_ZSTD ? 0 : -EPROTO;
}

static int dec_feed(struct codec *c, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	if (!c->started) {
		/* deflate: zlib-wrapped (RFC 9110) or raw (what some servers send), by 2 bytes */
		while (c->nfirst < 2 && n) {
			c->first[c->nfirst++] = *p++;
			n--;
		}
		if (c->nfirst < 2)
			return !final ? 0 : c->nfirst ? -EPROTO : 0;
		unsigned h = (unsigned)c->first[0] << 8 | c->first[1];
		c->raw = (c->first[0] & 0x0f) != 8 || h % 31 != 0;
		int r = codec_start(c);
		if (r < 0)
			return r;
		uint8_t first[2] = { c->first[0], c->first[1] };
		r = dec_feed(c, first, 2, final && !n, out);
		if (r < 0 || !n)
			return r;
	}
	c->in += n;
	for (;;) {
		if (c->ended && n) {
			int r = dec_next_member(c);
			if (r < 0)
				return r;
			c->ended = false;
		}
		uint8_t *room = buf_reserve(out, CODEC_STEP);
		if (!room)
			return -ENOMEM;
		size_t made = 0, before = n;
		int r = dec_call(c, &p, &n, room, &made);
		out->len += made;
		c->out += made;
		if (r < 0)
			return r;
		if (c->out > c->in * CODEC_MAX_RATIO + CODEC_SLACK)
			return -EFBIG;
		if (r == 1)
			c->ended = true;
		if (!n && made < CODEC_STEP)
			break; /* all input taken and nothing more waiting to come out */
		if (!made && r == 0 && n == before)
			return -EPROTO; /* no progress with input and room: the library is stuck */
	}
	if (final && !c->ended)
		return -EPROTO; /* cut short */
	return 0;
}

/*
 * One encoding call over the input (*p and *n) into room[0..*made) (flush: everything out now;
 * final: end the stream). Returns 1 when the call left nothing pending, 0 to call again, -EPROTO.
 */
static int enc_call(struct codec *c, const uint8_t **p, size_t *n, bool final, uint8_t *room,
		    size_t *made)
{
	switch (c->kind) {
	case CODEC_GZIP:
	case CODEC_DEFLATE: {
		c->z.next_in = (Bytef *)*p;
		c->z.avail_in = (uInt)*n;
		c->z.next_out = room;
		c->z.avail_out = CODEC_STEP;
		int r = deflate(&c->z, final ? Z_FINISH : Z_SYNC_FLUSH);
		*made = CODEC_STEP - c->z.avail_out;
		*p += *n - c->z.avail_in;
		*n = c->z.avail_in;
		if (r == Z_STREAM_END)
			return 1;
		if (r != Z_OK && r != Z_BUF_ERROR)
			return -EPROTO;
		return !final && c->z.avail_out ? 1 : 0;
	}
	case CODEC_BR: {
		size_t room_n = CODEC_STEP;
		uint8_t *o = room;
		if (!BrotliEncoderCompressStream(
			c->be, final ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_FLUSH, n, p,
			&room_n, &o, NULL))
			return -EPROTO;
		*made = CODEC_STEP - room_n;
		if (final)
			return BrotliEncoderIsFinished(c->be) ? 1 : 0;
		return !*n && !BrotliEncoderHasMoreOutput(c->be) ? 1 : 0;
	}
	case CODEC_ZSTD: {
		ZSTD_inBuffer in = { *p, *n, 0 };
		ZSTD_outBuffer out = { room, CODEC_STEP, 0 };
		size_t r =
		    ZSTD_compressStream2(c->ze, &out, &in, final ? ZSTD_e_end : ZSTD_e_flush);
		*made = out.pos;
		*p += in.pos;
		*n -= in.pos;
		if (ZSTD_isError(r))
			return -EPROTO;
		return r == 0 && !*n ? 1 : 0;
	}
	default:
		return -EINVAL;
	}
}

static int enc_feed(struct codec *c, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	if (c->ended)
		return n ? -EPROTO : 0;
	if (!n && !final)
		return 0;
	for (;;) {
		uint8_t *room = buf_reserve(out, CODEC_STEP);
		if (!room)
			return -ENOMEM;
		size_t made = 0;
		int r = enc_call(c, &p, &n, final, room, &made);
		out->len += made;
		if (r < 0)
			return r;
		if (r == 1) {
			c->ended = final;
			return 0;
		}
	}
}

int codec_feed(struct codec *c, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	static const uint8_t none[1];
	if (c->failed)
		return -EPROTO;
	if (!p)
		p = none; /* an empty buffer's NULL head: the libraries' cursors move from it */
	int r = c->encode ? enc_feed(c, p, n, final, out) : dec_feed(c, p, n, final, out);
	if (r < 0)
		c->failed = true;
	return r;
}

void codec_free(struct codec *c)
{
	if (!c)
		return;
	if (c->started && (c->kind == CODEC_GZIP || c->kind == CODEC_DEFLATE)) {
		if (c->encode)
			deflateEnd(&c->z);
		else
			inflateEnd(&c->z);
	}
	BrotliDecoderDestroyInstance(c->bd);
	BrotliEncoderDestroyInstance(c->be);
	ZSTD_freeDStream(c->zd);
	ZSTD_freeCCtx(c->ze);
	explicit_bzero(c, sizeof(*c));
	free(c);
}
