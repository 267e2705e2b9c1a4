/* SPDX-License-Identifier: MIT */
/*
 * Host folders, the supervisor's side of SVC_FS (proto/msg.h): the sandbox's shares, opened at
 * boot from its config and closed with it, their list in CTL_CONFIG, and one stream per share
 * that carries the guest kernel's raw FUSE requests to the file server (src/fs/share.h) and its
 * replies back.
 *
 * The streams travel on a link of their own (a second virtio-serial port, "matchlock.fs", with
 * its own mux), not on the agent's: a FUSE server must never wait for something that waits for
 * FUSE, and the agent can (it reads a pipe whose writer splices a file from a host folder, or
 * serves read_file on one). The guest's relay process owns the other end (agent/fuse.c).
 *
 * The guest is hostile. A stream's received bytes are bounded by the mux window (credit is
 * returned only for requests handled), a record longer than FS_MAX_REQUEST fails the stream,
 * and requests are handled only while the replies waiting for the guest's credit stay under
 * FS_OUT_HIGH, so a guest that floods requests and never reads replies holds at most a window
 * plus FS_OUT_HIGH plus one reply per share; the link itself has the mux's bounds. The file
 * server decides what each request may touch; this file only frames.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "fs/share.h"
#include "proto/msg.h"
#include "sandbox_fhooks.h"
#include "sandbox_impl.h"

_Static_assert(FS_MAX_REQUEST <= MSG_FS_MAX_RECORD && FS_MAX_REPLY <= MSG_FS_MAX_RECORD,
	       "the guest's records must hold the file server's largest request and reply");
_Static_assert(FS_MAX_WRITE == MSG_FS_MAX_WRITE,
	       "the guest mounts with the max_write the file server offers");
_Static_assert(4 + FS_MAX_REQUEST <= MUX_WINDOW, "one whole request must fit the window");

/* Replies queued for one stream beyond which its requests wait (unhandled, not credited). */
#define FS_OUT_HIGH MUX_WINDOW

const char *const sandbox_mount_mode_names[MOUNT_MODE_END] = {
	[MOUNT_OVERLAY] = "overlay",
	[MOUNT_RW] = "rw",
	[MOUNT_RO] = "ro",
};

int sandbox_mount_mode_parse(const char *s)
{
	for (int i = 0; i < MOUNT_MODE_END; i++)
		if (!strcmp(s, sandbox_mount_mode_names[i]))
			return i;
	return -EINVAL;
}

/* One SVC_FS stream: the FUSE connection of one share. */
struct fs_stream {
	struct sandbox *sb;
	struct mux_stream *s;
	unsigned index;
	struct buf in; /* received request bytes not yet handled */
	struct buf out; /* reply records not yet sent (waiting for credit) */
	uint64_t requests; /* handled, for the log */
	struct fhook_gate gate; /* file hooks (sandbox_fhooks.c) */
};

struct sb_fs {
	struct sandbox *sb;
	struct fs_share *shares[SANDBOX_MAX_MOUNTS];
	struct fs_stream *streams[SANDBOX_MAX_MOUNTS]; /* at most one per share */
	unsigned n;
	struct mux mux; /* the file-service link */
	struct watch link_w;
	int vmm_fd; /* the VMM's end of the link until it is spawned, else -1 */
};

static int fs_on_frame(struct mux *m, struct mux_stream *s, const struct mux_frame *f,
		       void *opaque);
static void fs_on_link(struct watch *w, uint32_t events);
static void sbfs_resume(struct sandbox *sb);

int sbfs_open(struct sandbox *sb, char *err, size_t errn)
{
	const struct sandbox_config *c = &sb->cfg;
	int link[2];
	if (c->nmounts > SANDBOX_MAX_MOUNTS || c->nmounts > MSG_MAX_MOUNTS) {
		snprintf(err, errn, "too many host folders (at most %d)", SANDBOX_MAX_MOUNTS);
		return -EINVAL;
	}
	struct sb_fs *fs = calloc(1, sizeof(*fs));
	if (!fs) {
		snprintf(err, errn, "out of memory");
		return -ENOMEM;
	}
	sb->fs = fs;
	fs->sb = sb;
	mux_init(&fs->mux, MUX_SIDE_HOST, fs_on_frame, fs);
	watch_init(&fs->link_w, -1, fs_on_link, fs);
	fs->vmm_fd = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link) < 0) {
		snprintf(err, errn, "setting up the sandbox: %s", strerror(errno));
		return -errno;
	}
	fs->link_w.fd = link[0];
	fs->vmm_fd = link[1];
	for (unsigned i = 0; i < c->nmounts; i++) {
		/* overlay: the guest writes its own upper layer; the host folder is only read. */
		struct fs_share_opts o = { .read_only = c->mounts[i].mode != MOUNT_RW };
		int r = fs_share_open(c->mounts[i].host, &o, &fs->shares[i]);
		if (r < 0) {
			snprintf(err, errn, "host folder %.300s: %s", c->mounts[i].host,
				 strerror(-r));
			return r;
		}
		fs->n = i + 1;
	}
	return 0;
}

int sbfs_vmm_fd(const struct sandbox *sb)
{
	return sb->fs ? sb->fs->vmm_fd : -1;
}

void sbfs_start(struct sandbox *sb)
{
	struct sb_fs *fs = sb->fs;
	if (fs->vmm_fd >= 0)
		close(fs->vmm_fd);
	fs->vmm_fd = -1;
	fd_set_nonblock(fs->link_w.fd, 1);
	loop_watch(sb->loop, &fs->link_w, EPOLLIN);
}

int sbfs_take_fd(struct sandbox *sb)
{
	struct sb_fs *fs = sb->fs;
	if (!fs)
		return -1;
	loop_unwatch(sb->loop, &fs->link_w);
	int fd = fs->link_w.fd;
	fs->link_w.fd = -1;
	return fd;
}

void sbfs_adopt(struct sandbox *sb, int fd)
{
	struct sb_fs *fs = sb->fs;
	if (fs->link_w.fd >= 0)
		close(fs->link_w.fd);
	fs->link_w.fd = fd;
	sbfs_start(sb);
}

/* The file-service link failed: that is the sandbox's failure (its mounts are dead). */
static void fs_link_error(struct sb_fs *fs, int err)
{
	if (err == -ENOBUFS)
		sb_fail(fs->sb, "the guest flooded the file-service link; sandbox stopped");
	else
		sb_fail(fs->sb, "the guest broke the file-service protocol (%s); sandbox stopped",
			strerror(-err));
}

/* Write what the mux queued; read on only while it is not paused (mux.h's back-pressure). */
static void fs_flush(struct sb_fs *fs)
{
	struct buf *o = &fs->mux.out;
	struct sandbox *sb = fs->sb;
	while (buf_used(o) > 0 && sb->state != SB_FAILED) {
		ssize_t n =
		    send(fs->link_w.fd, buf_head(o), buf_used(o), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno != EAGAIN)
				sb_fail(sb, "file-service link to the guest failed: %s",
					strerror(errno));
			break;
		}
		buf_consume(o, (size_t)n);
	}
	if (sb->state == SB_FAILED)
		return;
	int r = mux_rx_resume(&fs->mux);
	if (r == 0 && mux_overflowed(&fs->mux))
		r = -ENOBUFS;
	if (r < 0) {
		fs_link_error(fs, r);
		return;
	}
	if (!mux_congested(&fs->mux))
		sbfs_resume(sb); /* requests held back: their replies go out with the next write */
	loop_watch(sb->loop, &fs->link_w,
		   (mux_rx_paused(&fs->mux) ? 0 : EPOLLIN) | (buf_used(o) ? EPOLLOUT : 0));
}

int sbfs_put_config(const struct sandbox *sb, struct buf *b)
{
	char line[MSG_MAX_STR];
	for (unsigned i = 0; sb->fs && i < sb->fs->n; i++) {
		const struct sandbox_mount *m = &sb->cfg.mounts[i];
		int n = snprintf(line, sizeof(line), "%u %s %s", i,
				 sandbox_mount_mode_names[m->mode], m->guest);
		if (n < 0 || (size_t)n >= sizeof(line))
			return -ENAMETOOLONG; /* the validator keeps guest paths far shorter */
		msg_put_str(b, T_MOUNT, line);
	}
	return 0;
}

static void fss_free(struct fs_stream *x)
{
	struct sb_fs *fs = x->sb->fs;
	fhook_gate_fini(&x->gate);
	debug("host folder %s: stream closed after %llu requests",
	      x->sb->cfg.mounts[x->index].guest, (unsigned long long)x->requests);
	fs->streams[x->index] = NULL;
	buf_fini(&x->in);
	buf_fini(&x->out);
	free(x);
}

/* We end the stream (a broken record, no memory): the guest's FUSE mount then fails. */
static void fss_end(struct fs_stream *x, int err)
{
	struct mux_stream *s = x->s;
	struct sb_fs *fs = x->sb->fs; /* x is freed below */
	warn("host folder %s: closing the guest's connection (%s)",
	     x->sb->cfg.mounts[x->index].guest, strerror(err));
	s->user = NULL; /* the frames still in flight are drained by fs_on_frame */
	fss_free(x);
	mux_close(&fs->mux, s, (uint32_t)err);
}

/*
 * Send queued replies as far as credit allows, and handle whole requests while the queue is
 * short. Returns false if the stream was ended.
 */
static bool fss_pump(struct fs_stream *x)
{
	struct mux *m = &x->sb->fs->mux;
	for (;;) {
		while (buf_used(&x->out) && !mux_congested(m)) {
			size_t n = buf_used(&x->out);
			uint32_t k = mux_send_data(m, x->s, MUX_CHAN_OUT, buf_head(&x->out),
						   n > MUX_WINDOW ? MUX_WINDOW : (uint32_t)n);
			if (!k)
				break;
			buf_consume(&x->out, k);
		}
		if (buf_used(&x->out) >= FS_OUT_HIGH || buf_used(&x->in) < 4)
			return true;
		uint32_t len = le32_get(buf_head(&x->in));
		if (len > FS_MAX_REQUEST) {
			fss_end(x, EMSGSIZE);
			return false;
		}
		if (buf_used(&x->in) < 4 + (size_t)len)
			return true;
		/*
		 * Reserve the record's length, let the server append the reply, then fill it in.
		 * The place is counted from the queue's head: appending may move the queue's bytes
		 * to the front of its buffer (buf_reserve), so an absolute index would go stale.
		 */
		size_t at = buf_used(&x->out);
		if (buf_put_u32(&x->out, 0) < 0) {
			fss_end(x, ENOMEM);
			return false;
		}
		struct fs_opinfo info;
		struct buf alt = { 0 };
		int r = fhook_gate_before(x->sb, x->sb->fs->shares[x->index], x->index, &x->gate,
					  buf_head(&x->in) + 4, len, &info, &alt, &x->out);
		if (r == FHOOK_WAIT) {
			x->out.len -= 4;
			return true;
		}
		bool go = r == FHOOK_GO;
		if (go)
			r = fs_share_handle(x->sb->fs->shares[x->index],
					    buf_used(&alt) ? buf_head(&alt) : buf_head(&x->in) + 4,
					    buf_used(&alt) ? buf_used(&alt) : len, &x->out);
		if (go && r >= 0 && !x->out.bad)
			fhook_gate_after(x->sb, &info, buf_used(&alt) != 0,
					 buf_head(&x->out) + at + 4, buf_used(&x->out) - at - 4);
		buf_fini(&alt);
		if (r < 0 || x->out.bad) {
			fss_end(x, r < 0 ? -r : ENOMEM);
			return false;
		}
		size_t reply = buf_used(&x->out) - at - 4;
		if (reply == 0)
			x->out.len -= 4; /* FORGET and friends take no reply */
		else
			le32_put(buf_head(&x->out) + at, (uint32_t)reply);
		x->requests++;
		buf_consume(&x->in, 4 + (size_t)len);
		if (mux_consumed(m, x->s, 4 + len) < 0) {
			fss_end(x, ENOBUFS);
			return false;
		}
	}
}

/* A file hook's question about the request at the stream's head was answered: go on. */
static void fss_wake(void *opaque)
{
	struct fs_stream *x = opaque;
	struct sb_fs *fs = x->sb->fs;
	fss_pump(x); /* may end the stream (and free x): its close is flushed too */
	fs_flush(fs);
}

/* OPEN SVC_FS: T_SHARE names a share this sandbox has and nobody serves yet. */
static int fss_open(struct sandbox *sb, struct mux_stream *s, struct rd *body)
{
	uint16_t tag;
	struct rd v;
	uint32_t index = UINT32_MAX;
	int k;
	while ((k = msg_next(body, &tag, &v)) > 0)
		if (tag == T_SHARE && msg_get_u32(&v, &index) < 0)
			index = UINT32_MAX;
	struct mux *m = &sb->fs->mux;
	if (k < 0 || index >= sb->fs->n)
		return mux_close(m, s, ENOENT);
	if (sb->fs->streams[index])
		return mux_close(m, s, EBUSY);
	struct fs_stream *x = calloc(1, sizeof(*x));
	if (!x)
		return mux_close(m, s, ENOMEM);
	*x = (struct fs_stream){ .sb = sb, .s = s, .index = index };
	x->gate.wake = fss_wake;
	x->gate.wake_opaque = x;
	s->user = x;
	sb->fs->streams[index] = x;
	return 0;
}

/*
 * A frame on the file-service link: only SVC_FS streams opened by the guest live here; anything
 * else breaks the protocol and fails the sandbox.
 */
static int fs_on_frame(struct mux *m, struct mux_stream *s, const struct mux_frame *f, void *opaque)
{
	struct sb_fs *fs = opaque;
	struct sandbox *sb = fs->sb;
	if (!s || (s->id & 1))
		return -EPROTO;
	if (f->type == MUX_OPEN) {
		struct rd r = rd_make(f->payload, f->len);
		if (rd_u16(&r) != SVC_FS)
			return mux_close(m, s, EPROTONOSUPPORT);
		return fss_open(sb, s, &r);
	}
	struct fs_stream *x = s->user;
	if (!x) {
		/* We ended this stream already: keep the protocol moving. */
		if (f->type == MUX_DATA)
			return mux_consumed(m, s, f->len);
		if (f->type == MUX_CLOSE)
			return mux_close(m, s, 0);
		return 0;
	}
	switch (f->type) {
	case MUX_DATA:
		/* The mux keeps the bytes within the window: `in` never holds more. */
		if (f->chan != MUX_CHAN_IN) {
			fss_end(x, EPROTO);
			return 0;
		}
		if (buf_append(&x->in, f->payload, f->len) < 0) {
			fss_end(x, ENOMEM);
			return 0;
		}
		fss_pump(x);
		break;
	case MUX_CREDIT:
		fss_pump(x);
		break;
	case MUX_CLOSE:
		/* The guest unmounted (or its relay gave up): nothing more to answer. */
		s->user = NULL;
		fss_free(x);
		return mux_close(m, s, 0);
	default:
		break; /* EOF and CTL mean nothing here */
	}
	return mux_overflowed(m) ? -ENOBUFS : 0;
}

static void fs_on_link(struct watch *w, uint32_t events)
{
	struct sb_fs *fs = w->obj;
	struct sandbox *sb = fs->sb;
	if (events & EPOLLOUT)
		fs_flush(fs);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	int r = sb_link_read(sb, w->fd, &fs->mux, NULL);
	if (r == 1) {
		/* QEMU closed its end: it is exiting; the main link tells the rest. */
		loop_watch(sb->loop, w, 0);
		return;
	}
	if (r < 0) {
		fs_link_error(fs, r);
		return;
	}
	fs_flush(fs);
}

/* Streams that stopped at FS_OUT_HIGH or the link's congestion go on. */
static void sbfs_resume(struct sandbox *sb)
{
	struct sb_fs *fs = sb->fs;
	for (unsigned i = 0; i < fs->n && !mux_congested(&fs->mux); i++)
		if (fs->streams[i])
			fss_pump(fs->streams[i]);
}

void sbfs_free(struct sandbox *sb)
{
	struct sb_fs *fs = sb->fs;
	if (!fs)
		return;
	for (unsigned i = 0; i < fs->n; i++) {
		if (fs->streams[i]) {
			fhook_gate_fini(&fs->streams[i]->gate);
			buf_fini(&fs->streams[i]->in);
			buf_fini(&fs->streams[i]->out);
			free(fs->streams[i]); /* the mux's streams go with the mux */
		}
		fs_share_close(fs->shares[i]);
	}
	loop_unwatch(sb->loop, &fs->link_w);
	if (fs->link_w.fd >= 0)
		close(fs->link_w.fd);
	if (fs->vmm_fd >= 0)
		close(fs->vmm_fd);
	mux_fini(&fs->mux);
	/* The watch is embedded: events for it may still be pending in this batch. */
	loop_defer_free(sb->loop, fs, free);
	sb->fs = NULL;
}
