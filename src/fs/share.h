/* SPDX-License-Identifier: MIT */
/*
 * The supervisor's file server for host folders shared into a sandbox (issue 13).
 *
 * The guest kernel's FUSE protocol travels over the link unchanged: the agent relays raw
 * requests read from the guest's /dev/fuse, and fs_share_handle() parses each one as hostile
 * input and serves it from the host directory the share was opened on. Containment lives here:
 * every host file is reached through file descriptors the share holds (the root, and O_PATH
 * descriptors of the nodes the guest looked up) and single, validated name components opened
 * with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS); a symlink in the
 * tree is never followed on the host, and no name, link or rename race leads outside it.
 *
 * Behaviour the guest sees (documented for spec/README):
 *  - entries, attributes and missing names are cached by the guest kernel for
 *    FS_ATTR_TIMEOUT_SEC seconds, so a repeated stat does not cross the link; changes made on the
 *    host show up after that at most;
 *  - files are created as the host user running the supervisor; a chown is accepted and leaves
 *    the owner unchanged (the guest cannot give host files to other users); files owned by the
 *    supervisor's user are shown as owned by opts.owner_uid/owner_gid (0: the guest's root);
 *    set-user/group-id bits never reach a host file (directories keep set-group-id);
 *  - extended attributes: only the user.* namespace is visible and writable (others: ENODATA
 *    to read, EOPNOTSUPP to set);
 *  - MKNOD creates regular files and FIFOs only (no devices, no sockets); byte-range locks and
 *    flock are kept by the guest kernel (GETLK/SETLK answer ENOSYS);
 *  - symlink targets are stored verbatim and resolved only by the guest, in its own namespace.
 *
 * fs_share_open raises the soft RLIMIT_NOFILE towards the hard one (a share holds up to
 * FS_MAX_NODES directory descriptors); the supervisor uses epoll, never select.
 */
#ifndef MATCHLOCK_FS_SHARE_H
#define MATCHLOCK_FS_SHARE_H

#include <linux/fuse.h> /* Debian's kernel headers: the protocol's structs */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define FS_MAX_WRITE (128u * 1024) /* max_write offered in FUSE_INIT      */
#define FS_MAX_REQUEST (FS_MAX_WRITE + 4096) /* largest request a guest may send    */
#define FS_MAX_REPLY (FS_MAX_WRITE + 4096) /* largest reply the server produces   */

/*
 * Nodes the guest may hold at once and files or directories it may hold open. Past them LOOKUP
 * fails with ENFILE and OPEN with EMFILE; the guest kernel forgets unused nodes under memory
 * pressure. Host descriptors: one per directory node, at most FS_MAX_FILE_FDS for the other
 * nodes (a cache; the rest are reached through their parent and name), one per open handle.
 */
#define FS_MAX_NODES 65536u
#define FS_MAX_FILE_FDS 4096u
#define FS_MAX_HANDLES 1024u
#define FS_ATTR_TIMEOUT_SEC 1 /* entry and attribute cache lifetime in the guest */

struct fs_share;
struct fs_share_opts {
	bool read_only; /* every modifying request fails with EROFS            */
	/* What files owned by the supervisor's user appear as in the guest (0/0: root). */
	uint32_t owner_uid, owner_gid;
};

/* Open a share of host directory `dir` (must exist and be a directory). -errno. */
int fs_share_open(const char *dir, const struct fs_share_opts *o, struct fs_share **out);
void fs_share_close(struct fs_share *s); /* closes every fd it holds; NULL ok */
/*
 * Serve one raw FUSE request (struct fuse_in_header + body, exactly as read from
 * /dev/fuse). Appends the raw reply (struct fuse_out_header + body) to `reply`, or nothing
 * for requests that take none (FORGET, BATCH_FORGET, INTERRUPT). Malformed input (a length
 * that disagrees with the header, a short body, a name with '/' or NUL, "..", an unknown
 * nodeid or fh) gets an error reply with the request's unique, never a crash; returns
 * -EPROTO only when even the header cannot be read (the caller then closes the stream), and
 * -ENOMEM when the reply could not be appended.
 */
int fs_share_handle(struct fs_share *s, const uint8_t *req, size_t n, struct buf *reply);

/* Counters for tests and `inspect`: nodes and handles in use now. */
struct fs_share_stats {
	uint32_t nodes, handles;
};
void fs_share_stats(const struct fs_share *s, struct fs_share_stats *st);

#endif
