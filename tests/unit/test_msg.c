/* SPDX-License-Identifier: MIT */
/* Unit tests for src/proto/msg.c: the TLV encoding of OPEN and CTL payloads. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "proto/exec_req.h"
#include "proto/msg.h"

/* The bytes waiting in a struct buf are exactly p[0..n) (no buf_head() of a fresh buf). */
#define CHECK_BUF(b, p, n) CHECK_EQ_MEM(buf_used(b) ? buf_head(b) : NULL, buf_used(b), (p), (n))

/* Read the next TLV and check its tag; returns whether it was there. */
static int next_tag(struct rd *r, uint16_t want, struct rd *val)
{
	uint16_t tag = 0;
	if (!CHECK_EQ_INT(msg_next(r, &tag, val), 1))
		return 0;
	return CHECK_EQ_INT(tag, want);
}

static void test_encoding(void)
{
	struct buf b = { 0 };
	static const uint8_t want[] = {
		0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0xcd, 0xab, /* u16 tag 0x0102 = 0xabcd */
		0x11, 0x00, 0x02, 0x00, 0x00, 0x00, 'h',  'i', /* str tag 0x11 = "hi" */
		0xff, 0xff, 0x00, 0x00, 0x00, 0x00, /* empty tag 0xffff */
	};

	CHECK_EQ_INT(msg_put_u16(&b, 0x0102, 0xabcd), 0);
	CHECK_EQ_INT(msg_put_str(&b, 0x11, "hi"), 0);
	CHECK_EQ_INT(msg_put_tlv(&b, 0xffff, NULL, 0), 0);
	CHECK_BUF(&b, want, sizeof(want));
	buf_fini(&b);
}

static void test_round_trip(void)
{
	struct buf b = { 0 };
	struct rd val;
	char *s = NULL;
	uint8_t u8 = 0;
	uint16_t u16 = 0;
	uint32_t u32 = 0;
	uint64_t u64 = 0;

	CHECK_EQ_INT(msg_put_u16(&b, 0, CTL_HELLO), 0);
	CHECK_EQ_INT(msg_put_u32(&b, T_VERSION, 0x80000001u), 0);
	CHECK_EQ_INT(msg_put_u64(&b, T_BOOT_NS, 0xfedcba9876543210ull), 0);
	CHECK_EQ_INT(msg_put_str(&b, T_ARGV, "/bin/sh"), 0);
	CHECK_EQ_INT(msg_put_str(&b, T_ARGV, ""), 0);
	CHECK_EQ_INT(msg_put_u8(&b, T_TTY, 0xff), 0);
	CHECK_EQ_INT(msg_put_u16(&b, T_ROWS, 0xffff), 0);
	CHECK_EQ_INT(msg_put_tlv(&b, 0x7777, "\0\1\2", 3), 0); /* unknown tag, binary value */

	struct rd r = rd_make(buf_head(&b), buf_used(&b));
	if (next_tag(&r, 0, &val)) {
		CHECK_EQ_INT(msg_get_u16(&val, &u16), 0);
		CHECK_EQ_INT(u16, CTL_HELLO);
	}
	if (next_tag(&r, T_VERSION, &val)) {
		CHECK_EQ_INT(msg_get_u32(&val, &u32), 0);
		CHECK(u32 == 0x80000001u);
	}
	if (next_tag(&r, T_BOOT_NS, &val)) {
		CHECK_EQ_INT(msg_get_u64(&val, &u64), 0);
		CHECK(u64 == 0xfedcba9876543210ull);
	}
	if (next_tag(&r, T_ARGV, &val) && CHECK_EQ_INT(msg_dup_str(&val, MSG_MAX_STR, &s), 0)) {
		CHECK(strcmp(s, "/bin/sh") == 0);
		free(s);
		s = NULL;
	}
	if (next_tag(&r, T_ARGV, &val) && CHECK_EQ_INT(msg_dup_str(&val, MSG_MAX_STR, &s), 0)) {
		CHECK(s != NULL && s[0] == 0);
		free(s);
		s = NULL;
	}
	if (next_tag(&r, T_TTY, &val)) {
		CHECK_EQ_INT(msg_get_u8(&val, &u8), 0);
		CHECK_EQ_INT(u8, 0xff);
	}
	if (next_tag(&r, T_ROWS, &val)) {
		CHECK_EQ_INT(msg_get_u16(&val, &u16), 0);
		CHECK_EQ_INT(u16, 0xffff);
	}
	if (next_tag(&r, 0x7777, &val)) {
		CHECK_EQ_MEM(val.p + val.off, rd_left(&val), "\0\1\2", 3);
	}
	/* The end is reported as 0, repeatedly. */
	uint16_t tag = 0;
	CHECK_EQ_INT(msg_next(&r, &tag, &val), 0);
	CHECK_EQ_INT(msg_next(&r, &tag, &val), 0);
	CHECK(!r.bad);
	buf_fini(&b);
}

/* Every cut of a valid encoding either ends on a TLV boundary (0) or is -EPROTO. */
static void test_truncated(void)
{
	struct buf b = { 0 };

	CHECK_EQ_INT(msg_put_str(&b, T_HOSTNAME, "box"), 0);
	size_t first = buf_used(&b);
	CHECK_EQ_INT(msg_put_u32(&b, T_ERRNO, 5), 0);
	size_t total = buf_used(&b);

	unsigned good = 0, wrong = 0;
	for (size_t cut = 0; cut <= total; cut++) {
		struct rd r = rd_make(buf_head(&b), cut);
		struct rd val;
		uint16_t tag;
		int n = 0, ret;
		while ((ret = msg_next(&r, &tag, &val)) == 1)
			n++;
		if (cut == 0 || cut == first || cut == total) {
			int want_n = cut == 0 ? 0 : cut == first ? 1 : 2;
			if (ret == 0 && n == want_n)
				good++;
			else
				wrong++;
		} else {
			int want_n = cut < first ? 0 : 1;
			if (ret == -EPROTO && n == want_n)
				good++;
			else
				wrong++;
		}
	}
	CHECK_EQ_INT(good, total + 1);
	CHECK_EQ_INT(wrong, 0);
	buf_fini(&b);
}

static void test_garbage(void)
{
	struct rd r, val;
	uint16_t tag;

	/* Header shorter than 6 bytes. */
	static const uint8_t one[] = { 0x01 };
	r = rd_make(one, sizeof(one));
	CHECK_EQ_INT(msg_next(&r, &tag, &val), -EPROTO);
	/* Once bad, the reader stays bad (never reports a clean end). */
	CHECK_EQ_INT(msg_next(&r, &tag, &val), -EPROTO);

	/* A length far past the end, including one that would wrap a 32-bit offset. */
	static const uint8_t huge[] = { 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 'x', 'y' };
	r = rd_make(huge, sizeof(huge));
	CHECK_EQ_INT(msg_next(&r, &tag, &val), -EPROTO);
	static const uint8_t over[] = { 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 'x', 'y' };
	r = rd_make(over, sizeof(over));
	CHECK_EQ_INT(msg_next(&r, &tag, &val), -EPROTO);

	/* A valid TLV followed by trailing garbage: first read works, then -EPROTO. */
	static const uint8_t trail[] = { 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 'x', 0xaa, 0xbb };
	r = rd_make(trail, sizeof(trail));
	CHECK_EQ_INT(msg_next(&r, &tag, &val), 1);
	CHECK_EQ_INT(tag, 4);
	CHECK_EQ_INT(rd_left(&val), 1);
	CHECK_EQ_INT(msg_next(&r, &tag, &val), -EPROTO);

	/* The value cursor is bounded by the TLV, not by the rest of the input. */
	static const uint8_t two[] = { 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 'a',
				       0x02, 0x00, 0x00, 0x00, 0x00, 0x00 };
	r = rd_make(two, sizeof(two));
	CHECK_EQ_INT(msg_next(&r, &tag, &val), 1);
	CHECK_EQ_INT(rd_left(&val), 1);
	rd_u8(&val);
	CHECK_EQ_INT(rd_u8(&val), 0);
	CHECK(val.bad);
	CHECK_EQ_INT(msg_next(&r, &tag, &val), 1);
	CHECK_EQ_INT(tag, 2);
	CHECK_EQ_INT(rd_left(&val), 0);
	CHECK_EQ_INT(msg_next(&r, &tag, &val), 0);
}

static void test_dup_str(void)
{
	struct rd val;
	char *s = NULL;

	val = rd_make("a\0b", 3);
	CHECK_EQ_INT(msg_dup_str(&val, MSG_MAX_STR, &s), -EPROTO);
	CHECK(s == NULL);
	val = rd_make("abc\0", 4);
	CHECK_EQ_INT(msg_dup_str(&val, MSG_MAX_STR, &s), -EPROTO);
	val = rd_make("\0", 1);
	CHECK_EQ_INT(msg_dup_str(&val, MSG_MAX_STR, &s), -EPROTO);
	CHECK(s == NULL);

	val = rd_make("abcdef", 6);
	CHECK_EQ_INT(msg_dup_str(&val, 5, &s), -E2BIG);
	CHECK(s == NULL);
	/* Exactly max is accepted and NUL-terminated. */
	val = rd_make("abcdef", 6);
	if (CHECK_EQ_INT(msg_dup_str(&val, 6, &s), 0)) {
		CHECK_EQ_INT(strlen(s), 6);
		CHECK(strcmp(s, "abcdef") == 0);
		CHECK_EQ_INT(rd_left(&val), 0); /* consumed */
		free(s);
		s = NULL;
	}

	/* MSG_MAX_STR itself is fine, one more is not. */
	static char big[MSG_MAX_STR + 1];
	memset(big, 'z', sizeof(big));
	val = rd_make(big, MSG_MAX_STR + 1);
	CHECK_EQ_INT(msg_dup_str(&val, MSG_MAX_STR, &s), -E2BIG);
	val = rd_make(big, MSG_MAX_STR);
	if (CHECK_EQ_INT(msg_dup_str(&val, MSG_MAX_STR, &s), 0)) {
		CHECK_EQ_INT(strlen(s), MSG_MAX_STR);
		free(s);
		s = NULL;
	}

	val = rd_make("", 0);
	if (CHECK_EQ_INT(msg_dup_str(&val, 0, &s), 0)) {
		CHECK(s[0] == 0);
		free(s);
	}
}

static void test_fixed_width(void)
{
	static const uint8_t nine[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	struct rd val;
	uint8_t u8 = 0x5a;
	uint16_t u16 = 0x5a5a;
	uint32_t u32 = 0x5a5a5a5a;
	uint64_t u64 = 0x5a5a5a5a5a5a5a5aull;

	/* One short and one long for each width: rejected, output untouched. */
	val = rd_make(nine, 0);
	CHECK_EQ_INT(msg_get_u8(&val, &u8), -EPROTO);
	val = rd_make(nine, 2);
	CHECK_EQ_INT(msg_get_u8(&val, &u8), -EPROTO);
	CHECK_EQ_INT(u8, 0x5a);
	val = rd_make(nine, 1);
	CHECK_EQ_INT(msg_get_u16(&val, &u16), -EPROTO);
	val = rd_make(nine, 3);
	CHECK_EQ_INT(msg_get_u16(&val, &u16), -EPROTO);
	CHECK_EQ_INT(u16, 0x5a5a);
	val = rd_make(nine, 3);
	CHECK_EQ_INT(msg_get_u32(&val, &u32), -EPROTO);
	val = rd_make(nine, 5);
	CHECK_EQ_INT(msg_get_u32(&val, &u32), -EPROTO);
	CHECK(u32 == 0x5a5a5a5a);
	val = rd_make(nine, 7);
	CHECK_EQ_INT(msg_get_u64(&val, &u64), -EPROTO);
	val = rd_make(nine, 9);
	CHECK_EQ_INT(msg_get_u64(&val, &u64), -EPROTO);
	CHECK(u64 == 0x5a5a5a5a5a5a5a5aull);

	/* Exact widths are read little-endian. */
	val = rd_make(nine, 1);
	CHECK_EQ_INT(msg_get_u8(&val, &u8), 0);
	CHECK_EQ_INT(u8, 1);
	val = rd_make(nine, 2);
	CHECK_EQ_INT(msg_get_u16(&val, &u16), 0);
	CHECK_EQ_INT(u16, 0x0201);
	val = rd_make(nine, 4);
	CHECK_EQ_INT(msg_get_u32(&val, &u32), 0);
	CHECK(u32 == 0x04030201);
	val = rd_make(nine, 8);
	CHECK_EQ_INT(msg_get_u64(&val, &u64), 0);
	CHECK(u64 == 0x0807060504030201ull);

	/* A cursor that went bad is not a valid value of any width. */
	val = rd_make(nine, 4);
	CHECK(rd_bytes(&val, 5) == NULL);
	CHECK_EQ_INT(msg_get_u32(&val, &u32), -EPROTO);
}

/* The one exec-request codec: what the CLI and the host encode is what the supervisor and the
 * agent decode, within the limits. */
static void test_exec_round_trip(void)
{
	char *argv[] = { "sh", "-c", "echo hi", NULL }, *env[] = { "A=1", "B=", NULL };
	struct exec_request in = { .argv = argv,
				   .env = env,
				   .cwd = "/tmp",
				   .user = "1000:1000",
				   .stdin_on = true,
				   .tty = true,
				   .rows = 40,
				   .cols = 120,
				   .timeout_s = 7 };
	struct buf b = { 0 };
	CHECK_EQ_INT(exec_request_encode(&in, &b), 0);
	struct rd r = rd_make(buf_head(&b), buf_used(&b));
	struct exec_request out;
	if (!CHECK_EQ_INT(exec_request_decode(&r, &out), 0))
		return;
	CHECK_EQ_INT(out.argc, 3);
	CHECK_EQ_INT(out.envc, 2);
	CHECK(!strcmp(out.argv[0], "sh") && !strcmp(out.argv[2], "echo hi") && !out.argv[3]);
	CHECK(!strcmp(out.env[0], "A=1") && !strcmp(out.env[1], "B=") && !out.env[2]);
	CHECK(!strcmp(out.cwd, "/tmp") && !strcmp(out.user, "1000:1000"));
	CHECK(out.stdin_on && out.tty && out.rows == 40 && out.cols == 120 && out.timeout_s == 7);
	/* Room for the agent's defaults after the NULL. */
	out.env[out.envc++] = "PATH=/bin";
	out.env[out.envc++] = "HOME=/";
	out.env[out.envc] = NULL;
	exec_request_free(&out);
	CHECK(out.mem == NULL && out.argv == NULL);
	buf_fini(&b);

	/* Nothing optional: no cwd, user, tty, timeout; stdin off. */
	char *one[] = { "true", NULL };
	struct exec_request min = { .argv = one };
	CHECK_EQ_INT(exec_request_encode(&min, &b), 0);
	r = rd_make(buf_head(&b), buf_used(&b));
	CHECK_EQ_INT(exec_request_decode(&r, &out), 0);
	CHECK(out.argc == 1 && out.envc == 0 && !out.env[0] && !out.cwd && !out.user && !out.tty &&
	      !out.stdin_on && !out.timeout_s);
	exec_request_free(&out);
	buf_fini(&b);
}

static int decode_of(struct buf *b)
{
	struct rd r = rd_make(buf_head(b), buf_used(b));
	struct exec_request out;
	int k = exec_request_decode(&r, &out);
	if (k == 0)
		exec_request_free(&out);
	return k;
}

static void test_exec_bounds(void)
{
	struct buf b = { 0 };
	/* Too many arguments, too many variables. */
	for (int i = 0; i <= MSG_MAX_ARGS; i++)
		msg_put_str(&b, T_ARGV, "x");
	CHECK_EQ_INT(decode_of(&b), -E2BIG);
	buf_fini(&b);
	msg_put_str(&b, T_ARGV, "x");
	for (int i = 0; i <= MSG_MAX_ENV; i++)
		msg_put_str(&b, T_ENV, "K=v");
	CHECK_EQ_INT(decode_of(&b), -E2BIG);
	buf_fini(&b);
	/* Exactly at the limits is fine. */
	for (int i = 0; i < MSG_MAX_ARGS; i++)
		msg_put_str(&b, T_ARGV, "x");
	for (int i = 0; i < MSG_MAX_ENV; i++)
		msg_put_str(&b, T_ENV, "K=v");
	CHECK_EQ_INT(decode_of(&b), 0);
	buf_fini(&b);
	/* Oversized strings. */
	static char big[EXEC_MAX_ARG + 2];
	memset(big, 'a', sizeof(big) - 1);
	msg_put_str(&b, T_ARGV, big);
	CHECK_EQ_INT(decode_of(&b), -E2BIG);
	buf_fini(&b);
	big[EXEC_MAX_ARG] = 0;
	msg_put_str(&b, T_ARGV, big); /* exactly the limit */
	CHECK_EQ_INT(decode_of(&b), 0);
	big[MSG_MAX_STR + 1] = 0;
	msg_put_str(&b, T_CWD, big);
	CHECK_EQ_INT(decode_of(&b), -E2BIG);
	buf_fini(&b);
	big[EXEC_MAX_USER + 1] = 0;
	msg_put_str(&b, T_ARGV, "x");
	msg_put_str(&b, T_USER, big);
	CHECK_EQ_INT(decode_of(&b), -E2BIG);
	buf_fini(&b);
	/* No command, an empty command, a bad variable, a NUL, a wrong width, a cut TLV. */
	msg_put_str(&b, T_CWD, "/");
	CHECK_EQ_INT(decode_of(&b), -EINVAL);
	msg_put_str(&b, T_ARGV, "");
	CHECK_EQ_INT(decode_of(&b), -EINVAL);
	buf_fini(&b);
	msg_put_str(&b, T_ARGV, "x");
	msg_put_str(&b, T_ENV, "=v");
	CHECK_EQ_INT(decode_of(&b), -EINVAL);
	buf_fini(&b);
	msg_put_str(&b, T_ARGV, "x");
	msg_put_str(&b, T_ENV, "NOVALUE");
	CHECK_EQ_INT(decode_of(&b), -EINVAL);
	buf_fini(&b);
	msg_put_tlv(&b, T_ARGV, "a\0b", 3);
	CHECK_EQ_INT(decode_of(&b), -EPROTO);
	buf_fini(&b);
	msg_put_str(&b, T_ARGV, "x");
	msg_put_u16(&b, T_TTY, 1);
	CHECK_EQ_INT(decode_of(&b), -EPROTO);
	buf_fini(&b);
	msg_put_str(&b, T_ARGV, "x");
	b.len--;
	CHECK_EQ_INT(decode_of(&b), -EPROTO);
	buf_fini(&b);
	/* Unknown tags are skipped. */
	msg_put_u32(&b, 999, 5);
	msg_put_str(&b, T_ARGV, "x");
	CHECK_EQ_INT(decode_of(&b), 0);
	buf_fini(&b);
}

/* Resource limits: the values round-trip; a bad width, resource or order is refused. */
static void test_exec_rlimits(void)
{
	char *one[] = { "x", NULL };
	struct exec_request in = { .argv = one, .nrlimits = 2 };
	in.rlimits[0] = (struct exec_rlimit){ 7, 512, UINT64_MAX };
	in.rlimits[1] = (struct exec_rlimit){ 6, 77, 77 };
	struct buf b = { 0 };
	CHECK_EQ_INT(exec_request_encode(&in, &b), 0);
	struct rd r = rd_make(buf_head(&b), buf_used(&b));
	struct exec_request out;
	if (CHECK_EQ_INT(exec_request_decode(&r, &out), 0)) {
		CHECK_EQ_INT(out.nrlimits, 2);
		CHECK_EQ_INT(out.rlimits[0].resource, 7);
		CHECK(out.rlimits[0].soft == 512 && out.rlimits[0].hard == UINT64_MAX);
		CHECK(out.rlimits[1].resource == 6 && out.rlimits[1].soft == 77);
		exec_request_free(&out);
	}
	buf_fini(&b);
	uint8_t v[20] = { 0 };
	msg_put_str(&b, T_ARGV, "x");
	msg_put_tlv(&b, T_RLIMIT, v, 19);
	CHECK_EQ_INT(decode_of(&b), -EPROTO);
	buf_fini(&b);
	v[0] = EXEC_MAX_RLIMITS; /* no such resource */
	msg_put_str(&b, T_ARGV, "x");
	msg_put_tlv(&b, T_RLIMIT, v, 20);
	CHECK_EQ_INT(decode_of(&b), -EINVAL);
	buf_fini(&b);
	v[0] = 7;
	v[4] = 2; /* soft 2 above hard 0 */
	msg_put_str(&b, T_ARGV, "x");
	msg_put_tlv(&b, T_RLIMIT, v, 20);
	CHECK_EQ_INT(decode_of(&b), -EINVAL);
	buf_fini(&b);
	v[4] = 0;
	msg_put_str(&b, T_ARGV, "x");
	for (int i = 0; i <= EXEC_MAX_RLIMITS; i++)
		msg_put_tlv(&b, T_RLIMIT, v, 20);
	CHECK_EQ_INT(decode_of(&b), -E2BIG);
	buf_fini(&b);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_encoding);
	CHECK_RUN(test_round_trip);
	CHECK_RUN(test_truncated);
	CHECK_RUN(test_garbage);
	CHECK_RUN(test_dup_str);
	CHECK_RUN(test_fixed_width);
	CHECK_RUN(test_exec_round_trip);
	CHECK_RUN(test_exec_bounds);
	CHECK_RUN(test_exec_rlimits);
	return check_summary();
}
