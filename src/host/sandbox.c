/* SPDX-License-Identifier: MIT */
/*
 * One epoll loop per sandbox. Every fd is registered with a tag (enum sb_tag) and dispatched by
 * one switch; the clock is read once per iteration. The guest is hostile: the link is parsed by
 * the mux (bounded, validated), every CTL field through the TLV reader, and a protocol error
 * ends the sandbox, never the host.
 */
#define _GNU_SOURCE
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "proto/msg.h"
#include "proto/mux.h"
#include "vmm.h"

#define CONSOLE_TAIL 4096
#define QEMU_ERR_MAX 1024
#define STOP_GRACE_MS 2000
#define KILL_GRACE_MS 1000 /* --timeout: SIGTERM, then SIGKILL after this */
#define CANCEL_GRACE_MS 5000 /* Ctrl-C: SIGTERM, then SIGKILL after this */
#define UNRESPONSIVE_MS 5000 /* after SIGKILL, how long the guest has to report the exit */

enum sb_tag { TAG_LINK, TAG_CONSOLE, TAG_QEMU_ERR, TAG_PIDFD, TAG_SIGNAL, TAG_STDIN, TAG_STDOUT,
	      TAG_STDERR, TAG_END };

enum sb_state { SB_BOOTING, SB_CONFIGURING, SB_READY, SB_FAILED };

struct host_exec {
	struct mux_stream *s;
	const struct exec_spec *spec;
	struct buf q[3]; /* pending output per channel (1 = stdout, 2 = stderr) */
	bool in_pollable; /* stdin can be watched by epoll (not a regular file) */
	bool in_eof;
	bool closed; /* the guest closed the stream */
	bool have_exit;
	int status; /* shell-style status */
	bool have_error;
	uint32_t err_errno, err_stage;
	char err_msg[256];
	uint64_t deadline; /* --timeout */
	uint64_t kill_at; /* SIGKILL after SIGTERM */
	uint64_t give_up_at; /* the guest never reported the exit */
	bool timed_out;
	int cancel_signals; /* Ctrl-Cs seen */
};

struct sandbox {
	struct sandbox_config cfg;
	int epfd, sigfd, pidfd, link_fd, con_fd, qerr_fd, log_fd;
	int fds[TAG_END];
	uint32_t events[TAG_END];
	pid_t qemu_pid;
	bool qemu_exited;
	int qemu_status;
	struct mux mux;
	enum sb_state state;
	char fail[300];
	char con_tail[CONSOLE_TAIL];
	size_t con_len;
	char qerr[QEMU_ERR_MAX];
	size_t qerr_len;
	struct host_exec *x;
	struct sandbox_times t;
	uint64_t now;
	int interrupted; /* signal that interrupted boot */
	/* Caller's stdio state, restored at the end. */
	bool tty_raw;
	struct termios saved_tio;
	int saved_fl[3];
};

static void sb_watch(struct sandbox *sb, enum sb_tag tag, uint32_t events)
{
	int fd = sb->fds[tag];
	if (fd < 0 || events == sb->events[tag])
		return;
	struct epoll_event ev = { .events = events, .data.u32 = tag };
	int op = !sb->events[tag] ? EPOLL_CTL_ADD : !events ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
	if (epoll_ctl(sb->epfd, op, fd, &ev) < 0) {
		if (errno != EPERM) /* regular files cannot be polled: always ready */
			warn("epoll_ctl(%d): %s", tag, strerror(errno));
		return;
	}
	sb->events[tag] = events;
}

static void sb_fail(struct sandbox *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fail(struct sandbox *sb, const char *fmt, ...)
{
	if (sb->state == SB_FAILED)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sb->fail, sizeof(sb->fail), fmt, ap);
	va_end(ap);
	sb->state = SB_FAILED;
	if (!sb->qemu_exited)
		kill(sb->qemu_pid, SIGKILL);
}

static void sb_send_ctl(struct sandbox *sb, uint32_t stream, struct buf *b)
{
	if (mux_send_ctl(&sb->mux, stream, buf_head(b), (uint32_t)buf_used(b)) < 0)
		sb_fail(sb, "out of memory");
	sb_watch(sb, TAG_LINK, EPOLLIN | EPOLLOUT);
}

static void sb_flush_link(struct sandbox *sb)
{
	struct buf *o = &sb->mux.out;
	while (buf_used(o) > 0) {
		ssize_t n = send(sb->link_fd, buf_head(o), buf_used(o), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno != EAGAIN)
				sb_fail(sb, "link to the guest failed: %s", strerror(errno));
			break;
		}
		buf_consume(o, (size_t)n);
	}
	sb_watch(sb, TAG_LINK, EPOLLIN | (buf_used(o) ? EPOLLOUT : 0));
}

/* ---- exec plumbing ------------------------------------------------------------------------ */

static void exec_pump_stdin(struct sandbox *sb)
{
	struct host_exec *x = sb->x;
	if (!x || !x->spec->stdin_on || x->in_eof || x->closed || !x->s)
		return;
	uint8_t tmp[MUX_DATA_CHUNK];
	while (x->s->send_credit > 0 && !mux_congested(&sb->mux)) {
		size_t room = x->s->send_credit < sizeof(tmp) ? x->s->send_credit : sizeof(tmp);
		ssize_t n = read(x->spec->in_fd, tmp, room);
		if (n > 0) {
			mux_send_data(&sb->mux, x->s, MUX_CHAN_IN, tmp, (uint32_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			sb_watch(sb, TAG_STDIN, EPOLLIN);
			return;
		}
		/* EOF (or a read error, which ends input the same way). */
		x->in_eof = true;
		mux_send_eof(&sb->mux, x->s, MUX_CHAN_IN);
		break;
	}
	sb_watch(sb, TAG_STDIN, 0); /* no credit: wait for CREDIT */
}

static void exec_flush_out(struct sandbox *sb, int chan)
{
	struct host_exec *x = sb->x;
	int fd = chan == MUX_CHAN_OUT ? x->spec->out_fd : x->spec->err_fd;
	enum sb_tag tag = chan == MUX_CHAN_OUT ? TAG_STDOUT : TAG_STDERR;
	struct buf *q = &x->q[chan];
	while (buf_used(q) > 0) {
		ssize_t n = write(fd, buf_head(q), buf_used(q));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		size_t used = n < 0 ? buf_used(q) : (size_t)n; /* EPIPE etc.: discard */
		buf_consume(q, used);
		if (x->s)
			mux_consumed(&sb->mux, x->s, (uint32_t)used);
	}
	sb_watch(sb, tag, buf_used(q) ? EPOLLOUT : 0);
}

static void exec_status_from_ctl(struct host_exec *x, uint16_t type, struct rd *r)
{
	uint16_t tag;
	struct rd v;
	uint32_t u;
	while (msg_next(r, &tag, &v) > 0) {
		if (type == CTL_EXIT && tag == T_EXIT_CODE && msg_get_u32(&v, &u) == 0) {
			x->have_exit = true;
			x->status = (int)(u & 0xff);
		} else if (type == CTL_EXIT && tag == T_EXIT_SIGNAL && msg_get_u32(&v, &u) == 0) {
			x->have_exit = true;
			x->status = 128 + (int)(u & 0x7f);
		} else if (type == CTL_ERROR && tag == T_ERRNO && msg_get_u32(&v, &u) == 0) {
			x->have_error = true;
			x->err_errno = u;
		} else if (type == CTL_ERROR && tag == T_SIGNAL && msg_get_u32(&v, &u) == 0) {
			x->err_stage = u;
		} else if (type == CTL_ERROR && tag == T_MESSAGE) {
			size_t n = rd_left(&v) < sizeof(x->err_msg) - 1 ? rd_left(&v) : sizeof(x->err_msg) - 1;
			const uint8_t *p = rd_bytes(&v, n);
			if (p) {
				/* Guest text goes to a terminal: keep printable ASCII only. */
				for (size_t i = 0; i < n; i++)
					x->err_msg[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
				x->err_msg[n] = 0;
			}
		}
	}
}

static int exec_on_frame(struct sandbox *sb, struct mux_stream *s, const struct mux_frame *f)
{
	struct host_exec *x = sb->x;
	if (!x || x->s != s) {
		/* A stream we no longer care about: keep the protocol moving. */
		if (f->type == MUX_DATA)
			mux_consumed(&sb->mux, s, f->len);
		if (f->type == MUX_CLOSE)
			mux_close(&sb->mux, s, 0);
		return 0;
	}
	switch (f->type) {
	case MUX_DATA:
		if (f->chan == MUX_CHAN_IN) /* the guest never sends on our stdin */
			return -EPROTO;
		if (buf_append(&x->q[f->chan], f->payload, f->len) < 0)
			return -ENOMEM;
		exec_flush_out(sb, f->chan);
		break;
	case MUX_CREDIT:
		exec_pump_stdin(sb);
		break;
	case MUX_CTL: {
		struct rd r = rd_make(f->payload, f->len);
		uint16_t type = rd_u16(&r);
		exec_status_from_ctl(x, type, &r);
		break;
	}
	case MUX_CLOSE:
		x->closed = true;
		if (!x->have_exit && !x->have_error) {
			x->have_error = true;
			x->err_errno = f->len == 4 ? le32_get(f->payload) : EPROTO;
			snprintf(x->err_msg, sizeof(x->err_msg), "the guest ended the process stream: %s",
				 strerror((int)x->err_errno));
		}
		mux_close(&sb->mux, s, 0);
		x->s = NULL;
		break;
	default: /* OPEN never arrives on an existing stream; EOF needs no action */
		break;
	}
	return 0;
}

static void exec_signal(struct sandbox *sb, int sig)
{
	struct host_exec *x = sb->x;
	if (!x || !x->s || x->closed)
		return;
	struct buf b = { 0 };
	buf_put_u16(&b, CTL_SIGNAL);
	msg_put_u32(&b, T_SIGNAL, (uint32_t)sig);
	sb_send_ctl(sb, x->s->id, &b);
	buf_fini(&b);
	if (sig == SIGKILL && !x->give_up_at)
		x->give_up_at = sb->now + UNRESPONSIVE_MS * 1000000ull;
}

static void exec_send_resize(struct sandbox *sb)
{
	struct host_exec *x = sb->x;
	struct winsize ws;
	if (!x || !x->s || !x->spec->tty || ioctl(x->spec->out_fd, TIOCGWINSZ, &ws) < 0)
		return;
	struct buf b = { 0 };
	buf_put_u16(&b, CTL_RESIZE);
	msg_put_u16(&b, T_ROWS, ws.ws_row);
	msg_put_u16(&b, T_COLS, ws.ws_col);
	sb_send_ctl(sb, x->s->id, &b);
	buf_fini(&b);
}

/* ---- the link ------------------------------------------------------------------------------ */

static int on_link_ctl(struct sandbox *sb, const struct mux_frame *f)
{
	struct rd r = rd_make(f->payload, f->len);
	uint16_t type = rd_u16(&r), tag;
	struct rd v;
	if (type == CTL_HELLO && sb->state == SB_BOOTING) {
		uint32_t version = 0;
		while (msg_next(&r, &tag, &v) > 0) {
			if (tag == T_VERSION)
				msg_get_u32(&v, &version);
			else if (tag == T_BOOT_NS)
				msg_get_u64(&v, &sb->t.guest_agent_start);
			else if (tag == T_READY_NS)
				msg_get_u64(&v, &sb->t.guest_hello);
		}
		if (version != MUX_VERSION) {
			sb_fail(sb, "guest agent speaks protocol %u, this matchlock speaks %u (rebuild)",
				version, MUX_VERSION);
			return 0;
		}
		sb->t.hello = sb->now;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		struct buf b = { 0 };
		buf_put_u16(&b, CTL_CONFIG);
		msg_put_str(&b, T_HOSTNAME, sb->cfg.hostname ? sb->cfg.hostname : sb->cfg.id);
		msg_put_u64(&b, T_TIME_NS, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
		sb_send_ctl(sb, 0, &b);
		buf_fini(&b);
		sb->state = SB_CONFIGURING;
	} else if (type == CTL_READY && sb->state == SB_CONFIGURING) {
		sb->t.ready = sb->now;
		sb->state = SB_READY;
	} else if (type == CTL_ERROR) {
		char msg[200] = "unknown error";
		while (msg_next(&r, &tag, &v) > 0) {
			char *s = NULL;
			if (tag == T_MESSAGE && msg_dup_str(&v, sizeof(msg) - 1, &s) == 0) {
				snprintf(msg, sizeof(msg), "%s", s);
				free(s);
			}
		}
		sb_fail(sb, "guest agent failed: %s", msg);
	} else {
		/* Out-of-order hello/ready: a confused or hostile guest. */
		return -EPROTO;
	}
	return 0;
}

static int on_frame(struct mux *m, struct mux_stream *s, const struct mux_frame *f, void *opaque)
{
	(void)m;
	struct sandbox *sb = opaque;
	if (!s)
		return on_link_ctl(sb, f);
	if (f->type == MUX_OPEN) {
		/* The guest opens nothing yet (TCP egress comes later): refuse. */
		mux_close(&sb->mux, s, EPROTONOSUPPORT);
		return 0;
	}
	return exec_on_frame(sb, s, f);
}

static void on_link_readable(struct sandbox *sb)
{
	static uint8_t rbuf[64 * 1024];
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n = recv(sb->link_fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			/* QEMU closed its end: it is exiting; the pidfd tells us how. */
			sb_watch(sb, TAG_LINK, 0);
			return;
		}
		int r = mux_feed(&sb->mux, rbuf, (size_t)n);
		if (r < 0) {
			sb_fail(sb, "the guest broke the link protocol (%s); sandbox stopped",
				strerror(-r));
			return;
		}
	}
}

/* ---- console and QEMU's own messages ----------------------------------------------------- */

static void keep_tail(char *tail, size_t *len, size_t cap, const char *p, size_t n)
{
	if (n >= cap) {
		memcpy(tail, p + n - cap, cap);
		*len = cap;
		return;
	}
	if (*len + n > cap) {
		size_t drop = *len + n - cap;
		memmove(tail, tail + drop, *len - drop);
		*len -= drop;
	}
	memcpy(tail + *len, p, n);
	*len += n;
}

static void on_console(struct sandbox *sb, enum sb_tag tag)
{
	char tmp[4096];
	ssize_t n = read(sb->fds[tag], tmp, sizeof(tmp));
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			sb_watch(sb, tag, 0);
		return;
	}
	if (sb->log_fd >= 0)
		(void)!write(sb->log_fd, tmp, (size_t)n);
	if (tag == TAG_CONSOLE)
		keep_tail(sb->con_tail, &sb->con_len, sizeof(sb->con_tail), tmp, (size_t)n);
	else
		keep_tail(sb->qerr, &sb->qerr_len, sizeof(sb->qerr) - 1, tmp, (size_t)n);
	if (getenv("MATCHLOCK_DEBUG") && tag == TAG_CONSOLE)
		(void)!write(STDERR_FILENO, tmp, (size_t)n);
}

static void on_qemu_exit(struct sandbox *sb)
{
	int status;
	if (waitpid(sb->qemu_pid, &status, WNOHANG) != sb->qemu_pid)
		return;
	sb->qemu_exited = true;
	sb->qemu_status = status;
	sb->t.stopped = sb->now;
	sb_watch(sb, TAG_PIDFD, 0);
	/* Drain the last console bytes (a panic message) before anyone reads the tail. */
	while (sb->events[TAG_CONSOLE] && sb->con_len < sizeof(sb->con_tail)) {
		size_t before = sb->con_len;
		on_console(sb, TAG_CONSOLE);
		if (sb->con_len == before)
			break;
	}
	on_console(sb, TAG_QEMU_ERR);
}

static void on_signal(struct sandbox *sb)
{
	struct signalfd_siginfo si;
	while (read(sb->sigfd, &si, sizeof(si)) == sizeof(si)) {
		int sig = (int)si.ssi_signo;
		if (sig == SIGWINCH) {
			exec_send_resize(sb);
			continue;
		}
		struct host_exec *x = sb->x;
		if (!x) {
			sb->interrupted = sig;
			sb_fail(sb, "interrupted by signal %d", sig);
			continue;
		}
		/* First Ctrl-C: SIGTERM to the process group; again, or after a grace: SIGKILL. */
		if (x->cancel_signals++ == 0) {
			exec_signal(sb, SIGTERM);
			x->kill_at = sb->now + CANCEL_GRACE_MS * 1000000ull;
		} else {
			exec_signal(sb, SIGKILL);
		}
	}
}

/* ---- the loop ------------------------------------------------------------------------------ */

static uint64_t min_deadline(uint64_t a, uint64_t b)
{
	return !a ? b : !b ? a : a < b ? a : b;
}

static void sb_check_timers(struct sandbox *sb)
{
	struct host_exec *x = sb->x;
	if (!x || x->closed)
		return;
	if (x->deadline && sb->now >= x->deadline) {
		x->deadline = 0;
		x->timed_out = true;
		exec_signal(sb, SIGTERM);
		x->kill_at = sb->now + KILL_GRACE_MS * 1000000ull;
	}
	if (x->kill_at && sb->now >= x->kill_at) {
		x->kill_at = 0;
		exec_signal(sb, SIGKILL);
	}
	if (x->give_up_at && sb->now >= x->give_up_at)
		sb_fail(sb, "the guest did not report the end of the process after SIGKILL");
}

/* One loop iteration: wait until an event or the deadline (0 = none). */
static void sb_step(struct sandbox *sb, uint64_t deadline)
{
	struct host_exec *x = sb->x;
	if (x) {
		deadline = min_deadline(deadline, x->deadline);
		deadline = min_deadline(deadline, x->kill_at);
		deadline = min_deadline(deadline, x->give_up_at);
	}
	int timeout = -1;
	if (deadline)
		timeout = deadline <= sb->now ? 0 : (int)((deadline - sb->now + 999999) / 1000000);
	/* A regular file on stdin is never "ready" to epoll: pump it directly. */
	if (x && x->spec->stdin_on && !x->in_pollable && !x->in_eof && x->s && x->s->send_credit)
		timeout = 0;

	struct epoll_event evs[16];
	int n = epoll_wait(sb->epfd, evs, 16, timeout);
	sb->now = now_ns();
	for (int i = 0; i < n && sb->state != SB_FAILED; i++) {
		uint32_t e = evs[i].events;
		switch ((enum sb_tag)evs[i].data.u32) {
		case TAG_LINK:
			if (e & EPOLLIN)
				on_link_readable(sb);
			break;
		case TAG_CONSOLE:
		case TAG_QEMU_ERR:
			on_console(sb, (enum sb_tag)evs[i].data.u32);
			break;
		case TAG_PIDFD:
			on_qemu_exit(sb);
			break;
		case TAG_SIGNAL:
			on_signal(sb);
			break;
		case TAG_STDIN:
			exec_pump_stdin(sb);
			break;
		case TAG_STDOUT:
			if (x)
				exec_flush_out(sb, MUX_CHAN_OUT);
			break;
		case TAG_STDERR:
			if (x)
				exec_flush_out(sb, MUX_CHAN_ERR);
			break;
		case TAG_END:
			break;
		}
	}
	if (x && !x->in_pollable)
		exec_pump_stdin(sb);
	sb_check_timers(sb);
	if (sb->state != SB_FAILED)
		sb_flush_link(sb);
	if (sb->qemu_exited && sb->state != SB_FAILED)
		sb_fail(sb, "QEMU exited unexpectedly (%s %d)",
			WIFSIGNALED(sb->qemu_status) ? "signal" : "status",
			WIFSIGNALED(sb->qemu_status) ? WTERMSIG(sb->qemu_status) : WEXITSTATUS(sb->qemu_status));
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static void sb_reap_qemu(struct sandbox *sb, unsigned grace_ms)
{
	uint64_t until = now_ns() + grace_ms * 1000000ull;
	while (!sb->qemu_exited) {
		sb->now = now_ns();
		if (sb->now >= until) {
			kill(sb->qemu_pid, SIGKILL);
			int status;
			while (waitpid(sb->qemu_pid, &status, 0) < 0 && errno == EINTR)
				;
			sb->qemu_exited = true;
			sb->qemu_status = status;
			sb->t.stopped = now_ns();
			break;
		}
		sb_step(sb, until);
	}
}

static void sb_free(struct sandbox *sb)
{
	if (!sb)
		return;
	if (sb->qemu_pid > 0 && !sb->qemu_exited) {
		kill(sb->qemu_pid, SIGKILL);
		while (waitpid(sb->qemu_pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	int fds[] = { sb->epfd, sb->sigfd, sb->pidfd, sb->link_fd, sb->con_fd, sb->qerr_fd, sb->log_fd };
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	mux_fini(&sb->mux);
	log_set_file(-1);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGWINCH);
	sigprocmask(SIG_UNBLOCK, &mask, NULL);
	free(sb);
}

/* The last few console lines, flattened for a one-line error. */
static void console_summary(struct sandbox *sb, char *out, size_t n)
{
	out[0] = 0;
	if (!sb->con_len)
		return;
	char tail[CONSOLE_TAIL + 1];
	memcpy(tail, sb->con_tail, sb->con_len);
	tail[sb->con_len] = 0;
	char *panic = strstr(tail, "Kernel panic");
	if (panic) {
		char *nl = strchr(panic, '\n');
		if (nl)
			*nl = 0;
		snprintf(out, n, "guest kernel panicked: %s", panic);
		for (char *p = out; *p; p++)
			if (*p == '\r')
				*p = ' ';
		return;
	}
	/* Last three non-empty lines. */
	int lines = 0;
	char *p = tail + sb->con_len;
	while (p > tail && lines < 3) {
		p--;
		if (*p == '\n' && p[1] && p[1] != '\n' && p[1] != '\r')
			lines++;
	}
	if (*p == '\n')
		p++;
	size_t k = 0;
	for (; *p && k + 4 < n; p++) {
		if (*p == '\r')
			continue;
		if (*p == '\n') {
			if (k && out[k - 1] != ' ') {
				out[k++] = ' ';
				out[k++] = '|';
				out[k++] = ' ';
			}
			continue;
		}
		out[k++] = *p >= 0x20 && *p < 0x7f ? *p : '?';
	}
	out[k] = 0;
}

struct sandbox *sandbox_boot(const struct sandbox_config *c, char *err, size_t errn)
{
	struct sandbox *sb = calloc(1, sizeof(*sb));
	int link[2] = { -1, -1 }, con[2] = { -1, -1 }, qerr[2] = { -1, -1 };
	int fail_errno = EIO;
	if (!sb) {
		snprintf(err, errn, "out of memory");
		return NULL;
	}
	sb->cfg = *c;
	sb->epfd = sb->sigfd = sb->pidfd = sb->link_fd = sb->con_fd = sb->qerr_fd = sb->log_fd = -1;
	for (int i = 0; i < TAG_END; i++)
		sb->fds[i] = -1;
	mux_init(&sb->mux, MUX_SIDE_HOST, on_frame, sb);

	char path[4200];
	snprintf(path, sizeof(path), "%s/log", c->state_dir);
	sb->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (sb->log_fd < 0) {
		snprintf(err, errn, "cannot create %s: %s", path, strerror(errno));
		goto fail;
	}
	log_set_file(sb->log_fd);

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGWINCH);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sb->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	sb->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sb->sigfd < 0 || sb->epfd < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, con) < 0 ||
	    pipe2(qerr, O_CLOEXEC) < 0) {
		snprintf(err, errn, "setting up the sandbox: %s", strerror(errno));
		goto fail;
	}
	/* A bigger socket buffer keeps the link busy while we are in the loop. */
	int sz = 1 << 20;
	setsockopt(link[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(link[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));

	struct vmm_config vc = {
		.accel = c->accel,
		.cpus = c->cpus,
		.memory_mb = c->memory_mb,
		.kernel = c->kernel,
		.initrd = c->initrd,
		.disk = c->disk,
		.link_fd = link[1],
		.console_fd = con[1],
		.stderr_fd = qerr[1],
	};
	sb->t.spawn = now_ns();
	if (vmm_spawn(&vc, &sb->qemu_pid, &sb->pidfd, err, errn) < 0)
		goto fail;
	close(link[1]);
	close(con[1]);
	close(qerr[1]);
	link[1] = con[1] = qerr[1] = -1;
	sb->link_fd = sb->fds[TAG_LINK] = link[0];
	sb->con_fd = sb->fds[TAG_CONSOLE] = con[0];
	sb->qerr_fd = sb->fds[TAG_QEMU_ERR] = qerr[0];
	sb->fds[TAG_PIDFD] = sb->pidfd;
	sb->fds[TAG_SIGNAL] = sb->sigfd;
	fd_set_nonblock(sb->con_fd, 1);
	fd_set_nonblock(sb->qerr_fd, 1);
	sb_watch(sb, TAG_LINK, EPOLLIN);
	sb_watch(sb, TAG_CONSOLE, EPOLLIN);
	sb_watch(sb, TAG_QEMU_ERR, EPOLLIN);
	sb_watch(sb, TAG_PIDFD, EPOLLIN);
	sb_watch(sb, TAG_SIGNAL, EPOLLIN);
	debug("sandbox %s: QEMU pid %d", c->id, sb->qemu_pid);

	sb->now = now_ns();
	uint64_t deadline = sb->now + (uint64_t)c->boot_timeout_ms * 1000000ull;
	while (sb->state != SB_READY && sb->state != SB_FAILED) {
		if (sb->now >= deadline) {
			fail_errno = ETIMEDOUT;
			char con_msg[400];
			console_summary(sb, con_msg, sizeof(con_msg));
			sb_fail(sb, "the guest did not answer within %u s%s%s", c->boot_timeout_ms / 1000,
				*con_msg ? "; console: " : " (no console output)", con_msg);
			break;
		}
		sb_step(sb, deadline);
	}
	if (sb->state == SB_READY)
		return sb;

	/* Failed: make sure QEMU is gone and its last words are read, then explain. */
	sb_reap_qemu(sb, 0);
	on_console(sb, TAG_QEMU_ERR);
	char con_msg[400];
	console_summary(sb, con_msg, sizeof(con_msg));
	if (sb->qerr_len && !sb->interrupted) {
		sb->qerr[sb->qerr_len] = 0;
		char *nl = strchr(sb->qerr, '\n');
		if (nl)
			*nl = 0;
		snprintf(err, errn, "QEMU failed: %s", sb->qerr);
	} else if (strstr(con_msg, "panicked")) {
		snprintf(err, errn, "%s", con_msg);
	} else if (*con_msg && !strstr(sb->fail, "console:") && !sb->interrupted) {
		snprintf(err, errn, "%s; console: %s", sb->fail, con_msg);
	} else {
		snprintf(err, errn, "%s", sb->fail);
	}
fail:
	for (int i = 0; i < 2; i++) {
		if (link[i] >= 0 && link[i] != sb->link_fd)
			close(link[i]);
		if (con[i] >= 0 && con[i] != sb->con_fd)
			close(con[i]);
		if (qerr[i] >= 0 && qerr[i] != sb->qerr_fd)
			close(qerr[i]);
	}
	if (sb->interrupted)
		fail_errno = EINTR;
	sb_free(sb);
	errno = fail_errno;
	return NULL;
}

static void stdio_prepare(struct sandbox *sb, const struct exec_spec *spec)
{
	int fds[3] = { spec->in_fd, spec->out_fd, spec->err_fd };
	for (int i = 0; i < 3; i++) {
		sb->saved_fl[i] = fcntl(fds[i], F_GETFL);
		if (i > 0 || spec->stdin_on)
			fd_set_nonblock(fds[i], 1);
	}
	if (spec->tty && spec->stdin_on && isatty(spec->in_fd) && tcgetattr(spec->in_fd, &sb->saved_tio) == 0) {
		struct termios raw = sb->saved_tio;
		cfmakeraw(&raw);
		if (tcsetattr(spec->in_fd, TCSANOW, &raw) == 0)
			sb->tty_raw = true;
	}
}

static void stdio_restore(struct sandbox *sb, const struct exec_spec *spec)
{
	int fds[3] = { spec->in_fd, spec->out_fd, spec->err_fd };
	if (sb->tty_raw)
		tcsetattr(spec->in_fd, TCSADRAIN, &sb->saved_tio);
	sb->tty_raw = false;
	for (int i = 0; i < 3; i++)
		if (sb->saved_fl[i] >= 0)
			fcntl(fds[i], F_SETFL, sb->saved_fl[i]);
}

int sandbox_exec(struct sandbox *sb, const struct exec_spec *spec, char *err, size_t errn)
{
	struct host_exec x = { .spec = spec };
	struct buf req = { 0 };
	int r;
	err[0] = 0;

	for (char **a = spec->argv; *a; a++)
		msg_put_str(&req, T_ARGV, *a);
	for (char **e = spec->env; e && *e; e++)
		msg_put_str(&req, T_ENV, *e);
	if (spec->cwd)
		msg_put_str(&req, T_CWD, spec->cwd);
	if (spec->user)
		msg_put_str(&req, T_USER, spec->user);
	msg_put_u8(&req, T_STDIN, spec->stdin_on);
	if (spec->tty) {
		struct winsize ws = { .ws_row = 24, .ws_col = 80 };
		ioctl(spec->out_fd, TIOCGWINSZ, &ws);
		msg_put_u8(&req, T_TTY, 1);
		msg_put_u16(&req, T_ROWS, ws.ws_row);
		msg_put_u16(&req, T_COLS, ws.ws_col);
	}
	if (buf_used(&req) > MUX_MAX_PAYLOAD - 2) {
		buf_fini(&req);
		snprintf(err, errn, "command line and environment too large (%zu bytes, at most %u)",
			 buf_used(&req), MUX_MAX_PAYLOAD - 2);
		return -E2BIG;
	}
	x.s = mux_open(&sb->mux, SVC_EXEC, buf_head(&req), (uint32_t)buf_used(&req));
	buf_fini(&req);
	if (!x.s) {
		snprintf(err, errn, "cannot start the process: %s", strerror(errno));
		return -errno;
	}
	struct stat st;
	x.in_pollable = !(fstat(spec->in_fd, &st) == 0 && S_ISREG(st.st_mode));
	sb->fds[TAG_STDIN] = spec->stdin_on ? spec->in_fd : -1;
	sb->fds[TAG_STDOUT] = spec->out_fd;
	sb->fds[TAG_STDERR] = spec->err_fd;
	sb->x = &x;
	stdio_prepare(sb, spec);
	sb->now = now_ns();
	if (spec->timeout_s)
		x.deadline = sb->now + spec->timeout_s * 1000000000ull;
	exec_pump_stdin(sb);
	sb_flush_link(sb);

	while (sb->state != SB_FAILED &&
	       !(x.closed && !buf_used(&x.q[MUX_CHAN_OUT]) && !buf_used(&x.q[MUX_CHAN_ERR])))
		sb_step(sb, 0);
	sb->t.exec_done = sb->now;

	stdio_restore(sb, spec);
	for (int t = TAG_STDIN; t <= TAG_STDERR; t++) {
		sb_watch(sb, (enum sb_tag)t, 0);
		sb->fds[t] = -1;
	}
	sb->x = NULL;
	buf_fini(&x.q[MUX_CHAN_OUT]);
	buf_fini(&x.q[MUX_CHAN_ERR]);

	if (sb->state == SB_FAILED) {
		snprintf(err, errn, "%s", sb->fail);
		return -EIO;
	}
	if (x.timed_out)
		return 124;
	if (x.have_exit)
		return x.status;
	/* It never ran: say why, with Docker's statuses (127 not found, 126 cannot run). */
	snprintf(err, errn, "%s: %s", spec->argv[0], x.err_msg[0] ? x.err_msg : "could not be started");
	r = x.err_errno == ENOENT && x.err_stage == 3 ? 127 : 126;
	return r;
}

void sandbox_stop(struct sandbox *sb, struct sandbox_times *times)
{
	if (!sb)
		return;
	if (!sb->qemu_exited && sb->state == SB_READY) {
		struct buf b = { 0 };
		buf_put_u16(&b, CTL_POWEROFF);
		sb_send_ctl(sb, 0, &b);
		buf_fini(&b);
		sb_flush_link(sb);
		sb_reap_qemu(sb, STOP_GRACE_MS);
	}
	if (times)
		*times = sb->t;
	sb_free(sb);
}
