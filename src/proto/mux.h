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
};

void mux_init(struct mux *m, enum mux_side side, mux_frame_fn on_frame, void *opaque);
/* Frees every stream (their `user` pointers are the owner's) and the buffers. */
void mux_fini(struct mux *m);

/*
 * Parse one frame header and check it on its own (no stream state). Returns the frame's total
 * length, 0 if more bytes are needed, or -EPROTO.
 */
int mux_frame_parse(const uint8_t *p, size_t n, struct mux_frame *f);

/* Feed bytes read from the link. Returns 0, or -EPROTO / the callback's error. */
int mux_feed(struct mux *m, const uint8_t *p, size_t n);

struct mux_stream *mux_find(struct mux *m, uint32_t id);
/* Open a stream: queues OPEN with service + body. Returns the stream or NULL (errno set). */
struct mux_stream *mux_open(struct mux *m, uint16_t service, const void *body, uint32_t len);
/* Queue up to n bytes of DATA, limited by credit; returns bytes accepted. */
uint32_t mux_send_data(struct mux *m, struct mux_stream *s, uint8_t chan, const void *p, uint32_t n);
int mux_send_eof(struct mux *m, struct mux_stream *s, uint8_t chan);
int mux_send_ctl(struct mux *m, uint32_t stream, const void *p, uint32_t n);
/* Queue CLOSE (err = 0 or a positive errno); frees the stream if the peer had closed too. */
int mux_close(struct mux *m, struct mux_stream *s, uint32_t err);
/* Tell the mux n received bytes were used; queues CREDIT when worthwhile. */
int mux_consumed(struct mux *m, struct mux_stream *s, uint32_t n);

static inline bool mux_congested(const struct mux *m) { return buf_used(&m->out) >= MUX_OUT_HIGH; }

#endif
