/* SPDX-License-Identifier: MIT */
/*
 * WebSocket frames (RFC 6455) through the intercepting proxy, after a 101 answered an upgrade.
 * A strict, bounded frame parser (ws_parse) and, on top, a relay for one direction
 * (ws_relay_feed): frames are parsed from bytes given in any split, the payload of each data
 * message (text or binary, over all its fragments) streams through a filter (the proxy's: put
 * secret values in toward the upstream, scrub them out toward the guest) and goes out re-framed
 * with the new lengths: a frame for each frame that came (its FIN kept) unless one grows past
 * WS_RELAY_HOLD, which then goes out in fragments of about that size. Control frames
 * (close, ping, pong) are filtered whole and may come between fragments, as on the wire.
 * Re-fragmenting is allowed because no extension is in use: the proxy removes the guest's
 * Sec-WebSocket-Extensions offer (permessage-deflate) so frames carry plain payload, and any
 * RSV bit is refused. Frames toward a server are masked with fresh random keys (getrandom).
 * Memory: a frame header, one control payload, what the filter holds back and up to
 * WS_RELAY_HOLD (plus one piece's growth) of a frame's output; messages are never held whole.
 * Pure code apart from getrandom: unit-tested and fuzzed.
 */
#ifndef MATCHLOCK_WS_H
#define MATCHLOCK_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "secrets.h"

#define WS_MAX_HEADER 14 /* 2 + 8 (64-bit length) + 4 (masking key) */
#define WS_MAX_CONTROL 125 /* RFC 6455 5.5: a control frame's payload */
#define WS_MAX_MESSAGE (64u << 20) /* a data message over all its fragments; longer: 1009 */
#define WS_MAX_REASON 123 /* a close frame's reason text (125 less the code) */
#define WS_RELAY_HOLD (64u * 1024) /* a frame's output held to go out whole, at most */

enum ws_opcode {
	WS_OP_CONT = 0,
	WS_OP_TEXT = 1,
	WS_OP_BINARY = 2,
	WS_OP_CLOSE = 8,
	WS_OP_PING = 9,
	WS_OP_PONG = 10,
};

/* Close codes the proxy sends (RFC 6455 7.4.1). */
enum ws_close_code {
	WS_CLOSE_PROTOCOL = 1002, /* a malformed or forbidden frame */
	WS_CLOSE_POLICY = 1008, /* a secret placeholder headed to a host it is not scoped to */
	WS_CLOSE_TOO_BIG = 1009, /* past WS_MAX_MESSAGE, or a control frame grown past 125 */
	WS_CLOSE_INTERNAL = 1011, /* out of memory */
};

/* One direction's parser. from_client: frames must be masked; else they must not be. */
struct ws_parser {
	bool from_client;
	uint8_t hdr[WS_MAX_HEADER];
	unsigned nhdr; /* header bytes collected while !in_frame */
	bool in_frame; /* the header is read: left payload bytes follow */
	uint8_t op;
	bool fin;
	bool masked;
	uint8_t key[4];
	unsigned kpos; /* payload bytes of the frame unmasked so far, mod 4 */
	uint64_t left;
	bool in_msg; /* a data message is open (its first frame had no FIN) */
	uint8_t msg_op; /* WS_OP_TEXT or WS_OP_BINARY */
	uint64_t msg_len; /* the open message's payload so far, with the current frame's */
	uint8_t ctl[WS_MAX_CONTROL];
	unsigned nctl;
	uint16_t code; /* after a refusal: the close code to send */
	const char *why; /* ... and why (static text) */
};

enum ws_piece_kind {
	WS_PIECE_NONE, /* nothing complete yet (header bytes were taken) */
	WS_PIECE_DATA, /* a piece of a data message's payload */
	WS_PIECE_CONTROL, /* a whole control frame's payload */
};

struct ws_piece {
	enum ws_piece_kind kind;
	uint8_t op; /* DATA: the message's opcode; CONTROL: the frame's */
	bool last; /* DATA: the message ends with this piece */
	bool frame_end; /* DATA: the frame ends with this piece */
};

void ws_parser_init(struct ws_parser *ps, bool from_client);
/*
 * One step over p[0..n): *used bytes are taken; a piece's unmasked payload is appended to
 * payload. Returns 0 (pc says what came; call again while bytes are left), or -EPROTO (a
 * malformed or forbidden frame) / -EMSGSIZE (past WS_MAX_MESSAGE) with ps->code and ps->why;
 * the parser is then done with. -ENOMEM if payload could not grow.
 */
int ws_parse(struct ws_parser *ps, const uint8_t *p, size_t n, size_t *used, struct ws_piece *pc,
	     struct buf *payload);

/*
 * What a relay does to payloads: feed gets a data message's payload in pieces (final: the
 * message ends there; a filter keeps its own state across pieces and resets it at final), or a
 * whole control payload (control, final set). The result is appended to out; a negative errno
 * stops the relay and is returned by ws_relay_feed.
 */
struct ws_filter {
	int (*feed)(void *ctx, bool control, const uint8_t *p, size_t n, bool final,
		    struct buf *out);
	void *ctx;
};

/* One direction of a WebSocket connection through the proxy. */
struct ws_relay {
	struct ws_parser ps;
	bool out_started; /* a fragment of the open message went out (next ones: CONT) */
	struct buf pend; /* the current frame's filtered payload, until it ends (WS_RELAY_HOLD) */
	uint8_t keys[64]; /* random masking keys, drawn in batches (frames toward a server) */
	unsigned nkeys; /* bytes of keys used */
};

/* from_client: parses masked frames and writes masked ones (toward the server). */
void ws_relay_init(struct ws_relay *r, bool from_client);
/*
 * Relay p[0..n) (all of it is taken): frames with filtered payloads are appended to out.
 * Returns 0; -EPROTO/-EMSGSIZE (r->ps.code, r->ps.why; -EMSGSIZE also when a control payload
 * grows past WS_MAX_CONTROL); the filter's error; -ENOMEM. After an error the relay is done
 * with: the caller closes both sides (ws_relay_close).
 */
int ws_relay_feed(struct ws_relay *r, const uint8_t *p, size_t n, const struct ws_filter *f,
		  struct buf *out);
/* Wipe and free what r holds. */
void ws_relay_fini(struct ws_relay *r);
/* Append a close frame (code, reason cut to WS_MAX_REASON) in r's direction to out. */
int ws_relay_close(struct ws_relay *r, uint16_t code, const char *reason, struct buf *out);
/* Append one frame; key: the masking key (NULL: unmasked). */
int ws_frame_put(struct buf *out, bool fin, uint8_t op, const uint8_t *p, size_t n,
		 const uint8_t *key);

/*
 * The proxy's filters over a connection to host, ss's secrets: toward the upstream
 * (ws_secrets_up) each placeholder of a secret scoped to host becomes its value (raw bytes, as
 * in headers) in data messages, even split across fragments and reads, and in control
 * payloads; a placeholder of any other secret refuses the connection (-EPERM, leak set).
 * Toward the guest (ws_secrets_down) every form of a real value becomes its placeholder
 * (the connection's scrubber, shared with its HTTP responses). ss, host and sc stay the
 * caller's.
 */
struct ws_secrets {
	const struct secrets *ss;
	const char *host;
	struct secrets_body up; /* data messages toward the upstream */
	struct scrub *sc; /* data messages toward the guest */
	const struct secret *leak; /* after -EPERM: whose placeholder was headed elsewhere */
};
void ws_secrets_init(struct ws_secrets *w, const struct secrets *ss, const char *host,
		     struct scrub *sc);
int ws_secrets_up(void *ctx, bool control, const uint8_t *p, size_t n, bool final, struct buf *out);
int ws_secrets_down(void *ctx, bool control, const uint8_t *p, size_t n, bool final,
		    struct buf *out);
/* Wipe what the filters hold back (the scrubber stays the caller's). */
void ws_secrets_fini(struct ws_secrets *w);

#endif
