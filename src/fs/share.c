/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
/*
 * The file server's front: opening and closing a share, the one dispatch table from FUSE opcode
 * to handler (with each request's minimum body size and whether it modifies the tree), the
 * checks every request passes before its handler runs, INIT, and the reply helpers.
 *
 * fs_share_handle runs synchronously: each request's host syscalls are made in the caller's
 * thread (the supervisor's event loop) and the reply is ready when it returns. That keeps the
 * tables free of locks and the order of replies obvious, and a local file system answers in
 * microseconds; the guest still keeps many requests in flight over the link. What it costs: a
 * slow host file system (NFS, a spun-down disk) stalls the loop for that long. A thread pool
 * would take requests off the loop and reply out of order (FUSE matches replies by unique), at
 * the price of locking the node and handle tables and deferring FORGET until the requests that
 * use a node are done.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/util.h"
#include "fs/share_impl.h"

/*
 * The protocol minor we speak. 7.31 (Linux 5.4) has everything we use and every struct we read
 * at its full size; the kernel takes the smaller of its minor and ours, and we refuse kernels
 * older than 7.23 (whose requests would use the shorter compat structs).
 */
#define FS_FUSE_MINOR 31u
#define FS_FUSE_MIN_MINOR 23u
#define FS_INIT_FLAGS                                                                    \
	(FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_ATOMIC_O_TRUNC | FUSE_DO_READDIRPLUS | \
	 FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS | FUSE_AUTO_INVAL_DATA |           \
	 FUSE_CACHE_SYMLINKS)
#define FS_MAX_BACKGROUND 64 /* requests the guest kernel keeps in flight (readahead, async) */

static int op_init(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_init_in in = { 0 };
	size_t n = rd_left(&q->body) < sizeof(in) ? rd_left(&q->body) : sizeof(in);

	memcpy(&in, rd_bytes(&q->body, n), n);
	if (in.major != FUSE_KERNEL_VERSION || in.minor < FS_FUSE_MIN_MINOR)
		return -EPROTO;
	struct fuse_init_out out = {
		.major = FUSE_KERNEL_VERSION,
		.minor = in.minor < FS_FUSE_MINOR ? in.minor : FS_FUSE_MINOR,
		.max_readahead = in.max_readahead,
		.flags = in.flags & FS_INIT_FLAGS,
		.max_background = FS_MAX_BACKGROUND,
		.congestion_threshold = FS_MAX_BACKGROUND * 3 / 4,
		.max_write = FS_MAX_WRITE,
		.time_gran = 1,
	};
	s->minor = out.minor;
	return fs_reply(reply, q, &out, sizeof(out));
}

/* Nothing to cancel: requests are served synchronously, so an interrupted one is done. */
static int op_interrupt(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	(void)s, (void)q, (void)reply;
	return FS_NO_REPLY;
}

static int op_destroy(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	(void)s;
	return fs_reply(reply, q, NULL, 0);
}

struct fs_op {
	fs_op_fn *fn;
	uint16_t min; /* smallest body accepted */
	bool modifies; /* refused with EROFS on a read-only share */
};

#define OP(code, f, m, w) [code] = { .fn = f, .min = m, .modifies = w }
static const struct fs_op fs_ops[] = {
	OP(FUSE_LOOKUP, fs_op_lookup, 2, false),
	OP(FUSE_FORGET, fs_op_forget, sizeof(struct fuse_forget_in), false),
	OP(FUSE_GETATTR, fs_op_getattr, sizeof(struct fuse_getattr_in), false),
	OP(FUSE_SETATTR, fs_op_setattr, sizeof(struct fuse_setattr_in), true),
	OP(FUSE_READLINK, fs_op_readlink, 0, false),
	OP(FUSE_SYMLINK, fs_op_symlink, 4, true),
	OP(FUSE_MKNOD, fs_op_mknod, sizeof(struct fuse_mknod_in) + 2, true),
	OP(FUSE_MKDIR, fs_op_mkdir, sizeof(struct fuse_mkdir_in) + 2, true),
	OP(FUSE_UNLINK, fs_op_unlink, 2, true),
	OP(FUSE_RMDIR, fs_op_rmdir, 2, true),
	OP(FUSE_RENAME, fs_op_rename, sizeof(struct fuse_rename_in) + 4, true),
	OP(FUSE_LINK, fs_op_link, sizeof(struct fuse_link_in) + 2, true),
	OP(FUSE_OPEN, fs_op_open, sizeof(struct fuse_open_in), false),
	OP(FUSE_READ, fs_op_read, sizeof(struct fuse_read_in), false),
	OP(FUSE_WRITE, fs_op_write, sizeof(struct fuse_write_in), true),
	OP(FUSE_STATFS, fs_op_statfs, 0, false),
	OP(FUSE_RELEASE, fs_op_release, sizeof(struct fuse_release_in), false),
	OP(FUSE_FSYNC, fs_op_fsync, sizeof(struct fuse_fsync_in), false),
	OP(FUSE_SETXATTR, fs_op_setxattr, FUSE_COMPAT_SETXATTR_IN_SIZE + 2, true),
	OP(FUSE_GETXATTR, fs_op_getxattr, sizeof(struct fuse_getxattr_in) + 2, false),
	OP(FUSE_LISTXATTR, fs_op_listxattr, sizeof(struct fuse_getxattr_in), false),
	OP(FUSE_REMOVEXATTR, fs_op_removexattr, 2, true),
	OP(FUSE_FLUSH, fs_op_flush, sizeof(struct fuse_flush_in), false),
	OP(FUSE_INIT, op_init, 16, false),
	OP(FUSE_OPENDIR, fs_op_opendir, sizeof(struct fuse_open_in), false),
	OP(FUSE_READDIR, fs_op_readdir, sizeof(struct fuse_read_in), false),
	OP(FUSE_RELEASEDIR, fs_op_releasedir, sizeof(struct fuse_release_in), false),
	OP(FUSE_FSYNCDIR, fs_op_fsyncdir, sizeof(struct fuse_fsync_in), false),
	OP(FUSE_ACCESS, fs_op_access, sizeof(struct fuse_access_in), false),
	OP(FUSE_CREATE, fs_op_create, sizeof(struct fuse_create_in) + 2, true),
	OP(FUSE_INTERRUPT, op_interrupt, sizeof(struct fuse_interrupt_in), false),
	OP(FUSE_DESTROY, op_destroy, 0, false),
	OP(FUSE_BATCH_FORGET, fs_op_batch_forget, sizeof(struct fuse_batch_forget_in), false),
	OP(FUSE_READDIRPLUS, fs_op_readdirplus, sizeof(struct fuse_read_in), false),
	OP(FUSE_RENAME2, fs_op_rename2, sizeof(struct fuse_rename2_in) + 4, true),
};
#undef OP

/*
 * Each guest node holds a descriptor: make room for a full table in the soft limit (up to the
 * hard one). The supervisor uses epoll, never select, so a high limit costs nothing.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t want = 256 + FS_MAX_NODES + FS_MAX_HANDLES;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
	setrlimit(RLIMIT_NOFILE, &rl);
}

int fs_share_open(const char *dir, const struct fs_share_opts *o, struct fs_share **out)
{
	struct fs_share *s;
	int fd, r;

	/* The user names the host directory: following symlinks in it is theirs to choose. */
	fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	r = fs_nodes_init(s, fd);
	if (r < 0) {
		if (!s->nodes || s->nodes[0].fd != fd)
			close(fd);
		fs_share_close(s);
		return r;
	}
	s->read_only = o && o->read_only;
	s->owner_uid = o ? o->owner_uid : 0;
	s->owner_gid = o ? o->owner_gid : 0;
	s->host_uid = geteuid();
	s->host_gid = getegid();
	raise_fd_limit();
	*out = s;
	return 0;
}

void fs_share_close(struct fs_share *s)
{
	if (!s)
		return;
	fs_nodes_fini(s);
	free(s);
}

void fs_share_stats(const struct fs_share *s, struct fs_share_stats *st)
{
	st->nodes = s->nnodes;
	st->handles = s->nhandles;
}

int fs_reply(struct buf *reply, const struct fs_req *q, const void *body, size_t n)
{
	struct fuse_out_header oh = {
		.len = (uint32_t)(sizeof(oh) + n),
		.unique = q->h->unique,
	};

	buf_append(reply, &oh, sizeof(oh));
	if (n)
		buf_append(reply, body, n);
	return reply->bad ? -ENOMEM : 0;
}

size_t fs_reply_begin(struct buf *reply, const struct fs_req *q)
{
	size_t pos = buf_used(reply);

	fs_reply(reply, q, NULL, 0);
	return pos;
}

int fs_reply_end(struct buf *reply, size_t pos)
{
	if (reply->bad)
		return -ENOMEM;
	uint32_t len = (uint32_t)(buf_used(reply) - pos);

	memcpy(buf_head(reply) + pos, &len, sizeof(len)); /* fuse_out_header.len, native order */
	return 0;
}

int fs_reply_err(struct buf *reply, uint64_t unique, int err)
{
	struct fuse_out_header oh = { .len = sizeof(oh), .error = err, .unique = unique };

	return buf_append(reply, &oh, sizeof(oh));
}

int fs_req_name(struct fs_req *q, const char **name)
{
	const uint8_t *p = q->body.p + q->body.off;
	size_t left = rd_left(&q->body);
	const uint8_t *nul = memchr(p, 0, left < FS_NAME_MAX + 1 ? left : FS_NAME_MAX + 1);

	if (!left || !nul)
		return left > FS_NAME_MAX ? -ENAMETOOLONG : -EINVAL;
	size_t n = (size_t)(nul - p);
	if (n == 0 || memchr(p, '/', n) || (n == 1 && p[0] == '.') ||
	    (n == 2 && p[0] == '.' && p[1] == '.'))
		return -EINVAL;
	rd_bytes(&q->body, n + 1);
	*name = (const char *)p;
	return 0;
}

void fs_fill_attr(const struct fs_share *s, const struct stat *st, struct fuse_attr *a)
{
	unsigned maj = major(st->st_rdev), min = minor(st->st_rdev);

	*a = (struct fuse_attr){
		.ino = st->st_ino,
		.size = (uint64_t)st->st_size,
		.blocks = (uint64_t)st->st_blocks,
		.atime = (uint64_t)st->st_atim.tv_sec,
		.mtime = (uint64_t)st->st_mtim.tv_sec,
		.ctime = (uint64_t)st->st_ctim.tv_sec,
		.atimensec = (uint32_t)st->st_atim.tv_nsec,
		.mtimensec = (uint32_t)st->st_mtim.tv_nsec,
		.ctimensec = (uint32_t)st->st_ctim.tv_nsec,
		.mode = st->st_mode,
		.nlink = st->st_nlink > UINT32_MAX ? UINT32_MAX : (uint32_t)st->st_nlink,
		.uid = st->st_uid == s->host_uid ? s->owner_uid : st->st_uid,
		.gid = st->st_gid == s->host_gid ? s->owner_gid : st->st_gid,
		/* the kernel's new_encode_dev, which the guest decodes */
		.rdev = (min & 0xff) | (maj << 8) | ((min & ~0xffu) << 12),
		.blksize = (uint32_t)st->st_blksize,
	};
}

void fs_fill_entry(struct fs_share *s, uint32_t idx, const struct stat *st,
		   struct fuse_entry_out *e)
{
	*e = (struct fuse_entry_out){
		.nodeid = fs_node_id(s, idx),
		.generation = s->nodes[idx].gen,
		.entry_valid = FS_ATTR_TIMEOUT_SEC,
		.attr_valid = FS_ATTR_TIMEOUT_SEC,
	};
	fs_fill_attr(s, st, &e->attr);
}

int fs_reply_entry(struct fs_share *s, const struct fs_req *q, uint32_t idx, const struct stat *st,
		   struct buf *reply)
{
	struct fuse_entry_out e;

	fs_fill_entry(s, idx, st, &e);
	return fs_reply(reply, q, &e, sizeof(e));
}

/* Header checks, then the handler; -errno for the dispatcher to send as the error reply. */
static int dispatch(struct fs_share *s, struct fs_req *q, size_t n, struct buf *reply)
{
	const struct fuse_in_header *h = q->h;
	size_t ext = (size_t)h->total_extlen * 8;
	const struct fs_op *op;

	if (h->len != n || n > FS_MAX_REQUEST || n - sizeof(*h) < ext)
		return -EINVAL;
	q->body.len -= ext; /* extensions (security context, groups) are not negotiated */
	op = h->opcode < ARRAY_SIZE(fs_ops) ? &fs_ops[h->opcode] : NULL;
	if (!op || !op->fn)
		return -ENOSYS;
	if (rd_left(&q->body) < op->min)
		return -EINVAL;
	if (op->modifies && s->read_only)
		return -EROFS;
	return op->fn(s, q, reply);
}

int fs_share_handle(struct fs_share *s, const uint8_t *req, size_t n, struct buf *reply)
{
	struct fuse_in_header h;
	size_t mark = buf_used(reply); /* a grown buffer may move its bytes: count from off */
	int r;

	if (n < sizeof(h) || reply->bad)
		return -EPROTO;
	memcpy(&h, req, sizeof(h));
	struct fs_req q = { .h = &h, .body = rd_make(req + sizeof(h), n - sizeof(h)) };
	r = dispatch(s, &q, n, reply);
	if (r == FS_NO_REPLY || r == 0)
		return reply->bad ? -ENOMEM : 0;
	if (reply->bad)
		return -ENOMEM;
	reply->len = reply->off + mark; /* drop a partly built reply */
	/* FORGET and BATCH_FORGET never take a reply, not even an error one. */
	if (h.opcode == FUSE_FORGET || h.opcode == FUSE_BATCH_FORGET || h.opcode == FUSE_INTERRUPT)
		return 0;
	return fs_reply_err(reply, h.unique, r);
}
