/* SPDX-License-Identifier: MIT */
/*
 * Internals of the file server shared by its files: the node and handle tables (node.c), the
 * request cursor and reply helpers (share.c), and the opcode handlers (ops_entry.c for names and
 * directories, ops_file.c for open files, attributes and extended attributes).
 */
#ifndef MATCHLOCK_FS_SHARE_IMPL_H
#define MATCHLOCK_FS_SHARE_IMPL_H

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fs/share.h"

#define FS_NONE UINT32_MAX /* no node / end of a list */
#define FS_NAME_MAX 255 /* one name component, as NAME_MAX */
#define FS_SYMLINK_MAX 4095 /* a symlink target, PATH_MAX without the NUL */
#define FS_XATTR_MAX 65536 /* a value or a name list, as XATTR_SIZE_MAX */
/* Open flags passed to the host; the rest (O_DIRECT, O_NOATIME, O_PATH, ...) are dropped. */
#define FS_OPEN_FLAGS (O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC)
/* Files the guest creates never carry set-user/group-id bits onto the host. */
#define FS_CREATE_MODE_MASK 01777

#define FS_NODE_NAMES 4 /* names remembered per file (hard links), most recent first */

/* A name of a non-directory node: a directory node and one component in it. */
struct fs_name {
	uint32_t dir; /* holds a reference on the directory node */
	char *name;
};

/*
 * A node the guest looked up. fd is an O_PATH|O_NOFOLLOW descriptor of the host file itself, so
 * metadata calls reach the very inode whatever happens to its names (for non-directories a
 * bounded cache, see node.c). Opening a non-directory for data needs a name: names are those
 * the guest reached it by (lookups, creation, links, renames; removed ones forgotten), each
 * opened with openat2 on its directory's descriptor and checked against dev/ino. A node is
 * freed when the guest forgot it (nlookup 0) and nothing refers to it (refs 0).
 */
struct fs_node {
	bool used; /* false: the slot is free */
	bool hot; /* used since the descriptor cache's clock hand last passed */
	int fd; /* O_PATH; always >= 0 for a directory, -1 for another node out of the cache */
	uint32_t gen; /* bumped on reuse: a stale nodeid is refused */
	uint32_t refs; /* a directory: names in it and handles; a file: handles open on it */
	uint32_t hnext; /* (dev, ino) hash chain, or the free list */
	mode_t type; /* S_IFMT bits */
	dev_t dev;
	ino_t ino;
	uint64_t nlookup;
	unsigned nnames; /* always 0 for a directory */
	struct fs_name names[FS_NODE_NAMES];
};

struct fs_handle {
	int fd; /* -1: the slot is free */
	uint32_t gen;
	uint32_t node;
	bool dir;
};

struct fs_share {
	bool read_only;
	uint32_t owner_uid, owner_gid; /* what the host user's files appear as */
	uid_t host_uid;
	gid_t host_gid;
	uint32_t minor; /* negotiated protocol minor, 0 before INIT */
	struct fs_node *nodes; /* FS_MAX_NODES; [0] is the root */
	uint32_t *buckets; /* FS_MAX_NODES hash heads */
	uint32_t node_free, node_top, nnodes; /* free list, slots ever used, slots in use */
	uint32_t file_fds, clock; /* the non-directory descriptor cache: size, clock hand */
	struct fs_handle *handles; /* FS_MAX_HANDLES */
	uint32_t handle_free_scan, nhandles;
	_Alignas(8) uint8_t dents[32768]; /* getdents64 scratch: the server is single-threaded */
};

/* One request: the header and a cursor over its body (extensions cut off). */
struct fs_req {
	const struct fuse_in_header *h;
	struct rd body;
};

/* Handler results besides 0 (reply appended) and -errno (the dispatcher replies the error). */
#define FS_NO_REPLY 1

/* node.c */
int fs_nodes_init(struct fs_share *s, int root_fd);
void fs_nodes_fini(struct fs_share *s);
/* The node of a nodeid from the guest, or -ESTALE. */
int fs_node_get(struct fs_share *s, uint64_t nodeid, uint32_t *idx);
uint64_t fs_node_id(const struct fs_share *s, uint32_t idx);
/*
 * Look name up under directory node parent on the host (never following a symlink), enter it in
 * the table or find it there, count one guest lookup, and fill *st. -errno (ENFILE when full).
 */
int fs_node_lookup(struct fs_share *s, uint32_t parent, const char *name, struct stat *st,
		   uint32_t *idx);
/* The guest forgot n lookups of node idx. */
void fs_node_forget(struct fs_share *s, uint32_t idx, uint64_t n);
/* Keep node idx alive across a request that may free nodes (fs_node_drop undoes it). */
void fs_node_hold(struct fs_share *s, uint32_t idx);
void fs_node_drop(struct fs_share *s, uint32_t idx);
/* The node name in directory dir names now (FS_NONE: none, or not one the guest holds). */
uint32_t fs_node_at(struct fs_share *s, uint32_t dir, const char *name);
/* Non-directory idx is (now) reached as name in dir / no longer is (after unlink or rename). */
void fs_node_name_add(struct fs_share *s, uint32_t idx, uint32_t dir, const char *name);
void fs_node_name_gone(struct fs_share *s, uint32_t idx, uint32_t dir, const char *name);
/*
 * A name that leads to non-directory idx now (checked; borrowed until the node's names change),
 * or -ESTALE.
 */
int fs_node_name(struct fs_share *s, uint32_t idx, uint32_t *dir, const char **name);
/*
 * A descriptor for data or fd-only calls on node idx, opened with flags (no O_CREAT): a
 * directory through ".", anything else through one of its names, checked to be the same
 * inode (-ESTALE if the name now names another). Opened O_NONBLOCK so that a FIFO swapped in
 * cannot block the server; O_NONBLOCK is cleared again unless flags have it. -errno.
 */
int fs_node_reopen(struct fs_share *s, uint32_t idx, int flags);
/*
 * Node idx's O_PATH descriptor (borrowed: valid until the next call that looks up or reaches a
 * node), reopened through one of its names if the cache let it go. -ESTALE when no name leads
 * to the node any more.
 */
int fs_node_fd(struct fs_share *s, uint32_t idx);
int fs_node_stat(struct fs_share *s, uint32_t idx, struct stat *st);

int fs_handle_new(struct fs_share *s, int fd, uint32_t node, bool dir, uint64_t *fh);
/* The handle fh (a directory one when dir), or -EBADF. */
int fs_handle_get(struct fs_share *s, uint64_t fh, bool dir, struct fs_handle **out);
void fs_handle_free(struct fs_share *s, struct fs_handle *h);

/* openat2 of one name under dirfd, beneath it, no symlinks, no magic links. -errno. */
int fs_openat_beneath(int dirfd, const char *name, int flags, mode_t mode);

/* share.c: reply helpers and request readers */
int fs_reply(struct buf *reply, const struct fs_req *q, const void *body, size_t n);
/*
 * A reply whose body is appended in pieces: begin appends the header and returns its position
 * (counted from the buffer's first unconsumed byte, which growing keeps), end sets its length.
 */
size_t fs_reply_begin(struct buf *reply, const struct fs_req *q);
int fs_reply_end(struct buf *reply, size_t pos);
int fs_reply_err(struct buf *reply, uint64_t unique, int err);
/* The next NUL-terminated name component of the body: 1..255 bytes, no '/', not "." or "..". */
int fs_req_name(struct fs_req *q, const char **name);
/* Copy the next n bytes of the body (a fixed struct) into out; -EINVAL when short. */
static inline int fs_req_in(struct fs_req *q, void *out, size_t n)
{
	const uint8_t *p = rd_bytes(&q->body, n);

	if (!p)
		return -EINVAL;
	memcpy(out, p, n);
	return 0;
}
void fs_fill_attr(const struct fs_share *s, const struct stat *st, struct fuse_attr *a);
/* The entry reply for a node just looked up (one lookup counted). */
int fs_reply_entry(struct fs_share *s, const struct fs_req *q, uint32_t idx, const struct stat *st,
		   struct buf *reply);
void fs_fill_entry(struct fs_share *s, uint32_t idx, const struct stat *st,
		   struct fuse_entry_out *e);

typedef int fs_op_fn(struct fs_share *s, struct fs_req *q, struct buf *reply);
/* ops_entry.c */
fs_op_fn fs_op_lookup, fs_op_forget, fs_op_batch_forget, fs_op_mkdir, fs_op_mknod, fs_op_symlink,
    fs_op_readlink, fs_op_link, fs_op_unlink, fs_op_rmdir, fs_op_rename, fs_op_rename2,
    fs_op_create, fs_op_opendir, fs_op_readdir, fs_op_readdirplus;
/* ops_file.c */
fs_op_fn fs_op_getattr, fs_op_setattr, fs_op_open, fs_op_read, fs_op_write, fs_op_flush,
    fs_op_fsync, fs_op_fsyncdir, fs_op_release, fs_op_releasedir, fs_op_statfs, fs_op_access,
    fs_op_getxattr, fs_op_setxattr, fs_op_listxattr, fs_op_removexattr;

#endif
