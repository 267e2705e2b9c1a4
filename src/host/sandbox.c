/* SPDX-License-Identifier: MIT */
/*
 * Sandbox life cycle and the link. The guest is hostile: the link is parsed by the mux (bounded,
 * validated), every CTL field through the TLV reader, and a protocol error ends this sandbox,
 * never the host process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "net/mitm.h"
#include "net/proxy_hooks.h"
#include "proto/msg.h"
#include "sandbox_impl.h"
#include "snapshot.h"
#include "vmm.h"

#define STOP_GRACE_MS SANDBOX_STOP_GRACE_MS
#define LINK_TRIM_MS 1000 /* after a flood of the link, trim memory once it was idle this long */

static void sb_boot_soon(struct sandbox *sb);

/* Through the pidfd: an adopted QEMU is not our child, and its pid may be reaped and reused. */
static void sb_kill_qemu(struct sandbox *sb)
{
	if (sb->pid_w.fd < 0 || syscall(SYS_pidfd_send_signal, sb->pid_w.fd, SIGKILL, NULL, 0) < 0)
		if (!sb->adopted && sb->qemu_pid > 0)
			kill(sb->qemu_pid, SIGKILL);
}
static void on_qmp(struct watch *w, uint32_t events);
static void sb_on_boot_timer(struct timer *t);
static void sb_on_resume_timer(struct timer *t);
static void sb_on_stop_timer(struct timer *t);

void sb_fail(struct sandbox *sb, const char *fmt, ...)
{
	if (sb->state == SB_FAILED)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sb->fail, sizeof(sb->fail), fmt, ap);
	va_end(ap);
	sb->state = SB_FAILED;
	log_msg(LOG_DEBUG, "sandbox %s failed: %s", sb->cfg.id, sb->fail);
	if (!sb->qemu_exited)
		sb_kill_qemu(sb);
	exec_fail_all(sb);
}

const char *sandbox_failure(const struct sandbox *sb)
{
	return sb->state == SB_FAILED ? sb->fail : NULL;
}

void sandbox_log_write(struct sandbox *sb, const void *p, size_t n)
{
	log_file_write(sb->log, p, n);
}

const struct sandbox_config *sandbox_config(const struct sandbox *sb)
{
	return &sb->cfg;
}

pid_t sandbox_vmm_pid(const struct sandbox *sb)
{
	return sb->qemu_pid;
}

/* The link failed (mux_feed, mux_rx_resume, a full queue): say why the sandbox stops. */
static void sb_link_error(struct sandbox *sb, int err)
{
	if (err == -ENOBUFS)
		sb_fail(sb,
			"the guest flooded the link: over %u MB waiting to be sent to a guest "
			"that does not read; sandbox stopped",
			MUX_OUT_MAX >> 20);
	else
		sb_fail(sb, "the guest broke the link protocol (%s); sandbox stopped",
			strerror(-err));
}

void sb_send_ctl(struct sandbox *sb, uint32_t stream, struct buf *b)
{
	int r = mux_send_msg(&sb->mux, stream, b); /* -ENOMEM: b was built with a gap */
	if (r == -ENOBUFS)
		sb_link_error(sb, r);
	else if (r < 0)
		sb_fail(sb, "out of memory");
	sb_flush_link(sb);
}

void sb_flush_link(struct sandbox *sb)
{
	struct buf *o = &sb->mux.out;
	while (buf_used(o) > 0 && sb->state != SB_FAILED) {
		ssize_t n =
		    send(sb->link_w.fd, buf_head(o), buf_used(o), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno != EAGAIN)
				sb_fail(sb, "link to the guest failed: %s", strerror(errno));
			break;
		}
		buf_consume(o, (size_t)n);
	}
	if (sb->state == SB_FAILED)
		return;
	/* Frames held while the queue was over its mark: handle them now that it drained. */
	int r = mux_rx_resume(&sb->mux);
	if (r == 0 && mux_overflowed(&sb->mux))
		r = -ENOBUFS;
	if (r < 0)
		sb_link_error(sb, r);
	if (sb->state == SB_FAILED)
		return;
	/* Not reading while paused is the back-pressure: the guest's writes block. */
	loop_watch(sb->loop, &sb->link_w,
		   (mux_rx_paused(&sb->mux) ? 0 : EPOLLIN) | (buf_used(o) ? EPOLLOUT : 0));
	if (!mux_congested(&sb->mux))
		egress_resume(sb->egress);
}

/*
 * Armed when the guest made us stop reading: once the flood is over (nothing queued, nothing
 * read for LINK_TRIM_MS), give its buffers and the heap's free pages back to the system.
 */
static void sb_on_trim(struct timer *t)
{
	struct sandbox *sb = t->obj;
	if (sb->state == SB_FAILED)
		return;
	if (buf_used(&sb->mux.out) || mux_rx_paused(&sb->mux) || sb->link_rx != sb->link_rx_mark) {
		sb->link_rx_mark = sb->link_rx;
		loop_timer_set(sb->loop, t, sb->loop->now + LINK_TRIM_MS * 1000000ull);
		return;
	}
	debug("link: the flood is over (%u pauses); trimming memory", sb->mux.rx_pauses);
	mux_trim(&sb->mux);
	malloc_trim(0);
}

static void sb_flush_cb(void *opaque)
{
	sb_flush_link(opaque);
}

static void sb_net_event(const struct net_event *ev, void *opaque)
{
	struct sandbox *sb = opaque;
	if (sb->cfg.net_event)
		sb->cfg.net_event(ev, sb->cfg.net_opaque);
}

/* ---- the link ------------------------------------------------------------------------------ */

/*
 * The sandbox's identity, pushed after boot or restore so that clones of one template never
 * share anything: hostname, wall clock, fresh entropy for the guest's RNG, CPU quota, network.
 */
static void sb_send_config(struct sandbox *sb)
{
	struct timespec ts;
	uint8_t seed[64];
	clock_gettime(CLOCK_REALTIME, &ts);
	if (getrandom(seed, sizeof(seed), 0) != sizeof(seed)) {
		sb_fail(sb, "no entropy for the guest: %s", strerror(errno));
		return;
	}
	struct buf b = { 0 };
	buf_put_u16(&b, CTL_CONFIG);
	msg_put_str(&b, T_HOSTNAME, sb->cfg.hostname ? sb->cfg.hostname : sb->cfg.id);
	msg_put_u64(&b, T_TIME_NS, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
	msg_put_tlv(&b, T_SEED, seed, sizeof(seed));
	explicit_bzero(seed, sizeof(seed));
	if (sb->cfg.cpu_milli)
		msg_put_u32(&b, T_CPU_MILLI, sb->cfg.cpu_milli);
	msg_put_u8(&b, T_NET, !sb->cfg.policy->no_network);
	if (egress_put_hosts(sb->egress, &b) < 0)
		warn("--add-host: too many names");
	if (sb->mitm)
		msg_put_str(&b, T_CA_PEM, mitm_ca_pem(sb->mitm));
	if (sbfs_put_config(sb, &b) < 0)
		b.bad = true;
	for (unsigned i = 0; i < sb->cfg.nvolumes; i++) {
		char line[MSG_MAX_STR];
		snprintf(line, sizeof(line), "%u %s %s", i, sb->cfg.volumes[i].ro ? "ro" : "rw",
			 sb->cfg.volumes[i].guest);
		msg_put_str(&b, T_VOLUME, line);
	}
	sb_send_ctl(sb, 0, &b);
	explicit_bzero(b.p, b.cap);
	buf_fini(&b);
	sb->state = SB_CONFIGURING;
}

/*
 * First boot of this machine: the guest has just said hello and is idle. Save it as the
 * template before it learns who it is. A failure costs only the template.
 */
static void sb_save_template(struct sandbox *sb)
{
	char err[300];
	uint64_t t = now_ns();
	if (access(sb->cfg.template_path, F_OK) == 0)
		return; /* a concurrent first boot got there first */
	int r = snapshot_save(sb->qmp_w.fd, sb->cfg.template_path, sb->ram_fd, sb->cfg.memory_mb,
			      sb->cfg.scratch, err, sizeof(err));
	if (r == -EEXIST) {
		debug("template: %s", err); /* a concurrent first boot is saving it */
		return;
	}
	if (r < 0) {
		warn("could not save a snapshot for faster starts: %s", err);
		return;
	}
	snapshot_note_disk(sb->cfg.template_path, sb->cfg.disk);
	/* QEMU keeps its own mapping: the guest runs on in the memory file. */
	close(sb->ram_fd);
	sb->ram_fd = -1;
	sb->t.snapshot_ms = (now_ns() - t) / 1000000;
	debug("template saved in %llu ms: %s", (unsigned long long)sb->t.snapshot_ms,
	      sb->cfg.template_path);
}

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
			sb_fail(
			    sb,
			    "guest agent speaks protocol %u, this matchlock speaks %u (rebuild)",
			    version, MUX_VERSION);
			return 0;
		}
		sb->t.hello = sb->loop->now;
		if (sb->ram_fd >= 0)
			sb_save_template(sb);
		sb_send_config(sb);
	} else if (type == CTL_READY && sb->state == SB_CONFIGURING) {
		sb->t.ready = sb->loop->now;
		sb->state = SB_READY;
		sb_boot_soon(sb);
	} else if (type == CTL_DNS_QUERY && sb->state == SB_READY) {
		/* A malformed query is dropped; the guest's resolver times out. */
		if (egress_on_dns(sb->egress, &r) < 0)
			debug("network: malformed DNS message from the guest dropped");
	} else if (type == CTL_ERROR) {
		char msg[300] = "unknown error";
		while (msg_next(&r, &tag, &v) > 0) {
			char *s = NULL;
			if (tag == T_MESSAGE && msg_dup_str(&v, sizeof(msg) - 1, &s) == 0) {
				snprintf(msg, sizeof(msg), "%s", s);
				free(s);
			}
		}
		/* Refusing the config (a mount failed) is the sandbox's spec, not the template. */
		sb->config_refused = sb->state == SB_CONFIGURING;
		if (sb->config_refused)
			sb->fail_errno = EINVAL;
		sb_fail(sb, "%s%s", sb->config_refused ? "" : "guest agent failed: ", msg);
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
	if ((s->id & 1) == 0) /* opened by the guest: redirected connections */
		return egress_on_frame(sb->egress, s, f);
	if (f->type == MUX_OPEN) /* odd ids are ours; the mux already refused this */
		return -EPROTO;
	return exec_on_frame(sb, s, f);
}

int sb_link_read(struct sandbox *sb, int fd, struct mux *m, uint64_t *bytes)
{
	static uint8_t rbuf[64 * 1024];
	for (int rounds = 0; rounds < 16 && sb->state != SB_FAILED; rounds++) {
		if (mux_rx_paused(m))
			break; /* the link's flush reads on once the queue drained */
		ssize_t n = recv(fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return 1;
		if (bytes)
			*bytes += (uint64_t)n;
		int r = mux_feed(m, rbuf, (size_t)n);
		if (r < 0)
			return r;
	}
	return 0;
}

static void on_link(struct watch *w, uint32_t events)
{
	struct sandbox *sb = w->obj;
	if (events & EPOLLOUT)
		sb_flush_link(sb);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	int r = sb_link_read(sb, w->fd, &sb->mux, &sb->link_rx);
	if (r == 1) {
		/* QEMU closed its end: it is exiting; the pidfd tells us how. */
		loop_watch(sb->loop, w, 0);
		return;
	}
	if (r < 0) {
		sb_link_error(sb, r);
		return;
	}
	if (mux_rx_paused(&sb->mux)) {
		/* The guest writes faster than it reads: its writes block until we drain. */
		if (!sb->trim_timer.at)
			debug("link: the guest does not read its replies; not reading the link "
			      "until %u MB drained",
			      MUX_RX_RESUME >> 20);
		sb->link_rx_mark = sb->link_rx;
		loop_timer_set(sb->loop, &sb->trim_timer,
			       sb->loop->now + LINK_TRIM_MS * 1000000ull);
	}
	sb_flush_link(sb); /* credits and replies queued while reading */
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

/* Read what is there; returns bytes read (0 at EOF or nothing to read). */
static ssize_t read_console(struct sandbox *sb, struct watch *w)
{
	char tmp[4096];
	ssize_t n = read(w->fd, tmp, sizeof(tmp));
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			loop_watch(sb->loop, w, 0);
		return 0;
	}
	log_file_write(sb->log, tmp, (size_t)n);
	if (w == &sb->con_w)
		keep_tail(sb->con_tail, &sb->con_len, sizeof(sb->con_tail), tmp, (size_t)n);
	else
		keep_tail(sb->qerr, &sb->qerr_len, sizeof(sb->qerr) - 1, tmp, (size_t)n);
	if (w == &sb->con_w && getenv("MATCHLOCK_DEBUG"))
		(void)!write(STDERR_FILENO, tmp, (size_t)n);
	return n;
}

static void on_console(struct watch *w, uint32_t events)
{
	(void)events;
	read_console(w->obj, w);
}

static void on_qemu_exit(struct watch *w, uint32_t events)
{
	(void)events;
	struct sandbox *sb = w->obj;
	int status = 0;
	/* An adopted QEMU's parent is its holder: the pidfd's readiness is all we learn. */
	if (!sb->adopted && waitpid(sb->qemu_pid, &status, WNOHANG) != sb->qemu_pid)
		return;
	sb->qemu_exited = true;
	sb->qemu_status = status;
	sb->t.stopped = sb->loop->now;
	loop_watch(sb->loop, w, 0);
	/* The last console bytes (a panic message) and QEMU's last words, before anyone asks. */
	for (int i = 0; i < 64 && read_console(sb, &sb->con_w) > 0; i++)
		;
	for (int i = 0; i < 8 && read_console(sb, &sb->qerr_w) > 0; i++)
		;
	if (sb->state != SB_STOPPING)
		sb_fail(sb, "QEMU exited unexpectedly (%s %d)",
			WIFSIGNALED(status) ? "signal" : "status",
			WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	/* A boot or a stop waiting for this ends now. */
	sb_boot_soon(sb);
	if (sb->stopped)
		loop_timer_set(sb->loop, &sb->stop_timer, sb->loop->now);
}

/* ---- life cycle ---------------------------------------------------------------------------- */

/*
 * Boot and stop are state machines on the loop, never waits inside it:
 *
 *   sandbox_boot: spawn QEMU -> LOADING (restoring a template: a QMP conversation, see
 *   snapshot.h) or BOOTING (cold: until the agent's hello) -> CONFIGURING (identity sent) ->
 *   READY. boot_timer is the deadline, and it is also how the end is reported: set to "now" when
 *   the guest is ready or QEMU has exited after a failure, so booted() always runs from the
 *   loop's top, never from inside the link's handlers.
 *
 *   sandbox_stop: POWEROFF -> STOPPING until QEMU exits or the grace ends (then SIGKILL);
 *   stop_timer reports the end the same way.
 */

static void sb_free(struct sandbox *sb)
{
	if (sb->qemu_pid > 0 && !sb->qemu_exited) {
		sb_kill_qemu(sb);
		int status;
		while (!sb->adopted && waitpid(sb->qemu_pid, &status, 0) < 0 && errno == EINTR)
			;
		sb->qemu_exited = true;
		sb->t.stopped = now_ns();
	}
	if (sb->qemu_pid > 0) {
		struct vmm_config vc;
		sandbox_vmm_config(&sb->cfg, &vc);
		vmm_reaped(&vc);
	}
	exec_fail_all(sb);
	sbfs_free(sb);
	struct timer *ts[] = { &sb->trim_timer, &sb->boot_timer, &sb->resume_timer,
			       &sb->stop_timer };
	for (size_t i = 0; i < ARRAY_SIZE(ts); i++)
		loop_timer_cancel(sb->loop, ts[i]);
	egress_free(sb->egress);
	sb->egress = NULL;
	mitm_free(sb->mitm);
	sb->mitm = NULL;
	struct watch *ws[] = { &sb->link_w, &sb->con_w, &sb->qerr_w, &sb->pid_w, &sb->qmp_w };
	for (size_t i = 0; i < ARRAY_SIZE(ws); i++) {
		loop_unwatch(sb->loop, ws[i]);
		if (ws[i]->fd >= 0)
			close(ws[i]->fd);
	}
	snapshot_resume_fini(&sb->resume);
	if (sb->ram_fd >= 0)
		close(sb->ram_fd);
	if (sb->lease_fd >= 0)
		close(sb->lease_fd);
	mux_fini(&sb->mux);
	log_file_close(sb->log);
	/* Watches are embedded: events for them may still be pending in this batch. */
	loop_defer_free(sb->loop, sb, free);
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
		panic[strcspn(panic, "\r\n")] = 0;
		snprintf(out, n, "guest kernel panicked: %s", panic);
		return;
	}
	/* Last three non-empty lines, joined with " | ". */
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
				memcpy(out + k, " | ", 3);
				k += 3;
			}
			continue;
		}
		out[k++] = *p >= 0x20 && *p < 0x7f ? *p : '?';
	}
	out[k] = 0;
}

/* Report the boot's end (or check its deadline) from the loop's top: see the comment above. */
static void sb_boot_soon(struct sandbox *sb)
{
	if (sb->booted)
		loop_timer_set(sb->loop, &sb->boot_timer, sb->loop->now);
}

/* A failed boot: QEMU is gone; say why in one line, the most telling source first. */
static void sb_boot_failed(struct sandbox *sb, char *err, size_t errn)
{
	char con_msg[400];
	console_summary(sb, con_msg, sizeof(con_msg));
	if (sb->qerr_len && sb->fail_errno != ECANCELED && sb->fail_errno != EINVAL) {
		sb->qerr[sb->qerr_len] = 0;
		sb->qerr[strcspn(sb->qerr, "\n")] = 0;
		snprintf(err, errn, "QEMU failed: %s", sb->qerr);
	} else if (strstr(con_msg, "panicked")) {
		snprintf(err, errn, "%s", con_msg);
	} else if (*con_msg && sb->fail_errno == EIO) {
		snprintf(err, errn, "%s; console: %s", sb->fail, con_msg);
	} else {
		snprintf(err, errn, "%s", sb->fail);
	}
}

static void sb_on_boot_timer(struct timer *t)
{
	struct sandbox *sb = t->obj;
	if (!sb->booted)
		return;
	if (sb->state == SB_READY) {
		sandbox_booted_fn fn = sb->booted;
		sb->booted = NULL;
		fn(sb, 0, NULL, sb->booted_opaque);
		return;
	}
	if (sb->state != SB_FAILED && sb->loop->now >= sb->deadline) {
		char con_msg[400];
		console_summary(sb, con_msg, sizeof(con_msg));
		sb->fail_errno = sb->state == SB_LOADING ? ESTALE : ETIMEDOUT;
		if (sb->state == SB_LOADING)
			sb_fail(sb, "restoring the snapshot: QEMU did not load it within %u s",
				sb->cfg.boot_timeout_ms / 1000);
		else
			sb_fail(sb, "the guest did not answer within %u s%s%s",
				sb->cfg.boot_timeout_ms / 1000,
				*con_msg ? "; console: " : " (no console output)", con_msg);
	}
	if (sb->state != SB_FAILED) {
		loop_timer_set(sb->loop, t, sb->deadline);
		return;
	}
	if (!sb->qemu_exited)
		return; /* killed: on_qemu_exit calls again once its last words are read */
	char err[QEMU_ERR_MAX + 400];
	sb_boot_failed(sb, err, sizeof(err));
	sandbox_booted_fn fn = sb->booted;
	void *opaque = sb->booted_opaque;
	/*
	 * Whatever went wrong after a restore, the template is suspect and the caller boots cold;
	 * unless the guest refused the sandbox's own config or the boot was cancelled.
	 */
	int e = sb->t.restored && sb->fail_errno != ECANCELED && sb->fail_errno != EINVAL
		    ? ESTALE
		    : sb->fail_errno;
	sb->booted = NULL;
	sb_free(sb);
	fn(NULL, -e, err, opaque);
}

void sandbox_boot_cancel(struct sandbox *sb, const char *why)
{
	if (!sb->booted || sb->state == SB_FAILED)
		return;
	sb->fail_errno = ECANCELED;
	sb_fail(sb, "%s", why);
}

/* ---- restoring a template ---- */

static void sb_resume_failed(struct sandbox *sb, const char *why)
{
	loop_unwatch(sb->loop, &sb->qmp_w);
	sb->fail_errno = ESTALE;
	sb_fail(sb, "restoring the snapshot: %s", why);
}

/* The template was saved paused, so QEMU loads it and stays paused: resume it. */
static void on_qmp(struct watch *w, uint32_t events)
{
	(void)events;
	struct sandbox *sb = w->obj;
	char err[300] = "";
	int r = snapshot_resume_step(&sb->resume, w->fd, err, sizeof(err));
	if (r == SNAPSHOT_ASK_AGAIN) {
		loop_watch(sb->loop, w, 0);
		loop_timer_set(sb->loop, &sb->resume_timer, sb->loop->now + 2000000ull);
	} else if (r < 0) {
		sb_resume_failed(sb, err);
	} else if (r == 1) {
		/* The guest wakes up idle, past its hello, and needs only to learn who it is. */
		loop_unwatch(sb->loop, w);
		fd_set_nonblock(w->fd, 0); /* the monitor's later users block */
		sb->t.hello = sb->loop->now;
		sb->state = SB_BOOTING;
		/*
		 * The boot's deadline stands: a restored guest faults its memory in from the
		 * template as it runs, and ten starts on two cores take seconds; a shorter one
		 * would drop a good template under load.
		 */
		sb_send_config(sb);
		sb_boot_soon(sb);
	}
}

static void sb_on_resume_timer(struct timer *t)
{
	struct sandbox *sb = t->obj;
	if (snapshot_resume_ask(&sb->resume, sb->qmp_w.fd) < 0) {
		sb_resume_failed(sb, "QMP: cannot write to QEMU");
		return;
	}
	loop_watch(sb->loop, &sb->qmp_w, EPOLLIN);
}

/* The host side of a sandbox, before its VM: the egress engine, its CA, its log. */
static struct sandbox *sb_new(const struct sandbox_config *c, struct loop *l, char *err,
			      size_t errn)
{
	struct sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb) {
		snprintf(err, errn, "out of memory");
		return NULL;
	}
	sb->cfg = *c;
	sb->loop = l;
	sb->fail_errno = EIO;
	sb->ram_fd = -1;
	sb->lease_fd = -1;
	watch_init(&sb->link_w, -1, on_link, sb);
	watch_init(&sb->con_w, -1, on_console, sb);
	watch_init(&sb->qerr_w, -1, on_console, sb);
	watch_init(&sb->pid_w, -1, on_qemu_exit, sb);
	watch_init(&sb->qmp_w, -1, on_qmp, sb);
	sb->trim_timer = (struct timer){ .fn = sb_on_trim, .obj = sb };
	sb->boot_timer = (struct timer){ .fn = sb_on_boot_timer, .obj = sb };
	sb->resume_timer = (struct timer){ .fn = sb_on_resume_timer, .obj = sb };
	sb->stop_timer = (struct timer){ .fn = sb_on_stop_timer, .obj = sb };
	mux_init(&sb->mux, MUX_SIDE_HOST, on_frame, sb);
	static struct policy sealed; /* no --allow-host: nothing is reachable */
	if (!sb->cfg.policy)
		sb->cfg.policy = &sealed;
	static const struct egress_ops eops = { .flush = sb_flush_cb, .event = sb_net_event };
	char path[4200];
	snprintf(path, sizeof(path), "%s/log", c->state_dir);
	if (!sb->cfg.policy->no_network &&
	    /* A fresh CA per sandbox, in memory only: no two sandboxes trust each other's. */
	    !(sb->mitm = mitm_new(c->secrets, c->upstream_ca, err, errn))) {
		/* err says why */
	} else if (!(sb->egress = egress_new(l, &sb->mux, sb->cfg.policy, sb->mitm, &eops, sb))) {
		snprintf(err, errn, "setting up the egress engine: %s", strerror(errno));
	} else if (sbfs_open(sb, err, errn) < 0) {
		/* err says why */
	} else if (!(sb->log = log_file_open(path, LOG_FILE_CAP))) {
		snprintf(err, errn, "cannot create %s: %s", path, strerror(errno));
	} else {
		if (sb->mitm)
			mitm_set_hooks(sb->mitm, c->hooks);
		return sb;
	}
	sb_free(sb);
	return NULL;
}

void sandbox_vmm_config(const struct sandbox_config *c, struct vmm_config *vc)
{
	*vc = (struct vmm_config){
		.arch = c->arch,
		.accel = c->accel,
		.cpus = c->cpus,
		.memory_mb = c->memory_mb,
		.kernel = c->kernel,
		.initrd = c->initrd,
		.disk = c->disk,
		.scratch = c->scratch,
		.scratch_mb = c->scratch_mb,
		.link_fd = -1,
		.console_fd = -1,
		.stderr_fd = -1,
		.qmp_fd = -1,
		.incoming_fd = -1,
		.fs_fd = -1,
		.ram_fd = -1,
		.name = c->id,
	};
	for (unsigned i = 0; i < c->nvolumes && i < VMM_MAX_VOLUMES; i++)
		vc->volumes[vc->nvolumes++] = (struct vmm_volume){
			.path = c->volumes[i].path,
			.size_mb = c->volumes[i].size_mb,
			.ro = c->volumes[i].ro,
		};
}

/*
 * A first boot that will save the template keeps the guest's RAM in a memory file it can copy
 * from (snapshot_save): the same memory anonymous RAM would be, shared with QEMU. Without one
 * the guest boots on anonymous memory and no template is saved.
 */
static void sb_ram_file(struct sandbox *sb)
{
	int fd = memfd_create("matchlock-ram", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)sb->cfg.memory_mb << 20) < 0) {
		warn("no snapshot for faster starts: guest memory file: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	sb->ram_fd = fd;
}

/*
 * QEMU, with the link, the console, its stderr and its monitor as socket pairs whose far ends
 * only it holds; restoring the template when there is one. Returns 0 or -errno with err.
 */
static int sb_spawn(struct sandbox *sb, char *err, size_t errn)
{
	const struct sandbox_config *c = &sb->cfg;
	int link[2] = { -1, -1 }, con[2] = { -1, -1 }, qerr[2] = { -1, -1 }, qmp[2] = { -1, -1 };
	int incoming = -1, pidfd = -1, r = -EIO;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, con) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qmp) < 0 ||
	    pipe2(qerr, O_CLOEXEC) < 0) {
		snprintf(err, errn, "setting up the sandbox: %s", strerror(errno));
		goto out;
	}
	/* A bigger socket buffer keeps the link busy while we are elsewhere in the loop. */
	int sz = 1 << 20;
	setsockopt(link[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(link[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	struct vmm_config vc;
	sandbox_vmm_config(c, &vc);
	vc.link_fd = link[1];
	vc.console_fd = con[1];
	vc.stderr_fd = qerr[1];
	vc.qmp_fd = qmp[1];
	vc.incoming_fd = -1;
	vc.fs_fd = sbfs_vmm_fd(sb);
	vc.ram_fd = -1;
	if (c->template_path) {
		r = snapshot_open(c->template_path, c->memory_mb, &incoming, err, errn);
		if (r == -ESTALE) {
			warn("the saved snapshot could not be restored (%s); booting cold", err);
			snapshot_drop(c->template_path);
		}
		/* The copy is both the stream and the guest's RAM, this QEMU's alone. */
		vc.incoming_fd = incoming;
		sb->t.restored = incoming >= 0;
		if (incoming < 0)
			sb_ram_file(sb);
		vc.ram_fd = incoming >= 0 ? incoming : sb->ram_fd;
		r = -EIO;
	}
	sb->t.spawn = now_ns();
	if (vmm_spawn(&vc, &sb->qemu_pid, &pidfd, err, errn) < 0)
		goto out;
	/* Ours: the near ends; QEMU's ends are closed below. */
	sb->link_w.fd = link[0];
	sb->con_w.fd = con[0];
	sb->qerr_w.fd = qerr[0];
	sb->qmp_w.fd = qmp[0];
	sb->pid_w.fd = pidfd;
	link[0] = con[0] = qerr[0] = qmp[0] = -1;
	fd_set_nonblock(sb->con_w.fd, 1);
	fd_set_nonblock(sb->qerr_w.fd, 1);
	struct watch *ws[] = { &sb->link_w, &sb->con_w, &sb->qerr_w, &sb->pid_w };
	for (size_t i = 0; i < ARRAY_SIZE(ws); i++)
		loop_watch(sb->loop, ws[i], EPOLLIN);
	debug("sandbox %s: QEMU pid %d", c->id, sb->qemu_pid);
	sbfs_start(sb);
	r = 0;
out:
	for (int i = 0; i < 2; i++) {
		int *fds[] = { &link[i], &con[i], &qerr[i], &qmp[i] };
		for (size_t k = 0; k < ARRAY_SIZE(fds); k++)
			if (*fds[k] >= 0)
				close(*fds[k]);
	}
	if (incoming >= 0)
		close(incoming);
	return r;
}

struct sandbox *sandbox_boot(const struct sandbox_config *c, struct loop *l,
			     sandbox_booted_fn booted, void *opaque, char *err, size_t errn)
{
	struct sandbox *sb = sb_new(c, l, err, errn);
	if (!sb)
		return NULL;
	if (sb_spawn(sb, err, errn) < 0) {
		sb_free(sb);
		return NULL;
	}
	l->now = now_ns();
	sb->deadline = l->now + (uint64_t)c->boot_timeout_ms * 1000000ull;
	sb->booted = booted;
	sb->booted_opaque = opaque;
	loop_timer_set(l, &sb->boot_timer, sb->deadline);
	if (sb->t.restored) {
		sb->state = SB_LOADING;
		fd_set_nonblock(sb->qmp_w.fd, 1);
		loop_watch(l, &sb->qmp_w, EPOLLIN);
	}
	return sb;
}

/* ---- handing a VM over (pool.h) ---- */

int sandbox_release_vm(struct sandbox *sb, struct sandbox_vm *vm)
{
	if (sb->state != SB_READY || sb->execs || sb->qemu_exited || buf_used(&sb->mux.out) ||
	    buf_used(&sb->mux.in) || sb->mux.nstreams)
		return -EBUSY;
	struct watch *ws[] = { &sb->link_w, &sb->con_w, &sb->qerr_w, &sb->qmp_w, &sb->pid_w };
	int *fds[] = { &vm->link, &vm->con, &vm->qerr, &vm->qmp, &vm->pidfd };
	for (size_t i = 0; i < ARRAY_SIZE(ws); i++) {
		loop_watch(sb->loop, ws[i], 0);
		*fds[i] = ws[i]->fd;
		ws[i]->fd = -1;
	}
	vm->fs = sbfs_take_fd(sb);
	vm->qemu_pid = sb->qemu_pid;
	vm->next_id = sb->mux.next_id;
	vm->peer_last_id = sb->mux.peer_last_id;
	sb->qemu_pid = 0; /* not ours to kill any more */
	sb->qemu_exited = true;
	return 0;
}

int sandbox_pidfd(const struct sandbox *sb)
{
	return sb->pid_w.fd;
}

void sandbox_vm_close(struct sandbox_vm *vm)
{
	int *fds[] = { &vm->link, &vm->con, &vm->qerr, &vm->qmp, &vm->pidfd, &vm->fs };
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

struct sandbox *sandbox_adopt(const struct sandbox_config *c, struct loop *l, struct sandbox_vm *vm,
			      int lease_fd, sandbox_booted_fn booted, void *opaque, char *err,
			      size_t errn)
{
	struct sandbox *sb = sb_new(c, l, err, errn);
	if (!sb) {
		sandbox_vm_close(vm);
		close(lease_fd);
		return NULL;
	}
	sb->adopted = true;
	sb->lease_fd = lease_fd;
	sb->qemu_pid = vm->qemu_pid;
	sb->link_w.fd = vm->link;
	sb->con_w.fd = vm->con;
	sb->qerr_w.fd = vm->qerr;
	sb->qmp_w.fd = vm->qmp;
	sb->pid_w.fd = vm->pidfd;
	sbfs_adopt(sb, vm->fs);
	sb->mux.next_id = vm->next_id;
	sb->mux.peer_last_id = vm->peer_last_id;
	fd_set_nonblock(sb->link_w.fd, 1);
	fd_set_nonblock(sb->con_w.fd, 1);
	fd_set_nonblock(sb->qerr_w.fd, 1);
	fd_set_nonblock(sb->qmp_w.fd, 0); /* the monitor's users block */
	struct watch *ws[] = { &sb->link_w, &sb->con_w, &sb->qerr_w, &sb->pid_w };
	for (size_t i = 0; i < ARRAY_SIZE(ws); i++)
		loop_watch(l, ws[i], EPOLLIN);
	l->now = now_ns();
	/* Like a restore: the guest is up and idle, and needs only to learn who it is. */
	sb->t.spawn = sb->t.hello = l->now;
	sb->t.restored = true;
	sb->deadline = l->now + (uint64_t)c->boot_timeout_ms * 1000000ull;
	sb->booted = booted;
	sb->booted_opaque = opaque;
	loop_timer_set(l, &sb->boot_timer, sb->deadline);
	sb->state = SB_BOOTING;
	sb_send_config(sb);
	return sb;
}

/* ---- stop ---- */

static void sb_on_stop_timer(struct timer *t)
{
	struct sandbox *sb = t->obj;
	if (!sb->qemu_exited && sb->loop->now < sb->stop_by)
		return; /* on_qemu_exit calls again */
	if (!sb->qemu_exited)
		debug("sandbox %s: QEMU did not power off within %u ms; killed", sb->cfg.id,
		      STOP_GRACE_MS);
	sandbox_stopped_fn fn = sb->stopped;
	void *opaque = sb->stopped_opaque;
	sb_free(sb); /* kills and reaps QEMU if the grace ran out */
	struct sandbox_times times = sb->t; /* sb's memory lives until the loop's batch ends */
	if (fn)
		fn(&times, opaque);
}

void sandbox_stop(struct sandbox *sb, sandbox_stopped_fn stopped, void *opaque)
{
	if (!sb || sb->stopped)
		return;
	sb->stopped = stopped;
	sb->stopped_opaque = opaque;
	sb->stop_by = sb->loop->now;
	if (!sb->qemu_exited && sb->state == SB_READY) {
		struct buf b = { 0 };
		buf_put_u16(&b, CTL_POWEROFF);
		/* The reset that ends QEMU is expected now: not a failure to report. */
		sb->state = SB_STOPPING;
		snprintf(sb->fail, sizeof(sb->fail), "the sandbox was stopped");
		exec_fail_all(sb);
		sb_send_ctl(sb, 0, &b);
		buf_fini(&b);
		sb->stop_by += STOP_GRACE_MS * 1000000ull;
	}
	loop_timer_set(sb->loop, &sb->stop_timer, sb->stop_by);
}

void sandbox_kill(struct sandbox *sb, struct sandbox_times *times)
{
	if (!sb)
		return;
	sb_free(sb); /* sb's memory lives until the loop collects it: the times are still there */
	if (times)
		*times = sb->t;
}
