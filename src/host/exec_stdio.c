/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "exec_stdio.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"
#include "proto/mux.h"

struct exec_stdio {
	struct sandbox_exec *x;
	struct loop *l;
	struct watch in_w, out_w[3];
	int saved_fl[3];
	struct timer in_poll; /* stdin that epoll cannot watch (a regular file) */
	bool in_on, in_pollable, in_eof;
	uint8_t in_buf[MUX_DATA_CHUNK];
	size_t in_len, in_off; /* read from stdin, not yet accepted by the sandbox */
	struct buf q[3]; /* output waiting for the fd to take it */
	int interrupts;
	bool ended; /* the process is over; waiting for queued output to drain */
	int status;
	char err[512];
	int dup_fd; /* ours to close: a socket's second fd, so epoll can watch both directions */
	exec_stdio_done_fn done;
	void *opaque;
};

static void stdio_release(struct exec_stdio *e)
{
	int fds[3] = { e->in_w.fd, e->out_w[1].fd, e->out_w[2].fd };
	loop_timer_cancel(e->l, &e->in_poll);
	loop_unwatch(e->l, &e->in_w);
	loop_unwatch(e->l, &e->out_w[EXEC_STDOUT]);
	loop_unwatch(e->l, &e->out_w[EXEC_STDERR]);
	for (int i = 0; i < 3; i++)
		if (e->saved_fl[i] >= 0)
			fcntl(fds[i], F_SETFL, e->saved_fl[i]);
	buf_fini(&e->q[EXEC_STDOUT]);
	buf_fini(&e->q[EXEC_STDERR]);
	if (e->dup_fd >= 0)
		close(e->dup_fd);
	loop_defer_free(e->l, e, free);
}

/* Finish once the process is over and everything it wrote has reached the fds. */
static void maybe_done(struct exec_stdio *e)
{
	if (!e->ended || buf_used(&e->q[EXEC_STDOUT]) || buf_used(&e->q[EXEC_STDERR]))
		return;
	exec_stdio_done_fn done = e->done;
	e->done = NULL;
	if (done)
		done(e, e->status, e->err[0] ? e->err : NULL, e->opaque);
	stdio_release(e);
}

static void pump_stdin(struct exec_stdio *e)
{
	while (e->in_on && !e->in_eof && e->x) {
		if (e->in_off == e->in_len) {
			ssize_t n = read(e->in_w.fd, e->in_buf, sizeof(e->in_buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN) {
				loop_watch(e->l, &e->in_w, EPOLLIN);
				return;
			}
			if (n <= 0) {
				/* EOF (a read error ends input the same way). */
				e->in_eof = true;
				loop_watch(e->l, &e->in_w, 0);
				sandbox_exec_close_stdin(e->x);
				return;
			}
			e->in_off = 0;
			e->in_len = (size_t)n;
		}
		size_t k = sandbox_exec_write(e->x, e->in_buf + e->in_off, e->in_len - e->in_off);
		e->in_off += k;
		if (e->in_off < e->in_len) {
			/* Out of credit: stop reading until writable() says there is room. */
			loop_watch(e->l, &e->in_w, 0);
			return;
		}
	}
}

static void on_stdin(struct watch *w, uint32_t events)
{
	(void)events;
	pump_stdin(w->obj);
}

static void on_in_poll(struct timer *t)
{
	struct exec_stdio *e = t->obj;
	pump_stdin(e);
	if (e->x && !e->in_eof && e->in_off == e->in_len)
		loop_timer_set(e->l, &e->in_poll, e->l->now);
}

static void flush_out(struct exec_stdio *e, int chan)
{
	struct buf *q = &e->q[chan];
	struct watch *w = &e->out_w[chan];
	while (buf_used(q) > 0) {
		ssize_t n = write(w->fd, buf_head(q), buf_used(q));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		size_t used = n < 0 ? buf_used(q) : (size_t)n; /* EPIPE etc.: discard */
		buf_consume(q, used);
		if (e->x)
			sandbox_exec_consumed(e->x, used);
	}
	loop_watch(e->l, w, buf_used(q) ? EPOLLOUT : 0);
}

static void on_out(struct watch *w, uint32_t events)
{
	(void)events;
	struct exec_stdio *e = w->obj;
	flush_out(e, w == &e->out_w[EXEC_STDOUT] ? EXEC_STDOUT : EXEC_STDERR);
	maybe_done(e);
}

static void op_output(struct sandbox_exec *x, int chan, const uint8_t *p, size_t n)
{
	struct exec_stdio *e = sandbox_exec_opaque(x);
	if (e->out_w[chan].fd < 0 || buf_append(&e->q[chan], p, n) < 0) {
		/* Aborted (nobody to write to), or cannot hold it: drop rather than stall the
		 * guest. */
		sandbox_exec_consumed(x, n);
		return;
	}
	flush_out(e, chan);
}

static void op_writable(struct sandbox_exec *x)
{
	struct exec_stdio *e = sandbox_exec_opaque(x);
	pump_stdin(e);
	if (!e->in_pollable && e->in_on && !e->in_eof)
		loop_timer_set(e->l, &e->in_poll, e->l->now);
}

static void op_done(struct sandbox_exec *x, int status, const char *err)
{
	struct exec_stdio *e = sandbox_exec_opaque(x);
	e->x = NULL;
	e->ended = true;
	e->status = status;
	if (err)
		snprintf(e->err, sizeof(e->err), "%s", err);
	loop_timer_cancel(e->l, &e->in_poll);
	loop_unwatch(e->l, &e->in_w);
	maybe_done(e);
}

static const struct exec_ops stdio_ops = {
	.output = op_output,
	.writable = op_writable,
	.done = op_done,
};

/* Common set-up; the caller opens the stream (x) and finishes with stdio_go(). */
static struct exec_stdio *stdio_new(struct loop *l, bool in_on, int in_fd, int out_fd, int err_fd,
				    exec_stdio_done_fn done, void *opaque)
{
	struct exec_stdio *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->l = l;
	e->dup_fd = -1;
	e->in_on = in_on;
	e->done = done;
	e->opaque = opaque;
	watch_init(&e->in_w, in_fd, on_stdin, e);
	watch_init(&e->out_w[EXEC_STDOUT], out_fd, on_out, e);
	watch_init(&e->out_w[EXEC_STDERR], err_fd, on_out, e);
	e->in_poll = (struct timer){ .fn = on_in_poll, .obj = e };
	struct stat st;
	e->in_pollable = !(fstat(in_fd, &st) == 0 && S_ISREG(st.st_mode));
	int fds[3] = { in_fd, out_fd, err_fd };
	for (int i = 0; i < 3; i++) {
		e->saved_fl[i] = fcntl(fds[i], F_GETFL);
		if (i > 0 || in_on)
			fd_set_nonblock(fds[i], 1);
	}
	return e;
}

static struct exec_stdio *stdio_go(struct exec_stdio *e)
{
	if (!e->x) {
		e->done = NULL;
		stdio_release(e);
		return NULL;
	}
	if (e->in_on) {
		if (e->in_pollable)
			pump_stdin(e);
		else
			loop_timer_set(e->l, &e->in_poll, e->l->now);
	}
	return e;
}

struct exec_stdio *exec_stdio_start(struct sandbox *sb, struct loop *l,
				    const struct exec_request *req, int in_fd, int out_fd,
				    int err_fd, exec_stdio_done_fn done, void *opaque, char *err,
				    size_t errn)
{
	struct exec_stdio *e = stdio_new(l, req->stdin_on, in_fd, out_fd, err_fd, done, opaque);
	if (!e) {
		snprintf(err, errn, "out of memory");
		return NULL;
	}
	e->x = sandbox_exec_start(sb, req, &stdio_ops, e, err, errn);
	return stdio_go(e);
}

struct exec_stdio *exec_stdio_start_port(struct sandbox *sb, struct loop *l, uint16_t port, int fd,
					 exec_stdio_done_fn done, void *opaque, char *err,
					 size_t errn)
{
	/* One fd cannot be in the epoll set twice: reading and writing get an fd each. */
	int out = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	struct exec_stdio *e = out >= 0 ? stdio_new(l, true, fd, out, out, done, opaque) : NULL;
	if (!e) {
		if (out >= 0)
			close(out);
		snprintf(err, errn, "out of memory or file descriptors");
		return NULL;
	}
	e->dup_fd = out;
	e->x = sandbox_port_start(sb, port, &stdio_ops, e, err, errn);
	return stdio_go(e);
}

struct exec_stdio *exec_stdio_start_file(struct sandbox *sb, struct loop *l,
					 const struct file_request *fr, int fd,
					 exec_stdio_done_fn done, void *opaque, char *err,
					 size_t errn)
{
	/* One direction only: the same fd serves as input or output, never watched twice. */
	bool in = fr->op == SVC_FILE_WRITE || fr->op == SVC_TREE_UNPACK;
	struct exec_stdio *e = stdio_new(l, in, fd, fd, fd, done, opaque);
	if (!e) {
		snprintf(err, errn, "out of memory");
		return NULL;
	}
	e->x = sandbox_file_start(sb, fr, &stdio_ops, e, err, errn);
	return stdio_go(e);
}

void exec_stdio_interrupt(struct exec_stdio *e)
{
	if (!e->x)
		return;
	if (e->interrupts++ == 0)
		sandbox_exec_cancel(e->x, CANCEL_GRACE_MS);
	else
		sandbox_exec_signal(e->x, SIGKILL);
}

void exec_stdio_signal(struct exec_stdio *e, int sig)
{
	if (e->x)
		sandbox_exec_signal(e->x, sig);
}

void exec_stdio_resize(struct exec_stdio *e, unsigned rows, unsigned cols)
{
	if (e->x && rows && cols && rows <= UINT16_MAX && cols <= UINT16_MAX)
		sandbox_exec_resize(e->x, (uint16_t)rows, (uint16_t)cols);
}

/*
 * Let go of the fds now: the caller closes them next, and their numbers may be reused at once
 * (by a new client's socket); nothing may be written to, watched or fcntl'ed through them later.
 */
static void stdio_detach(struct exec_stdio *e)
{
	struct watch *w[3] = { &e->in_w, &e->out_w[EXEC_STDOUT], &e->out_w[EXEC_STDERR] };
	loop_timer_cancel(e->l, &e->in_poll);
	for (int i = 0; i < 3; i++) {
		loop_unwatch(e->l, w[i]);
		if (e->saved_fl[i] >= 0 && w[i]->fd >= 0)
			fcntl(w[i]->fd, F_SETFL, e->saved_fl[i]);
		e->saved_fl[i] = -1;
		w[i]->fd = -1;
	}
	e->in_on = false;
}

void exec_stdio_abort(struct exec_stdio *e)
{
	e->done = NULL;
	stdio_detach(e);
	if (e->x) {
		sandbox_exec_signal(e->x, SIGKILL);
		/* Its done callback will find nothing to report to. */
		e->ended = true;
	}
	buf_consume(&e->q[EXEC_STDOUT], buf_used(&e->q[EXEC_STDOUT]));
	buf_consume(&e->q[EXEC_STDERR], buf_used(&e->q[EXEC_STDERR]));
	if (!e->x)
		stdio_release(e);
	/* else: op_done arrives later and releases e through maybe_done. */
}

/* ---- the foreground case ----------------------------------------------------------------- */

static void fg_done(struct exec_stdio *e, int status, const char *err, void *opaque)
{
	(void)e;
	struct exec_fg *f = opaque;
	f->done = true;
	f->status = status;
	if (err)
		snprintf(f->err, f->errn, "%s", err);
}

static void fg_signal(struct watch *w, uint32_t events)
{
	(void)events;
	struct exec_fg *f = w->obj;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (f->done)
			continue;
		if (si.ssi_signo == SIGWINCH) {
			struct winsize ws;
			if (f->tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0)
				exec_stdio_resize(f->e, ws.ws_row, ws.ws_col);
			continue;
		}
		exec_stdio_interrupt(f->e);
	}
}

int exec_fg_start(struct exec_fg *f, struct sandbox *sb, struct loop *l, struct exec_request *req,
		  int sigfd, char *err, size_t errn)
{
	*f = (struct exec_fg){ .l = l, .tty = req->tty, .err = err, .errn = errn };
	err[0] = 0;
	if (req->tty) {
		struct winsize ws;
		if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
			req->rows = ws.ws_row;
			req->cols = ws.ws_col;
		}
		if (req->stdin_on && isatty(STDIN_FILENO) &&
		    tcgetattr(STDIN_FILENO, &f->saved_tio) == 0) {
			struct termios t = f->saved_tio;
			cfmakeraw(&t);
			f->raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
		}
	}
	f->e = exec_stdio_start(sb, l, req, STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, fg_done, f,
				err, errn);
	if (!f->e) {
		exec_fg_finish(f);
		return -EIO;
	}
	watch_init(&f->sig_w, sigfd, fg_signal, f);
	loop_watch(l, &f->sig_w, EPOLLIN);
	return 0;
}

int exec_fg_finish(struct exec_fg *f)
{
	int r = f->e ? f->status : -EIO;
	if (f->e) {
		loop_unwatch(f->l, &f->sig_w);
		if (!f->done) {
			exec_stdio_abort(f->e);
			r = 128 + SIGKILL;
		}
		f->e = NULL;
	}
	if (f->raw)
		tcsetattr(STDIN_FILENO, TCSADRAIN, &f->saved_tio);
	f->raw = false;
	return r;
}
