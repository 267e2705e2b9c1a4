/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/proto/mux.c. Two muxes (host and guest) are wired together in memory: the
 * bytes one queues in `out` are fed to the other with mux_feed(). Hostile frames are written by
 * hand as 12-byte headers (see mux.h) and fed to a single mux.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "proto/msg.h"
#include "proto/mux.h"

/* The bytes waiting in a struct buf are exactly p[0..n) (no buf_head() of a fresh buf). */
#define CHECK_BUF(b, p, n) CHECK_EQ_MEM(buf_used(b) ? buf_head(b) : NULL, buf_used(b), (p), (n))

#define MAX_EV 4096
#define EV_HEAD 16

/* One frame delivered to the callback. */
struct ev {
	uint32_t stream;
	uint8_t type;
	uint8_t chan;
	uint32_t len;
	struct mux_stream *s;
	uint8_t head[EV_HEAD]; /* first payload bytes */
};

/* One end of the link: its mux plus what its callback saw. */
struct side {
	struct mux m;
	struct ev ev[MAX_EV];
	unsigned nev;
	unsigned bad_ids; /* callbacks where s->id != f->stream */
	struct buf data[MUX_CHAN_END]; /* DATA payloads, per channel, all streams */
	struct buf last; /* payload of the last OPEN or CTL */
	bool auto_close; /* answer the peer's CLOSE with mux_close() */
	bool auto_consume; /* mux_consumed() each DATA frame at once */
	int fail; /* returned by the callback when nonzero */
	uint32_t reply; /* answer each CTL with a CTL of this many bytes (a peer that provokes) */
	bool resume_in_cb; /* call mux_rx_resume() from the callback (must be a no-op) */
	int depth, max_depth; /* callback nesting */
};

struct link {
	struct side host;
	struct side guest;
};

static int on_frame(struct mux *m, struct mux_stream *s, const struct mux_frame *f, void *opaque)
{
	struct side *sd = opaque;

	if (sd->nev < MAX_EV) {
		struct ev *e = &sd->ev[sd->nev];
		e->stream = f->stream;
		e->type = f->type;
		e->chan = f->chan;
		e->len = f->len;
		e->s = s;
		memcpy(e->head, f->payload, f->len < EV_HEAD ? f->len : EV_HEAD);
	}
	sd->nev++;
	if (s && s->id != f->stream)
		sd->bad_ids++;
	if (!s != (f->stream == 0))
		sd->bad_ids++;

	int r = 0;
	if (++sd->depth > sd->max_depth)
		sd->max_depth = sd->depth;
	if (sd->resume_in_cb)
		r = mux_rx_resume(m);
	switch (f->type) {
	case MUX_OPEN:
	case MUX_CTL:
		buf_consume(&sd->last, SIZE_MAX);
		if (r == 0)
			r = buf_append(&sd->last, f->payload, f->len);
		if (r == 0 && f->type == MUX_CTL && sd->reply) {
			static uint8_t zero[4096];
			r = mux_send_ctl(m, 0, zero, sd->reply);
		}
		break;
	case MUX_DATA:
		r = buf_append(&sd->data[f->chan], f->payload, f->len);
		if (r == 0 && sd->auto_consume)
			r = mux_consumed(m, s, f->len);
		break;
	case MUX_CLOSE:
		if (sd->auto_close)
			r = mux_close(m, s, 0);
		break;
	}
	sd->depth--;
	return sd->fail ? sd->fail : r;
}

static void side_init(struct side *sd, enum mux_side side)
{
	mux_init(&sd->m, side, on_frame, sd);
	sd->auto_close = true;
	sd->auto_consume = true;
}

static void side_fini(struct side *sd)
{
	mux_fini(&sd->m);
	for (int i = 0; i < MUX_CHAN_END; i++)
		buf_fini(&sd->data[i]);
	buf_fini(&sd->last);
}

static struct side *side_new(enum mux_side side)
{
	struct side *sd = calloc(1, sizeof(*sd));
	if (!sd)
		abort();
	side_init(sd, side);
	return sd;
}

static void side_free(struct side *sd)
{
	side_fini(sd);
	free(sd);
}

static struct link *link_new(void)
{
	struct link *l = calloc(1, sizeof(*l));
	if (!l)
		abort();
	side_init(&l->host, MUX_SIDE_HOST);
	side_init(&l->guest, MUX_SIDE_GUEST);
	return l;
}

static void link_free(struct link *l)
{
	side_fini(&l->host);
	side_fini(&l->guest);
	free(l);
}

/* Move what `from` has queued into `to`, at most `chunk` bytes per mux_feed(). */
static int pump_one(struct side *from, struct side *to, size_t chunk)
{
	int r = 0;
	while (r == 0 && buf_used(&from->m.out)) {
		size_t n = buf_used(&from->m.out);
		if (n > chunk)
			n = chunk;
		r = mux_feed(&to->m, buf_head(&from->m.out), n);
		buf_consume(&from->m.out, n);
	}
	return r;
}

/* Exchange bytes both ways until neither side has anything queued. */
static int pump(struct link *l)
{
	int r = 0;
	while (r == 0 && (buf_used(&l->host.m.out) || buf_used(&l->guest.m.out))) {
		r = pump_one(&l->host, &l->guest, SIZE_MAX);
		if (r == 0)
			r = pump_one(&l->guest, &l->host, SIZE_MAX);
	}
	return r;
}

/* Parse the frames queued in m->out without consuming them; returns how many, -1 if invalid. */
static int out_frames(const struct mux *m, struct mux_frame *fr, int max)
{
	size_t n = buf_used(&m->out);
	const uint8_t *p = n ? buf_head(&m->out) : NULL;
	int count = 0;
	while (n > 0) {
		struct mux_frame f;
		int k = mux_frame_parse(p, n, &f);
		if (k <= 0)
			return -1;
		if (count < max)
			fr[count] = f;
		count++;
		p += k;
		n -= (size_t)k;
	}
	return count;
}

static void put_hdr(uint8_t *h, uint32_t stream, uint8_t type, uint8_t chan, uint16_t flags,
		    uint32_t len)
{
	le32_put(h, stream);
	h[4] = type;
	h[5] = chan;
	le16_put(h + 6, flags);
	le32_put(h + 8, len);
}

/* Hand-encode one frame and feed it; a NULL payload means `len` zero bytes. */
static int feed_raw(struct side *sd, uint32_t stream, uint8_t type, uint8_t chan, uint16_t flags,
		    const void *payload, uint32_t len)
{
	uint8_t *f = calloc(1, MUX_HDR_LEN + (size_t)len);
	if (!f)
		abort();
	put_hdr(f, stream, type, chan, flags, len);
	if (payload && len)
		memcpy(f + MUX_HDR_LEN, payload, len);
	int r = mux_feed(&sd->m, f, MUX_HDR_LEN + (size_t)len);
	free(f);
	return r;
}

static int feed(struct side *sd, uint32_t stream, uint8_t type, uint8_t chan, const void *payload,
		uint32_t len)
{
	return feed_raw(sd, stream, type, chan, 0, payload, len);
}

static int feed_open(struct side *sd, uint32_t stream)
{
	uint8_t svc[2];
	le16_put(svc, SVC_EXEC);
	return feed(sd, stream, MUX_OPEN, 0, svc, 2);
}

static int feed_u32(struct side *sd, uint32_t stream, uint8_t type, uint32_t v)
{
	uint8_t x[4];
	le32_put(x, v);
	return feed(sd, stream, type, 0, x, 4);
}

/* The peer's first stream id as seen by a mux of `side`. */
static uint32_t peer_id(enum mux_side side)
{
	return side == MUX_SIDE_HOST ? 2 : 1;
}

/*
 * Feed one frame to a fresh mux of `side` and return mux_feed's result; when `peer_open` is set,
 * the peer first opens its stream (see peer_id). A rejected frame must not reach the callback:
 * if it did, returns 1 so the caller's check fails.
 */
static int feed_fresh(enum mux_side side, bool peer_open, uint32_t stream, uint8_t type,
		      uint8_t chan, uint16_t flags, const void *payload, uint32_t len)
{
	struct side *sd = side_new(side);
	int r = 0;
	if (peer_open)
		r = feed_open(sd, peer_id(side));
	if (r == 0) {
		unsigned before = sd->nev;
		r = feed_raw(sd, stream, type, chan, flags, payload, len);
		if (r < 0 && sd->nev != before)
			r = 1;
	}
	side_free(sd);
	return r;
}

static void test_open_roundtrip(void)
{
	struct link *l = link_new();
	struct buf body = { 0 }, want = { 0 };
	struct rd r, val;
	uint16_t tag;
	char *str = NULL;

	CHECK_EQ_INT(msg_put_str(&body, T_ARGV, "sh"), 0);
	CHECK_EQ_INT(msg_put_u8(&body, T_TTY, 1), 0);
	struct mux_stream *hs =
	    mux_open(&l->host.m, SVC_EXEC, buf_head(&body), (uint32_t)buf_used(&body));
	if (!CHECK(hs != NULL))
		goto out;
	CHECK_EQ_INT(hs->id, 1);
	CHECK(hs->send_credit == MUX_WINDOW && hs->recv_window == MUX_WINDOW);
	CHECK(mux_find(&l->host.m, 1) == hs);

	/* Exactly one OPEN frame, byte for byte. */
	uint8_t *h = buf_reserve(&want, MUX_HDR_LEN);
	if (!CHECK(h != NULL))
		goto out;
	put_hdr(h, 1, MUX_OPEN, 0, 0, 2 + (uint32_t)buf_used(&body));
	want.len += MUX_HDR_LEN;
	CHECK_EQ_INT(buf_put_u16(&want, SVC_EXEC), 0);
	CHECK_EQ_INT(buf_append(&want, buf_head(&body), buf_used(&body)), 0);
	CHECK_BUF(&l->host.m.out, buf_head(&want), buf_used(&want));

	CHECK_EQ_INT(pump(l), 0);
	if (!CHECK_EQ_INT(l->guest.nev, 1))
		goto out;
	struct ev *e = &l->guest.ev[0];
	CHECK_EQ_INT(e->type, MUX_OPEN);
	CHECK_EQ_INT(e->stream, 1);
	CHECK(e->s != NULL && e->s == mux_find(&l->guest.m, 1));
	CHECK_EQ_INT(l->guest.bad_ids, 0);
	/* Whole frames are parsed in place, never copied into the partial-frame buffer. */
	CHECK(l->guest.m.in.p == NULL);

	/* The payload is the service then the TLVs. */
	r = rd_make(buf_head(&l->guest.last), buf_used(&l->guest.last));
	CHECK_EQ_INT(rd_u16(&r), SVC_EXEC);
	CHECK_EQ_INT(msg_next(&r, &tag, &val), 1);
	CHECK_EQ_INT(tag, T_ARGV);
	if (CHECK_EQ_INT(msg_dup_str(&val, MSG_MAX_STR, &str), 0))
		CHECK(strcmp(str, "sh") == 0);
	free(str);
	CHECK_EQ_INT(msg_next(&r, &tag, &val), 1);
	CHECK_EQ_INT(tag, T_TTY);
	CHECK_EQ_INT(msg_next(&r, &tag, &val), 0);

	/* Ids: host odd, guest even, increasing; an empty body is fine. */
	struct mux_stream *hs2 = mux_open(&l->host.m, SVC_EXEC, NULL, 0);
	struct mux_stream *gs = mux_open(&l->guest.m, SVC_EXEC, NULL, 0);
	struct mux_stream *gs2 = mux_open(&l->guest.m, SVC_EXEC, NULL, 0);
	if (!CHECK(hs2 && gs && gs2))
		goto out;
	CHECK_EQ_INT(hs2->id, 3);
	CHECK_EQ_INT(gs->id, 2);
	CHECK_EQ_INT(gs2->id, 4);
	CHECK_EQ_INT(pump(l), 0);
	CHECK_EQ_INT(l->host.nev, 2);
	CHECK_EQ_INT(l->host.ev[0].stream, 2);
	CHECK_EQ_INT(l->host.ev[1].stream, 4);
	CHECK_EQ_INT(l->host.ev[1].len, 2);
	CHECK_EQ_INT(l->guest.nev, 2);
	CHECK_EQ_INT(l->guest.ev[1].stream, 3);
	CHECK_EQ_INT(l->host.m.nstreams, 4);
	CHECK_EQ_INT(l->guest.m.nstreams, 4);

	/* A body too big for one frame is refused without side effects; the largest one works. */
	static uint8_t big[MUX_MAX_PAYLOAD];
	errno = 0;
	CHECK(mux_open(&l->host.m, SVC_EXEC, big, MUX_MAX_PAYLOAD - 1) == NULL);
	CHECK_EQ_INT(errno, E2BIG);
	CHECK_EQ_INT(l->host.m.nstreams, 4);
	CHECK_EQ_INT(l->host.m.next_id, 5);
	CHECK_EQ_INT(buf_used(&l->host.m.out), 0);
	CHECK(mux_open(&l->host.m, SVC_EXEC, big, MUX_MAX_PAYLOAD - 2) != NULL);
	CHECK_EQ_INT(pump(l), 0);
	CHECK_EQ_INT(l->guest.nev, 3);
	CHECK_EQ_INT(l->guest.ev[2].len, MUX_MAX_PAYLOAD);
out:
	buf_fini(&body);
	buf_fini(&want);
	link_free(l);
}

static void test_data_eof_ctl(void)
{
	struct link *l = link_new();
	struct buf ctl = { 0 };
	int marker;

	struct mux_stream *hs = mux_open(&l->host.m, SVC_EXEC, NULL, 0);
	CHECK_EQ_INT(pump(l), 0);
	struct mux_stream *gs = mux_find(&l->guest.m, 1);
	if (!CHECK(hs && gs))
		goto out;
	gs->user = &marker;
	unsigned g0 = l->guest.nev, h0 = l->host.nev;

	CHECK_EQ_INT(mux_send_data(&l->host.m, hs, MUX_CHAN_IN, "hello", 5), 5);
	CHECK_EQ_INT(mux_send_data(&l->guest.m, gs, MUX_CHAN_OUT, "out", 3), 3);
	CHECK_EQ_INT(mux_send_data(&l->guest.m, gs, MUX_CHAN_ERR, "err!", 4), 4);
	CHECK_EQ_INT(pump(l), 0);
	if (CHECK_EQ_INT(l->guest.nev, g0 + 1)) {
		struct ev *e = &l->guest.ev[g0];
		CHECK(e->type == MUX_DATA && e->chan == MUX_CHAN_IN && e->len == 5);
		CHECK(e->s == gs && e->s->user == &marker);
	}
	CHECK_BUF(&l->guest.data[MUX_CHAN_IN], "hello", 5);
	CHECK_BUF(&l->host.data[MUX_CHAN_OUT], "out", 3);
	CHECK_BUF(&l->host.data[MUX_CHAN_ERR], "err!", 4);
	CHECK_EQ_INT(l->host.nev, h0 + 2);

	/* EOF per channel. */
	g0 = l->guest.nev;
	h0 = l->host.nev;
	CHECK_EQ_INT(mux_send_eof(&l->host.m, hs, MUX_CHAN_IN), 0);
	CHECK_EQ_INT(mux_send_eof(&l->guest.m, gs, MUX_CHAN_ERR), 0);
	CHECK_EQ_INT(pump(l), 0);
	if (CHECK_EQ_INT(l->guest.nev, g0 + 1))
		CHECK(l->guest.ev[g0].type == MUX_EOF && l->guest.ev[g0].chan == MUX_CHAN_IN &&
		      l->guest.ev[g0].len == 0);
	if (CHECK_EQ_INT(l->host.nev, h0 + 1))
		CHECK(l->host.ev[h0].type == MUX_EOF && l->host.ev[h0].chan == MUX_CHAN_ERR);

	/* CTL on a stream reaches the stream; CTL on stream 0 reaches the link (s == NULL). */
	CHECK_EQ_INT(buf_put_u16(&ctl, CTL_RESIZE), 0);
	CHECK_EQ_INT(msg_put_u16(&ctl, T_ROWS, 24), 0);
	CHECK_EQ_INT(msg_put_u16(&ctl, T_COLS, 80), 0);
	CHECK_EQ_INT(mux_send_ctl(&l->host.m, hs->id, buf_head(&ctl), (uint32_t)buf_used(&ctl)), 0);
	g0 = l->guest.nev;
	CHECK_EQ_INT(pump(l), 0);
	if (CHECK_EQ_INT(l->guest.nev, g0 + 1)) {
		struct ev *e = &l->guest.ev[g0];
		CHECK(e->type == MUX_CTL && e->stream == 1 && e->s == gs);
		CHECK_BUF(&l->guest.last, buf_head(&ctl), buf_used(&ctl));
	}

	buf_consume(&ctl, SIZE_MAX);
	CHECK_EQ_INT(buf_put_u16(&ctl, CTL_HELLO), 0);
	CHECK_EQ_INT(msg_put_u32(&ctl, T_VERSION, MUX_VERSION), 0);
	CHECK_EQ_INT(mux_send_ctl(&l->guest.m, 0, buf_head(&ctl), (uint32_t)buf_used(&ctl)), 0);
	h0 = l->host.nev;
	CHECK_EQ_INT(pump(l), 0);
	if (CHECK_EQ_INT(l->host.nev, h0 + 1)) {
		struct ev *e = &l->host.ev[h0];
		CHECK(e->type == MUX_CTL && e->stream == 0 && e->s == NULL);
		CHECK_EQ_INT(le16_get(e->head), CTL_HELLO);
	}
	CHECK_EQ_INT(l->host.bad_ids + l->guest.bad_ids, 0);

	/* CTL payloads must hold at least the type and fit a frame. */
	CHECK_EQ_INT(mux_send_ctl(&l->host.m, 0, "x", 1), -EINVAL);
	CHECK_EQ_INT(mux_send_ctl(&l->host.m, 0, NULL, MUX_MAX_PAYLOAD + 1), -EINVAL);
	CHECK_EQ_INT(buf_used(&l->host.m.out), 0);
out:
	buf_fini(&ctl);
	link_free(l);
}

static void test_close(void)
{
	struct link *l = link_new();
	struct mux_frame fr[4];

	l->host.auto_close = false;
	l->guest.auto_close = false;
	struct mux_stream *hs = mux_open(&l->host.m, SVC_EXEC, NULL, 0);
	CHECK_EQ_INT(pump(l), 0);
	struct mux_stream *gs = mux_find(&l->guest.m, 1);
	if (!CHECK(hs && gs))
		goto out;

	/* Host closes first: its stream stays until the guest's CLOSE. */
	CHECK_EQ_INT(mux_close(&l->host.m, hs, 0), 0);
	CHECK(hs->local_closed);
	CHECK(mux_find(&l->host.m, 1) == hs);
	if (CHECK_EQ_INT(out_frames(&l->host.m, fr, 4), 1))
		CHECK(fr[0].type == MUX_CLOSE && fr[0].stream == 1 && fr[0].len == 0);

	/* Nothing more goes out on a closed stream. */
	size_t queued = buf_used(&l->host.m.out);
	CHECK_EQ_INT(mux_send_data(&l->host.m, hs, MUX_CHAN_IN, "x", 1), 0);
	CHECK_EQ_INT(mux_send_eof(&l->host.m, hs, MUX_CHAN_IN), 0);
	CHECK_EQ_INT(mux_close(&l->host.m, hs, 0), 0); /* no second CLOSE */
	CHECK_EQ_INT(buf_used(&l->host.m.out), queued);

	unsigned g0 = l->guest.nev;
	CHECK_EQ_INT(pump(l), 0);
	if (CHECK_EQ_INT(l->guest.nev, g0 + 1))
		CHECK(l->guest.ev[g0].type == MUX_CLOSE && l->guest.ev[g0].s == gs);
	CHECK(gs->peer_closed);
	CHECK(mux_find(&l->guest.m, 1) == gs);

	/* The guest may still send until it closes; the host still accepts it. */
	CHECK_EQ_INT(mux_send_data(&l->guest.m, gs, MUX_CHAN_OUT, "late", 4), 4);
	CHECK_EQ_INT(pump(l), 0);
	CHECK_EQ_INT(buf_used(&l->host.data[MUX_CHAN_OUT]), 4);

	/* The guest's CLOSE (with an errno) frees its side at once: both have closed now. */
	CHECK_EQ_INT(mux_close(&l->guest.m, gs, EIO), 0);
	CHECK(mux_find(&l->guest.m, 1) == NULL);
	CHECK_EQ_INT(l->guest.m.nstreams, 0);
	unsigned h0 = l->host.nev;
	CHECK_EQ_INT(pump(l), 0);
	if (CHECK_EQ_INT(l->host.nev, h0 + 1)) {
		struct ev *e = &l->host.ev[h0];
		CHECK(e->type == MUX_CLOSE && e->len == 4 && e->s == hs);
		CHECK_EQ_INT(le32_get(e->head), EIO);
	}
	/* The host has not called mux_close() since, so its stream waits for it. */
	CHECK_EQ_INT(l->host.m.nstreams, 1);
	CHECK(hs->local_closed && hs->peer_closed);
	CHECK_EQ_INT(mux_close(&l->host.m, hs, 0), 0);
	CHECK_EQ_INT(l->host.m.nstreams, 0);
	CHECK_EQ_INT(buf_used(&l->host.m.out), 0);

	/* Guest closes first, both answer CLOSE from the callback: both sides free the stream. */
	l->host.auto_close = true;
	l->guest.auto_close = true;
	hs = mux_open(&l->host.m, SVC_EXEC, NULL, 0);
	CHECK_EQ_INT(pump(l), 0);
	gs = mux_find(&l->guest.m, 3);
	if (!CHECK(hs && gs))
		goto out;
	CHECK_EQ_INT(mux_close(&l->guest.m, gs, 0), 0);
	CHECK_EQ_INT(l->guest.m.nstreams, 1);
	CHECK_EQ_INT(pump(l), 0);
	CHECK_EQ_INT(l->host.m.nstreams, 0);
	CHECK_EQ_INT(l->guest.m.nstreams, 0);
out:
	link_free(l);
}

static void test_credit(void)
{
	struct link *l = link_new();
	static uint8_t big[MUX_WINDOW + MUX_WINDOW / 4];
	struct mux_frame fr[16];

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + i / 251);
	l->guest.auto_consume = false;
	struct mux_stream *hs = mux_open(&l->host.m, SVC_EXEC, NULL, 0);
	CHECK_EQ_INT(pump(l), 0);
	struct mux_stream *gs = mux_find(&l->guest.m, 1);
	if (!CHECK(hs && gs))
		goto out;

	/* A whole window goes out in DATA_CHUNK frames; not a byte more without credit. */
	CHECK_EQ_INT(mux_send_data(&l->host.m, hs, MUX_CHAN_IN, big, MUX_WINDOW + 100), MUX_WINDOW);
	CHECK_EQ_INT(hs->send_credit, 0);
	CHECK_EQ_INT(mux_send_data(&l->host.m, hs, MUX_CHAN_IN, big, 1), 0);
	int n = out_frames(&l->host.m, fr, 16);
	CHECK_EQ_INT(n, MUX_WINDOW / MUX_DATA_CHUNK);
	for (int i = 0; i < n && i < 16; i++)
		CHECK(fr[i].type == MUX_DATA && fr[i].len == MUX_DATA_CHUNK);

	CHECK_EQ_INT(pump(l), 0);
	CHECK_BUF(&l->guest.data[MUX_CHAN_IN], big, MUX_WINDOW);
	CHECK_EQ_INT(gs->recv_window, 0);

	/* Credit goes back only once an eighth of the window is consumed. */
	CHECK_EQ_INT(mux_consumed(&l->guest.m, gs, MUX_WINDOW / 8 - 1), 0);
	CHECK_EQ_INT(buf_used(&l->guest.m.out), 0);
	CHECK_EQ_INT(mux_consumed(&l->guest.m, gs, 1), 0);
	if (CHECK_EQ_INT(out_frames(&l->guest.m, fr, 16), 1)) {
		CHECK(fr[0].type == MUX_CREDIT && fr[0].stream == 1);
		CHECK_EQ_INT(le32_get(fr[0].payload), MUX_WINDOW / 8);
	}
	CHECK_EQ_INT(gs->recv_window, MUX_WINDOW / 8);
	CHECK_EQ_INT(pump(l), 0);
	CHECK_EQ_INT(hs->send_credit, MUX_WINDOW / 8);

	/* The sender continues, again limited by the credit it got. */
	CHECK_EQ_INT(mux_send_data(&l->host.m, hs, MUX_CHAN_IN, big + MUX_WINDOW, MUX_WINDOW / 4),
		     MUX_WINDOW / 8);
	CHECK_EQ_INT(hs->send_credit, 0);
	CHECK_EQ_INT(pump(l), 0);
	CHECK_BUF(&l->guest.data[MUX_CHAN_IN], big, MUX_WINDOW + MUX_WINDOW / 8);

	/* Consuming everything returns the whole window. */
	CHECK_EQ_INT(mux_consumed(&l->guest.m, gs, MUX_WINDOW), 0);
	CHECK_EQ_INT(pump(l), 0);
	CHECK_EQ_INT(hs->send_credit, MUX_WINDOW);
	CHECK_EQ_INT(gs->recv_window, MUX_WINDOW);
	CHECK_EQ_INT(gs->recv_consumed, 0);

	/* A closed receiver returns no credit (the sender is told to stop anyway). */
	CHECK_EQ_INT(mux_send_data(&l->host.m, hs, MUX_CHAN_IN, big, MUX_WINDOW), MUX_WINDOW);
	CHECK_EQ_INT(pump(l), 0);
	l->guest.auto_close = false;
	CHECK_EQ_INT(mux_close(&l->guest.m, gs, 0), 0);
	size_t queued = buf_used(&l->guest.m.out);
	CHECK_EQ_INT(mux_consumed(&l->guest.m, gs, MUX_WINDOW), 0);
	CHECK_EQ_INT(buf_used(&l->guest.m.out), queued);
out:
	link_free(l);
}

static void test_split_and_stream(void)
{
	struct link *l = link_new();
	enum { TOTAL = 4 * 1024 * 1024 + 12345 };
	uint8_t *big = malloc(TOTAL);
	if (!big)
		abort();
	for (size_t i = 0; i < TOTAL; i++)
		big[i] = (uint8_t)(i ^ i >> 9);

	struct mux_stream *hs = mux_open(&l->host.m, SVC_EXEC, NULL, 0);
	CHECK_EQ_INT(pump(l), 0);
	if (!CHECK(hs != NULL))
		goto out;

	/* 100000 bytes: three full chunks and the rest. */
	unsigned g0 = l->guest.nev;
	CHECK_EQ_INT(mux_send_data(&l->host.m, hs, MUX_CHAN_IN, big, 100000), 100000);
	CHECK_EQ_INT(pump(l), 0);
	if (CHECK_EQ_INT(l->guest.nev, g0 + 4)) {
		CHECK_EQ_INT(l->guest.ev[g0].len, MUX_DATA_CHUNK);
		CHECK_EQ_INT(l->guest.ev[g0 + 1].len, MUX_DATA_CHUNK);
		CHECK_EQ_INT(l->guest.ev[g0 + 2].len, MUX_DATA_CHUNK);
		CHECK_EQ_INT(l->guest.ev[g0 + 3].len, 100000 - 3 * MUX_DATA_CHUNK);
	}
	CHECK_BUF(&l->guest.data[MUX_CHAN_IN], big, 100000);

	/* Many windows' worth: credit flows back and the sender always makes progress. */
	size_t off = 100000;
	unsigned stalls = 0, rounds = 0;
	while (off < TOTAL && stalls == 0 && rounds < 1000) {
		uint32_t want = TOTAL - off > UINT32_MAX ? UINT32_MAX : (uint32_t)(TOTAL - off);
		uint32_t sent = mux_send_data(&l->host.m, hs, MUX_CHAN_IN, big + off, want);
		if (sent == 0)
			stalls++;
		off += sent;
		rounds++;
		if (pump(l) != 0)
			break;
	}
	CHECK_EQ_INT(stalls, 0);
	CHECK_EQ_INT(off, TOTAL);
	CHECK(rounds >= TOTAL / MUX_WINDOW);
	CHECK_BUF(&l->guest.data[MUX_CHAN_IN], big, TOTAL);
	unsigned over = 0;
	for (unsigned i = 0; i < l->guest.nev && i < MAX_EV; i++)
		if (l->guest.ev[i].type == MUX_DATA && l->guest.ev[i].len > MUX_DATA_CHUNK)
			over++;
	CHECK_EQ_INT(over, 0);
out:
	free(big);
	link_free(l);
}

/* Queue a session on a host mux: open, data in three frames, EOF, CTLs, close. */
static int make_session(struct side *h, const uint8_t *data, uint32_t n)
{
	uint8_t ctl[8];
	struct mux_stream *s = mux_open(&h->m, SVC_EXEC, "\5\0\2\0\0\0hi", 8);
	if (!s)
		return -1;
	if (mux_send_data(&h->m, s, MUX_CHAN_IN, data, n) != n)
		return -1;
	le16_put(ctl, CTL_SIGNAL);
	le16_put(ctl + 2, T_SIGNAL);
	le32_put(ctl + 4, 0);
	if (mux_send_eof(&h->m, s, MUX_CHAN_IN) < 0 || mux_send_ctl(&h->m, s->id, ctl, 2) < 0 ||
	    mux_send_ctl(&h->m, 0, ctl, sizeof(ctl)) < 0 || mux_close(&h->m, s, 0) < 0)
		return -1;
	return 0;
}

static void test_partial_feed(void)
{
	static const uint8_t types[] = { MUX_OPEN, MUX_DATA, MUX_DATA, MUX_DATA,
					 MUX_EOF,  MUX_CTL,  MUX_CTL,  MUX_CLOSE };
	static const size_t chunks[] = { 1, 5, 11, 12, 13, 4099, 0 /* irregular */, SIZE_MAX };
	enum { N = 70000 };
	static uint8_t data[N];
	struct side *h = side_new(MUX_SIDE_HOST);

	for (size_t i = 0; i < N; i++)
		data[i] = (uint8_t)(i * 13);
	CHECK_EQ_INT(make_session(h, data, N), 0);
	const uint8_t *wire = buf_head(&h->m.out);
	size_t len = buf_used(&h->m.out);

	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct side *g = side_new(MUX_SIDE_GUEST);
		size_t off = 0, step = 0;
		int r = 0;
		while (r == 0 && off < len) {
			size_t k = chunks[c] ? chunks[c] : 1 + (step++ * 7919) % 97;
			if (k > len - off)
				k = len - off;
			r = mux_feed(&g->m, wire + off, k);
			off += k;
		}
		CHECK_EQ_INT(r, 0);
		if (CHECK_EQ_INT(g->nev, sizeof(types))) {
			unsigned bad = 0;
			for (size_t i = 0; i < sizeof(types); i++)
				bad += g->ev[i].type != types[i];
			CHECK_EQ_INT(bad, 0);
		}
		CHECK_BUF(&g->data[MUX_CHAN_IN], data, N);
		CHECK_EQ_INT(buf_used(&g->m.in), 0); /* nothing left half-parsed */
		/* The guest answered the CLOSE: both sides closed, so the stream is gone. */
		CHECK_EQ_INT(g->m.nstreams, 0);
		/* Its answer: credit for two eighths of the window consumed, then CLOSE. */
		struct mux_frame f[3];
		if (CHECK_EQ_INT(out_frames(&g->m, f, 3), 3)) {
			CHECK(f[0].type == MUX_CREDIT && le32_get(f[0].payload) == MUX_WINDOW / 8);
			CHECK(f[1].type == MUX_CREDIT && le32_get(f[1].payload) == MUX_WINDOW / 8);
			CHECK(f[2].type == MUX_CLOSE && f[2].stream == 1);
		}
		side_free(g);
	}
	side_free(h);
}

static void test_frame_parse(void)
{
	uint8_t f[MUX_HDR_LEN + 4];
	struct mux_frame fr;

	put_hdr(f, 7, MUX_CREDIT, 0, 0, 4);
	le32_put(f + MUX_HDR_LEN, 99);
	CHECK_EQ_INT(mux_frame_parse(f, 0, &fr), 0);
	CHECK_EQ_INT(mux_frame_parse(f, MUX_HDR_LEN - 1, &fr), 0);
	CHECK_EQ_INT(mux_frame_parse(f, MUX_HDR_LEN + 3, &fr), 0);
	CHECK_EQ_INT(mux_frame_parse(f, sizeof(f), &fr), sizeof(f));
	CHECK(fr.stream == 7 && fr.type == MUX_CREDIT && fr.chan == 0 && fr.len == 4);
	CHECK(fr.payload == f + MUX_HDR_LEN);
	/* A broken header is rejected before its payload arrives. */
	put_hdr(f, 7, MUX_CREDIT, 0, 0, 5);
	CHECK_EQ_INT(mux_frame_parse(f, MUX_HDR_LEN, &fr), -EPROTO);
}

static void test_hostile_header(void)
{
	const enum mux_side H = MUX_SIDE_HOST, G = MUX_SIDE_GUEST;
	uint8_t p[8] = { CTL_HELLO, 0 };

	/* The valid frame each hostile one is a near miss of. */
	CHECK_EQ_INT(feed_fresh(H, false, 0, MUX_CTL, 0, 0, p, 2), 0);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_DATA, MUX_CHAN_ERR, 0, p, 1), 0);
	CHECK_EQ_INT(feed_fresh(G, true, 1, MUX_EOF, MUX_CHAN_ERR, 0, NULL, 0), 0);

	/* Bad type. */
	CHECK_EQ_INT(feed_fresh(H, false, 0, 0, 0, 0, p, 2), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, false, 0, MUX_TYPE_END, 0, 0, p, 2), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, 0xff, 0, 0, p, 2), -EPROTO);

	/* Nonzero flags. */
	CHECK_EQ_INT(feed_fresh(H, false, 0, MUX_CTL, 0, 1, p, 2), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, false, 0, MUX_CTL, 0, 0x8000, p, 2), -EPROTO);
	CHECK_EQ_INT(feed_fresh(G, true, 1, MUX_DATA, 0, 0x0100, p, 1), -EPROTO);

	/* Channel out of range, or a channel on a type that has none. */
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_DATA, MUX_CHAN_END, 0, p, 1), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_DATA, 0xff, 0, p, 1), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_EOF, MUX_CHAN_END, 0, NULL, 0), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, false, 2, MUX_OPEN, 1, 0, p, 2), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, false, 0, MUX_CTL, 1, 0, p, 2), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_CREDIT, 1, 0, p, 4), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_CLOSE, 2, 0, NULL, 0), -EPROTO);

	/* Anything but CTL on stream 0. */
	for (uint8_t t = MUX_OPEN; t < MUX_TYPE_END; t++) {
		if (t == MUX_CTL)
			continue;
		uint32_t len = t == MUX_OPEN ? 2 : t == MUX_DATA ? 1 : t == MUX_CREDIT ? 4 : 0;
		CHECK_EQ_INT(feed_fresh(H, true, 0, t, 0, 0, p, len), -EPROTO);
		CHECK_EQ_INT(feed_fresh(G, true, 0, t, 0, 0, p, len), -EPROTO);
	}

	/* Payload lengths each type cannot have. */
	CHECK_EQ_INT(feed_fresh(H, false, 2, MUX_OPEN, 0, 0, p, 1), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_DATA, 0, 0, NULL, 0), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_EOF, 0, 0, p, 1), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, false, 0, MUX_CTL, 0, 0, p, 1), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_CTL, 0, 0, NULL, 0), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_CREDIT, 0, 0, p, 3), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_CREDIT, 0, 0, p, 5), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_CLOSE, 0, 0, p, 2), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 2, MUX_CLOSE, 0, 0, p, 4), 0);

	/* Length over MUX_MAX_PAYLOAD fails on the header alone; at the maximum it waits. */
	struct side *sd = side_new(H);
	uint8_t h[MUX_HDR_LEN];
	put_hdr(h, 0, MUX_CTL, 0, 0, MUX_MAX_PAYLOAD);
	CHECK_EQ_INT(mux_feed(&sd->m, h, sizeof(h)), 0);
	CHECK_EQ_INT(buf_used(&sd->m.in), MUX_HDR_LEN);
	side_free(sd);
	sd = side_new(H);
	put_hdr(h, 0, MUX_CTL, 0, 0, MUX_MAX_PAYLOAD + 1);
	CHECK_EQ_INT(mux_feed(&sd->m, h, sizeof(h)), -EPROTO);
	side_free(sd);
	sd = side_new(H);
	put_hdr(h, 2, MUX_DATA, 0, 0, UINT32_MAX);
	CHECK_EQ_INT(mux_feed(&sd->m, h, 5), 0);
	CHECK_EQ_INT(mux_feed(&sd->m, h + 5, sizeof(h) - 5), -EPROTO); /* on the buffered path */
	side_free(sd);
	CHECK_EQ_INT(feed_fresh(H, false, 0, MUX_CTL, 0, 0, NULL, MUX_MAX_PAYLOAD), 0);
}

static void test_hostile_open(void)
{
	struct side *sd;

	/* Wrong parity: the host's peer opens even ids, the guest's peer odd ones. */
	CHECK_EQ_INT(feed_fresh(MUX_SIDE_HOST, false, 1, MUX_OPEN, 0, 0, "\1\0", 2), -EPROTO);
	CHECK_EQ_INT(feed_fresh(MUX_SIDE_HOST, false, 3, MUX_OPEN, 0, 0, "\1\0", 2), -EPROTO);
	CHECK_EQ_INT(feed_fresh(MUX_SIDE_GUEST, false, 2, MUX_OPEN, 0, 0, "\1\0", 2), -EPROTO);
	CHECK_EQ_INT(feed_fresh(MUX_SIDE_HOST, false, 2, MUX_OPEN, 0, 0, "\1\0", 2), 0);
	CHECK_EQ_INT(feed_fresh(MUX_SIDE_GUEST, false, 1, MUX_OPEN, 0, 0, "\1\0", 2), 0);

	/* Reusing an id, live or freed, and going backwards. */
	sd = side_new(MUX_SIDE_HOST);
	CHECK_EQ_INT(feed_open(sd, 2), 0);
	CHECK_EQ_INT(feed_open(sd, 2), -EPROTO);
	CHECK_EQ_INT(sd->m.nstreams, 1);
	side_free(sd);

	sd = side_new(MUX_SIDE_HOST);
	CHECK_EQ_INT(feed_open(sd, 6), 0);
	CHECK_EQ_INT(feed_open(sd, 4), -EPROTO);
	side_free(sd);

	sd = side_new(MUX_SIDE_HOST);
	CHECK_EQ_INT(feed_open(sd, 2), 0);
	struct mux_stream *s = mux_find(&sd->m, 2);
	if (CHECK(s != NULL))
		CHECK_EQ_INT(mux_close(&sd->m, s, 0), 0);
	CHECK_EQ_INT(feed(sd, 2, MUX_CLOSE, 0, NULL, 0), 0);
	CHECK_EQ_INT(sd->m.nstreams, 0);
	CHECK_EQ_INT(feed_open(sd, 2), -EPROTO);
	CHECK_EQ_INT(sd->m.nstreams, 0);
	side_free(sd);
}

static void test_hostile_window(void)
{
	struct side *sd;

	/* The peer may send exactly the window, then nothing without credit. */
	sd = side_new(MUX_SIDE_HOST);
	sd->auto_consume = false;
	CHECK_EQ_INT(feed_open(sd, 2), 0);
	CHECK_EQ_INT(feed(sd, 2, MUX_DATA, 0, NULL, MUX_WINDOW - 10), 0);
	CHECK_EQ_INT(feed(sd, 2, MUX_DATA, 1, NULL, 10), 0);
	CHECK_EQ_INT(feed(sd, 2, MUX_DATA, 2, NULL, 1), -EPROTO);
	side_free(sd);

	sd = side_new(MUX_SIDE_GUEST);
	sd->auto_consume = false;
	CHECK_EQ_INT(feed_open(sd, 1), 0);
	CHECK_EQ_INT(feed(sd, 1, MUX_DATA, 0, NULL, 200000), 0);
	CHECK_EQ_INT(feed(sd, 1, MUX_DATA, 0, NULL, MUX_WINDOW - 200000 + 1), -EPROTO);
	side_free(sd);

	/* Credit beyond the window: on a fresh stream, or more than was sent. */
	sd = side_new(MUX_SIDE_HOST);
	struct mux_stream *s = mux_open(&sd->m, SVC_EXEC, NULL, 0);
	if (CHECK(s != NULL))
		CHECK_EQ_INT(feed_u32(sd, 1, MUX_CREDIT, 1), -EPROTO);
	side_free(sd);

	sd = side_new(MUX_SIDE_HOST);
	s = mux_open(&sd->m, SVC_EXEC, NULL, 0);
	if (CHECK(s != NULL)) {
		CHECK_EQ_INT(mux_send_data(&sd->m, s, MUX_CHAN_IN, "0123456789", 10), 10);
		CHECK_EQ_INT(feed_u32(sd, 1, MUX_CREDIT, 0), 0);
		CHECK_EQ_INT(feed_u32(sd, 1, MUX_CREDIT, 4), 0);
		CHECK_EQ_INT(feed_u32(sd, 1, MUX_CREDIT, 6), 0);
		CHECK_EQ_INT(s->send_credit, MUX_WINDOW);
		CHECK_EQ_INT(feed_u32(sd, 1, MUX_CREDIT, 1), -EPROTO);
		CHECK_EQ_INT(s->send_credit, MUX_WINDOW);
	}
	side_free(sd);

	/* A credit that would wrap the 32-bit counter. */
	sd = side_new(MUX_SIDE_GUEST);
	s = mux_open(&sd->m, SVC_EXEC, NULL, 0);
	if (CHECK(s != NULL)) {
		CHECK_EQ_INT(mux_send_data(&sd->m, s, MUX_CHAN_OUT, "0123456789", 10), 10);
		CHECK_EQ_INT(feed_u32(sd, 2, MUX_CREDIT, UINT32_MAX), -EPROTO);
		CHECK_EQ_INT(feed_u32(sd, 2, MUX_CREDIT, UINT32_MAX - 5), -EPROTO);
	}
	side_free(sd);
}

static void test_hostile_streams(void)
{
	const enum mux_side H = MUX_SIDE_HOST;
	static const uint8_t types[] = { MUX_DATA, MUX_EOF, MUX_CTL, MUX_CREDIT, MUX_CLOSE };
	static const uint32_t lens[] = { 1, 0, 2, 4, 0 };
	struct side *sd;

	/* Frames on streams nobody opened: the peer's ids and ours. */
	CHECK_EQ_INT(feed_fresh(H, false, 2, MUX_DATA, 0, 0, "x", 1), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, false, 1, MUX_DATA, 0, 0, "x", 1), -EPROTO);
	CHECK_EQ_INT(feed_fresh(H, true, 4, MUX_CLOSE, 0, 0, NULL, 0), -EPROTO);
	CHECK_EQ_INT(feed_fresh(MUX_SIDE_GUEST, true, 3, MUX_EOF, 0, 0, NULL, 0), -EPROTO);
	sd = side_new(H);
	CHECK(mux_open(&sd->m, SVC_EXEC, NULL, 0) != NULL);
	CHECK_EQ_INT(feed_u32(sd, 3, MUX_CREDIT, 0), -EPROTO);
	side_free(sd);

	for (size_t i = 0; i < sizeof(types); i++) {
		/* After the peer's CLOSE it may send nothing more on the stream... */
		sd = side_new(H);
		sd->auto_close = false;
		CHECK_EQ_INT(feed_open(sd, 2), 0);
		CHECK_EQ_INT(feed(sd, 2, MUX_CLOSE, 0, NULL, 0), 0);
		unsigned before = sd->nev;
		CHECK_EQ_INT(feed(sd, 2, types[i], 0, "\1\0\0\0", lens[i]), -EPROTO);
		CHECK_EQ_INT(sd->nev, before);
		side_free(sd);

		/* ...also on a stream we opened... */
		sd = side_new(H);
		sd->auto_close = false;
		CHECK(mux_open(&sd->m, SVC_EXEC, NULL, 0) != NULL);
		CHECK_EQ_INT(feed(sd, 1, MUX_CLOSE, 0, NULL, 0), 0);
		CHECK_EQ_INT(feed(sd, 1, types[i], 0, "\0\0\0\0", lens[i]), -EPROTO);
		side_free(sd);

		/* ...but once both closed and it is freed, in-flight frames are ignored. */
		sd = side_new(H);
		CHECK_EQ_INT(feed_open(sd, 2), 0);
		struct mux_stream *s = mux_find(&sd->m, 2);
		if (CHECK(s != NULL))
			CHECK_EQ_INT(mux_close(&sd->m, s, 0), 0);
		CHECK_EQ_INT(feed(sd, 2, MUX_CLOSE, 0, NULL, 0), 0);
		CHECK(mux_find(&sd->m, 2) == NULL);
		CHECK(mux_open(&sd->m, SVC_EXEC, NULL, 0) != NULL);
		CHECK_EQ_INT(feed(sd, 1, MUX_CLOSE, 0, NULL, 0), 0); /* auto_close frees it */
		CHECK(mux_find(&sd->m, 1) == NULL);
		before = sd->nev;
		CHECK_EQ_INT(feed(sd, 2, types[i], 0, "\1\0\0\0", lens[i]), 0);
		CHECK_EQ_INT(feed(sd, 1, types[i], 0, "\1\0\0\0", lens[i]), 0);
		CHECK_EQ_INT(sd->nev, before);
		/* The next ids on both sides were never opened: still an error. */
		CHECK_EQ_INT(feed(sd, 3, types[i], 0, "\1\0\0\0", lens[i]), -EPROTO);
		CHECK_EQ_INT(feed(sd, 4, types[i], 0, "\1\0\0\0", lens[i]), -EPROTO);
		side_free(sd);
	}

	/* The callback's error fails the link. */
	sd = side_new(H);
	sd->fail = -EIO;
	CHECK_EQ_INT(feed(sd, 0, MUX_CTL, 0, "\1\0", 2), -EIO);
	side_free(sd);
}

/* Find the last frame in m->out. */
static int last_out_frame(const struct mux *m, struct mux_frame *f)
{
	size_t n = buf_used(&m->out);
	const uint8_t *p = n ? buf_head(&m->out) : NULL;
	int found = 0;
	while (n > 0) {
		int k = mux_frame_parse(p, n, f);
		if (k <= 0)
			return -1;
		found = 1;
		p += k;
		n -= (size_t)k;
	}
	return found;
}

static void test_max_streams(void)
{
	struct link *l = link_new();
	struct side *h = &l->host;
	struct mux_frame f;
	unsigned bad = 0;

	for (uint32_t i = 0; i < MUX_MAX_STREAMS; i++)
		bad += feed_open(h, 2 + 2 * i) != 0;
	CHECK_EQ_INT(bad, 0);
	CHECK_EQ_INT(h->m.nstreams, MUX_MAX_STREAMS);
	CHECK_EQ_INT(h->nev, MUX_MAX_STREAMS);
	CHECK_EQ_INT(buf_used(&h->m.out), 0);

	/* One more: refused with CLOSE(EMFILE), the callback never sees it, the link lives. */
	const uint32_t extra = 2 + 2 * MUX_MAX_STREAMS;
	CHECK_EQ_INT(feed_open(h, extra), 0);
	CHECK_EQ_INT(h->nev, MUX_MAX_STREAMS);
	CHECK_EQ_INT(h->m.nstreams, MUX_MAX_STREAMS);
	CHECK(mux_find(&h->m, extra) == NULL);
	if (CHECK_EQ_INT(last_out_frame(&h->m, &f), 1)) {
		CHECK(f.type == MUX_CLOSE && f.stream == extra && f.len == 4);
		CHECK_EQ_INT(le32_get(f.payload), EMFILE);
	}
	buf_consume(&h->m.out, SIZE_MAX);

	/* Our own opens hit the same limit. */
	errno = 0;
	CHECK(mux_open(&h->m, SVC_EXEC, NULL, 0) == NULL);
	CHECK_EQ_INT(errno, EMFILE);

	CHECK_EQ_INT(feed(h, 0, MUX_CTL, 0, "\1\0", 2), 0);
	CHECK_EQ_INT(feed(h, 2, MUX_DATA, 0, "x", 1), 0);
	CHECK_EQ_INT(h->nev, MUX_MAX_STREAMS + 2);
	/* The peer's in-flight frames on the refused stream, and its CLOSE, are ignored. */
	CHECK_EQ_INT(feed(h, extra, MUX_DATA, 0, "x", 1), 0);
	CHECK_EQ_INT(feed(h, extra, MUX_CLOSE, 0, NULL, 0), 0);
	CHECK_EQ_INT(h->nev, MUX_MAX_STREAMS + 2);
	CHECK_EQ_INT(feed_open(h, extra), -EPROTO); /* still never reused */

	/* A freed slot can be used again. */
	struct mux_stream *s = mux_find(&h->m, 2);
	if (CHECK(s != NULL))
		CHECK_EQ_INT(mux_close(&h->m, s, 0), 0);
	CHECK_EQ_INT(feed(h, 2, MUX_CLOSE, 0, NULL, 0), 0);
	CHECK_EQ_INT(h->m.nstreams, MUX_MAX_STREAMS - 1);
	buf_consume(&h->m.out, SIZE_MAX);

	/* A real guest that opens past the limit gets its stream closed with EMFILE. */
	CHECK_EQ_INT(feed_open(h, extra + 2), 0);
	CHECK_EQ_INT(h->m.nstreams, MUX_MAX_STREAMS);
	buf_consume(&h->m.out, SIZE_MAX);
	l->guest.m.next_id = extra + 4; /* as if the guest had opened the hand-fed ids */
	struct mux_stream *gs = mux_open(&l->guest.m, SVC_EXEC, NULL, 0);
	if (CHECK(gs != NULL)) {
		unsigned g0 = l->guest.nev;
		CHECK_EQ_INT(pump(l), 0);
		if (CHECK_EQ_INT(l->guest.nev, g0 + 1)) {
			struct ev *e = &l->guest.ev[g0];
			CHECK(e->type == MUX_CLOSE && e->stream == extra + 4 && e->len == 4);
			CHECK_EQ_INT(le32_get(e->head), EMFILE);
		}
		CHECK_EQ_INT(l->guest.m.nstreams, 0);
	}
	CHECK_EQ_INT(h->m.nstreams, MUX_MAX_STREAMS);
	link_free(l);
}

/* n CTL frames of `len` bytes each, back to back, in b. */
static void ctl_batch(struct buf *b, unsigned n, uint32_t len)
{
	uint8_t h[MUX_HDR_LEN], p[64] = { 1, 0 };
	for (unsigned i = 0; i < n; i++) {
		put_hdr(h, 0, MUX_CTL, 0, 0, len);
		buf_append(b, h, sizeof(h));
		buf_append(b, p, len);
	}
}

/*
 * A peer that writes frames provoking answers and never reads: the host handles frames only
 * while its queue is under MUX_RX_STOP, holds the rest of a read batch unhandled, and handles
 * them again once the queue drained to MUX_RX_RESUME (hysteresis).
 */
static void test_rx_backpressure(void)
{
	const uint32_t reply = 1000, flen = 16, fsize = MUX_HDR_LEN + flen;
	const unsigned n = 3 * MUX_RX_STOP / (MUX_HDR_LEN + reply); /* 3x the mark in answers */
	const size_t one = MUX_HDR_LEN + reply;
	struct side *h = side_new(MUX_SIDE_HOST);
	struct buf batch = { 0 };
	h->reply = reply;
	h->resume_in_cb = true;
	ctl_batch(&batch, n, flen);

	/* One read batch: handling stops at the mark, the rest waits in `in`. */
	CHECK_EQ_INT(mux_feed(&h->m, buf_head(&batch), buf_used(&batch)), 0);
	CHECK(mux_rx_paused(&h->m));
	CHECK_EQ_INT(h->m.rx_pauses, 1);
	CHECK(buf_used(&h->m.out) >= MUX_RX_STOP);
	CHECK(buf_used(&h->m.out) < MUX_RX_STOP + one);
	CHECK(h->nev < n);
	CHECK_EQ_INT(buf_used(&h->m.in), (size_t)(n - h->nev) * fsize);
	CHECK_EQ_INT(h->max_depth, 1); /* the callback's resume did not nest */
	CHECK(!mux_overflowed(&h->m));

	/* Draining to just above the resume mark handles nothing (hysteresis)... */
	unsigned seen = h->nev;
	buf_consume(&h->m.out, buf_used(&h->m.out) - MUX_RX_RESUME - 1);
	CHECK_EQ_INT(mux_rx_resume(&h->m), 0);
	CHECK_EQ_INT(h->nev, seen);
	CHECK(mux_rx_paused(&h->m));
	/* ...at the mark, handling resumes until the queue is back at MUX_RX_STOP. */
	buf_consume(&h->m.out, 1);
	CHECK_EQ_INT(mux_rx_resume(&h->m), 0);
	CHECK(h->nev > seen);
	CHECK_EQ_INT(h->nev - seen, (unsigned)((MUX_RX_STOP - MUX_RX_RESUME + one - 1) / one));
	CHECK(mux_rx_paused(&h->m));
	CHECK_EQ_INT(h->m.rx_pauses, 2);

	/* Feeding more while paused only buffers, up to MUX_IN_MAX; past it the link fails. */
	seen = h->nev;
	uint8_t fr[MUX_HDR_LEN + 16] = { 0 };
	put_hdr(fr, 0, MUX_CTL, 0, 0, 16);
	fr[MUX_HDR_LEN] = 1;
	CHECK_EQ_INT(mux_feed(&h->m, fr, sizeof(fr)), 0);
	CHECK_EQ_INT(h->nev, seen);

	/* A reader that drains everything gets every answer, in order, in batches. */
	unsigned rounds = 0;
	while (mux_rx_paused(&h->m) && rounds < 100) {
		buf_consume(&h->m.out, SIZE_MAX);
		CHECK_EQ_INT(mux_rx_resume(&h->m), 0);
		rounds++;
	}
	CHECK(!mux_rx_paused(&h->m));
	CHECK_EQ_INT(h->nev, n + 1);
	CHECK_EQ_INT(buf_used(&h->m.in), 0);
	CHECK(rounds >= 2);
	CHECK_EQ_INT(h->max_depth, 1);

	/* Memory comes back once drained. */
	buf_consume(&h->m.out, SIZE_MAX);
	mux_trim(&h->m);
	CHECK(h->m.out.cap == 0 && h->m.in.cap == 0);

	/* The guest's mux (its peer is the host) handles a whole batch whatever it queues. */
	struct side *g = side_new(MUX_SIDE_GUEST);
	g->reply = reply;
	CHECK_EQ_INT(mux_feed(&g->m, buf_head(&batch), buf_used(&batch)), 0);
	CHECK_EQ_INT(g->nev, n);
	CHECK(!mux_rx_paused(&g->m));
	side_free(g);
	buf_fini(&batch);
	side_free(h);
}

/* An owner that keeps feeding a paused mux fails the link at MUX_IN_MAX, not the process. */
static void test_rx_in_max(void)
{
	struct side *h = side_new(MUX_SIDE_HOST);
	struct buf batch = { 0 };
	h->reply = 1000;
	ctl_batch(&batch, MUX_RX_STOP / 1000 + 1, 16);
	CHECK_EQ_INT(mux_feed(&h->m, buf_head(&batch), buf_used(&batch)), 0);
	CHECK(mux_rx_paused(&h->m));
	int r = 0;
	for (int i = 0; i < 64 && r == 0; i++)
		r = mux_feed(&h->m, buf_head(&batch), 64 * 1024);
	CHECK_EQ_INT(r, -ENOBUFS);
	CHECK(buf_used(&h->m.in) <= MUX_IN_MAX);
	buf_fini(&batch);
	side_free(h);
}

/* The hard cap: nothing is queued past MUX_OUT_MAX, and the next frame fails the link. */
static void test_out_max(void)
{
	struct side *h = side_new(MUX_SIDE_HOST);
	static uint8_t big[MUX_MAX_PAYLOAD];
	big[0] = 1;
	int r = 0;
	unsigned k = 0;
	while (r == 0 && k < 2 * MUX_OUT_MAX / MUX_MAX_PAYLOAD) {
		r = mux_send_ctl(&h->m, 0, big, sizeof(big));
		k++;
	}
	CHECK_EQ_INT(r, -ENOBUFS);
	CHECK(mux_overflowed(&h->m));
	CHECK(buf_used(&h->m.out) <= MUX_OUT_MAX);
	CHECK(h->m.out.cap <= MUX_OUT_MAX);
	/* The flag stays: handling the next frame reports the flood. */
	buf_consume(&h->m.out, SIZE_MAX);
	CHECK_EQ_INT(feed(h, 0, MUX_CTL, 0, "\1\0", 2), -ENOBUFS);
	side_free(h);

	/* The guest's mux has no cap: the host never floods it. */
	struct side *g = side_new(MUX_SIDE_GUEST);
	for (unsigned i = 0; i < MUX_OUT_MAX / MUX_MAX_PAYLOAD + 1; i++)
		r = mux_send_ctl(&g->m, 0, big, sizeof(big));
	CHECK_EQ_INT(r, 0);
	CHECK(!mux_overflowed(&g->m));
	side_free(g);
}

/* A message whose building hit an allocation failure is never queued (no gaps on the link). */
static void test_send_msg_refuses_bad(void)
{
	struct side *h = side_new(MUX_SIDE_HOST);
	struct buf b = { 0 };
	buf_put_u16(&b, CTL_READY);
	size_t before = buf_used(&h->m.out);
	CHECK_EQ_INT(mux_send_msg(&h->m, 0, &b), 0);
	CHECK(buf_used(&h->m.out) > before);
	before = buf_used(&h->m.out);
	CHECK(buf_reserve(&b, SIZE_MAX) == NULL && b.bad);
	CHECK_EQ_INT(mux_send_msg(&h->m, 0, &b), -ENOMEM);
	CHECK_EQ_INT(buf_used(&h->m.out), before);
	buf_fini(&b);
	side_free(h);
}

/*
 * mux_data_header (the agent's spliced frames): a header it builds, followed by the bytes the
 * caller moves itself and interleaved with queued frames in the order they were made, reads on
 * the host exactly like mux_send_data's frames, fed in random splits; the credit is taken as for
 * queued data and comes back; a length that does not fit takes nothing.
 */
static void test_data_header(void)
{
	struct link *l = link_new();
	struct buf wire = { 0 }, want = { 0 };
	static uint8_t payload[MUX_MAX_PAYLOAD];
	uint8_t hdr[MUX_HDR_LEN];

	struct mux_stream *hs = mux_open(&l->host.m, SVC_EXEC, NULL, 0);
	CHECK_EQ_INT(pump(l), 0);
	struct mux_stream *gs = mux_find(&l->guest.m, 1);
	if (!CHECK(hs && gs))
		goto out;
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7 + i / 251);

	CHECK_EQ_INT(mux_data_header(gs, MUX_CHAN_OUT, 0, hdr), -EINVAL);
	CHECK_EQ_INT(mux_data_header(gs, MUX_CHAN_END, 1, hdr), -EINVAL);
	CHECK_EQ_INT(mux_data_header(gs, MUX_CHAN_OUT, MUX_WINDOW + 1, hdr), -EINVAL);
	CHECK_EQ_INT(gs->send_credit, MUX_WINDOW);

	srand(14);
	size_t off = 0;
	for (int round = 0; round < 200; round++) {
		/* Queued data first, then a spliced frame: the wire carries them in that order. */
		uint32_t q = (uint32_t)(rand() % 3000), k = 1 + (uint32_t)(rand() % 70000);
		if (q > gs->send_credit)
			q = gs->send_credit;
		if (off + q + k > sizeof(payload))
			off = 0;
		CHECK_EQ_INT(mux_send_data(&l->guest.m, gs, MUX_CHAN_OUT, payload + off, q), q);
		CHECK_EQ_INT(buf_append(&want, payload + off, q), 0);
		off += q;
		CHECK_EQ_INT(
		    buf_append(&wire, buf_head(&l->guest.m.out), buf_used(&l->guest.m.out)), 0);
		buf_consume(&l->guest.m.out, SIZE_MAX);
		if (k > gs->send_credit) {
			uint32_t c = gs->send_credit;
			CHECK_EQ_INT(mux_data_header(gs, MUX_CHAN_OUT, k, hdr), -EINVAL);
			CHECK_EQ_INT(gs->send_credit, c);
			k = c;
		}
		if (k > 0) {
			CHECK_EQ_INT(mux_data_header(gs, MUX_CHAN_OUT, k, hdr), 0);
			CHECK_EQ_INT(buf_append(&wire, hdr, sizeof(hdr)), 0);
			CHECK_EQ_INT(buf_append(&wire, payload + off, k), 0);
			CHECK_EQ_INT(buf_append(&want, payload + off, k), 0);
			off += k;
		}
		/* The host reads the wire in random pieces; its credits go back to the guest. */
		while (buf_used(&wire)) {
			size_t n = 1 + (size_t)rand() % 9000;
			if (n > buf_used(&wire))
				n = buf_used(&wire);
			if (!CHECK_EQ_INT(mux_feed(&l->host.m, buf_head(&wire), n), 0))
				goto out;
			buf_consume(&wire, n);
		}
		CHECK_EQ_INT(pump(l), 0);
	}
	CHECK_BUF(&l->host.data[MUX_CHAN_OUT], buf_head(&want), buf_used(&want));
	/* Everything was consumed: all but less than a CREDIT's threshold came back. */
	CHECK(gs->send_credit > MUX_WINDOW - MUX_WINDOW / 8);
	mux_close(&l->guest.m, gs, 0);
	CHECK_EQ_INT(mux_data_header(gs, MUX_CHAN_OUT, 1, hdr), -EINVAL);
out:
	buf_fini(&wire);
	buf_fini(&want);
	link_free(l);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_send_msg_refuses_bad);
	CHECK_RUN(test_open_roundtrip);
	CHECK_RUN(test_data_eof_ctl);
	CHECK_RUN(test_close);
	CHECK_RUN(test_credit);
	CHECK_RUN(test_split_and_stream);
	CHECK_RUN(test_partial_feed);
	CHECK_RUN(test_frame_parse);
	CHECK_RUN(test_hostile_header);
	CHECK_RUN(test_hostile_open);
	CHECK_RUN(test_hostile_window);
	CHECK_RUN(test_hostile_streams);
	CHECK_RUN(test_max_streams);
	CHECK_RUN(test_rx_backpressure);
	CHECK_RUN(test_rx_in_max);
	CHECK_RUN(test_out_max);
	CHECK_RUN(test_data_header);
	return check_summary();
}
