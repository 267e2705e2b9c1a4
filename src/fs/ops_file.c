/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
/*
 * Handlers for requests about one node or open file: attributes, open/read/write/fsync/release,
 * statfs, access and extended attributes. Metadata goes through the node's O_PATH descriptor
 * with AT_EMPTY_PATH where the kernel allows it; anything that needs a real descriptor gets one
 * from fs_node_reopen (never through /proc/self/fd, whose entries are magic links).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/util.h"
#include "fs/share_impl.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452 /* Linux 6.6; older kernels answer ENOSYS */
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif

#define FS_XATTR_NS "user." /* the only extended attributes the guest sees or sets */

static int reply_attr(struct fs_share *s, struct fs_req *q, uint32_t idx, struct buf *reply)
{
	struct fuse_attr_out out = { .attr_valid = FS_ATTR_TIMEOUT_SEC };
	struct stat st;
	int r = fs_node_stat(s, idx, &st);

	if (r < 0)
		return r;
	fs_fill_attr(s, &st, &out.attr);
	return fs_reply(reply, q, &out, sizeof(out));
}

int fs_op_getattr(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	uint32_t idx;
	int r = fs_node_get(s, q->h->nodeid, &idx);

	return r < 0 ? r : reply_attr(s, q, idx, reply);
}

/*
 * chmod by the node's descriptor (fchmodat2 with AT_EMPTY_PATH), or on kernels before 6.6 by a
 * reopened descriptor. Set-user/group-id bits never reach a host file that is not a directory.
 */
static int set_mode(struct fs_share *s, uint32_t idx, mode_t mode)
{
	const struct fs_node *n = &s->nodes[idx];
	int fd = fs_node_fd(s, idx), r = 0;

	if (fd < 0)
		return fd;
	mode &= S_ISDIR(n->type) ? 07777 : 01777;
	if (syscall(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOSYS && errno != EINVAL)
		return -errno;
	if (!S_ISREG(n->type) && !S_ISDIR(n->type))
		return -EOPNOTSUPP;
	if ((fd = fs_node_reopen(s, idx, O_RDONLY)) < 0)
		return fd;
	if (fchmod(fd, mode) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Truncate through the request's open file when it names one, else a reopened descriptor. */
static int set_size(struct fs_share *s, uint32_t idx, const struct fuse_setattr_in *in)
{
	struct fs_handle *h;
	int fd, r;

	if (S_ISDIR(s->nodes[idx].type))
		return -EISDIR;
	if (!S_ISREG(s->nodes[idx].type))
		return -EINVAL;
	if (in->size > INT64_MAX)
		return -EFBIG;
	if (in->valid & FATTR_FH) {
		if ((r = fs_handle_get(s, in->fh, false, &h)) < 0 || h->node != idx)
			return r < 0 ? r : -EBADF;
		return ftruncate(h->fd, (off_t)in->size) < 0 ? -errno : 0;
	}
	if ((fd = fs_node_reopen(s, idx, O_WRONLY)) < 0)
		return fd;
	r = ftruncate(fd, (off_t)in->size) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static struct timespec setattr_time(uint32_t valid, uint32_t set, uint32_t now, uint64_t sec,
				    uint32_t nsec)
{
	if (valid & now)
		return (struct timespec){ .tv_nsec = UTIME_NOW };
	if (!(valid & set))
		return (struct timespec){ .tv_nsec = UTIME_OMIT };
	return (struct timespec){ .tv_sec = (time_t)sec, .tv_nsec = nsec };
}

/*
 * SETATTR: mode, size, times. uid/gid are accepted and ignored: files stay owned by the host
 * user running the supervisor, so the guest cannot hand host files to other users.
 */
int fs_op_setattr(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_setattr_in in;
	uint32_t idx;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = fs_node_get(s, q->h->nodeid, &idx)) < 0)
		return r;
	if ((in.valid & FATTR_MODE) && (r = set_mode(s, idx, in.mode)) < 0)
		return r;
	if ((in.valid & FATTR_SIZE) && (r = set_size(s, idx, &in)) < 0)
		return r;
	if (in.valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)) {
		struct timespec ts[2] = {
			setattr_time(in.valid, FATTR_ATIME, FATTR_ATIME_NOW, in.atime,
				     in.atimensec),
			setattr_time(in.valid, FATTR_MTIME, FATTR_MTIME_NOW, in.mtime,
				     in.mtimensec),
		};
		int fd = fs_node_fd(s, idx);
		if (fd < 0)
			return fd;
		if (utimensat(fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	return reply_attr(s, q, idx, reply);
}

int fs_op_open(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_open_in in;
	struct fuse_open_out out = { .open_flags = FOPEN_KEEP_CACHE };
	uint32_t idx;
	int fd, r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = fs_node_get(s, q->h->nodeid, &idx)) < 0)
		return r;
	if (!S_ISREG(s->nodes[idx].type))
		return S_ISDIR(s->nodes[idx].type) ? -EISDIR : -EACCES;
	int flags = (int)in.flags & FS_OPEN_FLAGS;
	if (s->read_only && ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)))
		return -EROFS;
	if ((fd = fs_node_reopen(s, idx, flags)) < 0)
		return fd;
	/* Truncate only once the descriptor is known to be this node's file. */
	if ((flags & O_TRUNC) && ftruncate(fd, 0) < 0)
		r = -errno;
	if (r == 0)
		r = fs_handle_new(s, fd, idx, false, &out.fh);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fs_reply(reply, q, &out, sizeof(out));
}

int fs_op_read(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_read_in in;
	struct fs_handle *h;
	size_t pos;
	ssize_t n;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = fs_handle_get(s, in.fh, false, &h)) < 0)
		return r;
	if (in.size > FS_MAX_WRITE || in.offset > INT64_MAX)
		return -EINVAL;
	pos = fs_reply_begin(reply, q);
	uint8_t *p = buf_reserve(reply, in.size);
	if (!p)
		return -ENOMEM;
	n = pread(h->fd, p, in.size, (off_t)in.offset);
	if (n < 0)
		return -errno;
	reply->len += (size_t)n;
	return fs_reply_end(reply, pos);
}

int fs_op_write(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_write_in in;
	struct fuse_write_out out = { 0 };
	struct fs_handle *h;
	ssize_t n;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = fs_handle_get(s, in.fh, false, &h)) < 0)
		return r;
	if (in.size > FS_MAX_WRITE || in.size > rd_left(&q->body) || in.offset > INT64_MAX)
		return -EINVAL;
	n = pwrite(h->fd, rd_bytes(&q->body, in.size), in.size, (off_t)in.offset);
	if (n < 0)
		return -errno;
	out.size = (uint32_t)n;
	return fs_reply(reply, q, &out, sizeof(out));
}

/* Nothing is buffered here: a close in the guest needs no work until RELEASE. */
int fs_op_flush(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_flush_in in;
	struct fs_handle *h;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = fs_handle_get(s, in.fh, false, &h)) < 0)
		return r;
	return fs_reply(reply, q, NULL, 0);
}

static int sync_handle(struct fs_share *s, struct fs_req *q, struct buf *reply, bool dir)
{
	struct fuse_fsync_in in;
	struct fs_handle *h;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = fs_handle_get(s, in.fh, dir, &h)) < 0)
		return r;
	if (((in.fsync_flags & FUSE_FSYNC_FDATASYNC) ? fdatasync(h->fd) : fsync(h->fd)) < 0)
		return -errno;
	return fs_reply(reply, q, NULL, 0);
}

int fs_op_fsync(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	return sync_handle(s, q, reply, false);
}

int fs_op_fsyncdir(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	return sync_handle(s, q, reply, true);
}

static int release_handle(struct fs_share *s, struct fs_req *q, struct buf *reply, bool dir)
{
	struct fuse_release_in in;
	struct fs_handle *h;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = fs_handle_get(s, in.fh, dir, &h)) < 0)
		return r;
	fs_handle_free(s, h);
	return fs_reply(reply, q, NULL, 0);
}

int fs_op_release(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	return release_handle(s, q, reply, false);
}

int fs_op_releasedir(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	return release_handle(s, q, reply, true);
}

int fs_op_statfs(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_statfs_out out = { 0 };
	struct statfs st;
	uint32_t idx;
	int fd, r = fs_node_get(s, q->h->nodeid, &idx);

	if (r < 0)
		return r;
	if ((fd = fs_node_fd(s, idx)) < 0)
		return fd;
	if (fstatfs(fd, &st) < 0)
		return -errno;
	out.st = (struct fuse_kstatfs){
		.blocks = st.f_blocks,
		.bfree = st.f_bfree,
		.bavail = st.f_bavail,
		.files = st.f_files,
		.ffree = st.f_ffree,
		.bsize = (uint32_t)st.f_bsize,
		.namelen = (uint32_t)st.f_namelen,
		.frsize = (uint32_t)st.f_frsize,
	};
	return fs_reply(reply, q, &out, sizeof(out));
}

int fs_op_access(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_access_in in;
	uint32_t idx;
	int fd, r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = fs_node_get(s, q->h->nodeid, &idx)) < 0)
		return r;
	if ((in.mask & W_OK) && s->read_only)
		return -EROFS;
	if ((fd = fs_node_fd(s, idx)) < 0)
		return fd;
	if (syscall(SYS_faccessat2, fd, "", in.mask & (R_OK | W_OK | X_OK),
		    AT_EMPTY_PATH | AT_EACCESS | AT_SYMLINK_NOFOLLOW) < 0 &&
	    errno != ENOSYS)
		return -errno;
	return fs_reply(reply, q, NULL, 0);
}

/* An xattr name: NUL-terminated, 1..255 bytes ('/' allowed: it is not a path). */
static int xattr_name(struct fs_req *q, const char **name)
{
	const char *p = (const char *)q->body.p + q->body.off;
	size_t left = rd_left(&q->body);
	const char *nul = memchr(p, 0, left < FS_NAME_MAX + 1 ? left : FS_NAME_MAX + 1);

	if (!nul || nul == p)
		return left > FS_NAME_MAX ? -ERANGE : -EINVAL;
	rd_bytes(&q->body, (size_t)(nul - p) + 1);
	*name = p;
	return 0;
}

static bool xattr_visible(const char *name)
{
	return !strncmp(name, FS_XATTR_NS, strlen(FS_XATTR_NS));
}

/*
 * Extended attributes: the guest sees and sets the user.* namespace only. security.*, trusted.*
 * and system.* (capabilities, overlayfs metadata, ACLs) are not the guest's to set on host files,
 * and those of host files are not shown (a host file's trusted.overlay.* must not steer the
 * guest's overlayfs): reading one gives ENODATA, setting or removing one EOPNOTSUPP, which is
 * what `cp -a` and tar expect of a file system without them.
 */

/*
 * A readable descriptor for xattr calls; only regular files and directories carry user.*
 * attributes (the kernel refuses them elsewhere), so others get -ENODATA.
 */
static int xattr_fd(struct fs_share *s, struct fs_req *q)
{
	uint32_t idx;
	int r = fs_node_get(s, q->h->nodeid, &idx);

	if (r < 0)
		return r;
	if (!S_ISREG(s->nodes[idx].type) && !S_ISDIR(s->nodes[idx].type))
		return -ENODATA;
	return fs_node_reopen(s, idx, O_RDONLY);
}

/* The reply to a size probe (size 0) or the value itself; ERANGE when it exceeds size. */
static int reply_xattr(struct fs_req *q, const void *val, size_t n, uint32_t size,
		       struct buf *reply)
{
	if (size == 0) {
		struct fuse_getxattr_out out = { .size = (uint32_t)n };
		return fs_reply(reply, q, &out, sizeof(out));
	}
	if (n > size)
		return -ERANGE;
	return fs_reply(reply, q, val, n);
}

int fs_op_getxattr(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_getxattr_in in;
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *val = NULL;
	const char *name;
	ssize_t n;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = xattr_name(q, &name)) < 0)
		return r;
	if (!xattr_visible(name))
		return -ENODATA;
	if ((fd = xattr_fd(s, q)) < 0)
		return fd;
	if (!(val = malloc(FS_XATTR_MAX)))
		return -ENOMEM;
	n = fgetxattr(fd, name, val, FS_XATTR_MAX);
	if (n < 0)
		return -errno;
	return reply_xattr(q, val, (size_t)n, in.size, reply);
}

int fs_op_listxattr(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_getxattr_in in;
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *list = NULL;
	size_t kept = 0;
	ssize_t n;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0)
		return r;
	fd = xattr_fd(s, q);
	if (fd == -ENODATA)
		return reply_xattr(q, NULL, 0, in.size, reply);
	if (fd < 0)
		return fd;
	if (!(list = malloc(FS_XATTR_MAX)))
		return -ENOMEM;
	n = flistxattr(fd, list, FS_XATTR_MAX);
	if (n < 0)
		return -errno;
	/* Keep the user.* names, in place (each NUL-terminated). */
	for (size_t off = 0; off < (size_t)n;) {
		size_t len = strnlen(list + off, (size_t)n - off);
		if (off + len < (size_t)n && xattr_visible(list + off)) {
			memmove(list + kept, list + off, len + 1);
			kept += len + 1;
		}
		off += len + 1;
	}
	return reply_xattr(q, list, kept, in.size, reply);
}

int fs_op_setxattr(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct {
		uint32_t size, flags; /* FUSE_COMPAT_SETXATTR_IN_SIZE: FUSE_SETXATTR_EXT is off */
	} in;
	_cleanup_close_ int fd = -1;
	const char *name;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = xattr_name(q, &name)) < 0)
		return r;
	if (in.size > FS_XATTR_MAX || in.size > rd_left(&q->body) ||
	    (in.flags & ~(uint32_t)(XATTR_CREATE | XATTR_REPLACE)))
		return -EINVAL;
	if (!xattr_visible(name))
		return -EOPNOTSUPP; /* as a file system without that namespace: tools carry on */
	if ((fd = xattr_fd(s, q)) < 0)
		return fd == -ENODATA ? -EPERM : fd;
	if (fsetxattr(fd, name, rd_bytes(&q->body, in.size), in.size, (int)in.flags) < 0)
		return -errno;
	return fs_reply(reply, q, NULL, 0);
}

int fs_op_removexattr(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	_cleanup_close_ int fd = -1;
	const char *name;
	int r = xattr_name(q, &name);

	if (r < 0)
		return r;
	if (!xattr_visible(name))
		return -EOPNOTSUPP;
	if ((fd = xattr_fd(s, q)) < 0)
		return fd == -ENODATA ? -EPERM : fd;
	if (fremovexattr(fd, name) < 0)
		return -errno;
	return fs_reply(reply, q, NULL, 0);
}
