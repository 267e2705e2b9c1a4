/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "ws.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "secrets.h"

void ws_parser_init(struct ws_parser *ps, bool from_client)
{
	memset(ps, 0, sizeof(*ps));
	ps->from_client = from_client;
}

/* How many header bytes the frame being read has (2 until its length byte is in). */
static unsigned hdr_need(const struct ws_parser *ps)
{
	if (ps->nhdr < 2)
		return 2;
	unsigned len7 = ps->hdr[1] & 0x7f;
	return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (ps->hdr[1] & 0x80 ? 4 : 0);
}

static int refuse(struct ws_parser *ps, uint16_t code, const char *why)
{
	ps->code = code;
	ps->why = why;
	return code == WS_CLOSE_TOO_BIG ? -EMSGSIZE : -EPROTO;
}

/* The header in ps->hdr is complete: check it and start the frame. */
static int frame_start(struct ws_parser *ps)
{
	const uint8_t *h = ps->hdr;
	unsigned len7 = h[1] & 0x7f, at = 2;
	ps->nhdr = 0;
	ps->fin = h[0] & 0x80;
	ps->op = h[0] & 0x0f;
	ps->masked = h[1] & 0x80;
	if (h[0] & 0x70)
		return refuse(ps, WS_CLOSE_PROTOCOL, "a frame with RSV bits set (no extension)");
	if (ps->masked != ps->from_client)
		return refuse(ps, WS_CLOSE_PROTOCOL,
			      ps->from_client ? "an unmasked frame from the client"
					      : "a masked frame from the server");
	uint64_t len = len7;
	if (len7 == 126) {
		len = be16_get(h + 2);
		at = 4;
		if (len < 126)
			return refuse(ps, WS_CLOSE_PROTOCOL,
				      "a frame length not in its shortest form");
	} else if (len7 == 127) {
		len = (uint64_t)be32_get(h + 2) << 32 | be32_get(h + 6);
		at = 10;
		if (len >> 63)
			return refuse(ps, WS_CLOSE_PROTOCOL, "a frame length over 2^63");
		if (len < 65536)
			return refuse(ps, WS_CLOSE_PROTOCOL,
				      "a frame length not in its shortest form");
	}
	if (ps->masked)
		memcpy(ps->key, h + at, 4);
	ps->kpos = 0;
	ps->left = len;
	switch (ps->op) {
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		if (!ps->fin)
			return refuse(ps, WS_CLOSE_PROTOCOL, "a fragmented control frame");
		if (len > WS_MAX_CONTROL)
			return refuse(ps, WS_CLOSE_PROTOCOL,
				      "a control frame longer than 125 bytes");
		if (ps->op == WS_OP_CLOSE && len == 1)
			return refuse(ps, WS_CLOSE_PROTOCOL, "a close frame of one byte");
		ps->nctl = 0;
		break;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (ps->in_msg)
			return refuse(ps, WS_CLOSE_PROTOCOL,
				      "a new data message inside a fragmented one");
		ps->in_msg = true;
		ps->msg_op = ps->op;
		ps->msg_len = 0;
		break;
	case WS_OP_CONT:
		if (!ps->in_msg)
			return refuse(ps, WS_CLOSE_PROTOCOL,
				      "a continuation frame outside a message");
		break;
	default:
		return refuse(ps, WS_CLOSE_PROTOCOL, "a frame with an unknown opcode");
	}
	if (!(ps->op & 8)) {
		if (len > WS_MAX_MESSAGE - ps->msg_len)
			return refuse(ps, WS_CLOSE_TOO_BIG, "a message larger than 64 MiB");
		ps->msg_len += len;
	}
	ps->in_frame = true;
	return 0;
}

/* Whether a close frame's code may be sent (RFC 6455 7.4). */
static bool close_code_ok(uint16_t c)
{
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
}

int ws_parse(struct ws_parser *ps, const uint8_t *p, size_t n, size_t *used, struct ws_piece *pc,
	     struct buf *payload)
{
	size_t at = 0;
	pc->kind = WS_PIECE_NONE;
	*used = 0;
	if (!ps->in_frame) {
		unsigned need = hdr_need(ps);
		while (ps->nhdr < need && at < n) {
			ps->hdr[ps->nhdr++] = p[at++];
			need = hdr_need(ps);
		}
		*used = at;
		if (ps->nhdr < need)
			return 0;
		int r = frame_start(ps);
		if (r < 0 || ps->left)
			return r; /* the payload comes with the next call */
	}
	size_t k = ps->left < n - at ? (size_t)ps->left : n - at;
	uint8_t *d = NULL;
	if (ps->op & 8)
		d = ps->ctl + ps->nctl;
	else if (k && !(d = buf_reserve(payload, k)))
		return -ENOMEM;
	for (size_t i = 0; i < k; i++)
		d[i] = p[at + i] ^ (ps->masked ? ps->key[(ps->kpos + i) & 3] : 0);
	if (!(ps->op & 8))
		payload->len += k;
	ps->kpos = (unsigned)((ps->kpos + k) & 3);
	ps->left -= k;
	at += k;
	*used = at;
	if (ps->op & 8) {
		ps->nctl += (unsigned)k;
		if (ps->left)
			return 0;
		ps->in_frame = false;
		if (ps->op == WS_OP_CLOSE && ps->nctl >= 2 && !close_code_ok(be16_get(ps->ctl)))
			return refuse(ps, WS_CLOSE_PROTOCOL, "a close frame with an invalid code");
		if (buf_append(payload, ps->ctl, ps->nctl) < 0)
			return -ENOMEM;
		explicit_bzero(ps->ctl, sizeof(ps->ctl));
		pc->kind = WS_PIECE_CONTROL;
		pc->op = ps->op;
		pc->last = true;
		return 0;
	}
	pc->kind = WS_PIECE_DATA;
	pc->op = ps->msg_op;
	pc->frame_end = !ps->left;
	pc->last = !ps->left && ps->fin;
	if (!ps->left)
		ps->in_frame = false;
	if (pc->last)
		ps->in_msg = false;
	return 0;
}

int ws_frame_put(struct buf *out, bool fin, uint8_t op, const uint8_t *p, size_t n,
		 const uint8_t *key)
{
	uint8_t h[WS_MAX_HEADER];
	unsigned k = 2;
	h[0] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0f));
	if (n < 126) {
		h[1] = (uint8_t)n;
	} else if (n <= 0xffff) {
		h[1] = 126;
		h[2] = (uint8_t)(n >> 8);
		h[3] = (uint8_t)n;
		k = 4;
	} else {
		h[1] = 127;
		be32_put(h + 2, (uint32_t)((uint64_t)n >> 32));
		be32_put(h + 6, (uint32_t)n);
		k = 10;
	}
	if (key) {
		h[1] |= 0x80;
		memcpy(h + k, key, 4);
		k += 4;
	}
	if (buf_append(out, h, k) < 0)
		return -ENOMEM;
	uint8_t *d = n ? buf_reserve(out, n) : NULL;
	if (n && !d)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		d[i] = p[i] ^ (key ? key[i & 3] : 0);
	out->len += n;
	return 0;
}

void ws_relay_init(struct ws_relay *r, bool from_client)
{
	memset(r, 0, sizeof(*r));
	ws_parser_init(&r->ps, from_client);
	r->nkeys = sizeof(r->keys);
}

/* The next masking key: frames toward a server only (NULL toward the client). */
static const uint8_t *relay_key(struct ws_relay *r)
{
	if (!r->ps.from_client)
		return NULL;
	if (r->nkeys + 4 > sizeof(r->keys)) {
		/* getrandom of 64 bytes never blocks once the pool is up, and is never short */
		if (getrandom(r->keys, sizeof(r->keys), 0) != (ssize_t)sizeof(r->keys))
			memset(r->keys, 0x5a, sizeof(r->keys)); /* still a valid frame */
		r->nkeys = 0;
	}
	r->nkeys += 4;
	return r->keys + r->nkeys - 4;
}

int ws_relay_feed(struct ws_relay *r, const uint8_t *p, size_t n, const struct ws_filter *f,
		  struct buf *out)
{
	struct buf pl = { 0 }, res = { 0 };
	size_t at = 0;
	int err = 0;
	while (at < n && !err) {
		struct ws_piece pc;
		size_t k;
		pl.off = pl.len = 0;
		res.off = res.len = 0;
		err = ws_parse(&r->ps, p + at, n - at, &k, &pc, &pl);
		at += k;
		if (err < 0 || pc.kind == WS_PIECE_NONE)
			continue;
		bool control = pc.kind == WS_PIECE_CONTROL;
		err = f->feed(f->ctx, control, buf_head(&pl), buf_used(&pl), pc.last, &res);
		if (err < 0)
			break;
		if (res.bad) {
			err = -ENOMEM;
		} else if (control && buf_used(&res) > WS_MAX_CONTROL) {
			r->ps.code = WS_CLOSE_TOO_BIG;
			r->ps.why = "a control frame longer than 125 bytes with secrets swapped";
			err = -EMSGSIZE;
		} else if (control) {
			err = ws_frame_put(out, true, pc.op, buf_head(&res), buf_used(&res),
					   relay_key(r));
		} else if (buf_append(&r->pend, buf_head(&res), buf_used(&res)) < 0) {
			err = -ENOMEM;
		} else if (pc.last || (pc.frame_end && buf_used(&r->pend)) ||
			   buf_used(&r->pend) >= WS_RELAY_HOLD) {
			uint8_t op = r->out_started ? WS_OP_CONT : pc.op;
			err = ws_frame_put(out, pc.last, op, buf_head(&r->pend), buf_used(&r->pend),
					   relay_key(r));
			r->out_started = !pc.last;
			explicit_bzero(buf_head(&r->pend), buf_used(&r->pend));
			r->pend.off = r->pend.len = 0;
		}
	}
	buf_wipe(&pl);
	buf_wipe(&res);
	return err;
}

void ws_relay_fini(struct ws_relay *r)
{
	buf_wipe(&r->pend);
}

int ws_relay_close(struct ws_relay *r, uint16_t code, const char *reason, struct buf *out)
{
	uint8_t b[2 + WS_MAX_REASON];
	size_t n = strnlen(reason, WS_MAX_REASON);
	b[0] = (uint8_t)(code >> 8);
	b[1] = (uint8_t)code;
	memcpy(b + 2, reason, n);
	return ws_frame_put(out, true, WS_OP_CLOSE, b, 2 + n, relay_key(r));
}

void ws_secrets_init(struct ws_secrets *w, const struct secrets *ss, const char *host,
		     struct scrub *sc)
{
	memset(w, 0, sizeof(*w));
	w->ss = ss;
	w->host = host;
	w->sc = sc;
	secrets_body_init(&w->up, ss, host, SECRETS_BODY_RAW, false);
}

int ws_secrets_up(void *ctx, bool control, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	struct ws_secrets *w = ctx;
	if (!control) {
		/* final flushes what is held back: the next message starts afresh */
		int r = secrets_body_feed(&w->up, p, n, final, out);
		if (r == -EPERM)
			w->leak = w->up.leak;
		return r;
	}
	struct secrets_body b;
	secrets_body_init(&b, w->ss, w->host, SECRETS_BODY_RAW, false);
	int r = secrets_body_feed(&b, p, n, true, out);
	if (r == -EPERM)
		w->leak = b.leak;
	secrets_body_fini(&b);
	return r;
}

int ws_secrets_down(void *ctx, bool control, const uint8_t *p, size_t n, bool final,
		    struct buf *out)
{
	struct ws_secrets *w = ctx;
	if (control)
		return scrub_all(w->ss, w->sc, p, n, out);
	return scrub_feed(w->ss, w->sc, p, n, final, out);
}

void ws_secrets_fini(struct ws_secrets *w)
{
	secrets_body_fini(&w->up);
}
