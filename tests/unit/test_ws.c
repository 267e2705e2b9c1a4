/* SPDX-License-Identifier: MIT */
/*
 * WebSocket frames (ws.h): the parser's lengths (7, 16, 64 bits), masking, control frames and
 * the frames it refuses; the relay's re-framing through a filter that changes lengths, with
 * fragmented messages and control frames between fragments, fed in every split.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "net/secrets.h"
#include "net/ws.h"

static const uint8_t KEY[4] = { 0x12, 0x34, 0x56, 0x78 };

/* A frame as a client (masked) or server sends it. */
static void frame(struct buf *b, bool fin, uint8_t op, const char *s, size_t n, bool masked)
{
	ws_frame_put(b, fin, op, (const uint8_t *)s, n, masked ? KEY : NULL);
}

/* What a peer reads from a stream of frames: messages and control frames, one line each. */
static bool decode(const uint8_t *p, size_t n, bool masked, struct buf *text)
{
	struct ws_parser ps;
	ws_parser_init(&ps, masked);
	struct buf msg = { 0 };
	size_t at = 0;
	while (at < n) {
		struct ws_piece pc;
		size_t k;
		struct buf pl = { 0 };
		if (ws_parse(&ps, p + at, n - at, &k, &pc, &pl) < 0) {
			buf_fini(&pl);
			buf_fini(&msg);
			return false;
		}
		at += k;
		if (pc.kind == WS_PIECE_CONTROL) {
			char h[8];
			int z = snprintf(h, sizeof(h), "c%u:", pc.op);
			buf_append(text, h, (size_t)z);
			buf_append(text, buf_head(&pl), buf_used(&pl));
			buf_append(text, "\n", 1);
		} else if (pc.kind == WS_PIECE_DATA) {
			buf_append(&msg, buf_head(&pl), buf_used(&pl));
			if (pc.last) {
				char h[8];
				int z = snprintf(h, sizeof(h), "m%u:", pc.op);
				buf_append(text, h, (size_t)z);
				buf_append(text, buf_head(&msg), buf_used(&msg));
				buf_append(text, "\n", 1);
				msg.off = msg.len = 0;
			}
		}
		buf_fini(&pl);
	}
	bool whole = !ps.in_frame && !ps.nhdr && !ps.in_msg;
	buf_fini(&msg);
	return whole;
}

/* How many frames p[0..n) holds (client frames). */
static unsigned frames_in(const uint8_t *p, size_t n)
{
	struct ws_parser ps;
	ws_parser_init(&ps, true);
	unsigned k = 0;
	size_t at = 0;
	while (at < n) {
		struct ws_piece pc;
		size_t used;
		struct buf pl = { 0 };
		if (ws_parse(&ps, p + at, n - at, &used, &pc, &pl) < 0)
			at = n;
		at += used;
		k += pc.kind == WS_PIECE_CONTROL || (pc.kind == WS_PIECE_DATA && pc.frame_end);
		buf_fini(&pl);
	}
	return k;
}

/* A filter that turns every "x" into "XYZ" (lengths change), split-proof on its own. */
static int grow(void *ctx, bool control, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	(void)ctx;
	(void)control;
	(void) final;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == 'x')
			buf_append(out, "XYZ", 3);
		else
			buf_put_u8(out, p[i]);
	}
	return 0;
}

static void test_lengths_and_masking(void)
{
	size_t sizes[] = { 0, 1, 125, 126, 65535, 65536, 70000 };
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];
		char *s = malloc(n + 1);
		memset(s, 'a', n);
		for (size_t j = 0; j < n; j += 7)
			s[j] = (char)('a' + j % 26);
		for (int masked = 0; masked < 2; masked++) {
			struct buf b = { 0 }, t = { 0 }, want = { 0 };
			frame(&b, true, WS_OP_BINARY, s, n, masked);
			size_t hl = n < 126 ? 2 : n < 65536 ? 4 : 10;
			CHECK_EQ_INT((int)(buf_used(&b) - n), (int)(hl + (masked ? 4 : 0)));
			CHECK(decode(buf_head(&b), buf_used(&b), masked, &t));
			buf_append(&want, "m2:", 3);
			buf_append(&want, s, n);
			buf_append(&want, "\n", 1);
			CHECK(buf_used(&t) == buf_used(&want) &&
			      !memcmp(buf_head(&t), buf_head(&want), buf_used(&t)));
			buf_fini(&b);
			buf_fini(&t);
			buf_fini(&want);
		}
		free(s);
	}
}

/* The close code and reason a refused stream gets. */
static int refused(const uint8_t *p, size_t n, bool from_client, const char **why)
{
	struct ws_parser ps;
	ws_parser_init(&ps, from_client);
	struct buf pl = { 0 };
	size_t at = 0;
	int r = 0;
	while (at < n && r == 0) {
		struct ws_piece pc;
		size_t k;
		r = ws_parse(&ps, p + at, n - at, &k, &pc, &pl);
		at += k;
	}
	buf_fini(&pl);
	*why = ps.why;
	return r < 0 ? ps.code : 0;
}

static void test_refusals(void)
{
	const char *why;
	struct {
		const char *bytes;
		size_t n;
		bool client;
		int code;
		const char *why;
	} cases[] = {
		{ "\x81\x01x", 3, true, 1002, "unmasked" },
		{ "\x81\x81\0\0\0\0x", 7, false, 1002, "masked" },
		{ "\xc1\x00", 2, false, 1002, "RSV" },
		{ "\x83\x00", 2, false, 1002, "opcode" },
		{ "\x09\x00", 2, false, 1002, "fragmented control" },
		{ "\x89\x7e\x00\x7e", 4, false, 1002, "longer than 125" },
		{ "\x88\x01\x03", 3, false, 1002, "one byte" },
		{ "\x88\x02\x03\xed", 4, false, 1002, "invalid code" },
		{ "\x80\x00", 2, false, 1002, "continuation" },
		{ "\x01\x00\x81\x00", 4, false, 1002, "inside a fragmented" },
		{ "\x82\x7e\x00\x10", 4, false, 1002, "shortest" },
		{ "\x82\x7f\0\0\0\0\0\0\xff\xff", 10, false, 1002, "shortest" },
		{ "\x82\x7f\x80\0\0\0\0\0\0\0", 10, false, 1002, "2^63" },
		{ "\x82\x7f\0\0\0\0\x10\0\0\0", 10, false, 1009, "64 MiB" },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int code =
		    refused((const uint8_t *)cases[i].bytes, cases[i].n, cases[i].client, &why);
		if (!CHECK_EQ_INT(code, cases[i].code))
			fprintf(stderr, "  case %u\n", i);
		else
			CHECK(why && strstr(why, cases[i].why));
	}
	/* Fragments adding up past the bound: refused at the frame that crosses it. */
	struct buf b = { 0 };
	uint8_t h[10] = { 0x02, 127, 0, 0, 0, 0, 0x03, 0xff, 0xff, 0xff };
	buf_append(&b, h, 10);
	struct ws_parser ps;
	ws_parser_init(&ps, false);
	struct ws_piece pc;
	size_t k;
	struct buf pl = { 0 };
	CHECK_EQ_INT(ws_parse(&ps, buf_head(&b), 10, &k, &pc, &pl), 0);
	ps.left = 0; /* as if its payload had passed */
	ps.in_frame = false;
	uint8_t h2[4] = { 0x80, 126, 0x01, 0x00 };
	CHECK_EQ_INT(ws_parse(&ps, h2, 4, &k, &pc, &pl), -EMSGSIZE);
	CHECK_EQ_INT(ps.code, WS_CLOSE_TOO_BIG);
	buf_fini(&b);
	buf_fini(&pl);
	/* Good close frames pass: no payload, a code, a code and a reason. */
	CHECK_EQ_INT(
	    refused((const uint8_t *)"\x88\x00\x88\x02\x03\xe8\x88\x04\x0f\xa0hi", 12, false, &why),
	    0);
}

/* A client's stream: a fragmented text message with a ping between its fragments, a close. */
static void client_stream(struct buf *b)
{
	frame(b, false, WS_OP_TEXT, "ab x", 4, true);
	frame(b, true, WS_OP_PING, "px", 2, true);
	frame(b, false, WS_OP_CONT, "", 0, true);
	frame(b, true, WS_OP_CONT, "cx d", 4, true);
	frame(b, true, WS_OP_BINARY, "xx", 2, true);
	frame(b, true, WS_OP_CLOSE, "\x03\xe8x", 3, true);
}

static void test_relay_every_split(void)
{
	struct buf in = { 0 };
	client_stream(&in);
	const char *want = "c9:pXYZ\nm1:ab XYZcXYZ d\nm2:XYZXYZ\nc8:\x03\xe8XYZ\n";
	struct ws_filter f = { grow, NULL };
	size_t n = buf_used(&in);
	for (size_t a = 0; a <= n; a++) {
		for (size_t b = a; b <= n; b += 3) {
			struct ws_relay r;
			ws_relay_init(&r, true);
			struct buf out = { 0 }, t = { 0 };
			int e = ws_relay_feed(&r, buf_head(&in), a, &f, &out);
			if (!e)
				e = ws_relay_feed(&r, buf_head(&in) + a, b - a, &f, &out);
			if (!e)
				e = ws_relay_feed(&r, buf_head(&in) + b, n - b, &f, &out);
			bool ok = e == 0 && decode(buf_head(&out), buf_used(&out), true, &t) &&
				  buf_used(&t) == strlen(want) &&
				  !memcmp(buf_head(&t), want, strlen(want));
			if (!CHECK(ok)) {
				fprintf(stderr, "  split %zu %zu: %.*s\n", a, b, (int)buf_used(&t),
					(const char *)buf_head(&t));
				a = n; /* one report */
			}
			if (!e && !CHECK_EQ_INT(frames_in(buf_head(&out), buf_used(&out)), 5))
				a = n; /* a frame for each that came, the empty one dropped */
			ws_relay_fini(&r);
			buf_fini(&out);
			buf_fini(&t);
		}
	}
	buf_fini(&in);
}

/* A frame larger than WS_RELAY_HOLD goes out in fragments of at most that plus a piece. */
static void test_relay_big_frame(void)
{
	size_t n = 3 * WS_RELAY_HOLD + 100;
	char *s = malloc(n);
	memset(s, 'a', n);
	struct buf in = { 0 }, out = { 0 }, t = { 0 };
	frame(&in, true, WS_OP_BINARY, s, n, true);
	struct ws_filter f = { grow, NULL };
	struct ws_relay r;
	ws_relay_init(&r, true);
	for (size_t at = 0; at < buf_used(&in); at += 16384) {
		size_t k = buf_used(&in) - at < 16384 ? buf_used(&in) - at : 16384;
		CHECK_EQ_INT(ws_relay_feed(&r, buf_head(&in) + at, k, &f, &out), 0);
		CHECK(buf_used(&r.pend) < WS_RELAY_HOLD);
	}
	CHECK_EQ_INT(frames_in(buf_head(&out), buf_used(&out)), 3); /* 80 KiB, 80 KiB, the rest */
	CHECK(decode(buf_head(&out), buf_used(&out), true, &t));
	CHECK_EQ_INT((int)buf_used(&t), (int)n + 4);
	ws_relay_fini(&r);
	buf_fini(&in);
	buf_fini(&out);
	buf_fini(&t);
	free(s);
}

/* Frames toward a server are masked, each with its own key; toward a client never. */
static void test_relay_masks(void)
{
	struct buf in = { 0 }, out = { 0 };
	frame(&in, true, WS_OP_TEXT, "aaaa", 4, true);
	frame(&in, true, WS_OP_TEXT, "aaaa", 4, true);
	struct ws_filter f = { grow, NULL };
	struct ws_relay r;
	ws_relay_init(&r, true);
	CHECK_EQ_INT(ws_relay_feed(&r, buf_head(&in), buf_used(&in), &f, &out), 0);
	CHECK_EQ_INT((int)buf_used(&out), 20);
	const uint8_t *o = buf_head(&out);
	CHECK(o[1] & 0x80 && o[11] & 0x80);
	CHECK(memcmp(o + 2, o + 12, 4) != 0); /* fresh keys (1 in 2^32 to fail) */
	buf_fini(&in);
	buf_fini(&out);
	/* Server frames in, unmasked out. */
	frame(&in, true, WS_OP_TEXT, "x", 1, false);
	ws_relay_fini(&r);
	ws_relay_init(&r, false);
	CHECK_EQ_INT(ws_relay_feed(&r, buf_head(&in), buf_used(&in), &f, &out), 0);
	CHECK_EQ_INT((int)buf_used(&out), 5);
	CHECK(!memcmp(buf_head(&out), "\x81\x03XYZ", 5));
	ws_relay_fini(&r);
	buf_fini(&in);
	buf_fini(&out);
}

/* A filter's refusal stops the relay; a control frame that grows past 125 is refused. */
static int refuse_y(void *ctx, bool control, const uint8_t *p, size_t n, bool final,
		    struct buf *out)
{
	(void)ctx;
	(void)control;
	(void) final;
	if (memchr(p, 'y', n))
		return -EPERM;
	for (size_t i = 0; i < n; i++)
		for (int j = 0; j < 10; j++)
			buf_put_u8(out, p[i]);
	return 0;
}

static void test_relay_refusals(void)
{
	struct buf in = { 0 }, out = { 0 };
	struct ws_filter f = { refuse_y, NULL };
	struct ws_relay r;
	frame(&in, true, WS_OP_TEXT, "ab", 2, false);
	frame(&in, true, WS_OP_TEXT, "y", 1, false);
	ws_relay_init(&r, false);
	CHECK_EQ_INT(ws_relay_feed(&r, buf_head(&in), buf_used(&in), &f, &out), -EPERM);
	CHECK_EQ_INT((int)buf_used(&out), 22); /* the first message went out */
	buf_fini(&in);
	buf_fini(&out);
	frame(&in, true, WS_OP_PING, "0123456789abc", 13, false);
	ws_relay_fini(&r);
	ws_relay_init(&r, false);
	CHECK_EQ_INT(ws_relay_feed(&r, buf_head(&in), buf_used(&in), &f, &out), -EMSGSIZE);
	CHECK_EQ_INT(r.ps.code, WS_CLOSE_TOO_BIG);
	CHECK_EQ_INT((int)buf_used(&out), 0);
	/* The close frame the proxy sends: code and reason, masked toward a server. */
	buf_fini(&out);
	ws_relay_fini(&r);
	ws_relay_init(&r, true);
	CHECK_EQ_INT(ws_relay_close(&r, WS_CLOSE_POLICY, "leak", &out), 0);
	struct buf t = { 0 };
	CHECK(decode(buf_head(&out), buf_used(&out), true, &t));
	CHECK(buf_used(&t) == 10 && !memcmp(buf_head(&t), "c8:\x03\xf0leak\n", 10));
	ws_relay_fini(&r);
	buf_fini(&in);
	buf_fini(&out);
	buf_fini(&t);
}

/*
 * The proxy's filters: a placeholder split across fragments (and a ping between them) gets the
 * value toward its host, refuses the connection toward another; values are scrubbed toward the
 * guest across fragments.
 */
static void test_relay_secrets(void)
{
	static struct secrets ss;
	char err[200];
	CHECK_EQ_INT(secrets_add(&ss, "K", (const uint8_t *)"real-value-1", 12, "api.test", err,
				 sizeof(err)),
		     0);
	const char *ph = ss.s[0].placeholder;
	struct buf in = { 0 }, out = { 0 }, t = { 0 };
	frame(&in, false, WS_OP_TEXT, ph, 20, true);
	frame(&in, true, WS_OP_PING, ph, strlen(ph), true);
	frame(&in, true, WS_OP_CONT, ph + 20, strlen(ph) - 20, true);
	for (int host = 0; host < 2; host++) {
		struct ws_relay r;
		struct ws_secrets w;
		struct scrub sc = { 0 };
		ws_relay_init(&r, true);
		ws_secrets_init(&w, &ss, host ? "other.test" : "api.test", &sc);
		struct ws_filter f = { ws_secrets_up, &w };
		int e = 0;
		for (size_t i = 0; i < buf_used(&in) && !e; i++) /* a byte at a time */
			e = ws_relay_feed(&r, buf_head(&in) + i, 1, &f, &out);
		if (host) {
			CHECK_EQ_INT(e, -EPERM);
			CHECK(w.leak == &ss.s[0]);
		} else {
			CHECK_EQ_INT(e, 0);
			CHECK(decode(buf_head(&out), buf_used(&out), true, &t));
			CHECK(buf_used(&t) == 32 &&
			      !memcmp(buf_head(&t), "c9:real-value-1\nm1:real-value-1\n", 32));
		}
		ws_secrets_fini(&w);
		ws_relay_fini(&r);
		scrub_fini(&sc);
		buf_fini(&out);
		buf_fini(&t);
	}
	buf_fini(&in);
	/* Toward the guest: the value split across two fragments comes out as the placeholder. */
	frame(&in, false, WS_OP_TEXT, "v=real-va", 9, false);
	frame(&in, true, WS_OP_CONT, "lue-1!", 6, false);
	struct ws_relay r;
	struct ws_secrets w;
	struct scrub sc = { 0 };
	ws_relay_init(&r, false);
	ws_secrets_init(&w, &ss, "api.test", &sc);
	struct ws_filter f = { ws_secrets_down, &w };
	CHECK_EQ_INT(ws_relay_feed(&r, buf_head(&in), buf_used(&in), &f, &out), 0);
	CHECK(decode(buf_head(&out), buf_used(&out), false, &t));
	char want[100];
	snprintf(want, sizeof(want), "m1:v=%s!\n", ph);
	CHECK(buf_used(&t) == strlen(want) && !memcmp(buf_head(&t), want, strlen(want)));
	ws_secrets_fini(&w);
	ws_relay_fini(&r);
	scrub_fini(&sc);
	buf_fini(&in);
	buf_fini(&out);
	buf_fini(&t);
	secrets_clear(&ss);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_lengths_and_masking);
	CHECK_RUN(test_refusals);
	CHECK_RUN(test_relay_every_split);
	CHECK_RUN(test_relay_big_frame);
	CHECK_RUN(test_relay_masks);
	CHECK_RUN(test_relay_refusals);
	CHECK_RUN(test_relay_secrets);
	return check_summary();
}
