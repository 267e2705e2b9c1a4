/* SPDX-License-Identifier: MIT */
/*
 * The intercepting proxy's connection object, shared by its parts and by nothing else:
 * tls.c (the contexts, both TLS ends, moving bytes), proxy.c (HTTP/1 between them) and
 * proxy_h2.c (HTTP/2 between them, when the guest and the upstream negotiated h2).
 */
#ifndef MATCHLOCK_FLOW_H
#define MATCHLOCK_FLOW_H

#include <openssl/ssl.h>

#include "codec.h"
#include "http.h"
#include "mitm.h"
#include "tls_ca.h"
#include "ws.h"

struct mitm {
	const struct secrets *ss;
	struct tls_ca ca;
	SSL_CTX *guest_ctx, *up_ctx;
	size_t held; /* request-body bytes held by all flows (RQF_HELD), at most MITM_HELD_MAX */
	unsigned wide_codecs; /* br and zstd codecs of all flows, at most MITM_WIDE_CODECS_MAX */
	struct hooks *hooks; /* network hook rules (proxy_hooks.h), the caller's; may be NULL */
	bool system_store; /* up_ctx trusts the system's CAs: loaded at the first upstream TLS */
};

/* The proxy's states; proxy.c says how they change. */
enum rq_state { RQ_HEAD, RQ_BODY, RQ_WAIT_UPGRADE, RQ_TUNNEL, RQ_STOPPED };
enum rs_state { RS_HEAD, RS_BODY, RS_TUNNEL, RS_CLOSED };

/* How a request body goes upstream; proxy.c decides at its head (rq_body_plan). */
enum rq_frame {
	RQF_AS_IS, /* its Content-Length, unchanged: nothing can change its length */
	RQF_CHUNKED, /* re-chunked: it came chunked, or a long body may change length (HTTP/1.1) */
	RQF_HELD, /* held whole and sent with its new Content-Length once it has ended */
};
#define FLOW_HELD_BODY_MAX (1u << 20) /* the longest Content-Length body held (RQF_HELD) */
#define FLOW_HELD_OUT_MAX (4u << 20) /* ... and what it may grow to with values put in */
#define MITM_HELD_MAX (16u << 20) /* held bodies of all of a sandbox's flows together */
/*
 * br and zstd decoders keep windows of up to 16 and 8 MiB (and their encoders a few MiB): a
 * sandbox runs this many at once; zlib's 32 KiB windows are not counted.
 */
#define MITM_WIDE_CODECS_MAX 4

/* A request sent upstream whose response has not ended yet. */
struct pending {
	char method[16];
	char url[8 + POLICY_NAME_MAX + 6 + 400]; /* https://NAME:PORT and pending_fill's target */
	int minor;
	bool upgrade;
	uint64_t t0, up, down;
	uint64_t hk_matched; /* hook rules whose response edits apply (proxy_hooks.h) */
	uint32_t hk_gen;
};

struct h2; /* proxy_h2.c: the two HTTP/2 sessions of a flow and their streams */
struct sigv4_flow; /* proxy_sigv4.c: the SigV4 request being re-signed */

struct flow {
	struct mitm *m;
	char name[POLICY_NAME_MAX + 1];
	uint16_t port;
	flow_event_fn ev;
	void *opaque;

	SSL *g; /* the guest's side: we are the server, memory BIOs */
	BIO *g_in, *g_out; /* owned by g */
	SSL *u; /* upstream: we are the client, on fd */
	int fd;
	bool g_hs, u_hs; /* handshakes done */
	bool u_failed;
	char u_why[300]; /* why the upstream failed, for the log and events */
	char u_guest[300]; /* what the guest's 502 says */
	bool u_want_write; /* the last upstream TLS call needs the socket writable */
	bool g_eof, u_eof, u_shut, closing, failed, g_closed;
	bool u_reset; /* a request was cut off mid-body: the upstream connection is reset */

	struct buf req_in; /* guest plaintext not parsed yet */
	struct buf req_out; /* plaintext for upstream */
	struct buf resp_in; /* upstream plaintext not parsed yet */
	struct buf to_guest; /* ciphertext for the guest */
	struct buf g_plain; /* plaintext for the guest, encrypted in one go per round */
	struct buf final; /* the response that ends the connection (400/403/502), after the queue */

	enum rq_state rq;
	struct http_body rq_body;
	enum rq_frame rq_frame;
	bool rq_subst_on; /* the body goes through rq_subst (the sandbox has secrets) */
	struct secrets_body rq_subst;
	struct codec *rq_inspect; /* a compressed body: decoded only to look for placeholders */
	bool rq_wide, rs_wide; /* rq_inspect, rs_dec: counted in mitm.wide_codecs */
	struct buf rq_held; /* RQF_HELD: the rewritten head */
	struct buf rq_held_body; /* RQF_HELD: the body with values put in */
	struct buf rq_trailers; /* a chunked body's trailer lines, until the body ends */
	struct sigv4_flow *sv; /* the request is signed with the sandbox's AWS credential */
	enum rs_state rs;
	struct http_body rs_body;
	bool rs_chunked_out, rs_close_after;
	struct scrub scrub;
	enum codec_kind rs_coding;
	struct codec *rs_dec, *rs_enc; /* a compressed response: decoded, scrubbed, re-encoded */
	struct http_msg rs_msg;
	/*
	 * After a WebSocket upgrade, with secrets: the tunnel carries frames, relayed through
	 * the filters of ws_sec (else bytes pass as they are).
	 */
	bool ws_on;
	struct ws_relay ws_up, ws_down;
	struct ws_secrets ws_sec;

	struct pending q[FLOW_MAX_PIPELINE];
	unsigned qhead, qlen;

	/*
	 * ALPN is negotiated on each side (tls.c): the upstream is offered h2 and http/1.1 (only
	 * http/1.1 to a guest that offered no ALPN), and the guest's handshake waits until the
	 * upstream's is done so that it gets the same protocol when it offers it (no translation);
	 * when it does not, the versions are translated: an h2 guest over an HTTP/1.1 upstream
	 * in proxy_h2.c, an HTTP/1.1 guest over an h2 upstream in proxy_up2.c.
	 */
	bool hello_seen, g_offers_h2, g_offers_h1;
	bool u_h2; /* the upstream chose h2 */
	struct h2 *h2; /* the guest speaks HTTP/2: proxy_h2.c runs the flow, not proxy.c's states */
	struct up2 *up2; /* HTTP/1.1 guest, h2 upstream: proxy.c's bytes go through proxy_up2.c */
	/* A request held for an SDK callback (proxy_hooks.c), and how to wake the owner. */
	struct hook_wait *hw;
	struct hooks_body *rs_hk; /* the response's body replacements, or NULL */
	void (*wake)(void *opaque);
	void *wake_opaque;
};

/* tls.c: an event about f. */
void flow_event(struct flow *f, enum net_event_kind kind, bool allowed, const char *reason,
		const struct net_request *rq);
/*
 * tls.c: cut the upstream connection off (a request refused mid-body must not complete): what
 * is queued is dropped and the socket is reset when it closes. The flow then ends.
 */
void tls_upstream_reset(struct flow *f);
/*
 * tls.c: end the connection on both sides after what is queued: the upstream gets what
 * req_out holds (best effort: one write) and a TLS close, the guest what it is owed.
 */
void tls_close_both(struct flow *f);

/*
 * proxy_sigv4.c: AWS SigV4 re-signing. sigv4_start looks at a request (as the guest sent it)
 * before it is rewritten: *sv is set when it is signed with the sandbox's placeholder key id
 * toward one of the credential's hosts (0 either way), or a refusal's status is returned with
 * its reason. sigv4_resign, on the rewritten request (and the body, when the payload hash is
 * its hash): 0 with the new signature in sig once the guest's signature is checked; 403 when
 * the guest did not sign with the placeholder key; another status on failure.
 * sigv4_put_signature writes sig over the guest's (in the target when presigned, else in the
 * Authorization value). HTTP/1 heads: sigv4_begin (state in f->sv), sigv4_needs_body (its
 * payload hash is the body's: held whole), sigv4_finish on the rewritten head in to[start..];
 * sigv4_flow_end frees.
 */
enum sigv4_body {
	SIGV4_BODY_NONE,
	SIGV4_BODY_HOLDABLE, /* a Content-Length body the proxy can hold to hash (HTTP/1) */
	SIGV4_BODY_STREAMED, /* anything else */
};
struct sigv4_req;
int sigv4_start(struct flow *f, const struct sigv4_req *rq, enum sigv4_body body,
		struct sigv4_flow **sv, char *reason, size_t rn);
int sigv4_resign(struct flow *f, struct sigv4_flow *sv, const struct sigv4_req *up,
		 const uint8_t *body, size_t bn, char sig[65], char *reason, size_t rn);
bool sigv4_put_signature(const struct sigv4_flow *sv, uint8_t *target, size_t tl, uint8_t *authz,
			 size_t al, const char *sig);
void sigv4_state_free(struct sigv4_flow *sv);
/* Whether sv's body is aws-chunked with signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD). */
bool sigv4_signs_chunks(const struct sigv4_flow *sv);
/*
 * Such a body's bytes (after its HTTP framing), n of them (final: it ends): each whole chunk
 * goes to out with its signature checked and replaced. 0; -EKEYREJECTED: a chunk not signed
 * in the guest's chain with the placeholder key; -EMSGSIZE: a chunk over 1 MiB; -EPROTO:
 * not aws-chunked (or trailers); -ENOMEM.
 */
int sigv4_chunks_feed(struct flow *f, const uint8_t *p, size_t n, bool final, struct buf *out);
int sigv4_begin(struct flow *f, const uint8_t *head, const struct http_msg *m, char *reason,
		size_t rn);
bool sigv4_needs_body(const struct flow *f);
int sigv4_finish(struct flow *f, struct buf *to, size_t start, const uint8_t *body, size_t bn,
		 char *reason, size_t rn);
void sigv4_flow_end(struct flow *f);
/* proxy.c: free a flow's per-message state (request body, response codings). */
void proxy_fini(struct flow *f);
/*
 * proxy.c: a decoder for kind, counted against the sandbox's MITM_WIDE_CODECS_MAX when it is
 * br or zstd (*wide says so). 0, -EBUSY or -ENOMEM. codec_release frees it (and enc) and gives
 * its place back. HTTP/1 and HTTP/2 bodies share the budget.
 */
int codec_take(struct flow *f, enum codec_kind kind, struct codec **c, bool *wide);
void codec_release(struct flow *f, struct codec **c, struct codec **enc, bool *wide);
/* tls.c: queue plaintext for the guest (encrypted once per round). */
void tls_guest_write(struct flow *f, const void *p, size_t n);
/* proxy.c: parse and forward the guest's requests as far as the buffers allow. */
void proxy_requests_run(struct flow *f);
/* proxy.c: parse and forward the upstream's responses. */
void proxy_responses_run(struct flow *f);
/*
 * proxy_h2.c: the guest negotiated h2, and the upstream h2 (H2_UP_H2), HTTP/1.1 (H2_UP_HTTP1:
 * each stream is one exchange on the connection, in turn) or nothing (H2_UP_FAILED: every
 * request is answered 502). -ENOMEM.
 */
enum h2_upstream { H2_UP_FAILED, H2_UP_H2, H2_UP_HTTP1 };
int h2_start(struct flow *f, enum h2_upstream up);
void h2_free(struct h2 *h);
/* proxy_h2.c: take the guest's (upstream's) bytes, and queue frames for both sides. */
void h2_requests_run(struct flow *f);
void h2_responses_run(struct flow *f);
/* proxy_h2.c: nothing more will happen on this connection: close the guest's side. */
bool h2_finished(const struct flow *f);

/*
 * proxy_up2.c: an HTTP/1.1 guest, an upstream that chose h2. up2_start (the guest's handshake
 * is done; what resp_in holds is the upstream's first frames): -ENOMEM. up2_push turns the
 * requests proxy.c queued in req_out into streams and frames in up2_wire (what goes on the
 * socket instead of req_out); up2_recv takes the upstream's bytes; up2_pull moves responses,
 * as HTTP/1.1, into resp_in (and sets u_eof when the connection can carry nothing more);
 * up2_idle: no exchange in progress.
 */
int up2_start(struct flow *f);
void up2_free(struct up2 *x);
void up2_push(struct flow *f);
void up2_recv(struct flow *f, const uint8_t *p, size_t n);
void up2_pull(struct flow *f);
struct buf *up2_wire(const struct flow *f);
bool up2_idle(const struct flow *f);

#endif
