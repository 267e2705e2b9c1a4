/* SPDX-License-Identifier: MIT */
/*
 * HTTP content codings (Content-Encoding) as streams, so that secrets can be looked for in what
 * a compressed body says: a decoder turns gzip, deflate (zlib-wrapped or raw, told apart by the
 * first bytes), br or zstd back into the bytes it carries, bounded in how much it may expand (and,
 * zstd, in the window it keeps); an encoder makes the same coding again. zlib, libbrotli and
 * libzstd do the work. Pure code (no I/O).
 */
#ifndef MATCHLOCK_CODEC_H
#define MATCHLOCK_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/*
 * A decoded stream may be at most CODEC_MAX_RATIO times the encoded bytes read so far plus
 * CODEC_SLACK: ordinary text compresses 5-20x, and a bomb (1000x for zeros) is cut off early
 * instead of costing the supervisor seconds of CPU per megabyte.
 */
#define CODEC_MAX_RATIO 200u
#define CODEC_SLACK (1u << 20)

enum codec_kind {
	CODEC_IDENTITY, /* no Content-Encoding, or "identity" */
	CODEC_GZIP, /* gzip, x-gzip */
	CODEC_DEFLATE, /* deflate (RFC 9110: zlib format; raw deflate is accepted too) */
	CODEC_BR, /* brotli */
	CODEC_ZSTD, /* Zstandard */
	CODEC_OTHER, /* anything else (compress, a list of codings): not handled */
};

/* The coding named by a Content-Encoding value (v, n bytes; NULL: none). */
enum codec_kind codec_kind_of(const uint8_t *v, size_t n);
/* Its name, as Content-Encoding writes it. */
const char *codec_name(enum codec_kind kind);

struct codec;

/*
 * A decoder (encode false) or an encoder for kind (not IDENTITY or OTHER). An encoder for
 * DEFLATE writes the zlib format unless raw. NULL when out of memory.
 */
struct codec *codec_new(enum codec_kind kind, bool encode, bool raw);
/*
 * Feed n bytes; the result is appended to out. An encoder flushes what it has at each feed
 * (streams such as server-sent events go out as they come) and ends the stream at final.
 * Returns 0, -EPROTO (not valid data of the coding, or bytes after its end), -EFBIG (a decoder
 * past its expansion bound) or -ENOMEM. After an error the codec takes nothing more.
 */
int codec_feed(struct codec *c, const uint8_t *p, size_t n, bool final, struct buf *out);
/* A decoder: whether the stream was raw deflate (for an encoder of the same kind). */
bool codec_raw(const struct codec *c);
/* Wipes the codec's state (it may have held secret values). NULL is fine. */
void codec_free(struct codec *c);

#endif
