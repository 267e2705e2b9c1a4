/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
/*
 * Handlers for requests about names: lookup and forget, creating and removing entries, renames,
 * links, symlinks, and reading directories. Every name arrives through fs_req_name (one
 * component, no '/', not "." or "..") and is used only relative to a directory node's O_PATH
 * descriptor, with *at calls that do not follow a final symlink or openat2 with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/util.h"
#include "fs/share_impl.h"

/* The request's node as a parent directory, and the first name of its body. */
static int req_dir_name(struct fs_share *s, struct fs_req *q, uint32_t *dir, const char **name)
{
	int r = fs_node_get(s, q->h->nodeid, dir);

	if (r < 0)
		return r;
	if (!S_ISDIR(s->nodes[*dir].type))
		return -ENOTDIR;
	return fs_req_name(q, name);
}

/* Reply with the entry of a name just created under dir (counting the guest's lookup). */
static int reply_new_entry(struct fs_share *s, struct fs_req *q, uint32_t dir, const char *name,
			   struct buf *reply)
{
	struct stat st;
	uint32_t idx;
	int r = fs_node_lookup(s, dir, name, &st, &idx);

	return r < 0 ? r : fs_reply_entry(s, q, idx, &st, reply);
}

int fs_op_lookup(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	const char *name;
	struct stat st;
	uint32_t dir, idx;
	int r = req_dir_name(s, q, &dir, &name);

	if (r < 0)
		return r;
	r = fs_node_lookup(s, dir, name, &st, &idx);
	if (r == -ENOENT) {
		/* A negative entry the guest caches too: repeated probes of missing files stay
		 * local. */
		struct fuse_entry_out e = { .entry_valid = FS_ATTR_TIMEOUT_SEC };
		return fs_reply(reply, q, &e, sizeof(e));
	}
	return r < 0 ? r : fs_reply_entry(s, q, idx, &st, reply);
}

int fs_op_forget(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_forget_in in;
	uint32_t idx;

	(void)reply;
	if (fs_req_in(q, &in, sizeof(in)) == 0 && fs_node_get(s, q->h->nodeid, &idx) == 0)
		fs_node_forget(s, idx, in.nlookup);
	return FS_NO_REPLY;
}

int fs_op_batch_forget(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_batch_forget_in in;
	struct fuse_forget_one one;
	uint32_t idx;

	(void)reply;
	fs_req_in(q, &in, sizeof(in));
	/* count is the guest's word: the body's length bounds the loop. */
	for (uint32_t i = 0; i < in.count && fs_req_in(q, &one, sizeof(one)) == 0; i++)
		if (fs_node_get(s, one.nodeid, &idx) == 0)
			fs_node_forget(s, idx, one.nlookup);
	return FS_NO_REPLY;
}

int fs_op_mkdir(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_mkdir_in in;
	const char *name;
	uint32_t dir;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = req_dir_name(s, q, &dir, &name)) < 0)
		return r;
	if (mkdirat(s->nodes[dir].fd, name, in.mode & 07777) < 0)
		return -errno;
	return reply_new_entry(s, q, dir, name, reply);
}

int fs_op_mknod(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_mknod_in in;
	const char *name;
	uint32_t dir;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = req_dir_name(s, q, &dir, &name)) < 0)
		return r;
	/* Regular files and FIFOs only: a device node would be a door to the host's hardware. */
	mode_t type = in.mode & S_IFMT;
	if (type != 0 && type != S_IFREG && type != S_IFIFO)
		return -EPERM;
	if (mknodat(s->nodes[dir].fd, name, type | (in.mode & FS_CREATE_MODE_MASK), 0) < 0)
		return -errno;
	return reply_new_entry(s, q, dir, name, reply);
}

int fs_op_symlink(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	const char *name, *target;
	uint32_t dir;
	int r = req_dir_name(s, q, &dir, &name);

	if (r < 0)
		return r;
	/* The target is stored verbatim: only the guest ever resolves it, in its own namespace. */
	size_t left = rd_left(&q->body);
	target = (const char *)q->body.p + q->body.off;
	if (!left || !memchr(target, 0, left < FS_SYMLINK_MAX + 1 ? left : FS_SYMLINK_MAX + 1))
		return left > FS_SYMLINK_MAX ? -ENAMETOOLONG : -EINVAL;
	if (!*target)
		return -ENOENT;
	if (symlinkat(target, s->nodes[dir].fd, name) < 0)
		return -errno;
	return reply_new_entry(s, q, dir, name, reply);
}

int fs_op_readlink(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	char target[FS_SYMLINK_MAX + 1];
	uint32_t idx;
	ssize_t n;
	int fd, r = fs_node_get(s, q->h->nodeid, &idx);

	if (r < 0)
		return r;
	if (!S_ISLNK(s->nodes[idx].type))
		return -EINVAL;
	if ((fd = fs_node_fd(s, idx)) < 0)
		return fd;
	n = readlinkat(fd, "", target, sizeof(target));
	if (n < 0)
		return -errno;
	if ((size_t)n >= sizeof(target))
		return -ENAMETOOLONG;
	return fs_reply(reply, q, target, (size_t)n);
}

/*
 * A hard link to node old, which is a node of this share (never a host path): by the inode
 * itself where the supervisor may (CAP_DAC_READ_SEARCH), else by the name it was reached by,
 * checked to still be that inode.
 */
static int link_node(struct fs_share *s, uint32_t old, uint32_t dir, const char *name)
{
	const char *oldname;
	uint32_t olddir;
	int r, fd = fs_node_fd(s, old);

	if (fd < 0)
		return fd;
	if (linkat(fd, "", s->nodes[dir].fd, name, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOENT && errno != EPERM)
		return -errno;
	if ((r = fs_node_name(s, old, &olddir, &oldname)) < 0)
		return r;
	if (linkat(s->nodes[olddir].fd, oldname, s->nodes[dir].fd, name, 0) < 0)
		return -errno;
	return 0;
}

int fs_op_link(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_link_in in;
	const char *name;
	uint32_t dir, old;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = req_dir_name(s, q, &dir, &name)) < 0)
		return r;
	if ((r = fs_node_get(s, in.oldnodeid, &old)) < 0)
		return r;
	if (S_ISDIR(s->nodes[old].type))
		return -EPERM;
	if ((r = link_node(s, old, dir, name)) < 0)
		return r;
	return reply_new_entry(s, q, dir, name, reply);
}

static int remove_entry(struct fs_share *s, struct fs_req *q, int flags)
{
	const char *name;
	uint32_t dir, idx;
	int r = req_dir_name(s, q, &dir, &name);

	if (r < 0)
		return r;
	idx = fs_node_at(s, dir, name);
	if (unlinkat(s->nodes[dir].fd, name, flags) < 0)
		return -errno;
	if (idx != FS_NONE) /* a file with other names is still reached through them */
		fs_node_name_gone(s, idx, dir, name);
	return 0;
}

int fs_op_unlink(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	int r = remove_entry(s, q, 0);

	return r < 0 ? r : fs_reply(reply, q, NULL, 0);
}

int fs_op_rmdir(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	int r = remove_entry(s, q, AT_REMOVEDIR);

	return r < 0 ? r : fs_reply(reply, q, NULL, 0);
}

/* Body after the fixed part: old name, new name. renameat2 never follows either. */
static int rename_entry(struct fs_share *s, struct fs_req *q, uint64_t newdir_id, uint32_t flags)
{
	const char *oldname, *newname;
	uint32_t olddir, newdir;
	int r;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((r = req_dir_name(s, q, &olddir, &oldname)) < 0 || (r = fs_req_name(q, &newname)) < 0)
		return r;
	if ((r = fs_node_get(s, newdir_id, &newdir)) < 0)
		return r;
	if (!S_ISDIR(s->nodes[newdir].type))
		return -ENOTDIR;
	uint32_t moved = fs_node_at(s, olddir, oldname), target = fs_node_at(s, newdir, newname);
	if (renameat2(s->nodes[olddir].fd, oldname, s->nodes[newdir].fd, newname, flags) < 0)
		return -errno;
	if (moved == target) /* two names of one file: rename(2) changes nothing */
		return 0;
	/* Names move between nodes: keep both directories while they do. */
	fs_node_hold(s, olddir);
	fs_node_hold(s, newdir);
	if (target != FS_NONE) {
		fs_node_name_gone(s, target, newdir, newname);
		if (flags & RENAME_EXCHANGE)
			fs_node_name_add(s, target, olddir, oldname);
	}
	if (moved != FS_NONE) {
		fs_node_name_gone(s, moved, olddir, oldname);
		fs_node_name_add(s, moved, newdir, newname);
	}
	fs_node_drop(s, newdir);
	fs_node_drop(s, olddir);
	return 0;
}

int fs_op_rename(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_rename_in in;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = rename_entry(s, q, in.newdir, 0)) < 0)
		return r;
	return fs_reply(reply, q, NULL, 0);
}

int fs_op_rename2(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_rename2_in in;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = rename_entry(s, q, in.newdir, in.flags)) < 0)
		return r;
	return fs_reply(reply, q, NULL, 0);
}

int fs_op_create(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_create_in in;
	struct {
		struct fuse_entry_out e;
		struct fuse_open_out o;
	} out = { 0 };
	_cleanup_close_ int fd = -1;
	const char *name;
	struct stat st, fst;
	uint32_t dir, idx;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = req_dir_name(s, q, &dir, &name)) < 0)
		return r;
	if (s->nhandles >= FS_MAX_HANDLES)
		return -EMFILE; /* before creating anything */
	/* O_NONBLOCK: if a FIFO is already there, opening it must not stall the server. */
	fd = fs_openat_beneath(s->nodes[dir].fd, name,
			       (int)(in.flags & (FS_OPEN_FLAGS | O_EXCL)) | O_CREAT | O_NOFOLLOW |
				   O_NONBLOCK,
			       in.mode & FS_CREATE_MODE_MASK);
	if (fd < 0)
		return fd;
	if (fstat(fd, &fst) < 0)
		return -errno;
	if (!S_ISREG(fst.st_mode))
		return S_ISDIR(fst.st_mode) ? -EISDIR : -EINVAL;
	if (fd_set_nonblock(fd, 0) < 0)
		return -errno;
	if ((r = fs_node_lookup(s, dir, name, &st, &idx)) < 0)
		return r;
	if (st.st_ino != fst.st_ino || st.st_dev != fst.st_dev) {
		fs_node_forget(s, idx, 1);
		return -ESTALE; /* the name was replaced in between (a race inside the tree) */
	}
	if ((r = fs_handle_new(s, fd, idx, false, &out.o.fh)) < 0) {
		fs_node_forget(s, idx, 1);
		return r;
	}
	fd = -1;
	fs_fill_entry(s, idx, &st, &out.e);
	return fs_reply(reply, q, &out, sizeof(out));
}

int fs_op_opendir(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	struct fuse_open_out out = { 0 };
	uint32_t idx;
	int fd, r = fs_node_get(s, q->h->nodeid, &idx);

	if (r < 0)
		return r;
	if (!S_ISDIR(s->nodes[idx].type))
		return -ENOTDIR;
	fd = fs_node_reopen(s, idx, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return fd;
	if ((r = fs_handle_new(s, fd, idx, true, &out.fh)) < 0) {
		close(fd);
		return r;
	}
	return fs_reply(reply, q, &out, sizeof(out));
}

/* The kernel's struct linux_dirent64, which glibc does not declare. */
struct fs_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	uint16_t d_reclen;
	uint8_t d_type;
	char d_name[];
};

/*
 * Append one READDIRPLUS record for d if it fits in room: "." and ".." (and names that cannot be
 * looked up) carry nodeid 0, which the kernel takes as "no entry information"; any other entry
 * counts one lookup, so the size is checked before the lookup is made.
 */
static size_t put_direntplus(struct fs_share *s, uint32_t dir, const struct fs_dirent64 *d,
			     size_t room, struct buf *reply)
{
	size_t namelen = strlen(d->d_name);
	size_t rec = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET_DIRENTPLUS + namelen);
	struct fuse_direntplus dp = { 0 };
	struct stat st;
	uint32_t idx;
	uint8_t *p;

	if (rec > room)
		return 0;
	bool dots = !strcmp(d->d_name, ".") || !strcmp(d->d_name, "..");
	if (!dots && fs_node_lookup(s, dir, d->d_name, &st, &idx) == 0)
		fs_fill_entry(s, idx, &st, &dp.entry_out);
	else
		dp.entry_out.attr =
		    (struct fuse_attr){ .ino = d->d_ino, .mode = DTTOIF(d->d_type) };
	dp.dirent = (struct fuse_dirent){
		.ino = d->d_ino,
		.off = (uint64_t)d->d_off,
		.namelen = (uint32_t)namelen,
		.type = d->d_type,
	};
	p = buf_reserve(reply, rec);
	if (!p)
		return 0;
	memset(p, 0, rec);
	memcpy(p, &dp, sizeof(dp));
	memcpy(p + FUSE_NAME_OFFSET_DIRENTPLUS, d->d_name, namelen);
	reply->len += rec;
	return rec;
}

static size_t put_dirent(const struct fs_dirent64 *d, size_t room, struct buf *reply)
{
	size_t namelen = strlen(d->d_name);
	size_t rec = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen);
	struct fuse_dirent fd = {
		.ino = d->d_ino,
		.off = (uint64_t)d->d_off,
		.namelen = (uint32_t)namelen,
		.type = d->d_type,
	};
	uint8_t *p;

	if (rec > room || !(p = buf_reserve(reply, rec)))
		return 0;
	memset(p, 0, rec);
	memcpy(p, &fd, sizeof(fd));
	memcpy(p + FUSE_NAME_OFFSET, d->d_name, namelen);
	reply->len += rec;
	return rec;
}

/*
 * READDIR and READDIRPLUS: the host directory's own offsets (d_off) are the guest's, so a
 * request seeks to its offset and reads on, stopping at the first record that does not fit in
 * the size the guest asked for (at most FS_MAX_WRITE).
 */
static int read_dir(struct fs_share *s, struct fs_req *q, struct buf *reply, bool plus)
{
	struct fuse_read_in in;
	struct fs_handle *h;
	size_t used = 0, pos;
	int r = fs_req_in(q, &in, sizeof(in));

	if (r < 0 || (r = fs_handle_get(s, in.fh, true, &h)) < 0)
		return r;
	size_t size = in.size < FS_MAX_WRITE ? in.size : FS_MAX_WRITE;
	if (in.offset > INT64_MAX || lseek(h->fd, (off_t)in.offset, SEEK_SET) < 0)
		return in.offset > INT64_MAX ? -EINVAL : -errno;
	pos = fs_reply_begin(reply, q);
	for (;;) {
		long n = syscall(SYS_getdents64, h->fd, s->dents, sizeof(s->dents));
		if (n < 0 && used == 0)
			return -errno;
		if (n <= 0)
			break;
		for (long off = 0; off < n;) {
			const struct fs_dirent64 *d = (const void *)(s->dents + off);
			size_t rec = plus ? put_direntplus(s, h->node, d, size - used, reply)
					  : put_dirent(d, size - used, reply);
			if (!rec)
				return fs_reply_end(reply, pos);
			used += rec;
			off += d->d_reclen ? d->d_reclen : n; /* the kernel's records; never loop */
		}
	}
	return fs_reply_end(reply, pos);
}

int fs_op_readdir(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	return read_dir(s, q, reply, false);
}

int fs_op_readdirplus(struct fs_share *s, struct fs_req *q, struct buf *reply)
{
	return read_dir(s, q, reply, true);
}
