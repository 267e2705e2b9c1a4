/* SPDX-License-Identifier: MIT */
/*
 * Port forwarding: host listeners (127.0.0.1 by default) whose connections are relayed to a
 * port on the sandbox's loopback over the link (SVC_PORT). Used by `run -p`, `port-forward`
 * and the RPC `port_forward`. Forwards live as long as the sandbox's supervisor.
 */
#ifndef MATCHLOCK_PORTFWD_H
#define MATCHLOCK_PORTFWD_H

#include <stddef.h>
#include <stdint.h>

#include "common/loop.h"
#include "sandbox.h"

#define PORTFWD_MAX_LISTENERS 32
#define PORTFWD_MAX_CONNS 256

struct portfwd_listener;

struct portfwd {
	struct loop *l;
	struct sandbox *sb;
	struct portfwd_listener *ls[PORTFWD_MAX_LISTENERS];
	unsigned nls;
	unsigned nconns;
};

/* "[LOCAL:]REMOTE" (LOCAL defaults to REMOTE; 0 picks a free port). */
int portfwd_parse(const char *spec, uint16_t *local, uint16_t *remote);
/*
 * Listen on address:local (address NULL = 127.0.0.1) and forward to remote in the guest. The
 * port actually bound goes to *bound. Returns 0 or -errno with a reason in err.
 */
int portfwd_add(struct portfwd *pf, const char *address, uint16_t local, uint16_t remote,
		uint16_t *bound, char *err, size_t errn);
void portfwd_fini(struct portfwd *pf);

#endif
