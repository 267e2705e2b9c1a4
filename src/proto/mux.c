/* SPDX-License-Identifier: MIT */
#include "mux.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void mux_init(struct mux *m, enum mux_side side, mux_frame_fn on_frame, void *opaque)
{
	memset(m, 0, sizeof(*m));
	m->side = side;
	m->next_id = side == MUX_SIDE_HOST ? 1 : 2;
	m->on_frame = on_frame;
	m->opaque = opaque;
	/* The host's peer is the guest: hostile. The agent's peer is the host. */
	m->rx_bounded = side == MUX_SIDE_HOST;
}

void mux_fini(struct mux *m)
{
	for (unsigned i = 0; i < m->nstreams; i++)
		free(m->streams[i]);
	m->nstreams = 0;
	buf_fini(&m->in);
	buf_fini(&m->out);
}

int mux_frame_parse(const uint8_t *p, size_t n, struct mux_frame *f)
{
	if (n < MUX_HDR_LEN)
		return 0;
	struct rd r = rd_make(p, MUX_HDR_LEN);
	f->stream = rd_u32(&r);
	f->type = rd_u8(&r);
	f->chan = rd_u8(&r);
	uint16_t flags = rd_u16(&r);
	f->len = rd_u32(&r);

	if (flags || f->type < MUX_OPEN || f->type >= MUX_TYPE_END || f->len > MUX_MAX_PAYLOAD)
		return -EPROTO;
	if (f->chan != 0 &&
	    !((f->type == MUX_DATA || f->type == MUX_EOF) && f->chan < MUX_CHAN_END))
		return -EPROTO;
	if (f->stream == 0 && f->type != MUX_CTL)
		return -EPROTO;
	switch (f->type) {
	case MUX_OPEN:
		if (f->len < 2)
			return -EPROTO;
		break;
	case MUX_DATA:
		if (f->len == 0)
			return -EPROTO;
		break;
	case MUX_EOF:
		if (f->len != 0)
			return -EPROTO;
		break;
	case MUX_CTL:
		if (f->len < 2)
			return -EPROTO;
		break;
	case MUX_CREDIT:
		if (f->len != 4)
			return -EPROTO;
		break;
	case MUX_CLOSE:
		if (f->len != 0 && f->len != 4)
			return -EPROTO;
		break;
	}
	if (n - MUX_HDR_LEN < f->len)
		return 0;
	f->payload = p + MUX_HDR_LEN;
	return (int)(MUX_HDR_LEN + f->len);
}

struct mux_stream *mux_find(struct mux *m, uint32_t id)
{
	for (unsigned i = 0; i < m->nstreams; i++)
		if (m->streams[i]->id == id)
			return m->streams[i];
	return NULL;
}

static void mux_free_stream(struct mux *m, struct mux_stream *s)
{
	for (unsigned i = 0; i < m->nstreams; i++) {
		if (m->streams[i] == s) {
			m->streams[i] = m->streams[--m->nstreams];
			break;
		}
	}
	free(s);
}

static struct mux_stream *mux_new_stream(struct mux *m, uint32_t id)
{
	if (m->nstreams >= MUX_MAX_STREAMS) {
		errno = EMFILE;
		return NULL;
	}
	struct mux_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->id = id;
	s->send_credit = MUX_WINDOW;
	s->recv_window = MUX_WINDOW;
	m->streams[m->nstreams++] = s;
	return s;
}

static int mux_put_hdr(struct mux *m, uint32_t stream, uint8_t type, uint8_t chan, uint32_t len)
{
	if (m->rx_bounded && buf_used(&m->out) + MUX_HDR_LEN + len > MUX_OUT_MAX) {
		m->overflow = true;
		return -ENOBUFS;
	}
	uint8_t *h = buf_reserve(&m->out, MUX_HDR_LEN + len);
	if (!h)
		return -ENOMEM;
	le32_put(h, stream);
	h[4] = type;
	h[5] = chan;
	le16_put(h + 6, 0);
	le32_put(h + 8, len);
	m->out.len += MUX_HDR_LEN;
	return 0;
}

static int mux_put_frame(struct mux *m, uint32_t stream, uint8_t type, uint8_t chan, const void *p,
			 uint32_t len)
{
	int r = mux_put_hdr(m, stream, type, chan, len);
	if (r < 0)
		return r;
	return buf_append(&m->out, p, len);
}

/* The peer broke the protocol on a stream it may own: ids of its parity, monotonic. */
static bool mux_is_peer_id(const struct mux *m, uint32_t id)
{
	return (id & 1) == (m->side == MUX_SIDE_HOST ? 0 : 1);
}

static int mux_handle(struct mux *m, const struct mux_frame *f)
{
	struct mux_stream *s = NULL;

	if (f->stream == 0)
		return m->on_frame(m, NULL, f, m->opaque);

	if (f->type == MUX_OPEN) {
		if (!mux_is_peer_id(m, f->stream) || f->stream <= m->peer_last_id)
			return -EPROTO;
		m->peer_last_id = f->stream;
		s = mux_new_stream(m, f->stream);
		if (!s) {
			/* Too many streams: refuse this one, keep the link. */
			uint8_t e[4];
			le32_put(e, EMFILE);
			return mux_put_frame(m, f->stream, MUX_CLOSE, 0, e, 4);
		}
		return m->on_frame(m, s, f, m->opaque);
	}

	s = mux_find(m, f->stream);
	if (!s) {
		/*
		 * A stream we freed may still see the peer's in-flight frames; anything else
		 * names a stream that never existed.
		 */
		bool ours = !mux_is_peer_id(m, f->stream);
		bool seen = ours ? f->stream < m->next_id : f->stream <= m->peer_last_id;
		return seen ? 0 : -EPROTO;
	}
	if (s->peer_closed)
		return -EPROTO;

	switch (f->type) {
	case MUX_DATA:
		if (f->len > s->recv_window)
			return -EPROTO;
		s->recv_window -= f->len;
		break;
	case MUX_CREDIT: {
		uint32_t c = le32_get(f->payload);
		if (c > MUX_WINDOW - s->send_credit)
			return -EPROTO;
		s->send_credit += c;
		break;
	}
	case MUX_CLOSE:
		s->peer_closed = true;
		break;
	}
	/* On CLOSE the owner calls mux_close() (now or later), which frees the stream. */
	return m->on_frame(m, s, f, m->opaque);
}

/*
 * Update the hysteresis: hold the peer's frames once `out` reached MUX_RX_STOP, until it drained
 * to MUX_RX_RESUME. Returns whether frames are held.
 */
static bool mux_rx_hold(struct mux *m)
{
	size_t q = buf_used(&m->out);
	if (!m->rx_bounded)
		return false;
	if (m->rx_paused && q <= MUX_RX_RESUME) {
		m->rx_paused = false;
	} else if (!m->rx_paused && q >= MUX_RX_STOP) {
		m->rx_paused = true;
		m->rx_pauses++;
	}
	return m->rx_paused;
}

/*
 * Handle the whole frames at the front of p[0..n), checking before each one whether to hold
 * the rest. Returns the bytes handled, or an error.
 */
static long mux_handle_all(struct mux *m, const uint8_t *p, size_t n)
{
	size_t used = 0;
	while (!mux_rx_hold(m)) {
		struct mux_frame f;
		int k = mux_frame_parse(p + used, n - used, &f);
		if (k <= 0)
			return k < 0 ? k : (long)used;
		int r = mux_handle(m, &f);
		if (r < 0)
			return r;
		if (m->overflow)
			return -ENOBUFS;
		used += (size_t)k;
	}
	return (long)used;
}

/* Handle what `in` holds; keep what is left. */
static int mux_handle_in(struct mux *m)
{
	long k = mux_handle_all(m, buf_head(&m->in), buf_used(&m->in));
	if (k < 0)
		return (int)k;
	buf_consume(&m->in, (size_t)k);
	return 0;
}

int mux_feed(struct mux *m, const uint8_t *p, size_t n)
{
	int r = 0;
	m->feeding = true;
	/* Fast path: parse straight from the caller's bytes when nothing is pending. */
	if (buf_used(&m->in) == 0) {
		long k = mux_handle_all(m, p, n);
		if (k < 0) {
			r = (int)k;
			goto out;
		}
		p += k;
		n -= (size_t)k;
	}
	if (n == 0)
		goto out;
	/* Only an owner that reads while paused gets here with a full buffer. */
	if (buf_used(&m->in) + n > MUX_IN_MAX) {
		r = -ENOBUFS;
		goto out;
	}
	if (buf_append(&m->in, p, n) < 0) {
		r = -ENOMEM;
		goto out;
	}
	r = mux_handle_in(m);
out:
	m->feeding = false;
	return r;
}

int mux_rx_resume(struct mux *m)
{
	if (m->feeding || !m->rx_paused || buf_used(&m->out) > MUX_RX_RESUME)
		return 0;
	m->feeding = true;
	int r = mux_handle_in(m);
	m->feeding = false;
	return r;
}

void mux_trim(struct mux *m)
{
	if (!buf_used(&m->in))
		buf_fini(&m->in);
	if (!buf_used(&m->out))
		buf_fini(&m->out);
}

struct mux_stream *mux_open(struct mux *m, uint16_t service, const void *body, uint32_t len)
{
	if (len > MUX_MAX_PAYLOAD - 2) {
		errno = E2BIG;
		return NULL;
	}
	if (m->next_id > UINT32_MAX - 2) {
		errno = EMFILE;
		return NULL;
	}
	struct mux_stream *s = mux_new_stream(m, m->next_id);
	if (!s)
		return NULL;
	m->next_id += 2;
	uint8_t svc[2];
	le16_put(svc, service);
	if (mux_put_hdr(m, s->id, MUX_OPEN, 0, 2 + len) < 0 || buf_append(&m->out, svc, 2) < 0 ||
	    buf_append(&m->out, body, len) < 0) {
		mux_free_stream(m, s);
		errno = ENOMEM;
		return NULL;
	}
	return s;
}

uint32_t mux_send_data(struct mux *m, struct mux_stream *s, uint8_t chan, const void *p, uint32_t n)
{
	const uint8_t *c = p;
	uint32_t sent = 0;
	if (s->local_closed)
		return 0;
	while (n > 0 && s->send_credit > 0) {
		uint32_t k = n < MUX_DATA_CHUNK ? n : MUX_DATA_CHUNK;
		if (k > s->send_credit)
			k = s->send_credit;
		if (mux_put_frame(m, s->id, MUX_DATA, chan, c, k) < 0)
			break;
		s->send_credit -= k;
		sent += k;
		c += k;
		n -= k;
	}
	return sent;
}

int mux_data_header(struct mux_stream *s, uint8_t chan, uint32_t n, uint8_t hdr[MUX_HDR_LEN])
{
	if (s->local_closed || n == 0 || n > MUX_MAX_PAYLOAD || n > s->send_credit ||
	    chan >= MUX_CHAN_END)
		return -EINVAL;
	le32_put(hdr, s->id);
	hdr[4] = MUX_DATA;
	hdr[5] = chan;
	le16_put(hdr + 6, 0);
	le32_put(hdr + 8, n);
	s->send_credit -= n;
	return 0;
}

int mux_send_eof(struct mux *m, struct mux_stream *s, uint8_t chan)
{
	if (s->local_closed)
		return 0;
	return mux_put_frame(m, s->id, MUX_EOF, chan, NULL, 0);
}

int mux_send_msg(struct mux *m, uint32_t stream, const struct buf *msg)
{
	if (msg->bad)
		return -ENOMEM;
	return mux_send_ctl(m, stream, buf_head(msg), (uint32_t)buf_used(msg));
}

int mux_send_ctl(struct mux *m, uint32_t stream, const void *p, uint32_t n)
{
	if (n < 2 || n > MUX_MAX_PAYLOAD)
		return -EINVAL;
	/* After our CLOSE the peer treats any frame on the stream as a protocol error. */
	struct mux_stream *s = stream ? mux_find(m, stream) : NULL;
	if (stream && (!s || s->local_closed))
		return -EPIPE;
	return mux_put_frame(m, stream, MUX_CTL, 0, p, n);
}

int mux_close(struct mux *m, struct mux_stream *s, uint32_t err)
{
	int r = 0;
	if (!s->local_closed) {
		uint8_t e[4];
		le32_put(e, err);
		r = mux_put_frame(m, s->id, MUX_CLOSE, 0, e, err ? 4 : 0);
		s->local_closed = true;
	}
	if (s->peer_closed)
		mux_free_stream(m, s);
	return r;
}

int mux_consumed(struct mux *m, struct mux_stream *s, uint32_t n)
{
	s->recv_consumed += n;
	if (s->peer_closed || s->local_closed || s->recv_consumed < MUX_WINDOW / 8)
		return 0;
	uint8_t c[4];
	le32_put(c, s->recv_consumed);
	s->recv_window += s->recv_consumed;
	s->recv_consumed = 0;
	return mux_put_frame(m, s->id, MUX_CREDIT, 0, c, 4);
}
