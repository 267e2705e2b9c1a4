/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "exec_stdio.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
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

struct stdio_exec {
	struct sandbox_exec *x;
	struct loop *l;
	struct watch in_w, out_w[3], sig_w;
	struct timer in_poll; /* stdin that epoll cannot watch (a regular file) */
	bool in_on, in_pollable, in_eof;
	uint8_t in_buf[MUX_DATA_CHUNK];
	size_t in_len, in_off; /* read from stdin, not yet accepted by the sandbox */
	struct buf q[3]; /* output waiting for the fd to take it */
	bool tty;
	int cancels;
	bool done;
	int status;
	char *err;
	size_t errn;
};

static void pump_stdin(struct stdio_exec *e)
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
	struct stdio_exec *e = t->obj;
	pump_stdin(e);
	if (!e->in_pollable && !e->in_eof && e->in_off == e->in_len)
		loop_timer_set(e->l, &e->in_poll, e->l->now);
}

static void flush_out(struct stdio_exec *e, int chan)
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
	struct stdio_exec *e = w->obj;
	flush_out(e, w == &e->out_w[EXEC_STDOUT] ? EXEC_STDOUT : EXEC_STDERR);
}

static void op_output(struct sandbox_exec *x, int chan, const uint8_t *p, size_t n)
{
	struct stdio_exec *e = sandbox_exec_opaque(x);
	if (buf_append(&e->q[chan], p, n) < 0) {
		/* Cannot hold it: drop it rather than stall the guest forever. */
		sandbox_exec_consumed(x, n);
		return;
	}
	flush_out(e, chan);
}

static void op_writable(struct sandbox_exec *x)
{
	struct stdio_exec *e = sandbox_exec_opaque(x);
	pump_stdin(e);
	if (!e->in_pollable && e->in_on && !e->in_eof)
		loop_timer_set(e->l, &e->in_poll, e->l->now);
}

static void op_done(struct sandbox_exec *x, int status, const char *err)
{
	struct stdio_exec *e = sandbox_exec_opaque(x);
	e->x = NULL;
	e->done = true;
	e->status = status;
	if (err)
		snprintf(e->err, e->errn, "%s", err);
}

static const struct exec_ops stdio_ops = {
	.output = op_output,
	.writable = op_writable,
	.done = op_done,
};

static void on_signal(struct watch *w, uint32_t events)
{
	(void)events;
	struct stdio_exec *e = w->obj;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (!e->x)
			continue;
		if (si.ssi_signo == SIGWINCH) {
			struct winsize ws;
			if (e->tty && ioctl(e->out_w[EXEC_STDOUT].fd, TIOCGWINSZ, &ws) == 0)
				sandbox_exec_resize(e->x, ws.ws_row, ws.ws_col);
			continue;
		}
		if (e->cancels++ == 0)
			sandbox_exec_cancel(e->x, CANCEL_GRACE_MS);
		else
			sandbox_exec_signal(e->x, SIGKILL);
	}
}

int exec_stdio_run(struct sandbox *sb, struct loop *l, struct exec_request *req, int in_fd,
		   int out_fd, int err_fd, int sigfd, char *err, size_t errn)
{
	struct stdio_exec e = { .l = l, .in_on = req->stdin_on, .tty = req->tty, .err = err, .errn = errn };
	int fds[3] = { in_fd, out_fd, err_fd }, saved_fl[3];
	struct termios saved_tio;
	bool raw = false;
	err[0] = 0;

	if (req->tty) {
		struct winsize ws;
		if (ioctl(out_fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
			req->rows = ws.ws_row;
			req->cols = ws.ws_col;
		}
	}
	watch_init(&e.in_w, in_fd, on_stdin, &e);
	watch_init(&e.out_w[EXEC_STDOUT], out_fd, on_out, &e);
	watch_init(&e.out_w[EXEC_STDERR], err_fd, on_out, &e);
	watch_init(&e.sig_w, sigfd, on_signal, &e);
	e.in_poll = (struct timer){ .fn = on_in_poll, .obj = &e };
	struct stat st;
	e.in_pollable = !(fstat(in_fd, &st) == 0 && S_ISREG(st.st_mode));

	for (int i = 0; i < 3; i++) {
		saved_fl[i] = fcntl(fds[i], F_GETFL);
		if (i > 0 || req->stdin_on)
			fd_set_nonblock(fds[i], 1);
	}
	if (req->tty && req->stdin_on && isatty(in_fd) && tcgetattr(in_fd, &saved_tio) == 0) {
		struct termios t = saved_tio;
		cfmakeraw(&t);
		raw = tcsetattr(in_fd, TCSANOW, &t) == 0;
	}

	e.x = sandbox_exec_start(sb, req, &stdio_ops, &e, err, errn);
	int r = e.x ? 0 : -errno;
	if (e.x) {
		if (sigfd >= 0)
			loop_watch(l, &e.sig_w, EPOLLIN);
		if (e.in_on) {
			if (e.in_pollable)
				pump_stdin(&e);
			else
				loop_timer_set(l, &e.in_poll, l->now);
		}
		while (!e.done || buf_used(&e.q[EXEC_STDOUT]) || buf_used(&e.q[EXEC_STDERR]))
			loop_run_once(l, 0);
		r = e.status;
	}

	loop_timer_cancel(l, &e.in_poll);
	loop_unwatch(l, &e.in_w);
	loop_unwatch(l, &e.out_w[EXEC_STDOUT]);
	loop_unwatch(l, &e.out_w[EXEC_STDERR]);
	loop_unwatch(l, &e.sig_w);
	if (raw)
		tcsetattr(in_fd, TCSADRAIN, &saved_tio);
	for (int i = 0; i < 3; i++)
		if (saved_fl[i] >= 0)
			fcntl(fds[i], F_SETFL, saved_fl[i]);
	buf_fini(&e.q[EXEC_STDOUT]);
	buf_fini(&e.q[EXEC_STDERR]);
	/* The watches on this stack frame are out of the epoll set; no batch is in progress. */
	return r;
}
