/* SPDX-License-Identifier: MIT */
/*
 * Processes in the guest, host side: one SVC_EXEC stream each. Output is handed to the owner's
 * ops and credited back only when the owner says it is consumed; stdin is accepted only as far
 * as the guest's credit goes. Timeouts and cancellation are timers on the sandbox's loop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "proto/msg.h"
#include "sandbox_impl.h"

#define TIMEOUT_KILL_GRACE_MS 1000 /* --timeout: SIGTERM, then SIGKILL after this */
#define UNRESPONSIVE_MS 5000 /* after SIGKILL, how long the guest has to report the exit */

static void exec_free(void *p)
{
	free(p);
}

static void exec_unlink(struct sandbox_exec *x)
{
	for (struct sandbox_exec **p = &x->sb->execs; *p; p = &(*p)->next) {
		if (*p == x) {
			*p = x->next;
			break;
		}
	}
}

/* Report the end once, then release x (after this loop batch). */
static void exec_finish(struct sandbox_exec *x, int status, const char *err)
{
	if (x->finished)
		return;
	x->finished = true;
	struct loop *l = x->sb->loop;
	loop_timer_cancel(l, &x->deadline);
	loop_timer_cancel(l, &x->kill_timer);
	loop_timer_cancel(l, &x->give_up);
	exec_unlink(x);
	if (x->s) {
		x->s->user = NULL;
		if (x->sb->state != SB_FAILED)
			mux_close(&x->sb->mux, x->s, 0);
		x->s = NULL;
	}
	x->ops->done(x, status, err);
	loop_defer_free(l, x, exec_free);
}

void exec_fail_all(struct sandbox *sb)
{
	while (sb->execs)
		exec_finish(sb->execs, -EIO, sb->fail);
}

static void exec_send_signal(struct sandbox_exec *x, int sig)
{
	if (!x->s || x->finished)
		return;
	struct buf b = { 0 };
	buf_put_u16(&b, CTL_SIGNAL);
	msg_put_u32(&b, T_SIGNAL, (uint32_t)sig);
	sb_send_ctl(x->sb, x->s->id, &b);
	buf_fini(&b);
	if (sig == SIGKILL && !x->give_up.at)
		loop_timer_set(x->sb->loop, &x->give_up,
			       x->sb->loop->now + UNRESPONSIVE_MS * 1000000ull);
}

static void on_kill_timer(struct timer *t)
{
	exec_send_signal(t->obj, SIGKILL);
}

static void on_deadline(struct timer *t)
{
	struct sandbox_exec *x = t->obj;
	x->timed_out = true;
	sandbox_exec_cancel(x, TIMEOUT_KILL_GRACE_MS);
}

static void on_give_up(struct timer *t)
{
	struct sandbox_exec *x = t->obj;
	sb_fail(x->sb, "the guest did not report the end of a process after SIGKILL");
}

static void exec_status_from_ctl(struct sandbox_exec *x, uint16_t type, struct rd *r)
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
			size_t n = rd_left(&v) < sizeof(x->err_msg) - 1 ? rd_left(&v)
									: sizeof(x->err_msg) - 1;
			const uint8_t *p = rd_bytes(&v, n);
			/* Guest text ends up on a terminal: keep printable ASCII only. */
			for (size_t i = 0; p && i < n; i++)
				x->err_msg[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
			x->err_msg[p ? n : 0] = 0;
		}
	}
}

/* The guest closed the stream: the process is over, one way or another. */
static void exec_on_close(struct sandbox_exec *x, const struct mux_frame *f)
{
	char err[512] = "";
	int status;
	if (x->is_file) {
		uint32_t close_err = f->len == 4 ? le32_get(f->payload) : 0;
		status = x->have_exit || (!x->have_error && !close_err)
			     ? 0
			     : -(int)(x->have_error && x->err_errno ? x->err_errno
				      : close_err		    ? close_err
								    : EIO);
		if (status)
			snprintf(err, sizeof(err), "%s: %s", x->argv0,
				 x->err_msg[0] ? x->err_msg : strerror(-status));
	} else if (x->timed_out) {
		status = 124;
	} else if (x->have_exit) {
		status = x->status;
	} else if (x->have_error) {
		/* It never ran: Docker's statuses (127 not found, 126 cannot run). */
		snprintf(err, sizeof(err), "%s: %s", x->argv0,
			 x->err_msg[0] ? x->err_msg : "could not be started");
		status = x->err_errno == ENOENT && x->err_stage == 3 ? 127 : 126;
	} else {
		uint32_t e = f->len == 4 ? le32_get(f->payload) : EPROTO;
		snprintf(err, sizeof(err), "%s: the guest ended the process stream: %s", x->argv0,
			 strerror((int)e));
		status = 126;
	}
	exec_finish(x, status, err[0] ? err : NULL);
}

int exec_on_frame(struct sandbox *sb, struct mux_stream *s, const struct mux_frame *f)
{
	struct sandbox_exec *x = s->user;
	if (!x) {
		/* A stream we no longer care about: keep the protocol moving. */
		if (f->type == MUX_DATA)
			mux_consumed(&sb->mux, s, f->len);
		if (f->type == MUX_CLOSE)
			mux_close(&sb->mux, s, 0);
		return 0;
	}
	switch (f->type) {
	case MUX_DATA:
		if (f->chan == MUX_CHAN_IN) /* the guest never writes to our stdin channel */
			return -EPROTO;
		x->ops->output(x, f->chan, f->payload, f->len);
		break;
	case MUX_CREDIT:
		if (x->ops->writable)
			x->ops->writable(x);
		break;
	case MUX_CTL: {
		struct rd r = rd_make(f->payload, f->len);
		uint16_t type = rd_u16(&r);
		exec_status_from_ctl(x, type, &r);
		break;
	}
	case MUX_CLOSE:
		exec_on_close(x, f);
		break;
	default: /* EOF needs no action; OPEN never arrives on an existing stream */
		break;
	}
	return 0;
}

/* Open a stream for service svc with the request TLVs in b. */
static struct sandbox_exec *stream_start(struct sandbox *sb, uint16_t svc, struct buf *b,
					 const char *label, const struct exec_ops *ops,
					 void *opaque, char *err, size_t errn)
{
	struct sandbox_exec *x =
	    b->bad ? NULL : calloc(1, sizeof(*x)); /* bad: built without memory */
	if (!x) {
		snprintf(err, errn, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	x->s = mux_open(&sb->mux, svc, buf_head(b), (uint32_t)buf_used(b));
	if (!x->s) {
		int e = errno;
		snprintf(err, errn, "cannot open a stream to the guest: %s", strerror(e));
		free(x);
		errno = e;
		return NULL;
	}
	x->s->user = x;
	x->sb = sb;
	x->ops = ops;
	x->opaque = opaque;
	snprintf(x->argv0, sizeof(x->argv0), "%s", label);
	x->deadline = (struct timer){ .fn = on_deadline, .obj = x };
	x->kill_timer = (struct timer){ .fn = on_kill_timer, .obj = x };
	x->give_up = (struct timer){ .fn = on_give_up, .obj = x };
	x->next = sb->execs;
	sb->execs = x;
	sb_flush_link(sb);
	return x;
}

/* Whether the caller's environment sets name. */
static bool env_has(char **env, const char *name)
{
	size_t n = strlen(name);
	for (char **e = env; e && *e; e++)
		if (!strncmp(*e, name, n) && (*e)[n] == '=')
			return true;
	return false;
}

/*
 * What every process of the sandbox gets unless the caller set it: NAME=placeholder for each
 * secret (never the value), and the trust bundle holding the sandbox CA (written by the agent).
 */
static void exec_put_sandbox_env(struct sandbox *sb, const struct exec_request *req, struct buf *b)
{
	static const char *const bundle_vars[] = { "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
						   "CURL_CA_BUNDLE" };
	char line[SECRET_NAME_MAX + SECRET_PLACEHOLDER_LEN + 2];
	const struct secrets *ss = sb->cfg.secrets;
	for (unsigned i = 0; ss && i < ss->n; i++) {
		if (env_has(req->env, ss->s[i].name))
			continue;
		snprintf(line, sizeof(line), "%s=%s", ss->s[i].name, ss->s[i].placeholder);
		msg_put_str(b, T_ENV, line);
	}
	if (!sb->mitm)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(bundle_vars); i++) {
		if (env_has(req->env, bundle_vars[i]))
			continue;
		snprintf(line, sizeof(line), "%s=%s", bundle_vars[i], GUEST_CA_BUNDLE);
		msg_put_str(b, T_ENV, line);
	}
	if (!env_has(req->env, "NODE_EXTRA_CA_CERTS"))
		msg_put_str(b, T_ENV, "NODE_EXTRA_CA_CERTS=" GUEST_CA_FILE);
}

struct sandbox_exec *sandbox_exec_start(struct sandbox *sb, const struct exec_request *req,
					const struct exec_ops *ops, void *opaque, char *err,
					size_t errn)
{
	if (sb->state != SB_READY) {
		snprintf(err, errn, "the sandbox is not running%s%s",
			 sb->state == SB_FAILED ? ": " : "",
			 sb->state == SB_FAILED ? sb->fail : "");
		errno = ESRCH;
		return NULL;
	}
	if (!req->argv || !req->argv[0] || !*req->argv[0]) {
		snprintf(err, errn, "no command given");
		errno = EINVAL;
		return NULL;
	}
	/* The host keeps the deadline; the guest gets a terminal size whenever it gets a TTY. */
	struct exec_request g = *req;
	g.timeout_s = 0;
	g.rows = req->rows ? req->rows : 24;
	g.cols = req->cols ? req->cols : 80;
	struct buf b = { 0 };
	exec_request_encode(&g, &b);
	exec_put_sandbox_env(sb, req, &b);
	if (b.bad) {
		snprintf(err, errn, "out of memory");
		buf_fini(&b);
		errno = ENOMEM;
		return NULL;
	}
	if (buf_used(&b) > MUX_MAX_PAYLOAD - 2) {
		snprintf(err, errn,
			 "command line and environment too large (%zu bytes, at most %u)",
			 buf_used(&b), MUX_MAX_PAYLOAD - 2);
		buf_fini(&b);
		errno = E2BIG;
		return NULL;
	}
	struct sandbox_exec *x =
	    stream_start(sb, SVC_EXEC, &b, req->argv[0], ops, opaque, err, errn);
	buf_fini(&b);
	if (x && req->timeout_s)
		loop_timer_set(sb->loop, &x->deadline, now_ns() + req->timeout_s * 1000000000ull);
	return x;
}

struct sandbox_exec *sandbox_file_start(struct sandbox *sb, const struct file_request *fr,
					const struct exec_ops *ops, void *opaque, char *err,
					size_t errn)
{
	uint16_t op = fr->op;
	if (sb->state != SB_READY) {
		snprintf(err, errn, "the sandbox is not running");
		errno = ESRCH;
		return NULL;
	}
	if (op != SVC_FILE_WRITE && op != SVC_FILE_READ && op != SVC_FILE_LIST &&
	    op != SVC_TREE_PACK && op != SVC_TREE_UNPACK) {
		errno = EINVAL;
		return NULL;
	}
	struct buf b = { 0 };
	msg_put_str(&b, T_PATH, fr->path);
	if (op == SVC_TREE_PACK || op == SVC_TREE_UNPACK) {
		msg_put_u32(&b, T_FLAGS, fr->flags);
		msg_put_u32(&b, T_SHARE, fr->share);
		if (fr->name)
			msg_put_str(&b, T_NAME, fr->name);
	}
	msg_put_u32(&b, T_MODE, fr->mode);
	if (fr->append)
		msg_put_u8(&b, T_APPEND, 1);
	if (fr->offset)
		msg_put_u64(&b, T_OFFSET, fr->offset);
	if (fr->length)
		msg_put_u64(&b, T_LENGTH, fr->length);
	struct sandbox_exec *x = stream_start(sb, op, &b, fr->path, ops, opaque, err, errn);
	buf_fini(&b);
	if (x)
		x->is_file = true;
	return x;
}

struct sandbox_exec *sandbox_port_start(struct sandbox *sb, uint16_t port,
					const struct exec_ops *ops, void *opaque, char *err,
					size_t errn)
{
	if (sb->state != SB_READY) {
		snprintf(err, errn, "the sandbox is not running");
		errno = ESRCH;
		return NULL;
	}
	char label[16];
	snprintf(label, sizeof(label), "port %u", port);
	struct buf b = { 0 };
	msg_put_u16(&b, T_PORT, port);
	struct sandbox_exec *x = stream_start(sb, SVC_PORT, &b, label, ops, opaque, err, errn);
	buf_fini(&b);
	if (x)
		x->is_file = true; /* ends with 0 or -errno, like a transfer */
	return x;
}

void *sandbox_exec_opaque(struct sandbox_exec *x)
{
	return x->opaque;
}

size_t sandbox_exec_write(struct sandbox_exec *x, const void *p, size_t n)
{
	if (!x->s || x->finished || mux_congested(&x->sb->mux))
		return 0;
	uint32_t k = mux_send_data(&x->sb->mux, x->s, MUX_CHAN_IN, p,
				   n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
	sb_flush_link(x->sb);
	return k;
}

void sandbox_exec_close_stdin(struct sandbox_exec *x)
{
	if (!x->s || x->finished)
		return;
	mux_send_eof(&x->sb->mux, x->s, MUX_CHAN_IN);
	sb_flush_link(x->sb);
}

void sandbox_exec_consumed(struct sandbox_exec *x, size_t n)
{
	if (!x->s || x->finished)
		return;
	mux_consumed(&x->sb->mux, x->s, (uint32_t)n);
	sb_flush_link(x->sb);
}

void sandbox_exec_signal(struct sandbox_exec *x, int sig)
{
	exec_send_signal(x, sig);
}

void sandbox_exec_resize(struct sandbox_exec *x, uint16_t rows, uint16_t cols)
{
	if (!x->s || x->finished)
		return;
	struct buf b = { 0 };
	buf_put_u16(&b, CTL_RESIZE);
	msg_put_u16(&b, T_ROWS, rows);
	msg_put_u16(&b, T_COLS, cols);
	sb_send_ctl(x->sb, x->s->id, &b);
	buf_fini(&b);
}

void sandbox_exec_cancel(struct sandbox_exec *x, unsigned grace_ms)
{
	exec_send_signal(x, SIGTERM);
	if (!x->kill_timer.at)
		loop_timer_set(x->sb->loop, &x->kill_timer,
			       x->sb->loop->now + grace_ms * 1000000ull);
}
