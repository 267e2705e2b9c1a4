/* SPDX-License-Identifier: MIT */
/*
 * The host<->guest link: numbered streams multiplexed over one byte stream (a virtio-serial
 * port), shared by the supervisor and the agent.
 *
 * Wire format: every frame is a 12-byte little-endian header followed by `len` payload bytes.
 *
 *   u32 stream   0 = the link itself (CTL only); odd = opened by the host; even = by the guest
 *   u8  type     enum mux_type
 *   u8  chan     DATA/EOF: 0 stdin-like (towards the opener's peer), 1 stdout, 2 stderr
 *   u16 flags    must be 0
 *   u32 len      <= MUX_MAX_PAYLOAD
 *
 * Streams: OPEN (payload: u16 service + TLVs, see msg.h) creates a stream; DATA carries bytes on a
 * channel; EOF ends one channel; CTL carries a small out-of-band message (resize, signal, exit);
 * CREDIT (u32) returns receive window; CLOSE (optional u32 errno) says the sender will send
 * nothing more on the stream. A stream is freed once both sides have sent CLOSE. Stream ids are
 * never reused.
 *
 * Flow control: each side may have at most MUX_WINDOW bytes of DATA outstanding per stream; the
 * receiver returns credit as it consumes. A slow stream therefore never blocks the others.
 *
 * The peer is hostile: every header field and every state transition is checked, a frame that
 * breaks the protocol fails the whole link (mux_feed returns -EPROTO), and memory per link is
 * bounded by MUX_MAX_STREAMS, MUX_WINDOW and MUX_MAX_PAYLOAD.
 *
 * Back-pressure (the host's side; the agent trusts the host): many frames make the receiver
 * queue a reply (CLOSE refusing an OPEN, CREDIT, a DNS answer, a 403), so a peer that writes
 * without reading could grow `out` without end. The host therefore handles the peer's frames
 * only while `out` holds less than MUX_RX_STOP: past it, mux_feed keeps the rest of the bytes
 * unhandled in `in`, mux_rx_paused() tells the owner to stop reading the link (the peer's writes
 * then block in its own kernel), and handling resumes once `out` drained to MUX_RX_RESUME
 * (mux_rx_resume). The check is made before every frame, so one read batch cannot amplify:
 * producers stop at MUX_OUT_HIGH, below the mark, so `out` stays under MUX_RX_STOP plus the
 * replies to one frame (a few KB), and `in` under MUX_IN_MAX. MUX_OUT_MAX is the hard cap behind
 * that: a frame that would take `out` past it is not queued and the link fails
 * (mux_overflowed), never the process. With these a guest root flooding the link with any frame
 * kind keeps the supervisor under 48 MB of RSS (it idles at ~10 MB; peaks measured at 15-30 MB
 * by tests/integration/test_link_flood.sh).
 */
#ifndef MATCHLOCK_MUX_H
#define MATCHLOCK_MUX_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/buf.h"

#define MUX_VERSION 1
#define MUX_HDR_LEN 12
#define MUX_MAX_PAYLOAD (256u * 1024)
#define MUX_WINDOW (256u * 1024)
#define MUX_DATA_CHUNK (32u * 1024) /* senders split DATA into frames of at most this */
#define MUX_MAX_STREAMS 1024
#define MUX_OUT_HIGH (2u * 1024 * 1024) /* stop producing when this much waits to be sent */
/*
 * Stop handling the peer's frames when this much waits to be sent. Above MUX_OUT_HIGH, so the
 * producers' own data never stops the reader: only replies the peer provokes while not reading.
 */
#define MUX_RX_STOP (4u * 1024 * 1024)
/* Handle them again once the queue drained to the producers' mark (hysteresis). */
#define MUX_RX_RESUME MUX_OUT_HIGH
/* Hard cap on the queue: past it the link fails (far above anything the marks allow). */
#define MUX_OUT_MAX (16u * 1024 * 1024)
/* Unhandled received bytes: one partial frame plus the owner's last read (64 KB). */
#define MUX_IN_MAX (2u * MUX_MAX_PAYLOAD)

enum mux_type {
	MUX_OPEN = 1,
	MUX_DATA,
	MUX_EOF,
	MUX_CTL,
	MUX_CREDIT,
	MUX_CLOSE,
	MUX_TYPE_END,
};

enum mux_chan { MUX_CHAN_IN, MUX_CHAN_OUT, MUX_CHAN_ERR, MUX_CHAN_END };

enum mux_side { MUX_SIDE_HOST, MUX_SIDE_GUEST };

struct mux_frame {
	uint32_t stream;
	uint8_t type;
	uint8_t chan;
	uint32_t len;
	const uint8_t *payload;
};

struct mux_stream {
	uint32_t id;
	uint32_t send_credit; /* bytes we may still send */
	uint32_t recv_window; /* bytes the peer may still send us */
	uint32_t recv_consumed; /* consumed by us, not yet credited back */
	bool local_closed;
	bool peer_closed;
	uint8_t owner; /* the owner's tag for user (0 = none); the mux never reads it */
	void *user; /* owner's per-stream state */
};

struct mux;
/*
 * Called by mux_feed for each valid frame, after the stream state has been updated. `s` is NULL
 * for stream 0. For DATA the owner must call mux_consumed() once it has used the bytes.
 * On CLOSE the owner must eventually call mux_close(), which frees `s` (do not touch it after).
 * A negative return fails the link (mux_feed returns it).
 */
typedef int (*mux_frame_fn)(struct mux *m, struct mux_stream *s, const struct mux_frame *f,
			    void *opaque);

struct mux {
	enum mux_side side;
	struct buf in; /* partial frame from the peer */
	struct buf out; /* frames waiting to be written */
	uint32_t next_id; /* next id we open */
	uint32_t peer_last_id; /* highest id the peer has opened */
	unsigned nstreams;
	struct mux_stream *streams[MUX_MAX_STREAMS];
	mux_frame_fn on_frame;
	void *opaque;
	bool rx_bounded; /* the host: hold the peer's frames while `out` is over MUX_RX_STOP */
	bool rx_paused; /* holding them (the owner must not read the link) */
	bool feeding; /* inside mux_feed/mux_rx_resume: a callback's resume is a no-op */
	bool overflow; /* a frame was refused at MUX_OUT_MAX: the owner fails the link */
	unsigned rx_pauses; /* how often the peer made us stop reading (for the log) */
};

void mux_init(struct mux *m, enum mux_side side, mux_frame_fn on_frame, void *opaque);
/* Frees every stream (their `user` pointers are the owner's) and the buffers. */
void mux_fini(struct mux *m);

/*
 * Parse one frame header and check it on its own (no stream state). Returns the frame's total
 * length, 0 if more bytes are needed, or -EPROTO.
 */
int mux_frame_parse(const uint8_t *p, size_t n, struct mux_frame *f);

/*
 * Feed bytes read from the link. Returns 0, or -EPROTO / the callback's error / -ENOBUFS (past
 * MUX_OUT_MAX or MUX_IN_MAX: the peer flooded the link). Frames left unhandled because the mux
 * paused are kept in `in`: the owner stops reading while mux_rx_paused().
 */
int mux_feed(struct mux *m, const uint8_t *p, size_t n);
/*
 * Call after writing some of `out`: once it drained to MUX_RX_RESUME, handle the frames held in
 * `in` (which may pause again). Returns like mux_feed; a no-op when called from a callback.
 */
int mux_rx_resume(struct mux *m);
/* Give back the buffers' storage when they are empty (after a flood). */
void mux_trim(struct mux *m);

struct mux_stream *mux_find(struct mux *m, uint32_t id);
/* Open a stream: queues OPEN with service + body. Returns the stream or NULL (errno set). */
struct mux_stream *mux_open(struct mux *m, uint16_t service, const void *body, uint32_t len);
/* Queue up to n bytes of DATA, limited by credit; returns bytes accepted. */
uint32_t mux_send_data(struct mux *m, struct mux_stream *s, uint8_t chan, const void *p,
		       uint32_t n);
/*
 * For a sender that moves DATA bytes to the link itself (the agent splices them into the port
 * with no copy): take n bytes of credit (1 <= n <= MUX_MAX_PAYLOAD and within the credit) and
 * build the frame's header in hdr. The caller then writes hdr and exactly n bytes, and nothing
 * queued in `out` before them may be written after. -EINVAL (nothing taken) if n does not fit.
 */
int mux_data_header(struct mux_stream *s, uint8_t chan, uint32_t n, uint8_t hdr[MUX_HDR_LEN]);
int mux_send_eof(struct mux *m, struct mux_stream *s, uint8_t chan);
int mux_send_ctl(struct mux *m, uint32_t stream, const void *p, uint32_t n);
/* A CTL message built in msg: -ENOMEM, and nothing queued, if an append to it failed. */
int mux_send_msg(struct mux *m, uint32_t stream, const struct buf *msg);
/* Queue CLOSE (err = 0 or a positive errno); frees the stream if the peer had closed too. */
int mux_close(struct mux *m, struct mux_stream *s, uint32_t err);
/* Tell the mux n received bytes were used; queues CREDIT when worthwhile. */
int mux_consumed(struct mux *m, struct mux_stream *s, uint32_t n);

static inline bool mux_congested(const struct mux *m)
{
	return buf_used(&m->out) >= MUX_OUT_HIGH;
}
/* The peer's frames are being held: do not read the link until mux_rx_resume() handled them. */
static inline bool mux_rx_paused(const struct mux *m)
{
	return m->rx_paused;
}
/* A frame was refused at MUX_OUT_MAX: the link must fail. */
static inline bool mux_overflowed(const struct mux *m)
{
	return m->overflow;
}

#endif
