/* SPDX-License-Identifier: MIT */
/*
 * The network hooks (hooks.h) inside the TLS proxy: where proxy.c (HTTP/1) and proxy_h2.c
 * (HTTP/2) call them, in one place each, and the wait for an SDK callback. A request whose
 * rules ask a callback is held (nothing more is read from its connection) until the answer
 * comes or the asker's bound runs out; then the flow's owner is woken to run it again.
 * Callbacks are asked about HTTP/1.1 requests; over HTTP/2 a request that would ask is refused
 * (fail closed) and says so.
 */
#ifndef MATCHLOCK_NET_PROXY_HOOKS_H
#define MATCHLOCK_NET_PROXY_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "hooks.h"
#include "mitm.h"

/* The sandbox's rules (the caller's, may be NULL; must outlive m). */
void mitm_set_hooks(struct mitm *m, struct hooks *h);
/* How the flow's owner is told that a held request may go on (run the flow again). */
void flow_set_wake(struct flow *f, void (*fn)(void *opaque), void *opaque);

enum proxy_hooks_result { PROXY_HOOKS_GO, PROXY_HOOKS_WAIT, PROXY_HOOKS_BLOCK };

struct http_msg;
/*
 * HTTP/1: the request head at the start of f->req_in (parsed into m, *hl bytes long). GO: the
 * head may have been replaced by the edited one (m and *hl describe it), *matched and *gen are
 * for proxy_hooks_response; WAIT: a callback is asked (return, the flow is woken); BLOCK: 403
 * with reason.
 */
int proxy_hooks_request(struct flow *f, struct http_msg *m, long *hl, uint64_t *matched,
			uint32_t *gen, char *reason, size_t rn);
/* HTTP/1: the response head going to the guest (head), edited in place. -ENOMEM. */
int proxy_hooks_response(struct flow *f, uint64_t matched, uint32_t gen, bool head_request,
			 struct buf *head);
/*
 * HTTP/2: the request's packed fields (rewritten in place); false: refuse 403 with reason.
 * The response's packed fields, edited in place.
 */
bool proxy_hooks_h2_request(struct flow *f, struct buf *fields, uint64_t *matched, uint32_t *gen,
			    char *reason, size_t rn);
void proxy_hooks_h2_response(struct flow *f, uint64_t matched, uint32_t gen, struct buf *fields);
/*
 * Response bodies: the replacer of the rules matched by the request (hooks_body_new; NULL:
 * none, also for 1xx, 101 and HEAD), old freed; and the secret scrubber followed by it.
 */
struct hooks_body *proxy_hooks_body_start(struct flow *f, struct hooks_body *old, uint64_t matched,
					  uint32_t gen, int status);
int proxy_hooks_scrub_feed(const struct secrets *ss, struct scrub *sc, struct hooks_body *hb,
			   const uint8_t *p, size_t n, bool final, struct buf *out);
/*
 * Plain HTTP (egress.c passes its bytes through unchanged): a request head the rules would
 * block, ask a callback about, edit, or whose response they would edit is refused — fail
 * closed, never sent unedited. 0: it may go; -EACCES with reason.
 */
int proxy_hooks_plain(const struct mitm *mt, const char *host, const uint8_t *head,
		      const struct http_msg *m, char *reason, size_t rn);
/*
 * Whether the sandbox has callback rules: a guest that offers both h2 and http/1.1 is then
 * given http/1.1 (tls.c), where a request can be held for its callback.
 */
bool proxy_hooks_want_h1(const struct flow *f);
/* The flow ends: a question still out is cancelled. */
void proxy_hooks_fini(struct flow *f);

#endif
