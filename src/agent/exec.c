/* SPDX-License-Identifier: MIT */
/*
 * Processes run for the host. Each SVC_EXEC stream owns one process (its own session and process
 * group) with either three pipes or a PTY. Output is read only while the stream has credit, so a
 * host that stops reading stalls this process alone. When the process exits we drain what its
 * output holds, send CTL_EXIT and close the stream; descendants that keep the output open do not
 * hold the exit back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"
#include "common/log.h"
#include "common/util.h"
#include "proto/exec_req.h"
#include "proto/msg.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_SESSIONS 256

enum out_state { OUT_OPEN, OUT_DONE };

struct exec_session {
	struct mux_stream *s;
	pid_t pid;
	bool tty;
	struct watch in; /* stdin pipe, or the PTY master (read and write) */
	struct watch out; /* stdout pipe (unused with a PTY) */
	struct watch err; /* stderr pipe (unused with a PTY) */
	enum out_state out_state, err_state;
	struct buf stdin_q;
	bool stdin_eof; /* host sent EOF: close stdin once stdin_q drains */
	bool exited;
	int status;
	bool exit_sent;
	bool dead; /* freed after the current loop batch */
};

static struct exec_session *sessions[MAX_SESSIONS];
static unsigned nsessions;

static bool env_has(char **env, size_t n, const char *key)
{
	size_t kl = strlen(key);
	for (size_t i = 0; i < n; i++)
		if (!strncmp(env[i], key, kl) && env[i][kl] == '=')
			return true;
	return false;
}

/* Setup step that failed in the child, reported through the error pipe. */
enum child_stage { STAGE_USER = 1, STAGE_CWD, STAGE_EXEC };

struct child_err {
	int stage;
	int err;
};

static void child_fail(int errfd, int stage, int err)
{
	struct child_err ce = { stage, err };
	(void)!write(errfd, &ce, sizeof(ce));
	_exit(127);
}

/* Resolve USER[:GROUP] against the image's passwd and group files. */
static int resolve_user(const char *spec, uid_t *uid, gid_t *gid, const char **name,
			const char **home)
{
	char user[256], *group = NULL;
	snprintf(user, sizeof(user), "%s", spec);
	char *colon = strchr(user, ':');
	if (colon) {
		*colon = 0;
		group = colon + 1;
	}
	char *end;
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		unsigned long n = strtoul(user, &end, 10);
		if (!*user || *end)
			return -ENOENT;
		*uid = (uid_t)n;
		*gid = (gid_t)n;
		pw = getpwuid(*uid);
		if (pw)
			*gid = pw->pw_gid;
	} else {
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
	}
	*name = pw ? pw->pw_name : NULL;
	*home = pw ? pw->pw_dir : "/";
	if (group && *group) {
		struct group *gr = getgrnam(group);
		if (gr) {
			*gid = gr->gr_gid;
		} else {
			unsigned long n = strtoul(group, &end, 10);
			if (*end)
				return -ENOENT;
			*gid = (gid_t)n;
		}
	}
	return 0;
}

/* In the forked child: become the requested process, or report why not. */
static void child_run(struct exec_request *q, int fds[3], const char *pts, int errfd)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	setsid();
	cgroup_enter_sandbox();
	if (pts) {
		int slave = open(pts, O_RDWR);
		if (slave < 0)
			child_fail(errfd, STAGE_EXEC, errno);
		ioctl(slave, TIOCSCTTY, 0);
		fds[0] = fds[1] = fds[2] = slave;
	}
	for (int i = 0; i < 3; i++)
		if (dup2(fds[i], i) < 0)
			child_fail(errfd, STAGE_EXEC, errno);

	uid_t uid = 0;
	gid_t gid = 0;
	const char *name = "root", *home = "/root";
	if (q->user && *q->user) {
		if (resolve_user(q->user, &uid, &gid, &name, &home) < 0)
			child_fail(errfd, STAGE_USER, ENOENT);
	}
	/* Resource limits while still root (raising a hard limit needs it). */
	for (unsigned i = 0; i < q->nrlimits; i++) {
		struct rlimit rl = { .rlim_cur = q->rlimits[i].soft,
				     .rlim_max = q->rlimits[i].hard };
		if (setrlimit((int)q->rlimits[i].resource, &rl) < 0)
			child_fail(errfd, STAGE_EXEC, errno);
	}
	/* Like Docker, create a missing working directory (as root, before dropping privileges). */
	const char *cwd = q->cwd && *q->cwd ? q->cwd : "/";
	mkdir_p(cwd, 0755);
	if (q->user && *q->user) {
		if ((name ? initgroups(name, gid) : setgroups(0, NULL)) < 0 || setgid(gid) < 0 ||
		    setuid(uid) < 0)
			child_fail(errfd, STAGE_USER, errno);
	}
	if (chdir(cwd) < 0)
		child_fail(errfd, STAGE_CWD, errno);

	/* The env vector has room for these defaults (EXEC_ENV_SPARE). */
	static char home_env[4200];
	if (!env_has(q->env, q->envc, "PATH"))
		q->env[q->envc++] = DEFAULT_PATH;
	if (!env_has(q->env, q->envc, "HOME")) {
		snprintf(home_env, sizeof(home_env), "HOME=%s", home ? home : "/");
		q->env[q->envc++] = home_env;
	}
	q->env[q->envc] = NULL;
	extern char **environ;
	environ = q->env;
	execvp(q->argv[0], q->argv);
	child_fail(errfd, STAGE_EXEC, errno);
}

static void session_close_fd(struct watch *w)
{
	if (w->fd < 0)
		return;
	loop_unwatch(&agent.loop, w);
	close(w->fd);
	w->fd = -1;
}

static void session_free(struct exec_session *x)
{
	session_close_fd(&x->in);
	session_close_fd(&x->out);
	session_close_fd(&x->err);
	buf_fini(&x->stdin_q);
	for (unsigned i = 0; i < nsessions; i++) {
		if (sessions[i] == x) {
			sessions[i] = sessions[--nsessions];
			break;
		}
	}
	/* Events already returned in this loop batch may still point at x. */
	x->dead = true;
	loop_defer_free(&agent.loop, x, free);
}

/* Send a CTL with the given TLVs already encoded in b (after the u16 type). */
static void send_ctl(uint32_t stream, struct buf *b)
{
	mux_send_msg(&agent.mux, stream, b);
	agent_link_wants_write();
}

static void send_error_and_close(struct mux_stream *s, int stage, int err)
{
	static const char *const what[] = { "request", "user", "working directory", "exec" };
	char msg[512];
	struct buf b = { 0 };
	snprintf(msg, sizeof(msg), "%s: %s", what[stage < 4 ? stage : 0], strerror(err));
	buf_put_u16(&b, CTL_ERROR);
	msg_put_u32(&b, T_ERRNO, (uint32_t)err);
	msg_put_u32(&b, T_SIGNAL, (uint32_t)stage); /* which step failed */
	msg_put_str(&b, T_MESSAGE, msg);
	send_ctl(s->id, &b);
	buf_fini(&b);
	mux_close(&agent.mux, s, (uint32_t)err);
	agent_link_wants_write();
}

/* Output readable and credit available: read what we can into DATA frames. */
static void pump_output(struct exec_session *x, struct watch *e, enum out_state *st, uint8_t chan)
{
	uint8_t tmp[MUX_DATA_CHUNK];
	while (*st == OUT_OPEN && e->fd >= 0) {
		uint32_t room = x->s->send_credit < sizeof(tmp) ? x->s->send_credit : sizeof(tmp);
		if (room == 0 || agent_link_congested()) {
			/* Wait for credit (exec_resume_all re-arms us). */
			loop_watch(&agent.loop, e, x->tty ? (e->events & EPOLLOUT) : 0);
			return;
		}
		/* A pipe's bytes go to the port uncopied; a PTY's, or behind a queue, copied. */
		ssize_t n = -1;
		errno = EINVAL;
		if (!x->tty)
			n = link_splice_data(x->s, chan, e->fd, MUX_SPLICE_MAX);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EINVAL || errno == EBUSY))
			n = read(e->fd, tmp, room);
		if (n > 0) {
			mux_send_data(&agent.mux, x->s, chan, tmp, (uint32_t)n);
			agent_link_wants_write();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && !x->exited) {
			loop_watch(&agent.loop, e, EPOLLIN | (x->tty ? (e->events & EPOLLOUT) : 0));
			return;
		}
		/*
		 * EOF, EIO from a PTY whose last slave closed, or, after the exit, an empty pipe
		 * that a descendant holds open: this output is done. Closing the fd also stops
		 * level-triggered hang-ups from spinning the loop (for a PTY stdin goes too).
		 */
		*st = OUT_DONE;
		mux_send_eof(&agent.mux, x->s, chan);
		agent_link_wants_write();
		session_close_fd(e);
	}
}

static void try_finish(struct exec_session *x)
{
	if (!x->exited || x->exit_sent || x->out_state != OUT_DONE || x->err_state != OUT_DONE)
		return;
	struct buf b = { 0 };
	buf_put_u16(&b, CTL_EXIT);
	if (WIFSIGNALED(x->status))
		msg_put_u32(&b, T_EXIT_SIGNAL, (uint32_t)WTERMSIG(x->status));
	else
		msg_put_u32(&b, T_EXIT_CODE, (uint32_t)WEXITSTATUS(x->status));
	send_ctl(x->s->id, &b);
	buf_fini(&b);
	x->exit_sent = true;
	agent_stream_own(x->s, AGENT_STREAM_NONE, NULL);
	mux_close(&agent.mux, x->s, 0);
	session_free(x);
}

static void pump_all(struct exec_session *x)
{
	if (x->tty) {
		pump_output(x, &x->in, &x->out_state, MUX_CHAN_OUT);
	} else {
		pump_output(x, &x->out, &x->out_state, MUX_CHAN_OUT);
		pump_output(x, &x->err, &x->err_state, MUX_CHAN_ERR);
	}
	try_finish(x);
}

/* Write queued stdin; close it (or send ^D to a PTY) after the host's EOF. */
static void pump_stdin(struct exec_session *x)
{
	struct watch *e = &x->in;
	while (buf_used(&x->stdin_q) > 0 && e->fd >= 0) {
		ssize_t n = write(e->fd, buf_head(&x->stdin_q), buf_used(&x->stdin_q));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			loop_watch(&agent.loop, e, EPOLLOUT | (x->tty ? (e->events & EPOLLIN) : 0));
			return;
		}
		if (n < 0) {
			/* The process closed its stdin: drop what it will never read. */
			mux_consumed(&agent.mux, x->s, (uint32_t)buf_used(&x->stdin_q));
			buf_consume(&x->stdin_q, buf_used(&x->stdin_q));
			break;
		}
		buf_consume(&x->stdin_q, (size_t)n);
		mux_consumed(&agent.mux, x->s, (uint32_t)n);
		agent_link_wants_write();
	}
	if (e->fd >= 0)
		loop_watch(&agent.loop, e, x->tty ? (e->events & EPOLLIN) : 0);
	if (x->stdin_eof && buf_used(&x->stdin_q) == 0) {
		x->stdin_eof = false;
		if (x->tty) {
			struct termios t;
			char eof = tcgetattr(e->fd, &t) == 0 ? (char)t.c_cc[VEOF] : 4;
			(void)!write(e->fd, &eof, 1);
		} else {
			session_close_fd(e);
		}
	}
}

static void on_session_fd(struct watch *e, uint32_t events);

int exec_open(struct mux_stream *s, struct rd *body)
{
	struct exec_request q = { 0 };
	struct exec_session *x = NULL;
	int p_in[2] = { -1, -1 }, p_out[2] = { -1, -1 }, p_err[2] = { -1, -1 },
	    p_st[2] = { -1, -1 };
	int master = -1;
	char pts[64];
	int r;

	if (nsessions >= MAX_SESSIONS) {
		send_error_and_close(s, 0, EMFILE);
		return 0;
	}
	r = exec_request_decode(body, &q);
	if (r < 0) {
		send_error_and_close(s, 0, -r == EPROTO ? EINVAL : -r);
		return 0;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		r = -ENOMEM;
		goto fail;
	}
	x->s = s;
	x->tty = q.tty;
	watch_init(&x->in, -1, on_session_fd, x);
	watch_init(&x->out, -1, on_session_fd, x);
	watch_init(&x->err, -1, on_session_fd, x);

	if (pipe2(p_st, O_CLOEXEC) < 0)
		goto fail_errno;
	int child_fds[3];
	if (q.tty) {
		master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
		if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
		    ptsname_r(master, pts, sizeof(pts)) != 0)
			goto fail_errno;
		struct winsize ws = { .ws_row = q.rows ? q.rows : 24,
				      .ws_col = q.cols ? q.cols : 80 };
		ioctl(master, TIOCSWINSZ, &ws);
	} else {
		if (q.stdin_on) {
			if (pipe2(p_in, O_CLOEXEC) < 0)
				goto fail_errno;
		} else {
			p_in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
			if (p_in[0] < 0)
				goto fail_errno;
		}
		if (pipe2(p_out, O_CLOEXEC) < 0 || pipe2(p_err, O_CLOEXEC) < 0)
			goto fail_errno;
		child_fds[0] = p_in[0];
		child_fds[1] = p_out[1];
		child_fds[2] = p_err[1];
	}

	pid_t pid = fork();
	if (pid < 0)
		goto fail_errno;
	if (pid == 0) {
		close(p_st[0]);
		child_run(&q, child_fds, q.tty ? pts : NULL, p_st[1]);
	}
	close(p_st[1]);
	p_st[1] = -1;
	x->pid = pid;

	/* Wait for exec (the pipe closes) or for the child's report of why it failed. */
	struct child_err ce = { 0 };
	ssize_t n;
	do
		n = read(p_st[0], &ce, sizeof(ce));
	while (n < 0 && errno == EINTR);
	close(p_st[0]);
	p_st[0] = -1;
	if (n == (ssize_t)sizeof(ce)) {
		/* The child _exits; SIGCHLD reaps it and finds no session. */
		send_error_and_close(s, ce.stage, ce.err);
		r = 0;
		goto fail;
	}

	if (q.tty) {
		x->in.fd = master;
		loop_watch(&agent.loop, &x->in, EPOLLIN);
		master = -1;
		x->err_state = OUT_DONE;
	} else {
		close(p_in[0]);
		close(p_out[1]);
		close(p_err[1]);
		p_in[0] = p_out[1] = p_err[1] = -1;
		if (p_in[1] >= 0) {
			fd_set_nonblock(p_in[1], 1);
			x->in.fd = p_in[1]; /* watched once there is input to write */
		}
		fd_set_nonblock(p_out[0], 1);
		fd_set_nonblock(p_err[0], 1);
		x->out.fd = p_out[0];
		x->err.fd = p_err[0];
		loop_watch(&agent.loop, &x->out, EPOLLIN);
		loop_watch(&agent.loop, &x->err, EPOLLIN);
	}
	agent_stream_own(s, AGENT_STREAM_EXEC, x);
	sessions[nsessions++] = x;
	exec_request_free(&q);
	return 0;

fail_errno:
	r = -errno;
	send_error_and_close(s, STAGE_EXEC, errno);
	r = 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (p_in[i] >= 0)
			close(p_in[i]);
		if (p_out[i] >= 0)
			close(p_out[i]);
		if (p_err[i] >= 0)
			close(p_err[i]);
		if (p_st[i] >= 0)
			close(p_st[i]);
	}
	if (master >= 0)
		close(master);
	free(x);
	exec_request_free(&q);
	return r;
}

int exec_on_frame(struct mux_stream *s, const struct mux_frame *f)
{
	struct exec_session *x = s->user; /* the stream is tagged AGENT_STREAM_EXEC: never NULL */
	switch (f->type) {
	case MUX_DATA:
		if (f->chan != MUX_CHAN_IN || x->in.fd < 0 || x->stdin_eof ||
		    buf_append(&x->stdin_q, f->payload, f->len) < 0) {
			mux_consumed(&agent.mux, s, f->len);
			break;
		}
		pump_stdin(x);
		break;
	case MUX_EOF:
		if (f->chan == MUX_CHAN_IN) {
			x->stdin_eof = true;
			pump_stdin(x);
		}
		break;
	case MUX_CREDIT:
		pump_all(x);
		break;
	case MUX_CTL: {
		struct rd r = rd_make(f->payload, f->len);
		uint16_t type = rd_u16(&r), tag;
		struct rd v;
		uint32_t sig = 0;
		uint16_t rows = 0, cols = 0;
		while (msg_next(&r, &tag, &v) > 0) {
			if (tag == T_SIGNAL)
				msg_get_u32(&v, &sig);
			else if (tag == T_ROWS)
				msg_get_u16(&v, &rows);
			else if (tag == T_COLS)
				msg_get_u16(&v, &cols);
		}
		if (type == CTL_SIGNAL && sig > 0 && sig < NSIG && !x->exited)
			kill(-x->pid, (int)sig);
		if (type == CTL_RESIZE && x->tty && rows && cols) {
			struct winsize ws = { .ws_row = rows, .ws_col = cols };
			ioctl(x->in.fd, TIOCSWINSZ, &ws);
		}
		break;
	}
	case MUX_CLOSE:
		/* The host gave up on the process: kill its group; we close once it is reaped. */
		if (!x->exited)
			kill(-x->pid, SIGKILL);
		break;
	}
	return 0;
}

static void on_session_fd(struct watch *e, uint32_t events)
{
	struct exec_session *x = e->obj;
	if (x->dead)
		return;
	if (e == &x->in) {
		if (events & EPOLLOUT)
			pump_stdin(x);
		if (x->tty && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && x->in.fd >= 0)
			pump_output(x, &x->in, &x->out_state, MUX_CHAN_OUT);
		else if (!x->tty && (events & (EPOLLERR | EPOLLHUP))) {
			/* The reader went away: stdin can never be written again. */
			buf_consume(&x->stdin_q, buf_used(&x->stdin_q));
			session_close_fd(&x->in);
		}
	} else if (e == &x->out) {
		pump_output(x, e, &x->out_state, MUX_CHAN_OUT);
	} else {
		pump_output(x, e, &x->err_state, MUX_CHAN_ERR);
	}
	try_finish(x);
}

void exec_on_sigchld(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (unsigned i = 0; i < nsessions; i++) {
			struct exec_session *x = sessions[i];
			if (x->pid != pid)
				continue;
			x->exited = true;
			x->status = status;
			pump_all(x); /* may free x */
			break;
		}
	}
}

void exec_resume_all(void)
{
	/* pump_all may free sessions (swap-remove), so walk backwards. */
	for (unsigned i = nsessions; i-- > 0;)
		if (i < nsessions)
			pump_all(sessions[i]);
}
