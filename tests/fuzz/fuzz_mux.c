/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the mux. The input (format in fuzz_mux.h) picks the side under test and
 * how its owner behaves, then supplies the bytes a hostile peer sends, fed in pieces whose sizes
 * derive from the input. The owner's callback parses OPEN and CTL payloads as the agent and the
 * supervisor do, consumes and echoes DATA, answers EOF, CTL and CLOSE.
 *
 * Beyond "no crash, no leak, no undefined behaviour" the harness aborts when:
 *  - a frame the mux queued for the peer does not parse as a valid frame;
 *  - a stream's flow-control accounting is off (send credit above the window, or receive window
 *    + not-yet-credited + not-yet-consumed bytes != MUX_WINDOW);
 *  - a stream survives after both sides sent CLOSE;
 *  - mux_feed fails with anything but -EPROTO, -ENOBUFS (a flood past the host's caps) or an
 *    error the callback returned.
 * After each piece the harness drains what the mux queued and calls mux_rx_resume(), as the
 * supervisor does, so frames the host held while its queue was full are handled.
 * Each piece is copied into its own allocation, so reading past it or keeping a pointer into it
 * after mux_feed returns is caught by ASan.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_mux.h"
#include "proto/msg.h"
#include "proto/mux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz {
	uint8_t opts;
};

/* DATA bytes received but not yet consumed are counted in the stream's user pointer. */
static uint32_t pending_get(const struct mux_stream *s)
{
	return (uint32_t)(uintptr_t)s->user;
}

static void pending_set(struct mux_stream *s, uint32_t n)
{
	s->user = (void *)(uintptr_t)n;
}

static int consume(struct mux *m, struct mux_stream *s)
{
	uint32_t n = pending_get(s);
	pending_set(s, 0);
	return n ? mux_consumed(m, s, n) : 0;
}

/* Read TLVs the way the agent and the supervisor do; returns 0 or a negative errno. */
static int parse_tlvs(struct rd *r)
{
	unsigned nargs = 0, nenv = 0;
	struct rd val;
	uint16_t tag;
	int k;

	while ((k = msg_next(r, &tag, &val)) == 1) {
		char *s = NULL;
		uint8_t u8;
		uint16_t u16;
		uint32_t u32;
		uint64_t u64;
		int e = 0;

		switch (tag) {
		case T_ARGV:
		case T_ENV:
			if (++*(tag == T_ARGV ? &nargs : &nenv) > MSG_MAX_ARGS)
				return -E2BIG;
			e = msg_dup_str(&val, MSG_MAX_STR, &s);
			break;
		case T_HOSTNAME:
		case T_CWD:
		case T_USER:
		case T_MESSAGE:
			e = msg_dup_str(&val, MSG_MAX_STR, &s);
			break;
		case T_TTY:
		case T_STDIN:
			e = msg_get_u8(&val, &u8);
			break;
		case T_ROWS:
		case T_COLS:
			e = msg_get_u16(&val, &u16);
			break;
		case T_VERSION:
		case T_SIGNAL:
		case T_EXIT_CODE:
		case T_EXIT_SIGNAL:
		case T_ERRNO:
			e = msg_get_u32(&val, &u32);
			break;
		case T_BOOT_NS:
		case T_READY_NS:
		case T_TIME_NS:
			e = msg_get_u64(&val, &u64);
			break;
		default:
			break; /* unknown tags are skipped */
		}
		if (s && strlen(s) > MSG_MAX_STR)
			abort();
		free(s);
		if (e < 0)
			return e;
	}
	return k;
}

/* Answer a CTL message: config for a hello, an exit for a signal; POWEROFF ends the link. */
static int on_ctl(struct mux *m, struct mux_stream *s, struct rd *r)
{
	uint16_t type = rd_u16(r);
	struct buf b = { 0 };
	int e = parse_tlvs(r);

	if (e < 0)
		return s ? mux_close(m, s, EPROTO) : -EBADMSG;
	switch (type) {
	case CTL_HELLO:
		if (s)
			break;
		e = buf_put_u16(&b, CTL_CONFIG);
		if (e == 0)
			e = msg_put_str(&b, T_HOSTNAME, "fuzz");
		if (e == 0)
			e = msg_put_u64(&b, T_TIME_NS, 1);
		if (e == 0)
			e = mux_send_ctl(m, 0, buf_head(&b), (uint32_t)buf_used(&b));
		break;
	case CTL_POWEROFF:
		e = -ECANCELED;
		break;
	case CTL_SIGNAL:
		if (!s || s->local_closed)
			break;
		e = buf_put_u16(&b, CTL_EXIT);
		if (e == 0)
			e = msg_put_u32(&b, T_EXIT_SIGNAL, 9);
		if (e == 0)
			e = mux_send_ctl(m, s->id, buf_head(&b), (uint32_t)buf_used(&b));
		if (e == 0)
			e = mux_close(m, s, 0); /* may free s */
		break;
	}
	buf_fini(&b);
	return e;
}

static int on_frame(struct mux *m, struct mux_stream *s, const struct mux_frame *f, void *opaque)
{
	const struct fuzz *z = opaque;
	struct rd r = rd_make(f->payload, f->len);
	int e;

	if ((s == NULL) != (f->stream == 0) || (s && s->id != f->stream))
		abort();
	switch (f->type) {
	case MUX_OPEN:
		if (z->opts & FUZZ_MUX_REFUSE)
			return mux_close(m, s, ECONNREFUSED);
		if (rd_u16(&r) != SVC_EXEC || parse_tlvs(&r) < 0)
			return mux_close(m, s, EPROTO);
		mux_send_data(m, s, MUX_CHAN_OUT, "started\n", 8);
		return 0;
	case MUX_DATA:
		if (f->chan >= MUX_CHAN_END || f->len == 0)
			abort();
		pending_set(s, pending_get(s) + f->len);
		if (z->opts & FUZZ_MUX_ECHO)
			mux_send_data(m, s, MUX_CHAN_OUT, f->payload, f->len);
		return z->opts & (FUZZ_MUX_LAZY | FUZZ_MUX_STALL) ? 0 : consume(m, s);
	case MUX_EOF:
		if (!(z->opts & FUZZ_MUX_HANGUP))
			return 0;
		e = mux_send_eof(m, s, MUX_CHAN_OUT);
		return e < 0 ? e : mux_close(m, s, 0);
	case MUX_CTL:
		return on_ctl(m, s, &r);
	case MUX_CREDIT:
		if (z->opts & FUZZ_MUX_ECHO)
			mux_send_data(m, s, MUX_CHAN_ERR, "more", 4);
		return 0;
	case MUX_CLOSE:
		return z->opts & FUZZ_MUX_CLOSE_NOW ? mux_close(m, s, 0) : 0;
	}
	abort(); /* the mux passed on a frame type it should have rejected */
}

/* Every frame we queued must be one the peer's mux_frame_parse accepts whole. */
static void drain(struct mux *m)
{
	size_t n = buf_used(&m->out);
	if (n == 0)
		return; /* buf_head() of a never-used buf would be NULL + 0 */
	const uint8_t *p = buf_head(&m->out);

	while (n > 0) {
		struct mux_frame f;
		int k = mux_frame_parse(p, n, &f);
		if (k <= 0)
			abort();
		p += k;
		n -= (size_t)k;
	}
	buf_consume(&m->out, SIZE_MAX);
}

/* After each feed: deferred consumes and CLOSE answers, then the invariants, then the output. */
static int settle(struct mux *m, const struct fuzz *z)
{
	bool lazy = (z->opts & (FUZZ_MUX_LAZY | FUZZ_MUX_STALL)) == FUZZ_MUX_LAZY;

	/* Backwards: freeing moves the last stream into slot i, which was already visited. */
	for (unsigned i = m->nstreams; i-- > 0;) {
		struct mux_stream *s = m->streams[i];
		int r = lazy ? consume(m, s) : 0;
		if (r == 0 && s->peer_closed)
			r = mux_close(m, s, 0);
		if (r < 0)
			return r;
	}

	if (m->nstreams > MUX_MAX_STREAMS)
		abort();
	for (unsigned i = 0; i < m->nstreams; i++) {
		const struct mux_stream *s = m->streams[i];
		bool ours = (s->id & 1) == (m->side == MUX_SIDE_HOST);
		if (s->send_credit > MUX_WINDOW || s->peer_closed || s->id == 0)
			abort();
		if ((uint64_t)s->recv_window + s->recv_consumed + pending_get(s) != MUX_WINDOW)
			abort();
		if (ours ? s->id >= m->next_id : s->id > m->peer_last_id)
			abort();
	}
	drain(m);
	return 0;
}

/* Run one input; returns how the link ended (0 or the error that failed it). */
static int fuzz_run(const uint8_t *data, size_t size)
{
	if (size < FUZZ_MUX_HDR)
		return 0;
	struct fuzz z = { .opts = data[0] };
	uint8_t chunk = data[1];
	data += FUZZ_MUX_HDR;
	size -= FUZZ_MUX_HDR;

	struct mux *m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	mux_init(m, z.opts & FUZZ_MUX_GUEST ? MUX_SIDE_GUEST : MUX_SIDE_HOST, on_frame, &z);

	int r = 0;
	static const uint8_t body[] = { T_ARGV, 0, 4, 0, 0, 0, 't', 'r', 'u', 'e' };
	for (unsigned i = 0; i < (z.opts & FUZZ_MUX_OPEN2 ? FUZZ_MUX_NOPEN : 0) && r == 0; i++)
		if (!mux_open(m, SVC_EXEC, body, sizeof(body)))
			r = -ENOMEM;
	drain(m);

	uint32_t x = chunk * 2654435761u | 1;
	while (r == 0 && size > 0) {
		size_t n = size;
		if (chunk) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			n = 1 + x % chunk;
			if (n > size)
				n = size;
		}
		uint8_t *piece = malloc(n);
		if (!piece) {
			r = -ENOMEM;
			break;
		}
		memcpy(piece, data, n);
		r = mux_feed(m, piece, n);
		free(piece);
		if (r == 0)
			r = settle(m, &z);
		if (r == 0)
			r = mux_rx_resume(m);
		if (r == 0)
			r = settle(m, &z);
		data += n;
		size -= n;
	}
	if (r < 0 && r != -EPROTO && r != -EBADMSG && r != -ECANCELED && r != -ENOMEM &&
	    r != -ENOBUFS)
		abort();
	mux_fini(m);
	free(m);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_run(data, size);
	return 0;
}
