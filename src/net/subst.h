/* SPDX-License-Identifier: MIT */
/*
 * Streaming pattern replacement: the one engine behind every secret swap in a byte stream
 * (placeholders -> values in request bodies, values -> placeholders in responses). A rule set
 * says where the leftmost pattern starts in some bytes and what replaces it; the engine feeds
 * it a stream given in pieces of any size, so a pattern split across reads, TLS records, chunks
 * or HTTP/2 DATA frames is replaced exactly as in the whole buffer. Bytes that may be the start
 * of a pattern are held back until decided: at most max_len - 1 of them. Pure code (no I/O).
 */
#ifndef MATCHLOCK_SUBST_H
#define MATCHLOCK_SUBST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Where a rule set found a pattern in the bytes it was shown. */
struct subst_match {
	size_t at; /* offset of the pattern's first byte */
	size_t len; /* SUBST_FOUND: its length */
	unsigned id; /* the rule set's own meaning (which pattern) */
};

enum subst_find {
	SUBST_NONE, /* no pattern starts in the bytes (all of them are decided) */
	SUBST_FOUND, /* the leftmost pattern (the longest at that offset) is at m->at */
	SUBST_MAYBE, /* p[m->at..n) may start a pattern: decide with more bytes (never at final) */
};

struct subst_rules {
	/*
	 * The leftmost pattern in p[0..n): at a given offset a pattern that needs more bytes
	 * wins over a shorter whole one (SUBST_MAYBE), so the result never depends on the split.
	 * final: no more bytes will come.
	 */
	enum subst_find (*find)(void *ctx, const uint8_t *p, size_t n, bool final,
				struct subst_match *m);
	/*
	 * Append the replacement for match m (its bytes at matched) to out. A negative errno
	 * refuses the stream: subst_feed stops and returns it (the rule set says why in ctx).
	 */
	int (*put)(void *ctx, const uint8_t *matched, const struct subst_match *m, struct buf *out);
	void *ctx;
};

/* One stream's held-back bytes (wiped when consumed: they may be part of a secret). */
struct subst {
	struct buf hold;
};

/*
 * Feed n bytes of the stream; what is decided (replaced or passed) is appended to out. final:
 * the stream ends here, nothing is held back. Returns 0, a rule set's refusal (bytes before
 * the refused match have been appended to out), or -ENOMEM.
 */
int subst_feed(struct subst *st, const struct subst_rules *r, const uint8_t *p, size_t n,
	       bool final, struct buf *out);
/* Bytes held back now (for tests and accounting). */
static inline size_t subst_held(const struct subst *st)
{
	return buf_used(&st->hold);
}
/* Wipe and free the held bytes; st can be fed again (a new stream). */
void subst_fini(struct subst *st);

#endif
