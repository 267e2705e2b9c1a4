/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the streaming substituter (subst.h) under both of its rule sets, fed in pieces cut
 * at fuzzed points. Input: 4 bytes choosing up to 4 cut points, 1 byte choosing the body
 * encoding, then the stream, in which 0xF0 stands for the placeholder of a secret scoped to the
 * host, 0xF1 for one scoped elsewhere, 0xF2 for the bare prefix SANDBOX_SECRET_ and 0xF3 for
 * the first secret's value. Invariants: the split result equals the whole-buffer result (status
 * and bytes), the hold-back stays under a pattern's length, no placeholder passes toward a host
 * its secret is not scoped to (the body is refused), and a scrubbed stream never holds a value.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/secrets.h"
#include "net/subst.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

#define PH_A "SANDBOX_SECRET_0123456789abcdef0123456789abcdef"
#define PH_B "SANDBOX_SECRET_fedcba9876543210fedcba9876543210"
#define VALUE_A "sk-real/value+1"

static struct secrets ss;

static void setup(void)
{
	if (ss.n)
		return;
	char err[200];
	secrets_add(&ss, "A", (const uint8_t *)VALUE_A, strlen(VALUE_A), "api.test", err,
		    sizeof(err));
	secrets_add(&ss, "B", (const uint8_t *)"other-value", 11, "other.test", err, sizeof(err));
	memcpy(ss.s[0].placeholder, PH_A, sizeof(PH_A));
	memcpy(ss.s[1].placeholder, PH_B, sizeof(PH_B));
}

/* The stream with the tokens expanded. */
static void expand(const uint8_t *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		switch (p[i]) {
		case 0xf0:
			buf_append(out, PH_A, strlen(PH_A));
			break;
		case 0xf1:
			buf_append(out, PH_B, strlen(PH_B));
			break;
		case 0xf2:
			buf_append(out, "SANDBOX_SECRET_", 15);
			break;
		case 0xf3:
			buf_append(out, VALUE_A, strlen(VALUE_A));
			break;
		default:
			buf_put_u8(out, p[i]);
		}
	}
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

/* Feed t[0..n) cut at cuts (sorted), through a body substituter (scrub: the scrubber). */
static int run(bool scrub, enum secrets_body_enc enc, const uint8_t *t, size_t n,
	       const size_t *cuts, unsigned ncuts, struct buf *out)
{
	struct secrets_body b;
	struct scrub sc = { 0 };
	secrets_body_init(&b, &ss, "api.test", enc, false);
	size_t at = 0;
	int r = 0;
	for (unsigned i = 0; i <= ncuts && r == 0; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		bool final = i == ncuts;
		r = scrub ? scrub_feed(&ss, &sc, t + at, end - at, final, out)
			  : secrets_body_feed(&b, t + at, end - at, final, out);
		size_t held = scrub ? subst_held(&sc.st) : subst_held(&b.st);
		size_t bound = scrub ? ss.max_form - 1 : SECRET_PLACEHOLDER_LEN - 1;
		if (r == 0 && (final ? held != 0 : held > bound))
			__builtin_trap();
		at = end;
	}
	secrets_body_fini(&b);
	scrub_fini(&sc);
	return r;
}

static bool same(const struct buf *a, const struct buf *b)
{
	return buf_used(a) == buf_used(b) &&
	       (!buf_used(a) || !memcmp(buf_head(a), buf_head(b), buf_used(a)));
}

static bool has(const struct buf *b, const char *s)
{
	return buf_used(b) && memmem(buf_head(b), buf_used(b), s, strlen(s));
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	setup();
	if (n < 5)
		return 0;
	struct buf t = { 0 }, whole = { 0 }, split = { 0 };
	expand(p + 5, n - 5, &t);
	size_t len = buf_used(&t), cuts[4];
	for (int i = 0; i < 4; i++)
		cuts[i] = len ? (size_t)p[i] * len / 255 : 0;
	qsort(cuts, 4, sizeof(cuts[0]), cmp_size);
	enum secrets_body_enc enc = (enum secrets_body_enc)(p[4] % 3);
	const uint8_t *tp = len ? buf_head(&t) : (const uint8_t *)"";

	int rw = run(false, enc, tp, len, NULL, 0, &whole);
	int rs = run(false, enc, tp, len, cuts, 4, &split);
	if (rw != rs || !same(&whole, &split))
		__builtin_trap();
	bool has_b = has(&t, PH_B);
	if (has_b != (rw == -EPERM) || (rw != 0 && rw != -EPERM))
		__builtin_trap();
	if (has(&split, PH_B) || has(&split, PH_A))
		__builtin_trap();

	buf_fini(&whole);
	buf_fini(&split);
	rw = run(true, enc, tp, len, NULL, 0, &whole);
	rs = run(true, enc, tp, len, cuts, 4, &split);
	if (rw != rs || !same(&whole, &split))
		__builtin_trap();
	if (has(&split, VALUE_A))
		__builtin_trap();
	buf_fini(&whole);
	buf_fini(&split);
	buf_fini(&t);
	return 0;
}
