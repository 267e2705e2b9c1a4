/* SPDX-License-Identifier: MIT */
/*
 * Image layers written straight into an ext4 file with libext2fs; see ext4.h.
 *
 * Two passes over the layers. The first reads headers only and merges every layer into a tree in
 * memory (whiteouts, opaque directories, replacements and hard links applied as a kernel overlay
 * would see them). The tree then gives the file system its size; mke2fs formats an empty file
 * system with a UUID and hash seed derived from the caller's seed and a fixed clock; every inode
 * is created walking the tree in byte order of names, with the owner, mode, times and xattrs the
 * layer gave it. The second pass copies the bytes of the regular files that survived. Nothing
 * depends on who runs it, when, or on the host's files: the same layers give the same bytes.
 */
#define _GNU_SOURCE
#include "ext4.h"

#include <errno.h>
#include <et/com_err.h>
#include <ext2fs/ext2fs.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/child.h"
#include "unpack.h"

#define EXT4_MAX_NODES 4000000 /* live and replaced entries of one image, all layers */
#define EXT4_MAX_XATTR_BYTES (64u << 20) /* extended attributes of one image */
#define EXT4_BLOCK 4096
#define EXT4_MAX_LINKS 65000 /* names of one file, subdirectories of one directory (16 bits) */

struct xattr {
	char *name;
	void *value;
	size_t len;
};

struct dent;

struct node {
	uint32_t mode; /* S_IF* type and 07777 bits */
	uint32_t uid, gid;
	int64_t mtime;
	uint32_t nsec;
	uint64_t size;
	uint32_t rdev_major, rdev_minor;
	char *target; /* symlinks */
	struct xattr *xattrs;
	size_t nxattrs;
	uint32_t layer, ordinal; /* regular files: where their bytes are */
	uint32_t links; /* names in the final tree (counted before writing) */
	ext2_ino_t ino;
	struct dent *first, *last; /* a directory's entries, in no particular order */
	struct node *all_next; /* every node ever made, to free them */
};

struct dent {
	struct node *parent, *node;
	struct dent *hnext; /* hash chain */
	struct dent *prev, *next; /* siblings */
	uint32_t layer; /* the last layer that named it (opaque directories keep those) */
	char name[];
};

struct tree {
	struct node *root, *all;
	struct dent **buckets;
	size_t nbuckets, ndents, nnodes;
	uint64_t xattr_bytes, file_bytes;
	uint32_t layer;
	char (*opaque)[OCI_MAX_PATH + 1]; /* this layer's opaque directories */
	size_t nopaque, opaque_cap;
};

static size_t dent_hash(const struct node *dir, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)dir;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29));
}

static struct dent *lookup(struct tree *t, const struct node *dir, const char *name)
{
	for (struct dent *d = t->buckets[dent_hash(dir, name) & (t->nbuckets - 1)]; d; d = d->hnext)
		if (d->parent == dir && !strcmp(d->name, name))
			return d;
	return NULL;
}

static int grow_buckets(struct tree *t)
{
	size_t nb = t->nbuckets ? t->nbuckets * 2 : 4096;
	struct dent **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->nbuckets; i++)
		for (struct dent *d = t->buckets[i], *n; d; d = n) {
			n = d->hnext;
			size_t h = dent_hash(d->parent, d->name) & (nb - 1);
			d->hnext = b[h];
			b[h] = d;
		}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
	return 0;
}

static struct node *node_new(struct tree *t, uint32_t mode)
{
	if (t->nnodes >= EXT4_MAX_NODES)
		return NULL;
	struct node *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->mode = mode;
	n->all_next = t->all;
	t->all = n;
	t->nnodes++;
	return n;
}

static int dent_add(struct tree *t, struct node *dir, const char *name, struct node *n)
{
	if (t->ndents >= t->nbuckets && grow_buckets(t) < 0)
		return -ENOMEM;
	size_t len = strlen(name);
	struct dent *d = malloc(sizeof(*d) + len + 1);
	if (!d)
		return -ENOMEM;
	memcpy(d->name, name, len + 1);
	d->parent = dir;
	d->node = n;
	d->layer = t->layer;
	size_t h = dent_hash(dir, name) & (t->nbuckets - 1);
	d->hnext = t->buckets[h];
	t->buckets[h] = d;
	d->next = NULL;
	d->prev = dir->last;
	if (dir->last)
		dir->last->next = d;
	else
		dir->first = d;
	dir->last = d;
	t->ndents++;
	return 0;
}

/* Remove d and, for a directory, everything under it (depth is bounded by OCI_MAX_DEPTH). */
static void dent_remove(struct tree *t, struct dent *d)
{
	struct node *n = d->node;
	if (S_ISDIR(n->mode))
		while (n->first)
			dent_remove(t, n->first);
	struct dent **pp = &t->buckets[dent_hash(d->parent, d->name) & (t->nbuckets - 1)];
	while (*pp != d)
		pp = &(*pp)->hnext;
	*pp = d->hnext;
	if (d->prev)
		d->prev->next = d->next;
	else
		d->parent->first = d->next;
	if (d->next)
		d->next->prev = d->prev;
	else
		d->parent->last = d->prev;
	t->ndents--;
	free(d);
}

/*
 * The directory holding the clean path p; *base points at its last component. Missing parents
 * are made (0755, root's) when create is set. -ELOOP for a symlinked parent, -ENOTDIR for a file
 * parent, -ENOENT for a missing one.
 */
static int walk(struct tree *t, const char *p, bool create, struct node **dir, const char **base)
{
	struct node *cur = t->root;
	char comp[256];
	for (;;) {
		const char *e = strchr(p, '/');
		if (!e)
			break;
		size_t cl = (size_t)(e - p);
		memcpy(comp, p, cl);
		comp[cl] = 0;
		struct dent *d = lookup(t, cur, comp);
		if (!d) {
			if (!create)
				return -ENOENT;
			struct node *n = node_new(t, S_IFDIR | 0755);
			if (!n || dent_add(t, cur, comp, n) < 0)
				return -ENOMEM;
			cur = n;
		} else if (S_ISLNK(d->node->mode)) {
			return -ELOOP;
		} else if (!S_ISDIR(d->node->mode)) {
			return -ENOTDIR;
		} else {
			if (create)
				d->layer = t->layer;
			cur = d->node;
		}
		p = e + 1;
	}
	*dir = cur;
	*base = p;
	return 0;
}

static void set_meta(struct node *n, const struct oci_entry *e)
{
	n->mode = (n->mode & S_IFMT) | e->perm;
	n->uid = e->uid;
	n->gid = e->gid;
	n->mtime = e->mtime;
	n->nsec = e->mtime_nsec;
}

static bool xattr_known(const char *name)
{
	static const char *const prefixes[] = { "user.", "trusted.", "security.",
						"system.posix_acl_access",
						"system.posix_acl_default" };
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(*prefixes); i++)
		if (!strncmp(name, prefixes[i], strlen(prefixes[i])))
			return true;
	return false;
}

static int set_xattrs(struct tree *t, struct node *n, struct oci_layer *l,
		      const struct oci_entry *e)
{
	for (size_t i = 0; i < n->nxattrs; i++) {
		free(n->xattrs[i].name);
		free(n->xattrs[i].value);
	}
	free(n->xattrs);
	n->xattrs = NULL;
	n->nxattrs = 0;
	if (!e->nxattrs)
		return 0;
	n->xattrs = calloc(e->nxattrs, sizeof(*n->xattrs));
	if (!n->xattrs)
		return -ENOMEM;
	for (size_t i = 0; i < e->nxattrs; i++) {
		const char *name;
		const void *value;
		size_t len;
		oci_layer_xattr(l, i, &name, &value, &len);
		if (!xattr_known(name))
			continue; /* ext4 stores no other namespace */
		t->xattr_bytes += strlen(name) + len;
		if (t->xattr_bytes > EXT4_MAX_XATTR_BYTES)
			return -E2BIG;
		struct xattr *x = &n->xattrs[n->nxattrs];
		x->name = strdup(name);
		x->value = malloc(len ? len : 1);
		if (!x->name || !x->value) {
			free(x->name);
			free(x->value);
			return -ENOMEM;
		}
		memcpy(x->value, value, len);
		x->len = len;
		n->nxattrs++;
	}
	return 0;
}

static uint32_t kind_mode(enum oci_entry_kind k)
{
	switch (k) {
	case OCI_ENTRY_DIR:
		return S_IFDIR;
	case OCI_ENTRY_SYMLINK:
		return S_IFLNK;
	case OCI_ENTRY_CHAR:
		return S_IFCHR;
	case OCI_ENTRY_BLOCK:
		return S_IFBLK;
	case OCI_ENTRY_FIFO:
		return S_IFIFO;
	default:
		return S_IFREG;
	}
}

/* Apply one entry of layer t->layer to the tree. Returns 0 or -errno with err set. */
static int tree_apply(struct tree *t, struct oci_layer *l, const struct oci_entry *e, char *err,
		      size_t errn)
{
	struct node *dir, *n;
	const char *base;
	int r;
	if (e->kind == OCI_ENTRY_DIR && !e->path[0]) {
		set_meta(t->root, e);
		return set_xattrs(t, t->root, l, e);
	}
	if (e->kind == OCI_ENTRY_OPAQUE) {
		if (t->nopaque == t->opaque_cap) {
			size_t nc = t->opaque_cap ? t->opaque_cap * 2 : 16;
			void *no = realloc(t->opaque, nc * sizeof(*t->opaque));
			if (!no)
				return -ENOMEM;
			t->opaque = no;
			t->opaque_cap = nc;
		}
		strcpy(t->opaque[t->nopaque++], e->path);
		return 0;
	}
	r = walk(t, e->path, e->kind != OCI_ENTRY_WHITEOUT, &dir, &base);
	if (r == -ENOENT && e->kind == OCI_ENTRY_WHITEOUT)
		return 0; /* nothing to hide */
	if (r == -ELOOP || r == -ENOTDIR) {
		snprintf(err, errn,
			 "%s: refused entry '%.200s': it writes through a %s parent directory",
			 l->what, e->path, r == -ELOOP ? "symlinked" : "non-directory");
		return -EPERM;
	}
	if (r < 0)
		return r;
	struct dent *old = lookup(t, dir, base);
	switch (e->kind) {
	case OCI_ENTRY_WHITEOUT:
		if (old)
			dent_remove(t, old);
		return 0;
	case OCI_ENTRY_DIR:
		if (old && S_ISDIR(old->node->mode)) {
			old->layer = t->layer;
			set_meta(old->node, e);
			return set_xattrs(t, old->node, l, e);
		}
		break;
	case OCI_ENTRY_HARDLINK: {
		struct node *tdir;
		const char *tbase;
		struct dent *target = NULL;
		if (walk(t, e->target, false, &tdir, &tbase) == 0)
			target = lookup(t, tdir, tbase);
		if (!target || S_ISDIR(target->node->mode)) {
			snprintf(err, errn,
				 "%s: hard link %.200s: target %.200s is missing or a directory",
				 l->what, e->path, e->target);
			return -EINVAL;
		}
		if (target == old)
			return 0;
		n = target->node;
		if (old)
			dent_remove(t, old);
		return dent_add(t, dir, base, n);
	}
	default:
		break;
	}
	if (old)
		dent_remove(t, old);
	if (!(n = node_new(t, kind_mode(e->kind)))) {
		snprintf(err, errn, "%s: more than %d entries in the image", l->what,
			 EXT4_MAX_NODES);
		return -E2BIG;
	}
	set_meta(n, e);
	n->size = e->size;
	n->layer = t->layer;
	n->ordinal = e->ordinal;
	n->rdev_major = e->rdev_major;
	n->rdev_minor = e->rdev_minor;
	if (e->kind == OCI_ENTRY_SYMLINK && !(n->target = strdup(e->target)))
		return -ENOMEM;
	if ((r = set_xattrs(t, n, l, e)) < 0)
		return r;
	return dent_add(t, dir, base, n);
}

/* An opaque directory keeps only what this layer named under it. */
static void opaque_clean(struct tree *t, struct node *dir)
{
	for (struct dent *d = dir->first, *next; d; d = next) {
		next = d->next;
		if (d->layer < t->layer)
			dent_remove(t, d);
		else if (S_ISDIR(d->node->mode))
			opaque_clean(t, d->node);
	}
}

static void layer_finish(struct tree *t)
{
	for (size_t i = 0; i < t->nopaque; i++) {
		struct node *dir = t->root;
		if (t->opaque[i][0]) {
			const char *base;
			struct dent *d = NULL;
			if (walk(t, t->opaque[i], false, &dir, &base) == 0)
				d = lookup(t, dir, base);
			if (!d || !S_ISDIR(d->node->mode))
				continue;
			dir = d->node;
		}
		opaque_clean(t, dir);
	}
	t->nopaque = 0;
}

static void tree_free(struct tree *t)
{
	for (size_t i = 0; i < t->nbuckets; i++)
		for (struct dent *d = t->buckets[i], *next; d; d = next) {
			next = d->hnext;
			free(d);
		}
	for (struct node *n = t->all, *next; n; n = next) {
		next = n->all_next;
		for (size_t i = 0; i < n->nxattrs; i++) {
			free(n->xattrs[i].name);
			free(n->xattrs[i].value);
		}
		free(n->xattrs);
		free(n->target);
		free(n);
	}
	free(t->buckets);
	free(t->opaque);
}

/* What the final tree needs: inodes, blocks, its regular files and its newest mtime. */
struct census {
	uint64_t inodes, blocks, nfiles;
	int64_t newest;
	struct node **files;
};

static int census_take(struct census *c, struct node *n, bool collect)
{
	if (n->mtime > c->newest)
		c->newest = n->mtime;
	if (S_ISDIR(n->mode)) {
		uint64_t bytes = 24, subdirs = 0;
		c->inodes++;
		for (struct dent *d = n->first; d; d = d->next) {
			bytes += 8 + ((strlen(d->name) + 3) & ~3u);
			if (S_ISDIR(d->node->mode) ? ++subdirs > EXT4_MAX_LINKS
						   : d->node->links >= EXT4_MAX_LINKS)
				return -EMLINK;
			if (d->node->links++ == 0) {
				int r = census_take(c, d->node, collect);
				if (r < 0)
					return r;
			}
		}
		c->blocks += bytes / (EXT4_BLOCK - 64) + 2;
		return 0;
	}
	c->inodes++;
	if (n->nxattrs)
		c->blocks++;
	if (S_ISLNK(n->mode) && strlen(n->target) >= 60)
		c->blocks++;
	if (S_ISREG(n->mode)) {
		uint64_t b = (n->size + EXT4_BLOCK - 1) / EXT4_BLOCK;
		c->blocks += b + b / 256;
		if (collect)
			c->files[c->nfiles] = n;
		c->nfiles++;
	}
	return 0;
}

static int file_cmp(const void *a, const void *b)
{
	const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;
	if (x->layer != y->layer)
		return x->layer < y->layer ? -1 : 1;
	return x->ordinal < y->ordinal ? -1 : x->ordinal > y->ordinal;
}

/* ---- writing ---- */

struct writer {
	ext2_filsys fs;
	char *err;
	size_t errn;
};

static int fs_fail(struct writer *w, errcode_t code, const char *what, const char *name)
{
	snprintf(w->err, w->errn, "writing the root disk: %s %.200s: %s", what, name,
		 error_message(code));
	return code == EXT2_ET_BLOCK_ALLOC_FAIL || code == EXT2_ET_INODE_ALLOC_FAIL ? -ENOSPC
										    : -EIO;
}

static void ts_encode(int64_t sec, uint32_t nsec, __u32 *lo, __u32 *extra)
{
	const int64_t max = ((int64_t)3 << 32) + INT32_MAX;
	if (sec < INT32_MIN)
		sec = INT32_MIN;
	if (sec > max)
		sec = max;
	*lo = (uint32_t)sec;
	*extra = (uint32_t)(((sec - (int32_t)(uint32_t)sec) >> 32) & 3) | (nsec << 2);
}

/* Owner, mode bits, times, link count (non-directories) and xattrs of ino from n. */
static int inode_finish(struct writer *w, ext2_ino_t ino, const struct node *n, const char *name)
{
	struct ext2_inode_large in;
	memset(&in, 0, sizeof(in));
	errcode_t c = ext2fs_read_inode_full(w->fs, ino, (struct ext2_inode *)&in, sizeof(in));
	if (c)
		return fs_fail(w, c, "reading inode of", name);
	in.i_mode = (__u16)((in.i_mode & LINUX_S_IFMT) | (n->mode & 07777));
	in.i_uid = (__u16)n->uid;
	ext2fs_set_i_uid_high(in, n->uid >> 16);
	in.i_gid = (__u16)n->gid;
	ext2fs_set_i_gid_high(in, n->gid >> 16);
	__u32 lo, extra;
	ts_encode(n->mtime, n->nsec, &lo, &extra);
	in.i_atime = in.i_ctime = in.i_mtime = lo;
	if (in.i_extra_isize >= 24) {
		in.i_atime_extra = in.i_ctime_extra = in.i_mtime_extra = extra;
		in.i_crtime = lo;
		in.i_crtime_extra = extra;
	}
	if (!S_ISDIR(n->mode))
		in.i_links_count = (__u16)n->links;
	c = ext2fs_write_inode_full(w->fs, ino, (struct ext2_inode *)&in, sizeof(in));
	if (c)
		return fs_fail(w, c, "writing inode of", name);
	if (!n->nxattrs)
		return 0;
	struct ext2_xattr_handle *h;
	if ((c = ext2fs_xattrs_open(w->fs, ino, &h)))
		return fs_fail(w, c, "extended attributes of", name);
	if (!(c = ext2fs_xattrs_read(h)))
		for (size_t i = 0; i < n->nxattrs && !c; i++)
			c = ext2fs_xattr_set(h, n->xattrs[i].name, n->xattrs[i].value,
					     n->xattrs[i].len);
	errcode_t c2 = ext2fs_xattrs_close(&h);
	return c || c2 ? fs_fail(w, c ? c : c2, "extended attributes of", name) : 0;
}

static int file_type(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return EXT2_FT_DIR;
	case S_IFLNK:
		return EXT2_FT_SYMLINK;
	case S_IFCHR:
		return EXT2_FT_CHRDEV;
	case S_IFBLK:
		return EXT2_FT_BLKDEV;
	case S_IFIFO:
		return EXT2_FT_FIFO;
	default:
		return EXT2_FT_REG_FILE;
	}
}

static errcode_t link_in(ext2_filsys fs, ext2_ino_t dir, const char *name, ext2_ino_t ino, int ft)
{
	errcode_t c = ext2fs_link(fs, dir, name, ino, ft);
	if (c == EXT2_ET_DIR_NO_SPACE && !(c = ext2fs_expand_dir(fs, dir)))
		c = ext2fs_link(fs, dir, name, ino, ft);
	return c;
}

/* A regular file (its bytes come in the second pass), device node or FIFO. */
static errcode_t make_plain(ext2_filsys fs, ext2_ino_t dir, const char *name, struct node *n)
{
	ext2_ino_t ino;
	errcode_t c = ext2fs_new_inode(fs, dir, LINUX_S_IFREG | 0600, 0, &ino);
	if (c)
		return c;
	ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
	struct ext2_inode in;
	memset(&in, 0, sizeof(in));
	in.i_mode = (__u16)((n->mode & S_IFMT) | (n->mode & 07777));
	in.i_links_count = 1;
	if (S_ISREG(n->mode)) {
		if ((c = ext2fs_inode_size_set(fs, &in, n->size)))
			return c;
		if (ext2fs_has_feature_extents(fs->super)) {
			ext2_extent_handle_t h;
			if ((c = ext2fs_extent_open2(fs, ino, &in, &h)))
				return c;
			ext2fs_extent_free(h);
		}
	} else if (S_ISCHR(n->mode) || S_ISBLK(n->mode)) {
		uint32_t ma = n->rdev_major, mi = n->rdev_minor;
		if (ma < 256 && mi < 256) {
			in.i_block[0] = ma * 256 + mi;
		} else {
			in.i_block[1] = (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
		}
	}
	if ((c = ext2fs_write_new_inode(fs, ino, &in)))
		return c;
	n->ino = ino;
	return link_in(fs, dir, name, ino, file_type(n->mode));
}

static int dent_cmp(const void *a, const void *b)
{
	return strcmp((*(struct dent *const *)a)->name, (*(struct dent *const *)b)->name);
}

/* Create everything under dir (already made, inode dino), in byte order of names. */
static int write_dir(struct writer *w, struct node *dir, ext2_ino_t dino)
{
	size_t nd = 0;
	for (struct dent *d = dir->first; d; d = d->next)
		nd++;
	struct dent **v = malloc((nd ? nd : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	nd = 0;
	for (struct dent *d = dir->first; d; d = d->next)
		v[nd++] = d;
	qsort(v, nd, sizeof(*v), dent_cmp);
	int r = 0;
	for (size_t i = 0; i < nd && r == 0; i++) {
		struct node *n = v[i]->node;
		const char *name = v[i]->name;
		errcode_t c = 0;
		if (n->ino) { /* a hard link to a file made before */
			if ((c = link_in(w->fs, dino, name, n->ino, file_type(n->mode))))
				r = fs_fail(w, c, "linking", name);
			continue;
		}
		if (S_ISDIR(n->mode)) {
			ext2_ino_t ino;
			c = ext2fs_new_inode(w->fs, dino, LINUX_S_IFDIR | 0755, 0, &ino);
			if (!c) {
				c = ext2fs_mkdir(w->fs, dino, ino, name);
				if (c == EXT2_ET_DIR_NO_SPACE &&
				    !(c = ext2fs_expand_dir(w->fs, dino)))
					c = ext2fs_mkdir(w->fs, dino, ino, name);
			}
			if (c) {
				r = fs_fail(w, c, "creating directory", name);
				break;
			}
			n->ino = ino;
			if ((r = write_dir(w, n, ino)) < 0)
				break;
		} else if (S_ISLNK(n->mode)) {
			ext2_ino_t ino;
			c = ext2fs_new_inode(w->fs, dino, LINUX_S_IFLNK | 0777, 0, &ino);
			if (!c) {
				c = ext2fs_symlink(w->fs, dino, ino, name, n->target);
				if (c == EXT2_ET_DIR_NO_SPACE &&
				    !(c = ext2fs_expand_dir(w->fs, dino)))
					c = ext2fs_symlink(w->fs, dino, ino, name, n->target);
			}
			if (c) {
				r = fs_fail(w, c, "creating symlink", name);
				break;
			}
			n->ino = ino;
		} else if ((c = make_plain(w->fs, dino, name, n))) {
			r = fs_fail(w, c, "creating", name);
			break;
		}
		r = inode_finish(w, n->ino, n, name);
	}
	free(v);
	return r < 0 ? r : inode_finish(w, dino, dir, "a directory");
}

/* mke2fs's lost+found goes when the image has its own entry of that name. */
static int drop_lost_found(struct writer *w, struct tree *t)
{
	if (!lookup(t, t->root, "lost+found"))
		return 0;
	ext2_ino_t ino;
	errcode_t c = ext2fs_lookup(w->fs, EXT2_ROOT_INO, "lost+found", 10, NULL, &ino);
	if (c)
		return c == EXT2_ET_FILE_NOT_FOUND ? 0 : fs_fail(w, c, "finding", "lost+found");
	struct ext2_inode in;
	if ((c = ext2fs_unlink(w->fs, EXT2_ROOT_INO, "lost+found", ino, 0)) ||
	    (c = ext2fs_read_inode(w->fs, ino, &in)) ||
	    (c = ext2fs_punch(w->fs, ino, &in, NULL, 0, ~0ULL)))
		return fs_fail(w, c, "removing", "lost+found");
	if ((c = ext2fs_read_inode(w->fs, ino, &in)))
		return fs_fail(w, c, "removing", "lost+found");
	in.i_links_count = 0;
	in.i_dtime = (__u32)w->fs->now;
	if ((c = ext2fs_write_inode(w->fs, ino, &in)))
		return fs_fail(w, c, "removing", "lost+found");
	ext2fs_inode_alloc_stats2(w->fs, ino, -1, 1);
	if ((c = ext2fs_read_inode(w->fs, EXT2_ROOT_INO, &in)))
		return fs_fail(w, c, "reading", "/");
	in.i_links_count--;
	if ((c = ext2fs_write_inode(w->fs, EXT2_ROOT_INO, &in)))
		return fs_fail(w, c, "writing", "/");
	return 0;
}

/* Second pass: the bytes of every file that survived, layer by layer. */
static int copy_data(struct writer *w, const struct oci_ext4_layer *layers, size_t nlayers,
		     bool whiteouts, struct node **files, size_t nfiles)
{
	struct oci_entry *e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	size_t next = 0;
	int r = 0;
	for (size_t i = 0; i < nlayers && next < nfiles && r == 0; i++) {
		if (files[next]->layer != i)
			continue;
		struct oci_layer l;
		uint64_t bytes = 0;
		if ((r = oci_layer_open(&l, layers[i].path, layers[i].what, whiteouts, &bytes,
					w->err, w->errn)) < 0)
			break;
		while (next < nfiles && files[next]->layer == i &&
		       (r = oci_layer_next(&l, e, w->err, w->errn)) > 0) {
			r = 0;
			if (e->ordinal != files[next]->ordinal)
				continue;
			struct node *n = files[next++];
			ext2_file_t f;
			errcode_t c = ext2fs_file_open(w->fs, n->ino, EXT2_FILE_WRITE, &f);
			const void *buf;
			size_t len;
			uint64_t off;
			while (!c &&
			       (r = oci_layer_data(&l, &buf, &len, &off, w->err, w->errn)) > 0) {
				if (off + len > n->size) {
					snprintf(w->err, w->errn,
						 "%s: %.200s: more bytes than its size", l.what,
						 e->path);
					r = -EINVAL;
					break;
				}
				r = 0;
				c = ext2fs_file_llseek(f, off, EXT2_SEEK_SET, NULL);
				for (size_t done = 0; !c && done < len;) {
					unsigned int wrote = 0;
					c = ext2fs_file_write(f, (const char *)buf + done,
							      (unsigned int)(len - done), &wrote);
					done += wrote;
					if (!c && !wrote)
						c = EXT2_ET_SHORT_WRITE;
				}
			}
			errcode_t c2 = ext2fs_file_close(f);
			if (r == 0 && (c || c2))
				r = fs_fail(w, c ? c : c2, "writing", e->path);
		}
		if (r == 0 && next < nfiles && files[next]->layer == i) {
			snprintf(w->err, w->errn, "%s changed while it was read", l.what);
			r = -EIO;
		}
		oci_layer_close(&l);
	}
	free(e);
	return r;
}

/* UUID and directory hash seed from the caller's seed: distinct images, reproducible bytes. */
static void seed_uuids(const char *seed, char uuid[37], char hash_seed[37])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_Digest(seed, strlen(seed), md, &mdlen, EVP_sha256(), NULL);
	for (int k = 0; k < 2; k++) {
		unsigned char *b = md + 16 * k;
		b[6] = (b[6] & 0x0f) | 0x40;
		b[8] = (b[8] & 0x3f) | 0x80;
		snprintf(k ? hash_seed : uuid, 37,
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
			 b[12], b[13], b[14], b[15]);
	}
}

static int format(const char *tmp, const struct census *c, time_t now, const char *seed, char *err,
		  size_t errn)
{
	uint64_t inodes = c->inodes + 64;
	uint64_t blocks =
	    c->blocks + c->blocks / 20 + inodes / 16 + 4096 + (c->blocks / 32768 + 1) * 4;
	char size[32], ninodes[32], uuid[37], hseed[37], ext[128], fake[64];
	snprintf(size, sizeof(size), "%lluk", (unsigned long long)blocks * (EXT4_BLOCK / 1024));
	snprintf(ninodes, sizeof(ninodes), "%llu", (unsigned long long)inodes);
	seed_uuids(seed, uuid, hseed);
	snprintf(ext, sizeof(ext), "hash_seed=%s,root_owner=0:0", hseed);
	snprintf(fake, sizeof(fake), "E2FSPROGS_FAKE_TIME=%lld", (long long)now);
	char *const mkfs[] = { "mke2fs",
			       "-q",
			       "-F",
			       "-t",
			       "ext4",
			       "-b",
			       "4096",
			       "-I",
			       "256",
			       "-O",
			       "^has_journal,^resize_inode",
			       "-m",
			       "0",
			       "-N",
			       ninodes,
			       "-L",
			       "matchlock-root",
			       "-U",
			       uuid,
			       "-E",
			       ext,
			       (char *)tmp,
			       size,
			       NULL };
	char out[512];
	unlink(tmp);
	int status = child_run_env(mkfs, fake, true, out, sizeof(out));
	if (status < 0) {
		snprintf(err, errn, "cannot run mke2fs: %s", strerror(-status));
		return status;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *nl = strchr(out, '\n');
		if (nl)
			*nl = 0;
		snprintf(err, errn, "formatting the root disk failed: %s%s",
			 *out ? out : "mke2fs failed",
			 WIFEXITED(status) && WEXITSTATUS(status) == 127
			     ? " (apt-get install e2fsprogs)"
			     : "");
		return -EIO;
	}
	return 0;
}

static int write_image(struct tree *t, const struct oci_ext4_layer *layers, size_t n,
		       bool whiteouts, const char *seed, const char *tmp, char *err, size_t errn)
{
	struct census c = { 0 };
	int r = census_take(&c, t->root, false);
	if (r < 0) {
		snprintf(err, errn, "the image has a file or directory with more than %d links",
			 EXT4_MAX_LINKS);
		return r;
	}
	for (struct node *x = t->all; x; x = x->all_next)
		x->links = 0;
	c = (struct census){ .files = calloc(c.nfiles ? c.nfiles : 1, sizeof(*c.files)) };
	if (!c.files)
		return -ENOMEM;
	census_take(&c, t->root, true);
	qsort(c.files, c.nfiles, sizeof(*c.files), file_cmp);
	time_t now = c.newest > 1 ? (time_t)c.newest : 1;
	struct writer w = { .err = err, .errn = errn };
	if ((r = format(tmp, &c, now, seed, err, errn)) < 0)
		goto out;
	errcode_t code =
	    ext2fs_open(tmp, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &w.fs);
	if (code) {
		w.fs = NULL;
		r = fs_fail(&w, code, "opening", tmp);
		goto out;
	}
	w.fs->now = now;
	if ((code = ext2fs_read_bitmaps(w.fs))) {
		r = fs_fail(&w, code, "reading the bitmaps of", tmp);
		goto out;
	}
	if ((r = drop_lost_found(&w, t)) < 0 || (r = write_dir(&w, t->root, EXT2_ROOT_INO)) < 0)
		goto out;
	r = copy_data(&w, layers, n, whiteouts, c.files, c.nfiles);
out:
	if (w.fs) {
		code = ext2fs_close_free(&w.fs);
		if (code && r == 0)
			r = fs_fail(&w, code, "closing", tmp);
	}
	free(c.files);
	return r;
}

int oci_ext4_from_layers(const struct oci_ext4_layer *layers, size_t n, bool whiteouts,
			 const char *seed, const char *dst, char *err, size_t errn)
{
	struct tree t = { 0 };
	struct oci_entry *e = malloc(sizeof(*e));
	char tmp[4200] = "";
	int r = 0;
	if (errn)
		err[0] = 0;
	if (dst && snprintf(tmp, sizeof(tmp), "%s.tmp.%d", dst, getpid()) >= (int)sizeof(tmp)) {
		snprintf(err, errn, "building the root disk: path too long: %s", dst);
		free(e);
		return -ENAMETOOLONG;
	}
	if (!e || grow_buckets(&t) < 0 || !(t.root = node_new(&t, S_IFDIR | 0755))) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		struct oci_layer l;
		t.layer = (uint32_t)i;
		if ((r = oci_layer_open(&l, layers[i].path, layers[i].what, whiteouts,
					&t.file_bytes, err, errn)) < 0)
			break;
		while ((r = oci_layer_next(&l, e, err, errn)) > 0) {
			err[0] = 0;
			if ((r = tree_apply(&t, &l, e, err, errn)) < 0) {
				if (!err[0])
					snprintf(err, errn, "%s: %.200s: %s", l.what, e->path,
						 strerror(-r));
				break;
			}
		}
		oci_layer_close(&l);
		if (r == 0)
			layer_finish(&t);
	}
	if (r == 0 && !dst) {
		struct census c = { 0 };
		r = census_take(&c, t.root, false);
		goto out;
	}
	if (r == 0)
		r = write_image(&t, layers, n, whiteouts, seed, tmp, err, errn);
	if (r == 0 && rename(tmp, dst) < 0) {
		r = -errno;
		snprintf(err, errn, "rename %s: %s", tmp, strerror(errno));
	}
out:
	if (r < 0 && tmp[0])
		unlink(tmp);
	if (r == -ENOMEM && !err[0])
		snprintf(err, errn, "building the root disk: out of memory");
	tree_free(&t);
	free(e);
	return r;
}
