/* SPDX-License-Identifier: MIT */
/*
 * A process in a sandbox attached to file descriptors, the way `run` and `exec` use it: stdin
 * pumped as flow-control credit allows, output queued and written without blocking the loop.
 * The fds may be our own stdio (run) or a client's passed over the control socket (exec).
 */
#ifndef MATCHLOCK_EXEC_STDIO_H
#define MATCHLOCK_EXEC_STDIO_H

#include <stdbool.h>
#include <stddef.h>
#include <termios.h>

#include "sandbox.h"

#define CANCEL_GRACE_MS 5000

struct exec_stdio;
/* Called once when the process has ended and all its output is written (see exec_ops.done). */
typedef void (*exec_stdio_done_fn)(struct exec_stdio *e, int status, const char *err, void *opaque);

/*
 * Start req with its stdio on the given fds (not owned; made non-blocking until the end).
 * Returns NULL with err set if it cannot start.
 */
struct exec_stdio *exec_stdio_start(struct sandbox *sb, struct loop *l,
				    const struct exec_request *req, int in_fd, int out_fd,
				    int err_fd, exec_stdio_done_fn done, void *opaque, char *err,
				    size_t errn);
/*
 * A forwarded connection: fd (a socket, not owned) is relayed both ways to port on the guest's
 * loopback; done() gets 0 or -errno.
 */
struct exec_stdio *exec_stdio_start_port(struct sandbox *sb, struct loop *l, uint16_t port, int fd,
					 exec_stdio_done_fn done, void *opaque, char *err,
					 size_t errn);
/*
 * A file or tree transfer (sandbox_file_start) on one fd, not owned: what the guest sends is
 * written to it, or (SVC_FILE_WRITE, SVC_TREE_UNPACK) what it holds is read and sent until EOF.
 * done() gets 0 or -errno with err.
 */
struct exec_stdio *exec_stdio_start_file(struct sandbox *sb, struct loop *l,
					 const struct file_request *fr, int fd,
					 exec_stdio_done_fn done, void *opaque, char *err,
					 size_t errn);
/* Ctrl-C semantics: the first call sends SIGTERM (SIGKILL after CANCEL_GRACE_MS), the next SIGKILL.
 */
void exec_stdio_interrupt(struct exec_stdio *e);
void exec_stdio_resize(struct exec_stdio *e, unsigned rows, unsigned cols);
/* Send sig to the process (the OCI runtime's `kill`). */
void exec_stdio_signal(struct exec_stdio *e, int sig);
/* Kill the process now and detach from the fds; `done` is not called. */
void exec_stdio_abort(struct exec_stdio *e);

/*
 * Foreground helper for `run`: runs req on our own stdio, with the terminal in raw mode for
 * -it, SIGWINCH forwarded and Ctrl-C handled through sigfd (a signalfd for SIGINT, SIGTERM,
 * SIGHUP and SIGWINCH). The caller drives the loop until f->done (or until it decides to stop
 * the sandbox), then calls exec_fg_finish().
 */
struct exec_fg {
	struct exec_stdio *e;
	struct loop *l;
	struct watch sig_w;
	struct termios saved_tio;
	bool raw, tty;
	bool done; /* the process ended: f->status */
	int status;
	char *err;
	size_t errn;
};
/* Returns 0, or -EIO with err (nothing runs; exec_fg_finish() was done). */
int exec_fg_start(struct exec_fg *f, struct sandbox *sb, struct loop *l, struct exec_request *req,
		  int sigfd, char *err, size_t errn);
/*
 * Kill the process if it still runs (137), restore the terminal. Returns the shell-style status
 * (err may explain 126/127), or -errno with err set when the sandbox failed.
 */
int exec_fg_finish(struct exec_fg *f);

#endif
