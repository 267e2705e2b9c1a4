/* SPDX-License-Identifier: MIT */
/*
 * Content codings (codec.h): gzip, deflate (zlib and raw), br and zstd decode what the libraries
 * and our encoder make, in any split; concatenated gzip members and zstd frames; the expansion
 * bound; zstd's window bound; corrupt and cut-short streams; Content-Encoding names.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "check.h"
#include "net/codec.h"

#define S(s) (const uint8_t *)(s), strlen(s)

static int encode(enum codec_kind k, bool raw, const uint8_t *p, size_t n, struct buf *out)
{
	struct codec *c = codec_new(k, true, raw);
	if (!c)
		return -ENOMEM;
	/* Two feeds: the first is flushed, the second ends the stream. */
	int r = codec_feed(c, p, n / 2, false, out);
	if (r == 0)
		r = codec_feed(c, p + n / 2, n - n / 2, true, out);
	codec_free(c);
	return r;
}

/* Decode in pieces of step bytes. */
static int decode(enum codec_kind k, const uint8_t *p, size_t n, size_t step, struct buf *out,
		  bool *raw)
{
	struct codec *c = codec_new(k, false, false);
	int r = 0;
	for (size_t at = 0; r == 0 && at <= n; at += step) {
		size_t m = n - at < step ? n - at : step;
		r = codec_feed(c, p + at, m, at + m >= n, out);
		if (at + m >= n)
			break;
	}
	if (raw)
		*raw = codec_raw(c);
	codec_free(c);
	return r;
}

static void test_round_trips(void)
{
	const char *text = "{\"token\": \"sk-live-0123456789\", \"pad\": \"aaaaaaaaaaaaaaaaaaaa\"}";
	const enum codec_kind kinds[] = { CODEC_GZIP, CODEC_DEFLATE, CODEC_DEFLATE, CODEC_BR,
					  CODEC_ZSTD };
	for (int i = 0; i < 5; i++) {
		struct buf enc = { 0 };
		CHECK_EQ_INT(encode(kinds[i], i == 2, S(text), &enc), 0);
		for (size_t step = 1; step < buf_used(&enc) + 2; step += 3) {
			struct buf dec = { 0 };
			bool raw = false;
			bool ok =
			    CHECK_EQ_INT(
				decode(kinds[i], buf_head(&enc), buf_used(&enc), step, &dec, &raw),
				0) &&
			    CHECK_EQ_MEM(buf_head(&dec), buf_used(&dec), text, strlen(text)) &&
			    CHECK_EQ_INT(raw, i == 2);
			buf_fini(&dec);
			if (!ok)
				break;
		}
		buf_fini(&enc);
	}
	/* zlib's own compress() output is "deflate" as RFC 9110 means it. */
	uint8_t z[256];
	uLongf zn = sizeof(z);
	CHECK_EQ_INT(compress(z, &zn, (const Bytef *)text, strlen(text)), Z_OK);
	struct buf dec = { 0 };
	CHECK_EQ_INT(decode(CODEC_DEFLATE, z, zn, 7, &dec, NULL), 0);
	CHECK_EQ_MEM(buf_head(&dec), buf_used(&dec), text, strlen(text));
	buf_fini(&dec);
}

static void test_members_and_errors(void)
{
	struct buf enc = { 0 }, dec = { 0 };
	encode(CODEC_GZIP, false, S("first "), &enc);
	encode(CODEC_GZIP, false, S("second"), &enc);
	CHECK_EQ_INT(decode(CODEC_GZIP, buf_head(&enc), buf_used(&enc), 5, &dec, NULL), 0);
	CHECK_EQ_MEM(buf_head(&dec), buf_used(&dec), "first second", 12);
	buf_fini(&dec);
	/* Cut short, and garbage after the end of a deflate stream. */
	CHECK_EQ_INT(decode(CODEC_GZIP, buf_head(&enc), buf_used(&enc) - 3, 4, &dec, NULL),
		     -EPROTO);
	buf_fini(&dec);
	buf_fini(&enc);
	encode(CODEC_DEFLATE, false, S("x"), &enc);
	buf_append(&enc, "junk", 4);
	CHECK_EQ_INT(decode(CODEC_DEFLATE, buf_head(&enc), buf_used(&enc), 100, &dec, NULL),
		     -EPROTO);
	buf_fini(&dec);
	buf_fini(&enc);
	CHECK_EQ_INT(decode(CODEC_GZIP, S("not gzip at all"), 3, &dec, NULL), -EPROTO);
	buf_fini(&dec);

	/* zstd: frames back to back; a frame that asks for a window beyond the bound. */
	encode(CODEC_ZSTD, false, S("one "), &enc);
	encode(CODEC_ZSTD, false, S("two"), &enc);
	CHECK_EQ_INT(decode(CODEC_ZSTD, buf_head(&enc), buf_used(&enc), 3, &dec, NULL), 0);
	CHECK_EQ_MEM(buf_head(&dec), buf_used(&dec), "one two", 7);
	buf_fini(&dec);
	buf_fini(&enc);
	/* A window of 128 MiB declared (the size unknown up front, as a stream sends it). */
	uint8_t frame[256];
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 27);
	ZSTD_inBuffer in = { "hello hello", 11, 0 }, none = { "", 0, 0 };
	ZSTD_outBuffer zo = { frame, sizeof(frame), 0 };
	ZSTD_compressStream2(cc, &zo, &in, ZSTD_e_continue);
	for (int i = 0; i < 8 && ZSTD_compressStream2(cc, &zo, &none, ZSTD_e_end); i++)
		;
	ZSTD_freeCCtx(cc);
	CHECK_EQ_INT(decode(CODEC_ZSTD, frame, zo.pos, 5, &dec, NULL), -EPROTO);
	CHECK_EQ_INT(buf_used(&dec), 0);
	buf_fini(&dec);

	/* A bomb: 64 MiB of zeros, far more than 200x its gzip; decoding stops near the bound. */
	size_t big = 64u << 20;
	uint8_t *zeros = calloc(1, big);
	encode(CODEC_GZIP, false, zeros, big, &enc);
	free(zeros);
	CHECK_EQ_INT(decode(CODEC_GZIP, buf_head(&enc), buf_used(&enc), 16384, &dec, NULL), -EFBIG);
	CHECK(buf_used(&dec) <= CODEC_MAX_RATIO * buf_used(&enc) + CODEC_SLACK + (64u << 10));
	buf_fini(&dec);
	buf_fini(&enc);
}

static void test_names(void)
{
	CHECK_EQ_INT(codec_kind_of(NULL, 0), CODEC_IDENTITY);
	CHECK_EQ_INT(codec_kind_of(S(" identity ")), CODEC_IDENTITY);
	CHECK_EQ_INT(codec_kind_of(S("GZIP")), CODEC_GZIP);
	CHECK_EQ_INT(codec_kind_of(S("x-gzip")), CODEC_GZIP);
	CHECK_EQ_INT(codec_kind_of(S("deflate")), CODEC_DEFLATE);
	CHECK_EQ_INT(codec_kind_of(S("br")), CODEC_BR);
	CHECK_EQ_INT(codec_kind_of(S("zstd")), CODEC_ZSTD);
	CHECK_EQ_INT(codec_kind_of(S("compress")), CODEC_OTHER);
	CHECK(!strcmp(codec_name(CODEC_BR), "br") && !strcmp(codec_name(CODEC_OTHER), "other"));
	CHECK_EQ_INT(codec_kind_of(S("gzip, br")), CODEC_OTHER);
	CHECK(codec_new(CODEC_OTHER, false, false) == NULL);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_round_trips);
	CHECK_RUN(test_members_and_errors);
	CHECK_RUN(test_names);
	return check_summary();
}
