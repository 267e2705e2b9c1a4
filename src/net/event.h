/* SPDX-License-Identifier: MIT */
/*
 * One egress decision, as the engine reports it to its owner (the log, the RPC `event`
 * notification). Kinds have one name table (event.c) with the words users see in each place.
 */
#ifndef MATCHLOCK_NET_EVENT_H
#define MATCHLOCK_NET_EVENT_H

#include <stdbool.h>
#include <stdint.h>

enum net_event_kind {
	NET_EV_DNS,
	NET_EV_CONNECT,
	NET_EV_HTTP, /* plain HTTP: the Host check of each request on a connection */
	NET_EV_REQUEST, /* one intercepted HTTPS request (the `network` event): see req */
	NET_EV_SECRET_LEAK, /* a placeholder headed to a host its secret is not scoped to */
	NET_EV_END
};

/* NET_EV_REQUEST and NET_EV_SECRET_LEAK. Never holds a secret value. */
struct net_request {
	const char *method;
	const char *url; /* https://host[:port]/path?key=&key= (query values left out) */
	int status; /* what the guest got; 0 if no response */
	uint64_t bytes_up, bytes_down; /* body bytes each way */
	uint64_t duration_ms;
	const char *secret; /* SECRET_LEAK: the secret's name */
};

struct net_event {
	enum net_event_kind kind;
	bool allowed; /* false: blocked */
	const char *name; /* host name ("" if unknown) */
	const char *detail; /* "A", "AAAA" for DNS; the address dialed or asked for otherwise */
	uint16_t port; /* 0 for DNS */
	const char *reason; /* why: the rule that allowed, or what denied */
	const struct net_request *req; /* NET_EV_REQUEST, NET_EV_SECRET_LEAK; else NULL */
};

typedef void (*net_event_fn)(const struct net_event *ev, void *opaque);

/* The word for kind in log lines ("network: connect denied ..."); "?" if out of range. */
const char *net_event_log_name(enum net_event_kind kind);
/*
 * The `method` field of the RPC's network event: the HTTP method of an intercepted request,
 * else the kind's word there ("DNS", "CONNECT", "HTTP", "HTTPS").
 */
const char *net_event_rpc_method(const struct net_event *ev);

#endif
