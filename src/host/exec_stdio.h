/* SPDX-License-Identifier: MIT */
/*
 * A process in a sandbox attached to local file descriptors, the way `run` and `exec` use it:
 * stdin pumped as credit allows, output queued and written without blocking the loop, the
 * terminal in raw mode for -it, SIGWINCH forwarded, and Ctrl-C turned into SIGTERM (then
 * SIGKILL after a grace period, or at once on a second Ctrl-C).
 */
#ifndef MATCHLOCK_EXEC_STDIO_H
#define MATCHLOCK_EXEC_STDIO_H

#include <stddef.h>

#include "sandbox.h"

#define CANCEL_GRACE_MS 5000

/*
 * Run req with the given fds until it ends. sigfd is a signalfd for SIGINT, SIGTERM, SIGHUP and
 * SIGWINCH (or -1). Returns the shell-style status (err may still explain 126/127), or -errno
 * with err set when the sandbox failed.
 */
int exec_stdio_run(struct sandbox *sb, struct loop *l, struct exec_request *req, int in_fd,
		   int out_fd, int err_fd, int sigfd, char *err, size_t errn);

#endif
