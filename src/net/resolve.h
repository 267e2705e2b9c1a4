/* SPDX-License-Identifier: MIT */
/*
 * Host name resolution off the event loop. getaddrinfo blocks, so each lookup runs on its own
 * short-lived thread and posts the finished job through a socket the loop watches. The loop
 * owns a job except while its thread runs; a job whose requester went away is simply freed.
 * The same thread marks the answers that are this host's own addresses (getifaddrs, every
 * interface, read fresh for each lookup: no cache to go stale, and the loop never waits on it).
 */
#ifndef MATCHLOCK_RESOLVE_H
#define MATCHLOCK_RESOLVE_H

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

#define RESOLVE_MAX_ADDRS 16 /* answers kept per name (all are checked) */
#define RESOLVE_MAX_INFLIGHT 32 /* concurrent lookups per sandbox */

struct resolve_addr {
	int family;
	uint8_t addr[16];
	bool local; /* one of this host's own addresses (or carries one, for IPv6) */
};

struct resolve_job {
	char name[POLICY_NAME_MAX + 1];
	int err; /* 0 or -errno-style: -ENOENT no such name, -EAGAIN temporary, -EIO other */
	unsigned n;
	struct resolve_addr addrs[RESOLVE_MAX_ADDRS];
	void *owner; /* loop side only: who waits, NULL once it gave up */
	int post_fd; /* thread side: where the finished job goes (a dup, closed by the thread) */
};

struct resolver {
	int fds[2]; /* [0] watched by the loop, [1] dup'ed for each thread */
	unsigned inflight;
};

int resolver_init(struct resolver *r);
/* Drain finished jobs (freeing them) and close; threads still running free their own. */
void resolver_fini(struct resolver *r);
/* Start a lookup of name for owner. Returns the job or NULL with errno (EAGAIN when full). */
struct resolve_job *resolver_start(struct resolver *r, const char *name, void *owner);
/* Take the next finished job (the caller frees it), or NULL. */
struct resolve_job *resolver_take(struct resolver *r);

#endif
