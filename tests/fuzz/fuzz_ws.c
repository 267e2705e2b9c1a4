/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the WebSocket relay (ws.h) with the proxy's secret filters, fed in pieces cut at
 * fuzzed points. Input: 4 bytes choosing up to 4 cut points, an options byte (bit 0: the
 * guest's direction, masked frames through ws_secrets_up toward api.test; else the upstream's,
 * through ws_secrets_down; bit 1: the rest is raw bytes, else frame records), then the stream.
 * A frame record is: the frame's first byte (FIN, RSV, opcode: anything), a length byte, and
 * that many payload bytes, sent masked or not as the direction wants. In payloads and raw
 * bytes 0xF0 stands for the placeholder of a secret scoped to api.test, 0xF1 for one scoped
 * elsewhere, 0xF2 for the bare prefix SANDBOX_SECRET_, 0xF3 for the first secret's value.
 * Invariants: the split result equals the whole one (status, and the messages a peer reads);
 * what goes out is well-formed for the peer; toward the upstream no placeholder passes (the
 * one scoped elsewhere refuses the connection, -EPERM, and it is the one named); toward the
 * guest no value passes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/secrets.h"
#include "net/ws.h"

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

/* Frame records into wire bytes (masked with a fixed key when from the client). */
static void records(const uint8_t *p, size_t n, bool client, struct buf *out)
{
	static const uint8_t key[4] = { 0xa5, 0x5a, 0x0f, 0xf0 };
	size_t i = 0;
	while (i + 2 <= n) {
		uint8_t b0 = p[i], len = p[i + 1];
		i += 2;
		if (len > n - i)
			len = (uint8_t)(n - i);
		struct buf pl = { 0 };
		expand(p + i, len, &pl);
		i += len;
		size_t at = buf_used(out);
		ws_frame_put(out, true, 0, buf_head(&pl), buf_used(&pl), client ? key : NULL);
		buf_head(out)[at] = b0; /* FIN, RSV and opcode as fuzzed */
		buf_fini(&pl);
	}
}

/* What a peer reads: "m<op>:" messages, "c<op>:" control frames, "p:" an unfinished one. */
static bool decode(const uint8_t *p, size_t n, bool masked, struct buf *text)
{
	struct ws_parser ps;
	ws_parser_init(&ps, masked);
	struct buf msg = { 0 };
	size_t at = 0;
	bool ok = true;
	while (at < n && ok) {
		struct ws_piece pc;
		size_t k;
		struct buf pl = { 0 };
		ok = ws_parse(&ps, p + at, n - at, &k, &pc, &pl) == 0;
		at += k;
		if (ok && pc.kind == WS_PIECE_CONTROL) {
			buf_put_u8(text, 'c');
			buf_put_u8(text, pc.op);
			buf_append(text, buf_head(&pl), buf_used(&pl));
		} else if (ok && pc.kind == WS_PIECE_DATA) {
			buf_append(&msg, buf_head(&pl), buf_used(&pl));
			if (pc.last) {
				buf_put_u8(text, 'm');
				buf_put_u8(text, pc.op);
				buf_append(text, buf_head(&msg), buf_used(&msg));
				msg.off = msg.len = 0;
			}
		}
		buf_fini(&pl);
	}
	if (buf_used(&msg)) {
		buf_append(text, "p:", 2);
		buf_append(text, buf_head(&msg), buf_used(&msg));
	}
	buf_fini(&msg);
	return ok && !ps.nhdr && !ps.in_frame;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

/* Relay t[0..n) cut at cuts (sorted); the leak's secret, if refused for one, in *leak. */
static int run(bool client, const uint8_t *t, size_t n, const size_t *cuts, unsigned ncuts,
	       struct buf *out, const struct secret **leak)
{
	struct ws_relay r;
	struct ws_secrets w;
	struct scrub sc = { 0 };
	ws_relay_init(&r, client);
	ws_secrets_init(&w, &ss, "api.test", &sc);
	struct ws_filter f = { client ? ws_secrets_up : ws_secrets_down, &w };
	size_t at = 0;
	int e = 0;
	for (unsigned i = 0; i <= ncuts && e == 0; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		e = ws_relay_feed(&r, t + at, end - at, &f, out);
		at = end;
	}
	if (e < 0 && e != -EPERM && e != -EPROTO && e != -EMSGSIZE)
		__builtin_trap();
	if ((e == -EPROTO || e == -EMSGSIZE) && !r.ps.why)
		__builtin_trap();
	*leak = w.leak;
	ws_secrets_fini(&w);
	ws_relay_fini(&r);
	scrub_fini(&sc);
	return e;
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
	bool client = p[4] & 1;
	struct buf t = { 0 }, whole = { 0 }, split = { 0 }, tw = { 0 }, ts = { 0 };
	if (p[4] & 2)
		expand(p + 5, n - 5, &t);
	else
		records(p + 5, n - 5, client, &t);
	size_t len = buf_used(&t), cuts[4];
	for (int i = 0; i < 4; i++)
		cuts[i] = len ? (size_t)p[i] * len / 255 : 0;
	qsort(cuts, 4, sizeof(cuts[0]), cmp_size);
	const uint8_t *tp = len ? buf_head(&t) : (const uint8_t *)"";
	const struct secret *lw, *ls;
	int rw = run(client, tp, len, NULL, 0, &whole, &lw);
	int rs = run(client, tp, len, cuts, 4, &split, &ls);
	if (rw != rs || lw != ls)
		__builtin_trap();
	if (rw == -EPERM && (!client || lw != &ss.s[1]))
		__builtin_trap();
	/* The peer reads well-formed frames, the same messages whatever the split. */
	if (!decode(buf_head(&whole), buf_used(&whole), client, &tw) ||
	    !decode(buf_head(&split), buf_used(&split), client, &ts))
		__builtin_trap();
	if (rw == 0 && (buf_used(&tw) != buf_used(&ts) ||
			(buf_used(&tw) && memcmp(buf_head(&tw), buf_head(&ts), buf_used(&tw)))))
		__builtin_trap();
	if (client && (has(&ts, PH_A) || has(&ts, PH_B) || has(&tw, PH_B)))
		__builtin_trap();
	if (!client && (has(&ts, VALUE_A) || has(&tw, VALUE_A)))
		__builtin_trap();
	buf_fini(&t);
	buf_fini(&whole);
	buf_fini(&split);
	buf_fini(&tw);
	buf_fini(&ts);
	return 0;
}
