/* SPDX-License-Identifier: MIT */
/*
 * The egress engine of one sandbox: the only way out of the guest. It answers the guest's DNS
 * queries from the policy (synthetic addresses for allowed names, NXDOMAIN otherwise; nothing
 * is ever forwarded), and serves SVC_TCP streams: a connection to a synthetic address is
 * resolved by name on the host, checked (policy, private addresses), dialed at exactly the
 * address checked, and relayed both ways with half-close and credit back-pressure. Plain HTTP
 * (port 80, or any connection whose first bytes are a request line) is checked request head by
 * request head: the Host and an absolute URL's authority must be the connection's name.
 *
 * Runs on the supervisor's loop; every decision is logged and reported through an event hook.
 */
#ifndef MATCHLOCK_EGRESS_H
#define MATCHLOCK_EGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/loop.h"
#include "event.h"
#include "policy.h"
#include "proto/mux.h"

#define EGRESS_MAX_CONNS 256 /* open TCP streams per sandbox; more are refused */
#define EGRESS_DNS_TTL 300
#define EGRESS_CONNECT_TIMEOUT_MS 15000
/*
 * Intercepted connections (HTTPS through the proxy, plain HTTP) end after this long without a
 * byte either way, and after this long open at all; 0 turns one off. The supervisor's
 * environment may change them: MATCHLOCK_PROXY_IDLE_TIMEOUT, MATCHLOCK_PROXY_MAX_LIFETIME
 * (seconds). Raw TCP relays (ssh, databases) have neither.
 */
#define EGRESS_IDLE_TIMEOUT_S 300
#define EGRESS_MAX_LIFETIME_S 3600
/*
 * Denials are logged once per (kind, name) per interval; repeats within it are counted and
 * summarised in one line when it ends, so a guest looping on a denied name cannot fill the
 * disk. The table of names is bounded; names beyond it are counted together.
 */
#define EGRESS_DENY_INTERVAL_S 10
#define EGRESS_DENY_NAMES 64

struct egress_ops {
	void (*flush)(void *opaque); /* the mux has frames to write */
	net_event_fn event; /* may be NULL */
};

struct egress;

/*
 * p is the caller's and may change while we run. mitm (may be NULL: TLS is relayed untouched)
 * intercepts TLS connections; it stays the caller's. Returns NULL (errno) on failure.
 */
struct mitm;
struct egress *egress_new(struct loop *l, struct mux *m, const struct policy *p, struct mitm *mitm,
			  const struct egress_ops *ops, void *opaque);
/* Closes every connection (their streams are left to the mux owner). NULL is fine. */
void egress_free(struct egress *e);

/*
 * Lines for the guest's /etc/hosts ("ADDR NAME"): one per pinned name, with its synthetic
 * address. Appends each as a T_HOSTS_LINE TLV to b.
 */
int egress_put_hosts(struct egress *e, struct buf *b);

/* A CTL_DNS_QUERY (TLVs after the type in r): queue the CTL_DNS_REPLY. -EPROTO if malformed. */
int egress_on_dns(struct egress *e, struct rd *r);
/* Every frame of a guest-opened stream (OPEN included). Negative fails the link. */
int egress_on_frame(struct egress *e, struct mux_stream *s, const struct mux_frame *f);
/* The link drained below its high mark: resume reading upstreams that stalled on it. */
void egress_resume(struct egress *e);

#endif
