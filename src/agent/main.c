/* SPDX-License-Identifier: MIT */
/*
 * matchlock-agent: PID 1 of the sandbox.
 *
 * Start-up: build the root filesystem, bring loopback up, find the virtio-serial port named
 * "matchlock.link", say CTL_HELLO. Then one event loop (common/loop, as the host's) serves the
 * link: CTL_CONFIG (hostname), SVC_EXEC streams, CTL_POWEROFF. SIGCHLD arrives through a signalfd
 * and reaps every child, ours or orphaned. If the link fails or the host asks, everything is killed
 * and the VM resets (the kernel runs with reboot=t and QEMU with -no-reboot, so a reset ends QEMU
 * at once).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <linux/random.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "common/log.h"
#include "common/util.h"
#include "proto/msg.h"

#define LINK_NAME "matchlock.link"

struct agent agent;

void agent_link_wants_write(void)
{
	if (buf_used(&agent.mux.out) > 0 || link_splice_pending())
		loop_watch(&agent.loop, &agent.link_w, EPOLLIN | EPOLLOUT);
}

static _Noreturn void power_off(void)
{
	kill(-1, SIGKILL);
	/* Only volumes outlive the sandbox: its own disk is thrown away, not worth a sync. */
	mount_volumes_close();
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

int agent_link_write(void)
{
	struct buf *o = &agent.mux.out;
	int r = link_splice_flush(); /* it was made before anything in the queue */
	while (r == 0 && buf_used(o) > 0) {
		ssize_t n = write(agent.link_fd, buf_head(o), buf_used(o));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf_consume(o, (size_t)n);
	}
	return r;
}

static void link_flush(void)
{
	int r = agent_link_write();
	if (r < 0 && r != -EAGAIN) {
		error("link write: %s", strerror(-r));
		agent.quit = 1;
		return;
	}
	bool was_congested = agent.link_w.events & EPOLLOUT;
	loop_watch(&agent.loop, &agent.link_w, EPOLLIN | (r == -EAGAIN ? EPOLLOUT : 0));
	if (was_congested && !agent_link_congested()) {
		exec_resume_all();
		files_resume_all();
		copy_resume_all();
		net_resume_all();
	}
}

static void send_hello(void)
{
	struct buf b = { 0 };
	buf_put_u16(&b, CTL_HELLO);
	msg_put_u32(&b, T_VERSION, MUX_VERSION);
	msg_put_u64(&b, T_BOOT_NS, agent.boot_ns);
	msg_put_u64(&b, T_READY_NS, boottime_ns());
	mux_send_msg(&agent.mux, 0, &b);
	buf_fini(&b);
	agent_link_wants_write();
}

/*
 * Mix the host's fresh entropy into the kernel RNG and force a reseed: clones restored from one
 * template must never produce the same random numbers.
 */
static void reseed(struct rd *v)
{
	size_t n = rd_left(v);
	if (n == 0 || n > 512)
		return;
	struct {
		int entropy_count;
		int buf_size;
		uint8_t buf[512];
	} e = { .entropy_count = (int)n * 8, .buf_size = (int)n };
	memcpy(e.buf, rd_bytes(v, n), n);
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (ioctl(fd, RNDADDENTROPY, &e) < 0)
			(void)!write(fd, e.buf, n); /* mixed in, if not credited */
		ioctl(fd, RNDRESEEDCRNG);
		close(fd);
	}
	explicit_bzero(&e, sizeof(e));
}

#define MAX_HOSTS_LINES 64

void agent_config_done(const char *error)
{
	struct buf b = { 0 };
	if (error) {
		error("%s", error);
		buf_put_u16(&b, CTL_ERROR);
		msg_put_u32(&b, T_ERRNO, EIO);
		msg_put_str(&b, T_MESSAGE, error);
	} else {
		buf_put_u16(&b, CTL_READY);
	}
	mux_send_msg(&agent.mux, 0, &b);
	buf_fini(&b);
	agent_link_wants_write();
}

static void apply_config(struct rd *r)
{
	uint16_t tag;
	struct rd v;
	uint8_t net_on = 0;
	bool bad_mount = false;
	char *hosts[MAX_HOSTS_LINES];
	size_t nhosts = 0;
	char err[300];
	while (msg_next(r, &tag, &v) > 0) {
		if (tag == T_VOLUME) {
			bad_mount |= mount_volume_add(&v) < 0;
			continue;
		}
		if (tag == T_NET) {
			msg_get_u8(&v, &net_on);
			continue;
		}
		if (tag == T_HOSTS_LINE) {
			char *h = NULL;
			/* "ADDR NAME": one line, printable, no comment tricks. */
			if (nhosts < MAX_HOSTS_LINES && msg_dup_str(&v, 300, &h) == 0 &&
			    !strpbrk(h, "\n\r#"))
				hosts[nhosts++] = h;
			else
				free(h);
			continue;
		}
		if (tag == T_MOUNT) {
			bad_mount |= fuse_config_add(&v) < 0;
			continue;
		}
		if (tag == T_CA_PEM) {
			char *pem = NULL;
			if (msg_dup_str(&v, MSG_MAX_STR, &pem) == 0 &&
			    !strncmp(pem, "-----BEGIN CERTIFICATE-----", 27))
				trust_install_ca(pem);
			free(pem);
			continue;
		}
		if (tag == T_HOSTNAME) {
			char *h = NULL;
			if (msg_dup_str(&v, 64, &h) == 0 && *h && sethostname(h, strlen(h)) < 0)
				warn("sethostname: %s", strerror(errno));
			free(h);
		} else if (tag == T_SEED) {
			reseed(&v);
		} else if (tag == T_CPU_MILLI) {
			uint32_t milli;
			if (msg_get_u32(&v, &milli) == 0 && milli > 0 && milli < 1000u * 1024)
				cgroup_set_cpu_quota(milli);
		} else if (tag == T_TIME_NS) {
			uint64_t t;
			if (msg_get_u64(&v, &t) == 0) {
				struct timespec ts = { .tv_sec = (time_t)(t / 1000000000u),
						       .tv_nsec = (long)(t % 1000000000u) };
				clock_settime(CLOCK_REALTIME, &ts);
			}
		}
	}
	/* After the hostname, which /etc/hosts lists. */
	if (net_setup(net_on, hosts, nhosts) < 0)
		warn("network setup failed: the sandbox has no network");
	for (size_t i = 0; i < nhosts; i++)
		free(hosts[i]);
	/*
	 * Last: processes may start once we are ready, and they expect their folders. Volumes
	 * first: the agent mounts them itself, nothing of theirs waits for the file service.
	 */
	int k = bad_mount ? -EINVAL : mount_volumes(err, sizeof(err));
	if (k == 0)
		k = fuse_start(err, sizeof(err));
	if (bad_mount)
		agent_config_done("host folders: a malformed mount in the configuration");
	else if (k <= 0)
		agent_config_done(k < 0 ? err : NULL);
}

/*
 * A stream whose owner is gone (the process ended, the connection closed): drop its input and
 * finish the close handshake.
 */
static int on_orphan_frame(struct mux *m, struct mux_stream *s, const struct mux_frame *f)
{
	if (f->type == MUX_DATA)
		mux_consumed(m, s, f->len);
	if (f->type == MUX_CLOSE)
		mux_close(m, s, 0);
	agent_link_wants_write();
	return 0;
}

static int on_frame(struct mux *m, struct mux_stream *s, const struct mux_frame *f, void *opaque)
{
	(void)opaque;
	if (!s) {
		struct rd r = rd_make(f->payload, f->len);
		switch (rd_u16(&r)) {
		case CTL_CONFIG:
			apply_config(&r);
			break;
		case CTL_POWEROFF:
			agent.quit = 1;
			break;
		case CTL_DNS_REPLY:
			dnsstub_on_reply(&r);
			break;
		default:
			break; /* unknown link messages are ignored: newer hosts may send more */
		}
		return 0;
	}
	if (f->type == MUX_OPEN) { /* the host opens a stream: the service names its owner */
		struct rd r = rd_make(f->payload, f->len);
		uint16_t svc = rd_u16(&r);
		if (svc == SVC_EXEC)
			return exec_open(s, &r);
		if (svc == SVC_FILE_WRITE || svc == SVC_FILE_READ || svc == SVC_FILE_LIST)
			return files_open(s, svc, &r);
		if (svc == SVC_PORT)
			return net_port_open(s, &r);
		if (svc == SVC_TREE_PACK || svc == SVC_TREE_UNPACK)
			return copy_open(s, svc, &r);
		mux_close(m, s, EPROTONOSUPPORT);
		agent_link_wants_write();
		return 0;
	}
	switch (s->owner) {
	case AGENT_STREAM_FILES:
		return files_on_frame(s, f);
	case AGENT_STREAM_COPY:
		return copy_on_frame(s, f);
	case AGENT_STREAM_NET:
		return net_on_frame(s, f);
	case AGENT_STREAM_EXEC:
		return exec_on_frame(s, f);
	default:
		return on_orphan_frame(m, s, f);
	}
}

int agent_open_port(const char *port_name)
{
	/* The port appears with the virtio driver, its name a moment later: poll briefly. */
	for (int tries = 0; tries < 5000; tries++) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char path[300], *name = NULL;
			snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
			if (read_file_str(path, 64, &name) < 0)
				continue;
			bool match = !strncmp(name, port_name, strlen(port_name));
			free(name);
			if (!match)
				continue;
			snprintf(path, sizeof(path), "/dev/%s", e->d_name);
			closedir(d);
			int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
			if (fd < 0)
				error("open %s: %s", path, strerror(errno));
			return fd < 0 ? -errno : fd;
		}
		if (d)
			closedir(d);
		usleep(1000);
	}
	error("no virtio port named %s", port_name);
	return -ENODEV;
}

static void on_link(struct watch *w, uint32_t events)
{
	(void)w;
	static uint8_t rbuf[64 * 1024];
	if (!(events & EPOLLIN))
		return;
	/*
	 * The port returns one of its 4 KiB buffers per read: gather several before parsing, so
	 * most frames are handled in place rather than pieced together in the mux's buffer.
	 */
	size_t got = 0;
	ssize_t k;
	do {
		k = read(agent.link_fd, rbuf + got, sizeof(rbuf) - got);
		if (k > 0)
			got += (size_t)k;
	} while ((k > 0 || (k < 0 && errno == EINTR)) && got < sizeof(rbuf));
	if (got > 0) {
		int r = mux_feed(&agent.mux, rbuf, got);
		if (r < 0) {
			error("link: protocol error (%s)", strerror(-r));
			agent.quit = 1;
		}
	} else if (k < 0 && errno != EAGAIN && errno != EINTR) {
		agent.quit = 1;
	}
}

static void on_signal(struct watch *w, uint32_t events)
{
	(void)events;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof(si)) > 0)
		;
	exec_on_sigchld();
}

static void loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = { 0 };
	strcpy(ifr.ifr_name, "lo");
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		goto out;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		warn("loopback up: %s", strerror(errno));
out:
	if (s >= 0)
		close(s);
}

int main(void)
{
	agent.boot_ns = boottime_ns();
	log_init("matchlock-agent");
	if (getpid() != 1) {
		error("must run as PID 1 inside a sandbox");
		return 1;
	}
	char err[300];
	if (mount_early() < 0)
		power_off();
	if (mount_root(err, sizeof(err)) < 0) {
		error("%s", err);
		power_off();
	}
	loopback_up();

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

	int r = loop_init(&agent.loop);
	agent.link_fd = agent_open_port(LINK_NAME);
	if (agent.link_fd < 0 || sfd < 0 || r < 0)
		power_off();
	mux_init(&agent.mux, MUX_SIDE_GUEST, on_frame, NULL);
	link_splice_init();
	struct watch sig_w;
	watch_init(&sig_w, sfd, on_signal, NULL);
	watch_init(&agent.link_w, agent.link_fd, on_link, NULL);
	loop_watch(&agent.loop, &sig_w, EPOLLIN);
	loop_watch(&agent.loop, &agent.link_w, EPOLLIN);
	if (net_prepare() < 0)
		warn("network set-up failed: the sandbox will have loopback only");
	send_hello();
	link_flush();

	/* Each batch: dispatch, then write what it queued; frees are deferred past the batch. */
	while (!agent.quit && loop_run_once(&agent.loop, 0) >= 0)
		link_flush();
	power_off();
}
