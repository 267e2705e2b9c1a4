/* SPDX-License-Identifier: MIT */
/* Unit tests for src/common/buf.c: the growable byte FIFO and the checked read cursor. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "common/buf.h"

/* The bytes waiting in a struct buf are exactly p[0..n) (no buf_head() of a fresh buf). */
#define CHECK_BUF(b, p, n) CHECK_EQ_MEM(buf_used(b) ? buf_head(b) : NULL, buf_used(b), (p), (n))

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31 + seed);
}

static void test_append_consume(void)
{
	struct buf b = { 0 };

	CHECK_EQ_INT(buf_used(&b), 0);
	CHECK_EQ_INT(buf_append(&b, "hello", 5), 0);
	CHECK_BUF(&b, "hello", 5);

	buf_consume(&b, 2);
	CHECK_BUF(&b, "llo", 3);

	CHECK_EQ_INT(buf_append(&b, " world", 6), 0);
	CHECK_BUF(&b, "llo world", 9);

	/* Consuming exactly everything, or more, empties the buffer and rewinds it. */
	buf_consume(&b, 9);
	CHECK_EQ_INT(buf_used(&b), 0);
	CHECK_EQ_INT(b.off, 0);
	CHECK_EQ_INT(b.len, 0);
	CHECK_EQ_INT(buf_append(&b, "again", 5), 0);
	buf_consume(&b, 100);
	CHECK_EQ_INT(buf_used(&b), 0);
	CHECK_EQ_INT(b.off, 0);
	CHECK_EQ_INT(b.len, 0);
	buf_consume(&b, 1);
	CHECK_EQ_INT(buf_used(&b), 0);

	buf_fini(&b);
	CHECK(b.p == NULL);
	CHECK_EQ_INT(b.cap, 0);
	buf_fini(&b); /* twice is harmless */
}

static void test_append_empty(void)
{
	struct buf b = { 0 };

	/* A zero-length append is a success on a fresh buffer too, not an allocation failure. */
	CHECK_EQ_INT(buf_append(&b, "", 0), 0);
	CHECK_EQ_INT(buf_used(&b), 0);
	CHECK(buf_reserve(&b, 0) != NULL);
	CHECK_EQ_INT(buf_append(&b, "ab", 2), 0);
	CHECK_EQ_INT(buf_append(&b, NULL, 0), 0);
	CHECK_BUF(&b, "ab", 2);
	buf_fini(&b);
}

static void test_reserve_growth(void)
{
	struct buf b = { 0 };
	static uint8_t big[100000];

	uint8_t *p = buf_reserve(&b, 1);
	CHECK(p != NULL);
	CHECK(p == b.p);
	CHECK_EQ_INT(b.cap, 256);
	CHECK_EQ_INT(b.len, 0); /* reserving does not commit */

	fill(big, sizeof(big), 7);
	CHECK_EQ_INT(buf_append(&b, big, 300), 0);
	CHECK_EQ_INT(b.cap, 512);
	CHECK_EQ_INT(buf_append(&b, big + 300, sizeof(big) - 300), 0);
	CHECK_EQ_INT(buf_used(&b), sizeof(big));
	CHECK(b.cap >= sizeof(big));
	CHECK_EQ_INT(b.cap & (b.cap - 1), 0); /* doubling from 256 */
	CHECK_BUF(&b, big, sizeof(big));

	/* A reservation that fits does not move or grow the buffer. */
	size_t cap = b.cap;
	p = buf_reserve(&b, cap - b.len);
	CHECK(p == b.p + b.len);
	CHECK_EQ_INT(b.cap, cap);
	buf_fini(&b);
}

static void test_reserve_slide(void)
{
	struct buf b = { 0 };
	uint8_t src[200];

	fill(src, sizeof(src), 3);
	CHECK_EQ_INT(buf_append(&b, src, sizeof(src)), 0);
	CHECK_EQ_INT(b.cap, 256);
	buf_consume(&b, 150);
	CHECK_EQ_INT(b.off, 150);

	/* 56 bytes free at the end, 100 wanted: the 50 live bytes slide down instead of growing. */
	uint8_t *p = buf_reserve(&b, 100);
	CHECK(p != NULL);
	CHECK_EQ_INT(b.cap, 256);
	CHECK_EQ_INT(b.off, 0);
	CHECK_EQ_INT(b.len, 50);
	CHECK(p == b.p + 50);
	CHECK_BUF(&b, src + 150, 50);

	/* Sliding is not enough here: it slides and then grows, keeping the live bytes. */
	buf_consume(&b, 10);
	p = buf_reserve(&b, 250);
	CHECK(p != NULL);
	CHECK_EQ_INT(b.off, 0);
	CHECK_EQ_INT(b.len, 40);
	CHECK_EQ_INT(b.cap, 512);
	CHECK_BUF(&b, src + 160, 40);
	buf_fini(&b);
}

static void test_reserve_overflow(void)
{
	struct buf b = { 0 };

	CHECK_EQ_INT(buf_append(&b, "xyz", 3), 0);
	CHECK(buf_reserve(&b, SIZE_MAX) == NULL);
	CHECK(buf_reserve(&b, SIZE_MAX / 2) == NULL);
	CHECK_EQ_INT(buf_append(&b, "", SIZE_MAX - 1), -ENOMEM);
	/* The buffer is untouched by the failures. */
	CHECK_BUF(&b, "xyz", 3);
	buf_fini(&b);
}

static void test_sticky_writer_error(void)
{
	struct buf b = { 0 };

	CHECK_EQ_INT(buf_append(&b, "ab", 2), 0);
	CHECK(!b.bad);
	CHECK(buf_reserve(&b, SIZE_MAX) == NULL);
	CHECK(b.bad);
	/* Sticky: a small append after the failure is refused too, so no message goes out with
	 * a piece missing from its middle. */
	CHECK_EQ_INT(buf_append(&b, "c", 1), -ENOMEM);
	CHECK_EQ_INT(buf_put_u8(&b, 1), -ENOMEM);
	CHECK_EQ_INT(buf_put_be32(&b, 1), -ENOMEM);
	CHECK_BUF(&b, "ab", 2);
	buf_consume(&b, 2);
	CHECK(b.bad); /* draining does not make the contents whole again */
	buf_fini(&b);
	CHECK(!b.bad);
	CHECK_EQ_INT(buf_append(&b, "c", 1), 0);
	buf_fini(&b);
}

static void test_put_be(void)
{
	struct buf b = { 0 };
	static const uint8_t want[] = { 0x12, 0x34, 0x81, 0x02, 0x03, 0x04 };

	CHECK_EQ_INT(buf_put_be16(&b, 0x1234), 0);
	CHECK_EQ_INT(buf_put_be32(&b, 0x81020304u), 0);
	CHECK_BUF(&b, want, sizeof(want));
	struct rd r = rd_make(want, sizeof(want));
	CHECK_EQ_INT(rd_be16(&r), 0x1234);
	CHECK(rd_be32(&r) == 0x81020304u);
	CHECK(!r.bad && rd_left(&r) == 0);
	r = rd_make(want, sizeof(want));
	CHECK(rd_be24(&r) == 0x123481u);
	CHECK(rd_be32(&r) == 0 && r.bad); /* 3 bytes left */
	CHECK_EQ_INT(be16_get(want + 2), 0x8102);
	CHECK(be32_get(want + 2) == 0x81020304u);
	uint8_t q[4];
	be32_put(q, 0x81020304u);
	CHECK_EQ_MEM(q, 4, want + 2, 4);
	buf_fini(&b);
}

static void test_rd_sub(void)
{
	static const uint8_t in[] = { 3, 'a', 'b', 'c', 9, 'x' };
	struct rd r = rd_make(in, sizeof(in));

	struct rd s = rd_sub(&r, rd_u8(&r));
	CHECK(!s.bad && rd_left(&s) == 3 && s.p == in + 1);
	CHECK_EQ_INT(rd_u8(&s), 'a');
	CHECK_EQ_INT(rd_left(&r), 2);
	/* Longer than what is left: both cursors are bad, the sub-range empty. */
	struct rd t = rd_sub(&r, rd_u8(&r));
	CHECK(t.bad && rd_left(&t) == 0 && r.bad);
	CHECK(rd_u8(&t) == 0);
}

static void test_rd_line(void)
{
	static const char in[] = "one\r\n\r\nbare\nlf\r\ncut\r";
	struct rd r = rd_make(in, sizeof(in) - 1);
	size_t len = 99;

	const uint8_t *l = rd_line(&r, &len);
	CHECK(l == (const uint8_t *)in && len == 3);
	l = rd_line(&r, &len);
	CHECK(l && len == 0);
	/* A bare LF is part of the line: only CRLF ends one. */
	l = rd_line(&r, &len);
	CHECK(l && len == 7 && !memcmp(l, "bare\nlf", 7));
	/* No CRLF in what is left: no line, and the cursor turns bad (a line is never cut). */
	CHECK(rd_line(&r, &len) == NULL);
	CHECK(r.bad);
	CHECK(rd_line(&r, &len) == NULL);
	/*
	 * An empty buffer's reader has no pointer at all (buf_head of an unused buf): reading it
	 * is no line and no bytes, without arithmetic on NULL (UBSan in the san build; fuzz_h2x).
	 */
	struct rd e = rd_make(NULL, 0);
	CHECK(rd_line(&e, &len) == NULL);
	e = rd_make(NULL, 0);
	CHECK(rd_bytes(&e, 0) == NULL && !e.bad);
}

static void test_put_le(void)
{
	struct buf b = { 0 };
	static const uint8_t want[] = {
		0xa5, /* u8 */
		0x34, 0x12, /* u16 */
		0xfe, 0xff, /* u16 high bit */
		0x78, 0x56, 0x34, 0x12, /* u32 */
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x81, /* u64 */
	};

	CHECK_EQ_INT(buf_put_u8(&b, 0xa5), 0);
	CHECK_EQ_INT(buf_put_u16(&b, 0x1234), 0);
	CHECK_EQ_INT(buf_put_u16(&b, 0xfffe), 0);
	CHECK_EQ_INT(buf_put_u32(&b, 0x12345678), 0);
	CHECK_EQ_INT(buf_put_u64(&b, 0x8102030405060708ull), 0);
	CHECK_BUF(&b, want, sizeof(want));
	buf_fini(&b);
}

static void test_rd_in_bounds(void)
{
	static const uint8_t in[] = {
		0x7f, 0x02, 0x01, 0x04, 0x03, 0x02, 0x81, 0x08, 0x07,
		0x06, 0x05, 0x04, 0x03, 0x02, 0xf1, 'a',  'b',	'c',
	};
	struct rd r = rd_make(in, sizeof(in));

	CHECK_EQ_INT(rd_left(&r), sizeof(in));
	CHECK_EQ_INT(rd_u8(&r), 0x7f);
	CHECK_EQ_INT(rd_u16(&r), 0x0102);
	CHECK(rd_u32(&r) == 0x81020304u);
	CHECK(rd_u64(&r) == 0xf102030405060708ull);
	CHECK_EQ_INT(rd_left(&r), 3);
	const uint8_t *p = rd_bytes(&r, 3);
	CHECK(p == in + 15);
	CHECK_EQ_INT(rd_left(&r), 0);
	CHECK(!r.bad);
	/* Zero bytes at the very end is still in bounds. */
	CHECK(rd_bytes(&r, 0) != NULL);
	CHECK(!r.bad);
}

static void test_rd_out_of_bounds(void)
{
	static const uint8_t in[] = { 1, 2, 3 };
	struct rd r = rd_make(in, sizeof(in));

	CHECK_EQ_INT(rd_u8(&r), 1);
	CHECK_EQ_INT(rd_u32(&r), 0); /* only 2 bytes left */
	CHECK(r.bad);
	CHECK_EQ_INT(r.off, 1); /* a failed read does not advance */
	CHECK_EQ_INT(rd_left(&r), 0);
	/* Sticky: the two bytes that are there can no longer be read. */
	CHECK_EQ_INT(rd_u8(&r), 0);
	CHECK_EQ_INT(rd_u16(&r), 0);
	CHECK(rd_bytes(&r, 0) == NULL);
	CHECK(r.bad);
}

static void test_rd_each_width(void)
{
	static const uint8_t in[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	struct rd r;

	/* One byte short of each width fails and yields 0. */
	r = rd_make(in, 0);
	CHECK_EQ_INT(rd_u8(&r), 0);
	CHECK(r.bad);
	r = rd_make(in, 1);
	CHECK_EQ_INT(rd_u16(&r), 0);
	CHECK(r.bad);
	r = rd_make(in, 3);
	CHECK_EQ_INT(rd_u32(&r), 0);
	CHECK(r.bad);
	r = rd_make(in, 7);
	CHECK(rd_u64(&r) == 0);
	CHECK(r.bad);

	/* Exactly the width succeeds. */
	r = rd_make(in, 8);
	CHECK(rd_u64(&r) == UINT64_MAX);
	CHECK(!r.bad);
	r = rd_make(in, 4);
	CHECK(rd_u32(&r) == UINT32_MAX);
	CHECK(!r.bad);

	/* A huge length must not wrap around the bounds check. */
	r = rd_make(in, sizeof(in));
	rd_u8(&r);
	CHECK(rd_bytes(&r, SIZE_MAX) == NULL);
	CHECK(r.bad);
	r = rd_make(in, sizeof(in));
	CHECK(rd_bytes(&r, 9) == NULL);
	CHECK(r.bad);
}

static void test_le_helpers(void)
{
	uint8_t p[4];

	le16_put(p, 0xbeef);
	CHECK(p[0] == 0xef && p[1] == 0xbe);
	CHECK_EQ_INT(le16_get(p), 0xbeef);
	le32_put(p, 0x80a0c0e1u);
	CHECK(p[0] == 0xe1 && p[1] == 0xc0 && p[2] == 0xa0 && p[3] == 0x80);
	CHECK(le32_get(p) == 0x80a0c0e1u);
	le32_put(p, UINT32_MAX);
	CHECK(le32_get(p) == UINT32_MAX);
	le16_put(p, 0xffff);
	CHECK_EQ_INT(le16_get(p), 0xffff);
	CHECK(p[2] == 0xff); /* le16_put touches two bytes only */
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_append_consume);
	CHECK_RUN(test_append_empty);
	CHECK_RUN(test_reserve_growth);
	CHECK_RUN(test_reserve_slide);
	CHECK_RUN(test_reserve_overflow);
	CHECK_RUN(test_put_le);
	CHECK_RUN(test_sticky_writer_error);
	CHECK_RUN(test_put_be);
	CHECK_RUN(test_rd_sub);
	CHECK_RUN(test_rd_line);
	CHECK_RUN(test_rd_in_bounds);
	CHECK_RUN(test_rd_out_of_bounds);
	CHECK_RUN(test_rd_each_width);
	CHECK_RUN(test_le_helpers);
	return check_summary();
}
