/* SPDX-License-Identifier: MIT */
/*
 * A running sandbox's control socket server: accepts CLI clients on
 * <state>/sandboxes/<id>/control.sock and serves exec (with the client's fds), interrupt,
 * resize, stop, port forwards and allow-list changes, on the sandbox's event loop. Used by `run` in
 * the foreground and by the detached supervisor of `run -d` alike.
 */
#ifndef MATCHLOCK_SUPERVISOR_H
#define MATCHLOCK_SUPERVISOR_H

#include <stdbool.h>

#include "common/loop.h"
#include "portfwd.h"
#include "sandbox.h"

struct ctl_client;

struct supervisor {
	struct loop *l;
	struct sandbox *sb;
	struct watch listen_w;
	struct ctl_client *clients;
	unsigned nclients;
	bool stop; /* a client, a signal or the lifetime asked the sandbox to stop */
	struct timer lifetime;
	struct portfwd pf;
};

/* Start serving the control socket in dir. Returns 0 or -errno with err. */
int supervisor_start(struct supervisor *sup, struct loop *l, struct sandbox *sb, const char *dir,
		     unsigned lifetime_s, char *err, size_t errn);
/* Tell clients waiting for a stop that it is done, drop every client, close the socket. */
void supervisor_finish(struct supervisor *sup);

#endif
