/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
/*
 * The share's node and handle tables: bounded arrays, a (dev, ino) hash so one host inode is one
 * node (hard links and repeated lookups share it), generation-tagged ids so a stale nodeid or fh
 * from the guest is refused instead of reaching a reused slot, and the only ways the server
 * reaches a host file: a name under a directory node's descriptor (fs_openat_beneath) and a
 * node's own descriptor (fs_node_fd, fs_node_reopen).
 *
 * Descriptors: a directory node always holds its O_PATH descriptor (it is the parent every name
 * below it is opened from). Other nodes hold one as a cache of at most FS_MAX_FILE_FDS: past that
 * a clock sweep closes the descriptor of a node not used since the last sweep and not open in a
 * handle, and the node is reached again through one of its names (checked to be the same
 * inode). So a guest holding many files costs memory, not descriptors.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/util.h"
#include "fs/share_impl.h"

#define FS_OPEN_TRIES 8

_Static_assert((FS_MAX_NODES & (FS_MAX_NODES - 1)) == 0, "FS_MAX_NODES is a power of two");
/* A node open in a handle keeps its descriptor: some other node can always give one up. */
_Static_assert(FS_MAX_FILE_FDS > FS_MAX_HANDLES, "file descriptor cache larger than handles");

int fs_openat_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & (O_CREAT | __O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS,
	};
	long fd;
	int tries = 0;

	/* EAGAIN: a concurrent rename on the host made the kernel give up; a few more tries. */
	do
		fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
	while (fd < 0 && (errno == EINTR || errno == EAGAIN) && ++tries < FS_OPEN_TRIES);
	return fd < 0 ? -errno : (int)fd;
}

static uint32_t node_hash(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4full;
	return (uint32_t)(h >> 32) & (FS_MAX_NODES - 1);
}

int fs_nodes_init(struct fs_share *s, int root_fd)
{
	struct stat st;

	/* Slots past node_top are untouched zero pages until first used. */
	s->nodes = calloc(FS_MAX_NODES, sizeof(*s->nodes));
	s->buckets = malloc(FS_MAX_NODES * sizeof(*s->buckets));
	s->handles = calloc(FS_MAX_HANDLES, sizeof(*s->handles));
	if (!s->nodes || !s->buckets || !s->handles)
		return -ENOMEM;
	if (fstat(root_fd, &st) < 0)
		return -errno;
	memset(s->buckets, 0xff, FS_MAX_NODES * sizeof(*s->buckets)); /* FS_NONE */
	for (uint32_t i = 0; i < FS_MAX_HANDLES; i++)
		s->handles[i].fd = -1;
	/* The root: never forgotten (its lookup count never reaches 0). */
	struct fs_node *r = &s->nodes[0];
	r->fd = root_fd;
	r->used = true;
	r->type = st.st_mode & S_IFMT;
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	r->nlookup = 1;
	r->hnext = s->buckets[node_hash(r->dev, r->ino)];
	s->buckets[node_hash(r->dev, r->ino)] = 0;
	s->node_free = FS_NONE;
	s->node_top = 1;
	s->nnodes = 1;
	return 0;
}

void fs_nodes_fini(struct fs_share *s)
{
	if (s->nodes) {
		for (uint32_t i = 0; i < s->node_top; i++) {
			if (s->nodes[i].fd >= 0)
				close(s->nodes[i].fd);
			for (unsigned k = 0; k < s->nodes[i].nnames; k++)
				free(s->nodes[i].names[k].name);
		}
	}
	if (s->handles) {
		for (uint32_t i = 0; i < FS_MAX_HANDLES; i++)
			if (s->handles[i].fd >= 0)
				close(s->handles[i].fd);
	}
	free(s->nodes);
	free(s->buckets);
	free(s->handles);
}

/* Ids carry the slot's generation in the high half: index + 1 in the low half (root: 1). */
uint64_t fs_node_id(const struct fs_share *s, uint32_t idx)
{
	return (uint64_t)s->nodes[idx].gen << 32 | (idx + 1);
}

int fs_node_get(struct fs_share *s, uint64_t nodeid, uint32_t *idx)
{
	uint32_t lo = (uint32_t)nodeid;

	if (lo == 0 || lo > FS_MAX_NODES)
		return -ESTALE;
	struct fs_node *n = &s->nodes[lo - 1];
	if (!n->used || n->gen != (uint32_t)(nodeid >> 32))
		return -ESTALE;
	*idx = lo - 1;
	return 0;
}

static uint32_t node_find(const struct fs_share *s, dev_t dev, ino_t ino)
{
	for (uint32_t i = s->buckets[node_hash(dev, ino)]; i != FS_NONE; i = s->nodes[i].hnext)
		if (s->nodes[i].dev == dev && s->nodes[i].ino == ino)
			return i;
	return FS_NONE;
}

static void node_unhash(struct fs_share *s, uint32_t idx)
{
	uint32_t *p = &s->buckets[node_hash(s->nodes[idx].dev, s->nodes[idx].ino)];

	while (*p != FS_NONE && *p != idx)
		p = &s->nodes[*p].hnext;
	if (*p == idx)
		*p = s->nodes[idx].hnext;
}

static void node_drop_fd(struct fs_share *s, uint32_t idx)
{
	struct fs_node *n = &s->nodes[idx];

	if (n->fd < 0)
		return;
	close(n->fd);
	n->fd = -1;
	if (!S_ISDIR(n->type))
		s->file_fds--;
}

/*
 * Make room in the descriptor cache: the clock hand passes non-directory nodes, clearing their
 * "used recently" mark, and closes the first descriptor whose node has none and is not open in
 * a handle (refs counts handles for non-directories) and is not keep. Two turns always find one
 * (see the static assert above).
 */
static void node_evict_fd(struct fs_share *s, uint32_t keep)
{
	for (uint32_t steps = 0; steps < 2 * s->node_top; steps++) {
		uint32_t i = s->clock < s->node_top ? s->clock : 0;
		struct fs_node *n = &s->nodes[i];
		s->clock = i + 1;
		if (!n->used || n->fd < 0 || S_ISDIR(n->type) || n->refs || i == keep)
			continue;
		if (n->hot) {
			n->hot = false;
			continue;
		}
		node_drop_fd(s, i);
		return;
	}
}

/* Give node idx the O_PATH descriptor fd (taken), evicting another file's if the cache is full. */
static void node_keep_fd(struct fs_share *s, uint32_t idx, int fd)
{
	struct fs_node *n = &s->nodes[idx];

	if (n->fd >= 0) {
		close(fd);
		return;
	}
	if (!S_ISDIR(n->type)) {
		if (s->file_fds >= FS_MAX_FILE_FDS)
			node_evict_fd(s, idx);
		s->file_fds++;
	}
	n->fd = fd;
	n->hot = true;
}

static void node_release(struct fs_share *s, uint32_t idx);

/*
 * Forget name k of non-directory idx; its directory loses a reference and may be freed (a
 * directory has no names, so this goes one level deep at most).
 */
static void node_forget_name(struct fs_share *s, uint32_t idx, unsigned k)
{
	struct fs_node *n = &s->nodes[idx];
	uint32_t dir = n->names[k].dir;

	free(n->names[k].name);
	memmove(&n->names[k], &n->names[k + 1], (n->nnames - k - 1) * sizeof(n->names[0]));
	n->nnames--;
	s->nodes[dir].refs--;
	node_release(s, dir);
}

static int node_name_index(const struct fs_node *n, uint32_t dir, const char *name)
{
	for (unsigned k = 0; k < n->nnames; k++)
		if (n->names[k].dir == dir && !strcmp(n->names[k].name, name))
			return (int)k;
	return -1;
}

/*
 * Free idx if the guest holds no lookup of it and nothing refers to it; its names go, and with
 * them its references on their directories.
 */
static void node_release(struct fs_share *s, uint32_t idx)
{
	struct fs_node *n = &s->nodes[idx];

	if (idx == 0 || !n->used || n->nlookup || n->refs)
		return;
	node_unhash(s, idx);
	node_drop_fd(s, idx);
	n->used = false; /* the directories released below never come back here */
	while (n->nnames)
		node_forget_name(s, idx, n->nnames - 1u);
	*n = (struct fs_node){ .fd = -1, .gen = n->gen + 1, .hnext = s->node_free };
	s->node_free = idx;
	s->nnodes--;
}

void fs_node_name_add(struct fs_share *s, uint32_t idx, uint32_t dir, const char *name)
{
	struct fs_node *n = &s->nodes[idx];
	struct fs_name first;
	int k;

	if (S_ISDIR(n->type))
		return;
	k = node_name_index(n, dir, name);
	if (k >= 0) { /* known: make it the first tried */
		first = n->names[k];
		memmove(&n->names[1], &n->names[0], (size_t)k * sizeof(n->names[0]));
		n->names[0] = first;
		return;
	}
	first = (struct fs_name){ .dir = dir, .name = strdup(name) };
	if (!first.name)
		return; /* the other names stay; reaching the node through them may fail: ESTALE */
	s->nodes[dir].refs++; /* before the oldest name goes: it may be in the same directory */
	if (n->nnames == FS_NODE_NAMES)
		node_forget_name(s, idx, FS_NODE_NAMES - 1);
	memmove(&n->names[1], &n->names[0], n->nnames * sizeof(n->names[0]));
	n->names[0] = first;
	n->nnames++;
}

void fs_node_name_gone(struct fs_share *s, uint32_t idx, uint32_t dir, const char *name)
{
	int k = node_name_index(&s->nodes[idx], dir, name);

	if (k >= 0)
		node_forget_name(s, idx, (unsigned)k);
}

uint32_t fs_node_at(struct fs_share *s, uint32_t dir, const char *name)
{
	struct stat st;

	if (fstatat(s->nodes[dir].fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return FS_NONE;
	return node_find(s, st.st_dev, st.st_ino);
}

/*
 * Open non-directory idx through one of its names, most recent first, with flags (which carry
 * O_NOFOLLOW), checked to be the node's inode. A name that no longer leads to it (gone, or now
 * a symlink or another file) is forgotten; -ESTALE when none is left.
 */
static int node_open_named(struct fs_share *s, uint32_t idx, int flags)
{
	struct fs_node *n = &s->nodes[idx];
	struct stat st;

	while (n->nnames) {
		int fd =
		    fs_openat_beneath(s->nodes[n->names[0].dir].fd, n->names[0].name, flags, 0);
		if (fd < 0 && fd != -ENOENT && fd != -ELOOP && fd != -ENOTDIR)
			return fd;
		if (fd >= 0) {
			if (fstat(fd, &st) < 0) {
				int r = -errno;
				close(fd);
				return r;
			}
			if (st.st_dev == n->dev && st.st_ino == n->ino)
				return fd;
			close(fd);
		}
		node_forget_name(s, idx, 0);
	}
	return -ESTALE;
}

int fs_node_name(struct fs_share *s, uint32_t idx, uint32_t *dir, const char **name)
{
	struct fs_node *n = &s->nodes[idx];
	struct stat st;

	while (n->nnames) {
		if (fstatat(s->nodes[n->names[0].dir].fd, n->names[0].name, &st,
			    AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_dev == n->dev && st.st_ino == n->ino) {
			*dir = n->names[0].dir;
			*name = n->names[0].name;
			return 0;
		}
		node_forget_name(s, idx, 0);
	}
	return -ESTALE;
}

int fs_node_lookup(struct fs_share *s, uint32_t parent, const char *name, struct stat *st,
		   uint32_t *idx)
{
	_cleanup_close_ int fd = -1;
	uint32_t i;

	if (!S_ISDIR(s->nodes[parent].type))
		return -ENOTDIR;
	fd = fs_openat_beneath(s->nodes[parent].fd, name, O_PATH | O_NOFOLLOW, 0);
	if (fd < 0)
		return fd;
	if (fstat(fd, st) < 0)
		return -errno;
	i = node_find(s, st->st_dev, st->st_ino);
	if (i != FS_NONE) {
		s->nodes[i].nlookup++;
		fs_node_name_add(s, i, parent, name);
		node_keep_fd(s, i, take_fd(&fd));
		*idx = i;
		return 0;
	}
	if (s->node_free != FS_NONE) {
		i = s->node_free;
		s->node_free = s->nodes[i].hnext;
	} else if (s->node_top < FS_MAX_NODES) {
		i = s->node_top++;
	} else {
		return -ENFILE;
	}
	struct fs_node *n = &s->nodes[i];
	s->nnodes++;
	n->used = true;
	n->fd = -1;
	n->type = st->st_mode & S_IFMT;
	n->dev = st->st_dev;
	n->ino = st->st_ino;
	n->nlookup = 1;
	n->refs = 0;
	n->nnames = 0;
	n->hnext = s->buckets[node_hash(n->dev, n->ino)];
	s->buckets[node_hash(n->dev, n->ino)] = i;
	fs_node_name_add(s, i, parent, name);
	node_keep_fd(s, i, take_fd(&fd));
	*idx = i;
	return 0;
}

void fs_node_forget(struct fs_share *s, uint32_t idx, uint64_t n)
{
	struct fs_node *node = &s->nodes[idx];

	if (idx == 0)
		return;
	node->nlookup = n >= node->nlookup ? 0 : node->nlookup - n;
	node_release(s, idx);
}

void fs_node_hold(struct fs_share *s, uint32_t idx)
{
	s->nodes[idx].refs++;
}

void fs_node_drop(struct fs_share *s, uint32_t idx)
{
	s->nodes[idx].refs--;
	node_release(s, idx);
}

int fs_node_fd(struct fs_share *s, uint32_t idx)
{
	struct fs_node *n = &s->nodes[idx];
	int fd;

	if (n->fd >= 0) {
		n->hot = true;
		return n->fd;
	}
	if ((fd = node_open_named(s, idx, O_PATH | O_NOFOLLOW)) < 0)
		return fd;
	node_keep_fd(s, idx, fd);
	return n->fd;
}

int fs_node_stat(struct fs_share *s, uint32_t idx, struct stat *st)
{
	int fd = fs_node_fd(s, idx);

	if (fd < 0)
		return fd;
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

int fs_node_reopen(struct fs_share *s, uint32_t idx, int flags)
{
	const struct fs_node *n = &s->nodes[idx];
	bool nonblock = flags & O_NONBLOCK;
	_cleanup_close_ int fd = -1;

	flags &= ~(O_CREAT | O_EXCL | O_TRUNC | O_PATH | __O_TMPFILE | O_DIRECTORY);
	flags |= O_NOFOLLOW | O_NOCTTY | O_NONBLOCK;
	if (S_ISDIR(n->type))
		fd = fs_openat_beneath(n->fd, ".", flags | O_DIRECTORY, 0);
	else
		fd = node_open_named(s, idx, flags);
	if (fd < 0)
		return fd;
	if (!nonblock && fd_set_nonblock(fd, 0) < 0)
		return -errno;
	return take_fd(&fd);
}

int fs_handle_new(struct fs_share *s, int fd, uint32_t node, bool dir, uint64_t *fh)
{
	for (uint32_t k = 0; k < FS_MAX_HANDLES; k++) {
		uint32_t i = (s->handle_free_scan + k) % FS_MAX_HANDLES;
		struct fs_handle *h = &s->handles[i];
		if (h->fd >= 0)
			continue;
		h->fd = fd;
		h->node = node;
		h->dir = dir;
		s->nodes[node].refs++; /* an open file keeps its node and its node's descriptor */
		s->handle_free_scan = i + 1;
		s->nhandles++;
		*fh = (uint64_t)h->gen << 32 | i;
		return 0;
	}
	return -EMFILE;
}

int fs_handle_get(struct fs_share *s, uint64_t fh, bool dir, struct fs_handle **out)
{
	uint32_t i = (uint32_t)fh;

	if (i >= FS_MAX_HANDLES)
		return -EBADF;
	struct fs_handle *h = &s->handles[i];
	if (h->fd < 0 || h->gen != (uint32_t)(fh >> 32) || h->dir != dir)
		return -EBADF;
	*out = h;
	return 0;
}

void fs_handle_free(struct fs_share *s, struct fs_handle *h)
{
	uint32_t node = h->node;

	close(h->fd);
	h->fd = -1;
	h->gen++;
	s->nhandles--;
	s->nodes[node].refs--;
	node_release(s, node);
}
