/* SPDX-License-Identifier: MIT */
/*
 * Host folders in the guest (SVC_FS in msg.h). The agent does not serve files: it mounts the
 * kernel's FUSE file system and relays the raw protocol. Each mount has its own /dev/fuse fd
 * and one SVC_FS stream; a request read from the fd is sent as a record (u32 length + bytes),
 * a reply record from the host is written back to the fd. The supervisor parses and answers
 * every request from the host folder (src/fs), so containment is decided there, not here.
 *
 * The relay is a process of its own with a link of its own (the virtio port "matchlock.fs",
 * its own mux): a FUSE server must never wait for anything that may wait for FUSE, and the
 * agent may -- its read of a process's output pipe blocks on the pipe's lock while the writer
 * splices from a file in a host folder (cat does), and read_file on such a path blocks in the
 * agent itself. The relay touches nothing but its link, the /dev/fuse fds and two pipes. It
 * reuses the `agent` struct for its own loop and link (it is a separate process); its
 * SVC_FS streams are the only streams on that link.
 *
 * Many requests are in flight (the kernel queues them, we relay as fast as the stream's credit
 * allows); at most one request per mount waits here for credit, and the fd is not read while it
 * does, so the relay's memory stays bounded whatever the guest's processes do.
 *
 * Mounting blocks too: mount(2) of an overlay over a FUSE lower, or a mkdir under another FUSE
 * mount, waits for replies the relay relays. So the relay's child, the mounter, does the mkdirs
 * and mounts (in the shared mount namespace) while the relay pumps. Both report on pipes, one
 * line each: "M INDEX" once a FUSE mount is up (its fd only then has a connection to read),
 * "E MESSAGE" on failure, "D" when all are done; the relay passes E and D on to the agent, which
 * then answers the config with CTL_READY or CTL_ERROR.
 *
 * Modes: ro and rw mount FUSE at the guest path (ro with MS_RDONLY; the host serves ro shares
 * read-only too). overlay mounts FUSE read-only at FUSE_LOWER_DIR/INDEX and an overlayfs at the
 * guest path with an upper on the sandbox's writable disk: the guest writes its own copy, the
 * host folder is never written.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "common/log.h"
#include "common/util.h"
#include "proto/msg.h"

#define FUSE_DEV "/dev/fuse"
#define FUSE_LOWER_DIR "/run/matchlock/share" /* overlay mode: the read-only FUSE mounts */
/* overlay mode: upper and work dirs, on the sandbox's writable disk (mount.c) */
#define FUSE_UPPER_DIR "/run/matchlock/disk/mounts"
#define FS_PORT_NAME "matchlock.fs"
#define REPORT_LINE_MAX 600

enum fuse_mode { FUSE_MODE_RO, FUSE_MODE_RW, FUSE_MODE_OVERLAY };

struct fuse_mount {
	unsigned index; /* the share's number (T_MOUNT, T_SHARE) */
	enum fuse_mode mode;
	char *guest;
	int fd; /* /dev/fuse, -1 once ended */
	struct watch w;
	struct mux_stream *s; /* NULL once the stream is gone */
	bool pumping; /* the mounter said the FUSE mount is up */
	uint8_t *req; /* one record: u32 length + a request read from fd */
	uint32_t req_len, req_sent;
	struct buf rep; /* a partial reply record from the host */
};

static struct fuse_mount mounts[MSG_MAX_MOUNTS];
static unsigned nmounts;

/* Lines from a pipe: the mounter's to the relay, the relay's to the agent. */
struct report {
	struct watch w;
	char line[REPORT_LINE_MAX];
	size_t len;
	bool (*on_line)(const char *line); /* true: the reports are over (the pipe is closed) */
};

static struct report from_mounter; /* in the relay */
static struct report from_relay; /* in the agent */
static int to_agent = -1; /* in the relay: the pipe the agent reads */
static bool started;

static void fm_pump(struct fuse_mount *m);

/* "INDEX MODE GUESTPATH" (msg.h), from the trusted host; still checked, never overflowing. */
int fuse_config_add(struct rd *v)
{
	char *s = NULL, *end;
	if (nmounts >= MSG_MAX_MOUNTS || msg_dup_str(v, MSG_MAX_STR, &s) < 0) {
		free(s);
		return -EINVAL;
	}
	struct fuse_mount *m = &mounts[nmounts];
	unsigned long idx = strtoul(s, &end, 10);
	char mode[16];
	int n = 0;
	if (end == s || *end != ' ' || idx >= MSG_MAX_MOUNTS ||
	    sscanf(end + 1, "%15s %n", mode, &n) != 1 || end[1 + n] != '/') {
		free(s);
		return -EINVAL;
	}
	if (!strcmp(mode, "ro"))
		m->mode = FUSE_MODE_RO;
	else if (!strcmp(mode, "rw"))
		m->mode = FUSE_MODE_RW;
	else if (!strcmp(mode, "overlay"))
		m->mode = FUSE_MODE_OVERLAY;
	else {
		free(s);
		return -EINVAL;
	}
	m->index = (unsigned)idx;
	m->guest = strdup(end + 1 + n);
	free(s);
	if (!m->guest)
		return -ENOMEM;
	m->fd = -1;
	nmounts++;
	return 0;
}

int fuse_upper_path(uint32_t index, char *out, size_t n)
{
	for (unsigned i = 0; i < nmounts; i++) {
		if (mounts[i].index != index || mounts[i].mode != FUSE_MODE_OVERLAY)
			continue;
		int k = snprintf(out, n, FUSE_UPPER_DIR "/%u/upper", index);
		return k > 0 && (size_t)k < n ? 0 : -ENAMETOOLONG;
	}
	return -ENOENT;
}

/* The end of one mount's relay: closing the fd aborts the FUSE connection (ENOTCONN inside). */
static void fm_end(struct fuse_mount *m, int err)
{
	if (m->fd >= 0) {
		if (err)
			warn("host folder %s: relay ended (%s)", m->guest, strerror(err));
		loop_unwatch(&agent.loop, &m->w);
		close(m->fd);
		m->fd = -1;
	}
	if (m->s) {
		agent_stream_own(m->s, AGENT_STREAM_NONE, NULL);
		mux_close(&agent.mux, m->s, err > 0 ? (uint32_t)err : 0);
		m->s = NULL;
		agent_link_wants_write();
	}
	free(m->req);
	m->req = NULL;
	m->req_len = m->req_sent = 0;
	buf_fini(&m->rep);
	m->pumping = false;
}

/*
 * Relay requests while the stream has credit and the link is not congested: finish sending
 * the pending record, then read the next. Reading stops (interest 0) while a record waits.
 */
static void fm_pump(struct fuse_mount *m)
{
	while (m->pumping && m->fd >= 0 && m->s) {
		if (m->req_sent < m->req_len) {
			uint32_t k = mux_send_data(&agent.mux, m->s, MUX_CHAN_IN,
						   m->req + m->req_sent, m->req_len - m->req_sent);
			m->req_sent += k;
			if (k)
				agent_link_wants_write();
			if (m->req_sent < m->req_len)
				break; /* CREDIT or a drained link calls us again */
		}
		if (mux_congested(&agent.mux))
			break;
		ssize_t n = read(m->fd, m->req + 4, MSG_FS_MAX_RECORD);
		if (n < 0 && (errno == EINTR || errno == ENOENT))
			continue; /* ENOENT: the request was interrupted before we read it */
		if (n < 0 && errno == EAGAIN) {
			loop_watch(&agent.loop, &m->w, EPOLLIN);
			return;
		}
		if (n <= 0) {
			/* ENODEV: unmounted. Anything else: the connection is unusable. */
			fm_end(m, n == 0 || errno == ENODEV ? 0 : errno);
			return;
		}
		le32_put(m->req, (uint32_t)n);
		m->req_len = (uint32_t)n + 4;
		m->req_sent = 0;
	}
	if (m->fd >= 0)
		loop_watch(&agent.loop, &m->w, 0);
}

static void on_fuse_fd(struct watch *w, uint32_t events)
{
	(void)events;
	fm_pump(w->obj);
}

/* Write every whole reply record to the fd; keep a partial one. */
static int fm_replies(struct fuse_mount *m)
{
	while (buf_used(&m->rep) >= 4) {
		uint32_t len = le32_get(buf_head(&m->rep));
		if (len < 16 || len > MSG_FS_MAX_RECORD)
			return -EPROTO; /* shorter than struct fuse_out_header, or oversized */
		if (buf_used(&m->rep) < 4 + (size_t)len)
			return 0;
		ssize_t n;
		do
			n = write(m->fd, buf_head(&m->rep) + 4, len);
		while (n < 0 && errno == EINTR);
		/* ENOENT: the request was interrupted and is gone; nothing else waits for it. */
		if (n < 0 && errno != ENOENT)
			debug("host folder %s: reply refused: %s", m->guest, strerror(errno));
		buf_consume(&m->rep, 4 + (size_t)len);
	}
	return 0;
}

static int fuse_on_frame(struct mux_stream *s, const struct mux_frame *f)
{
	struct fuse_mount *m = s->user;
	switch (f->type) {
	case MUX_DATA:
		mux_consumed(&agent.mux, s, f->len);
		agent_link_wants_write();
		if (f->chan != MUX_CHAN_OUT || m->fd < 0 ||
		    buf_append(&m->rep, f->payload, f->len) < 0 || fm_replies(m) < 0)
			fm_end(m, EPROTO);
		break;
	case MUX_CREDIT:
		fm_pump(m);
		break;
	case MUX_CLOSE:
		fm_end(m, f->len == 4 ? (int)le32_get(f->payload) : 0);
		break;
	default:
		break;
	}
	return 0;
}

static void fuse_resume_all(void)
{
	for (unsigned i = 0; i < nmounts; i++)
		if (mounts[i].pumping)
			fm_pump(&mounts[i]);
}

/* ---- the mounter (a child: see the top) ---------------------------------------------------- */

static _Noreturn void mounter_fail(int fd, const char *what, const char *path, int err)
{
	dprintf(fd, "E %s %.400s: %s\n", what, path, strerror(err));
	_exit(1);
}

/* mkdir -p, then mount; on failure, report and end the child. */
static void mounter_mount(int fd, const char *src, const char *dst, const char *type,
			  unsigned long flags, const char *data, const char *shown)
{
	if (mkdir_p(dst, 0755) < 0)
		mounter_fail(fd, "creating the mount point", shown, errno);
	if (mount(src, dst, type, flags, data) < 0)
		mounter_fail(fd, "mounting the host folder on", shown, errno);
}

static void mounter_one(int pipe_fd, const struct fuse_mount *m)
{
	char opts[200], lower[64], upper[64], work[64], ovl[300];
	unsigned long flags = MS_NOSUID | MS_NODEV;
	/*
	 * allow_other: every guest user may use the mount; default_permissions: the kernel checks
	 * the modes the host reports, so guest users see POSIX permissions and guest root (with
	 * CAP_DAC_OVERRIDE) may do anything the host lets the server do.
	 */
	snprintf(opts, sizeof(opts),
		 "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,"
		 "max_read=%u",
		 m->fd, MSG_FS_MAX_WRITE);
	if (m->mode != FUSE_MODE_OVERLAY) {
		if (m->mode == FUSE_MODE_RO)
			flags |= MS_RDONLY;
		mounter_mount(pipe_fd, "matchlock", m->guest, "fuse", flags, opts, m->guest);
		dprintf(pipe_fd, "M %u\n", m->index);
		return;
	}
	snprintf(lower, sizeof(lower), FUSE_LOWER_DIR "/%u", m->index);
	snprintf(upper, sizeof(upper), FUSE_UPPER_DIR "/%u/upper", m->index);
	snprintf(work, sizeof(work), FUSE_UPPER_DIR "/%u/work", m->index);
	mounter_mount(pipe_fd, "matchlock", lower, "fuse", flags | MS_RDONLY, opts, m->guest);
	dprintf(pipe_fd, "M %u\n", m->index);
	if (mkdir_p(upper, 0755) < 0 || mkdir_p(work, 0755) < 0)
		mounter_fail(pipe_fd, "creating the overlay's upper layer for", m->guest, errno);
	snprintf(ovl, sizeof(ovl), "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
	mounter_mount(pipe_fd, "overlay", m->guest, "overlay", MS_NOSUID | MS_NODEV, ovl, m->guest);
}

static int by_guest_path(const void *a, const void *b)
{
	const struct fuse_mount *const *x = a, *const *y = b;
	return strcmp((*x)->guest, (*y)->guest);
}

/* The child: parents before children ("/a" sorts before "/a/b"), one mount after another. */
static _Noreturn void mounter_run(int pipe_fd)
{
	const struct fuse_mount *order[MSG_MAX_MOUNTS];
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (unsigned i = 0; i < nmounts; i++)
		order[i] = &mounts[i];
	qsort(order, nmounts, sizeof(order[0]), by_guest_path);
	for (unsigned i = 0; i < nmounts; i++)
		mounter_one(pipe_fd, order[i]);
	dprintf(pipe_fd, "D\n");
	_exit(0);
}

static void report_close(struct report *rp)
{
	loop_unwatch(&agent.loop, &rp->w);
	close(rp->w.fd);
	rp->w.fd = -1;
}

static void on_report(struct watch *w, uint32_t events)
{
	(void)events;
	struct report *rp = w->obj;
	for (;;) {
		ssize_t n = read(w->fd, rp->line + rp->len, sizeof(rp->line) - 1 - rp->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			rp->on_line("E mounting the host folders: the helper process died");
			report_close(rp);
			return;
		}
		rp->len += (size_t)n;
		char *nl;
		while ((nl = memchr(rp->line, '\n', rp->len))) {
			*nl = 0;
			if (rp->on_line(rp->line)) {
				report_close(rp);
				return;
			}
			size_t used = (size_t)(nl + 1 - rp->line);
			memmove(rp->line, nl + 1, rp->len - used);
			rp->len -= used;
		}
		if (rp->len == sizeof(rp->line) - 1) {
			rp->on_line("E mounting the host folders: garbled report");
			report_close(rp);
			return;
		}
	}
}

static void report_watch(struct report *rp, int fd, bool (*on_line)(const char *))
{
	fd_set_nonblock(fd, 1);
	rp->on_line = on_line;
	rp->len = 0;
	watch_init(&rp->w, fd, on_report, rp);
	loop_watch(&agent.loop, &rp->w, EPOLLIN);
}

/* In the relay: a line from the mounter. "M" starts a pump; E and D go on to the agent. */
static bool relay_on_mounter(const char *line)
{
	if (line[0] == 'M' && line[1] == ' ') {
		unsigned long idx = strtoul(line + 2, NULL, 10);
		for (unsigned i = 0; i < nmounts; i++) {
			if (mounts[i].index == idx && mounts[i].fd >= 0) {
				mounts[i].pumping = true;
				fm_pump(&mounts[i]);
			}
		}
		return false;
	}
	dprintf(to_agent, "%s\n", line[0] == 'D' || line[0] == 'E' ? line : "E garbled report");
	close(to_agent);
	to_agent = -1;
	waitpid(-1, NULL, WNOHANG); /* the mounter, done */
	return true;
}

/* In the agent: the relay's verdict. */
static bool agent_on_relay(const char *line)
{
	agent_config_done(line[0] == 'D' ? NULL : line[0] == 'E' ? line + 2 : "garbled report");
	return true;
}

/* /dev/fuse, made if devtmpfs has not (it is the misc device 10:229). */
static int fuse_dev_open(void)
{
	int fd = open(FUSE_DEV, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (mknod(FUSE_DEV, S_IFCHR | 0666, makedev(10, 229)) < 0 && errno != EEXIST)
			return -errno;
		fd = open(FUSE_DEV, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	}
	return fd < 0 ? -errno : fd;
}

static int relay_on_frame(struct mux *m, struct mux_stream *s, const struct mux_frame *f,
			  void *opaque)
{
	(void)m;
	(void)opaque;
	if (!s || f->type == MUX_OPEN)
		return 0; /* the host opens nothing here and says nothing on stream 0 */
	if (s->owner == AGENT_STREAM_FS)
		return fuse_on_frame(s, f);
	if (f->type == MUX_DATA)
		mux_consumed(&agent.mux, s, f->len);
	if (f->type == MUX_CLOSE)
		mux_close(&agent.mux, s, 0);
	agent_link_wants_write();
	return 0;
}

static void relay_on_link(struct watch *w, uint32_t events)
{
	static uint8_t rbuf[64 * 1024];
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	ssize_t k = read(w->fd, rbuf, sizeof(rbuf));
	if (k > 0 && mux_feed(&agent.mux, rbuf, (size_t)k) < 0) {
		error("file-service link: protocol error");
		agent.quit = 1;
	} else if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
		agent.quit = 1;
	}
}

static void relay_flush(void)
{
	struct buf *o = &agent.mux.out;
	while (buf_used(o) > 0) {
		ssize_t n = write(agent.link_fd, buf_head(o), buf_used(o));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			agent.quit = 1;
			return;
		}
		buf_consume(o, (size_t)n);
	}
	if (!mux_congested(&agent.mux))
		fuse_resume_all();
	loop_watch(&agent.loop, &agent.link_w, EPOLLIN | (buf_used(o) ? EPOLLOUT : 0));
}

static _Noreturn void relay_fail(const char *what, int err)
{
	dprintf(to_agent, "E host folders: %s: %s\n", what, strerror(err));
	_exit(1);
}

/*
 * The relay process: nothing of the agent's but the report pipe (moved to fd 3), a loop and a
 * link of its own, the /dev/fuse fds and streams, then the mounter, then pump until the end.
 */
static _Noreturn void relay_run(int report_fd)
{
	if (dup2(report_fd, 3) < 0)
		_exit(1);
	to_agent = 3;
	syscall(SYS_close_range, 4, ~0u, 0);
	log_init("matchlock-fs-relay");
	if (loop_init(&agent.loop) < 0)
		relay_fail("epoll", errno);
	int fd = agent_open_port(FS_PORT_NAME);
	if (fd < 0)
		relay_fail("the link port " FS_PORT_NAME, -fd);
	agent.link_fd = fd;
	mux_init(&agent.mux, MUX_SIDE_GUEST, relay_on_frame, NULL);
	watch_init(&agent.link_w, fd, relay_on_link, NULL);
	loop_watch(&agent.loop, &agent.link_w, EPOLLIN);
	for (unsigned i = 0; i < nmounts; i++) {
		struct fuse_mount *m = &mounts[i];
		if ((m->fd = fuse_dev_open()) < 0)
			relay_fail(FUSE_DEV, -m->fd);
		watch_init(&m->w, m->fd, on_fuse_fd, m);
		m->req = malloc(4 + MSG_FS_MAX_RECORD);
		struct buf body = { 0 };
		msg_put_u32(&body, T_SHARE, m->index);
		m->s = body.bad || !m->req ? NULL
					   : mux_open(&agent.mux, SVC_FS, buf_head(&body),
						      (uint32_t)buf_used(&body));
		buf_fini(&body);
		if (!m->s)
			relay_fail("opening a stream", ENOMEM);
		agent_stream_own(m->s, AGENT_STREAM_FS, m);
	}
	int p[2];
	pid_t pid = pipe2(p, O_CLOEXEC) < 0 ? -1 : fork();
	if (pid < 0)
		relay_fail("starting the mounter", errno);
	if (pid == 0) {
		close(p[0]);
		mounter_run(p[1]);
	}
	close(p[1]);
	report_watch(&from_mounter, p[0], relay_on_mounter);
	relay_flush();
	while (!agent.quit && loop_run_once(&agent.loop, 0) >= 0)
		relay_flush();
	/* The link is gone: the host is stopping the sandbox; our mounts fail with ENOTCONN. */
	_exit(0);
}

int fuse_start(char *err, size_t errn)
{
	if (nmounts == 0)
		return 0;
	if (started) {
		snprintf(err, errn, "host folders: configured twice");
		return -EALREADY;
	}
	started = true;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(err, errn, "host folders: pipe: %s", strerror(errno));
		return -errno;
	}
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		snprintf(err, errn, "host folders: fork: %s", strerror(e));
		return -e;
	}
	if (pid == 0)
		relay_run(p[1]);
	close(p[1]);
	report_watch(&from_relay, p[0], agent_on_relay);
	return 1;
}
