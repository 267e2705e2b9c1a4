/* SPDX-License-Identifier: MIT */
/* The tree stream (tree.h): the checked parser, the packing walk and the contained unpacker. */
#define _GNU_SOURCE
#include "tree.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "msg.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

enum { PS_LEN, PS_HEADER, PS_DATA, PS_ENDED };

/* ---- the parser ---------------------------------------------------------------------------- */

void tree_parse_init(struct tree_parser *p, bool allow_delete)
{
	memset(p, 0, sizeof(*p));
	p->allow_delete = allow_delete;
}

/* A relative path of ordinary names: no empty, "." or ".." component, not too deep. */
static bool path_ok(const char *s)
{
	unsigned depth = 0;
	if (!*s)
		return false;
	for (const char *c = s;;) {
		const char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);
		if (n == 0 || n > 255 || (n == 1 && c[0] == '.') ||
		    (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (++depth > TREE_MAX_DEPTH)
			return false;
		if (!slash)
			return true;
		c = slash + 1;
	}
}

static int copy_str(struct rd *v, char *out, size_t cap)
{
	size_t n = rd_left(v);
	const uint8_t *b = rd_bytes(v, n);
	if (n >= cap || (n && (!b || memchr(b, 0, n))))
		return -EPROTO;
	if (n)
		memcpy(out, b, n);
	out[n] = 0;
	return 0;
}

/* Decode and check one header; calls ops->entry. */
static int parse_header(struct tree_parser *p, const struct tree_parse_ops *ops, void *o)
{
	struct rd r = rd_make(p->hdr, p->hdr_len), v;
	struct tree_entry e = { .path = p->path, .link = p->link };
	uint16_t tag;
	uint8_t u8;
	int k;
	bool have_path = false;
	p->path[0] = p->link[0] = 0;
	while ((k = msg_next(&r, &tag, &v)) > 0) {
		switch (tag) {
		case T_KIND:
			k = msg_get_u8(&v, &e.kind);
			break;
		case T_PATH:
			k = copy_str(&v, p->path, sizeof(p->path));
			have_path = true;
			break;
		case T_LINK:
			k = copy_str(&v, p->link, sizeof(p->link));
			break;
		case T_MODE:
			k = msg_get_u32(&v, &e.mode);
			break;
		case T_TIME_NS:
			k = msg_get_u64(&v, &e.mtime_ns);
			break;
		case T_SIZE:
			k = msg_get_u64(&v, &e.size);
			break;
		case T_OPAQUE:
			k = msg_get_u8(&v, &u8);
			e.opaque = u8 != 0;
			break;
		}
		if (k < 0)
			return -EPROTO;
	}
	if (k < 0 || e.kind < TREE_FILE || e.kind > TREE_END)
		return -EPROTO;
	e.mode &= 07777;
	if (e.kind == TREE_END) {
		if (!p->root_kind)
			return -EPROTO;
		p->state = PS_ENDED;
		return 0;
	}
	if (!have_path)
		return -EPROTO;
	if (!p->root_kind) {
		/* The root: the path is "", and it cannot be a deletion. */
		if (p->path[0] || e.kind == TREE_DELETE)
			return -EPROTO;
		p->root_kind = e.kind;
	} else if (p->root_kind != TREE_DIR || !path_ok(p->path)) {
		return -EPROTO;
	}
	if (e.kind == TREE_DELETE && !p->allow_delete)
		return -EPROTO;
	if (e.kind == TREE_SYMLINK && !p->link[0])
		return -EPROTO;
	if (e.kind != TREE_FILE)
		e.size = 0;
	p->records++;
	int r2 = ops->entry(o, &e);
	if (r2 < 0)
		return r2;
	p->data_left = e.size;
	p->state = PS_LEN;
	if (e.kind == TREE_FILE) {
		if (e.size == 0)
			return ops->file_end(o);
		p->state = PS_DATA;
	}
	return 0;
}

int tree_parse_feed(struct tree_parser *p, const uint8_t *b, size_t n,
		    const struct tree_parse_ops *ops, void *o)
{
	while (n > 0) {
		size_t k;
		int r;
		switch (p->state) {
		case PS_LEN:
			p->len_bytes[p->len_got++] = *b++;
			n--;
			if (p->len_got < 4)
				break;
			p->len_got = 0;
			p->hdr_len = le32_get(p->len_bytes);
			p->hdr_got = 0;
			if (p->hdr_len == 0 || p->hdr_len > TREE_MAX_HEADER)
				return -EPROTO;
			p->state = PS_HEADER;
			break;
		case PS_HEADER:
			k = p->hdr_len - p->hdr_got < n ? p->hdr_len - p->hdr_got : n;
			memcpy(p->hdr + p->hdr_got, b, k);
			p->hdr_got += (uint32_t)k;
			b += k;
			n -= k;
			if (p->hdr_got == p->hdr_len && (r = parse_header(p, ops, o)) < 0)
				return r;
			break;
		case PS_DATA:
			k = p->data_left < n ? (size_t)p->data_left : n;
			if ((r = ops->data(o, b, k)) < 0)
				return r;
			p->data_left -= k;
			b += k;
			n -= k;
			if (p->data_left == 0) {
				p->state = PS_LEN;
				if ((r = ops->file_end(o)) < 0)
					return r;
			}
			break;
		default:
			return -EPROTO; /* bytes after the end */
		}
	}
	return 0;
}

int tree_parse_done(const struct tree_parser *p)
{
	return p->state == PS_ENDED ? 0 : -EPROTO;
}

/* ---- packing -------------------------------------------------------------------------------- */

static uint64_t ts_ns(const struct timespec *t)
{
	return (uint64_t)t->tv_sec * 1000000000ull + (uint64_t)t->tv_nsec;
}

static int put_header(struct tree_pack *p, uint8_t kind, const struct stat *st, const char *link,
		      bool opaque)
{
	struct buf h = { 0 };
	msg_put_u8(&h, T_KIND, kind);
	if (kind != TREE_END) {
		msg_put_str(&h, T_PATH, p->path);
		msg_put_u32(&h, T_MODE, st->st_mode & 07777);
		msg_put_u64(&h, T_TIME_NS, ts_ns(&st->st_mtim));
	}
	if (kind == TREE_FILE)
		msg_put_u64(&h, T_SIZE, p->data_left);
	if (link)
		msg_put_str(&h, T_LINK, link);
	if (opaque)
		msg_put_u8(&h, T_OPAQUE, 1);
	int r = h.bad || buf_used(&h) > TREE_MAX_HEADER ? -ENOMEM : 0;
	if (r == 0)
		buf_put_u32(&p->out, (uint32_t)buf_used(&h));
	if (r == 0)
		buf_append(&p->out, buf_head(&h), buf_used(&h));
	buf_fini(&h);
	return r < 0 ? r : p->out.bad ? -ENOMEM : 0;
}

static int pack_fail(struct tree_pack *p, int err, const char *what)
{
	snprintf(p->err, sizeof(p->err), "%s %s: %s", what, p->path[0] ? p->path : ".",
		 strerror(err));
	return -err;
}

/*
 * Emit the record for name (in dirfd) whose relative path is already in p->path: opens a
 * directory (pushed) or a file (its content follows). Other kinds are skipped (0).
 */
static int pack_entry(struct tree_pack *p, int dirfd, const char *name)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : pack_fail(p, errno, "stat");
	if (S_ISREG(st.st_mode)) {
		if (!(p->flags & TREE_NO_DATA)) {
			p->fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (p->fd < 0 || fstat(p->fd, &st) < 0)
				return pack_fail(p, errno, "open");
			p->data_left = (uint64_t)st.st_size;
		}
		return put_header(p, TREE_FILE, &st, NULL, false);
	}
	if (S_ISLNK(st.st_mode)) {
		char link[TREE_MAX_PATH + 1];
		ssize_t n = readlinkat(dirfd, name, link, sizeof(link) - 1);
		if (n <= 0)
			return n < 0 ? pack_fail(p, errno, "readlink") : 0;
		link[n] = 0;
		return put_header(p, TREE_SYMLINK, &st, link, false);
	}
	if (S_ISCHR(st.st_mode) && st.st_rdev == 0 && (p->flags & TREE_OVERLAY))
		return put_header(p, TREE_DELETE, &st, NULL, false); /* a whiteout */
	if (!S_ISDIR(st.st_mode))
		return 0; /* devices, fifos, sockets: not copied */
	if (p->depth >= TREE_MAX_DEPTH)
		return pack_fail(p, ELOOP, "descend into");
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return pack_fail(p, e, "open directory");
	}
	char val[4];
	bool opaque = (p->flags & TREE_OVERLAY) &&
		      fgetxattr(fd, "trusted.overlay.opaque", val, sizeof(val)) == 1 &&
		      val[0] == 'y';
	p->dirs[p->depth++] = (struct tree_pack_dir){ .d = d, .path_len = strlen(p->path) };
	return put_header(p, TREE_DIR, &st, NULL, opaque);
}

/* Split path into its directory and last name, as written ("a/b/" -> "a", "b"; "/" -> "/", "."). */
static int split_path(const char *path, char *dir, size_t dn, char *name, size_t nn)
{
	size_t len = strlen(path);
	while (len > 1 && path[len - 1] == '/')
		len--;
	if (len == 0 || len >= dn)
		return -ENAMETOOLONG;
	if (len == 1 && path[0] == '/') {
		snprintf(dir, dn, "/");
		snprintf(name, nn, ".");
		return 0;
	}
	size_t b = len;
	while (b > 0 && path[b - 1] != '/')
		b--;
	if (len - b >= nn)
		return -ENAMETOOLONG;
	memcpy(name, path + b, len - b);
	name[len - b] = 0;
	if (b == 0) {
		snprintf(dir, dn, ".");
	} else {
		size_t d = b;
		while (d > 1 && path[d - 1] == '/')
			d--;
		memcpy(dir, path, d);
		dir[d] = 0;
	}
	return 0;
}

int tree_src_base(const char *src, char *base, size_t n, bool *contents)
{
	char dir[TREE_MAX_PATH + 1];
	int r = split_path(src, dir, sizeof(dir), base, n);
	if (r < 0)
		return r;
	*contents = !strcmp(base, ".");
	if (*contents || !strcmp(base, "..")) {
		/* "a/." copies a's entries; the base is a's own name (for a later "DEST/a"). */
		char d2[TREE_MAX_PATH + 1];
		if (!strcmp(dir, "/") || !strcmp(dir, ".") ||
		    split_path(dir, d2, sizeof(d2), base, n) < 0 || !strcmp(base, ".."))
			snprintf(base, n, "root");
	}
	return 0;
}

int tree_pack_open(struct tree_pack *p, const char *path, unsigned flags)
{
	memset(p, 0, sizeof(*p));
	p->fd = -1;
	p->flags = flags;
	char dir[TREE_MAX_PATH + 1], name[256];
	if (split_path(path, dir, sizeof(dir), name, sizeof(name)) < 0) {
		snprintf(p->err, sizeof(p->err), "%s: %s", path, strerror(ENAMETOOLONG));
		return -ENAMETOOLONG;
	}
	/* Through the parent, so that a final symlink is sent as a symlink. */
	int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	if (dirfd < 0 || fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		int e = errno;
		snprintf(p->err, sizeof(p->err), "%s: %s", path, strerror(e));
		if (dirfd >= 0)
			close(dirfd);
		return -e;
	}
	int r = pack_entry(p, dirfd, name);
	close(dirfd);
	if (r == 0 && buf_used(&p->out) == 0) {
		snprintf(p->err, sizeof(p->err), "%s: not a file, directory or symlink", path);
		r = -EINVAL;
	}
	return r;
}

/* Find the next record: the next entry of the innermost open directory, or the end. */
static int pack_advance(struct tree_pack *p)
{
	while (buf_used(&p->out) == 0 && !p->ended) {
		if (p->depth == 0) {
			struct stat none = { 0 };
			p->ended = true;
			return put_header(p, TREE_END, &none, NULL, false);
		}
		struct tree_pack_dir *top = &p->dirs[p->depth - 1];
		errno = 0;
		struct dirent *e = readdir(top->d);
		if (!e) {
			if (errno)
				return pack_fail(p, errno, "read directory");
			closedir(top->d);
			p->depth--;
			continue;
		}
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		size_t n = strlen(e->d_name);
		if (top->path_len + 1 + n > TREE_MAX_PATH)
			return pack_fail(p, ENAMETOOLONG, "name under");
		size_t at = top->path_len;
		if (at)
			p->path[at++] = '/';
		memcpy(p->path + at, e->d_name, n + 1);
		int r = pack_entry(p, dirfd(top->d), e->d_name);
		if (r < 0)
			return r;
	}
	return 0;
}

ssize_t tree_pack_read(struct tree_pack *p, uint8_t *out, size_t cap)
{
	size_t got = 0;
	while (got < cap && !p->done) {
		if (buf_used(&p->out)) {
			size_t k = buf_used(&p->out) < cap - got ? buf_used(&p->out) : cap - got;
			memcpy(out + got, buf_head(&p->out), k);
			buf_consume(&p->out, k);
			got += k;
			continue;
		}
		if (p->data_left) {
			size_t want = p->data_left < cap - got ? (size_t)p->data_left : cap - got;
			ssize_t n = read(p->fd, out + got, want);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return pack_fail(p, errno, "read");
			if (n == 0) {
				/* The file shrank while we sent it: keep the stream whole. */
				memset(out + got, 0, want);
				n = (ssize_t)want;
			}
			got += (size_t)n;
			p->data_left -= (uint64_t)n;
			continue;
		}
		if (p->fd >= 0) {
			close(p->fd);
			p->fd = -1;
		}
		if (p->ended) {
			p->done = true;
			break;
		}
		int r = pack_advance(p);
		if (r < 0)
			return r;
	}
	return (ssize_t)got;
}

void tree_pack_close(struct tree_pack *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	while (p->depth > 0)
		closedir(p->dirs[--p->depth].d);
	buf_fini(&p->out);
}

/* ---- unpacking ------------------------------------------------------------------------------ */

static int unpack_fail(struct tree_unpack *u, int err, const char *what, const char *path)
{
	if (!u->err[0])
		snprintf(u->err, sizeof(u->err), "%s %s: %s", what, path && *path ? path : u->dest,
			 strerror(err));
	return -err;
}

/* A directory beneath root_fd by its relative path; never through a symlink. */
static int open_beneath(int root_fd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS,
	};
	long fd;
	int tries = 0;
	do
		fd = syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
	while (fd < 0 && (errno == EINTR || errno == EAGAIN) && ++tries < 8);
	return fd < 0 ? -errno : (int)fd;
}

/* Remove name in dirfd and everything under it (bounded depth); ENOENT is success. */
static int remove_tree(int dirfd, const char *name, unsigned depth)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	if (depth >= TREE_MAX_DEPTH)
		return -ELOOP;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		int e = -errno;
		if (fd >= 0)
			close(fd);
		return e;
	}
	struct dirent *e;
	int r = 0;
	while (r == 0 && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			r = remove_tree(fd, e->d_name, depth + 1);
	closedir(d);
	if (r == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		r = -errno;
	return r;
}

/* Empty a directory (an opaque one replaces what was there). */
static int empty_dir(int fd)
{
	int dup_fd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
	if (!d) {
		int e = -errno;
		if (dup_fd >= 0)
			close(dup_fd);
		return e;
	}
	struct dirent *e;
	int r = 0;
	while (r == 0 && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			r = remove_tree(fd, e->d_name, 1);
	closedir(d);
	return r;
}

static void ns_to_ts(uint64_t ns, struct timespec ts[2])
{
	ts[0].tv_sec = 0;
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_sec = (time_t)(ns / 1000000000ull);
	ts[1].tv_nsec = (long)(ns % 1000000000ull);
}

/* Set a finished directory's mode and time (it was kept writable while filled). */
static int dir_finish(struct tree_unpack *u, const struct tree_unpack_dir *d)
{
	int fd;
	if (d->path_len == 0) {
		if (!u->root_meta)
			return 0;
		fd = openat(u->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		fd = fd < 0 ? -errno : fd;
	} else {
		char path[TREE_MAX_PATH + 1];
		memcpy(path, u->cur, d->path_len);
		path[d->path_len] = 0;
		fd = open_beneath(u->root_fd, path, O_RDONLY | O_DIRECTORY);
	}
	if (fd < 0)
		return unpack_fail(u, -fd, "open directory", d->path_len ? u->cur : NULL);
	struct timespec ts[2];
	ns_to_ts(d->mtime_ns, ts);
	int r = fchmod(fd, d->mode) < 0 || futimens(fd, ts) < 0 ? -errno : 0;
	close(fd);
	return r < 0 ? unpack_fail(u, -r, "set mode and time of", u->cur) : 0;
}

/* Close the directories that path is not inside of. */
static int dirs_pop_until(struct tree_unpack *u, const char *path)
{
	while (u->depth > 0) {
		struct tree_unpack_dir *d = &u->dirs[u->depth - 1];
		if (path && (d->path_len == 0 ||
			     (!strncmp(path, u->cur, d->path_len) && path[d->path_len] == '/')))
			break;
		u->cur[d->path_len] = 0;
		int r = dir_finish(u, d);
		u->depth--;
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Where the root goes, decided by its kind as `docker cp` does: parent_fd and top.
 */
static int unpack_place_root(struct tree_unpack *u, uint8_t kind)
{
	struct stat st;
	bool exists = stat(u->dest, &st) == 0;
	size_t dl = strlen(u->dest);
	bool slash = dl > 0 && u->dest[dl - 1] == '/';
	char dir[TREE_MAX_PATH + 1], name[256];
	const char *parent = u->dest;
	u->root_meta = true;
	if (exists && S_ISDIR(st.st_mode)) {
		if (kind == TREE_DIR && (u->flags & (TREE_CONTENTS | TREE_APPLY))) {
			/* DEST keeps its own mode and time: only what is inside changes. */
			u->top[0] = 0;
			u->root_meta = false;
		} else {
			snprintf(u->top, sizeof(u->top), "%s", u->src_base);
		}
	} else if (u->flags & TREE_APPLY) {
		return unpack_fail(u, exists ? ENOTDIR : errno, "destination", NULL);
	} else if (exists && kind == TREE_DIR) {
		snprintf(u->err, sizeof(u->err),
			 "cannot copy a directory to %s: it is not a directory", u->dest);
		return -ENOTDIR;
	} else if (slash || (!exists && errno != ENOENT)) {
		return unpack_fail(u,
				   exists	     ? ENOTDIR
				   : errno == ENOENT ? ENOENT
						     : errno,
				   "destination", NULL);
	} else {
		if (split_path(u->dest, dir, sizeof(dir), name, sizeof(name)) < 0 ||
		    !strcmp(name, ".") || !strcmp(name, ".."))
			return unpack_fail(u, EINVAL, "destination", NULL);
		parent = dir;
		snprintf(u->top, sizeof(u->top), "%s", name);
	}
	u->parent_fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (u->parent_fd < 0)
		return unpack_fail(u, errno, "destination directory", parent);
	return 0;
}

/* Make room for name in dirfd: a directory stays (or is an error), anything else goes. */
static int clear_name(struct tree_unpack *u, int dirfd, const char *name, uint8_t kind,
		      const char *path)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : unpack_fail(u, errno, "stat", path);
	if (S_ISDIR(st.st_mode)) {
		if (kind == TREE_DIR)
			return 1; /* it stays */
		if (!(u->flags & TREE_APPLY)) {
			snprintf(u->err, sizeof(u->err),
				 "cannot overwrite directory %s with a non-directory",
				 *path ? path : u->dest);
			return -EISDIR;
		}
		int r = remove_tree(dirfd, name, 0);
		return r < 0 ? unpack_fail(u, -r, "remove", path) : 0;
	}
	/*
	 * A file over a file with no other name: rewritten in place, so the inode stays (a running
	 * overlay whose lower this is keeps finding the origin of its copy-ups). Another link could
	 * be outside the destination: such a file is replaced, never written through.
	 */
	if (kind == TREE_FILE && S_ISREG(st.st_mode) && st.st_nlink == 1)
		return 2;
	if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
		return unpack_fail(u, errno, "replace", path);
	return 0;
}

static int unpack_entry(void *o, const struct tree_entry *e)
{
	struct tree_unpack *u = o;
	u->skipping =
	    u->skip && e->path[0] && e->kind != TREE_DIR && u->skip(u->skip_opaque, e->path);
	if (u->skipping)
		return 0;
	int r, dirfd;
	const char *name;
	char parent[TREE_MAX_PATH + 1];
	bool root = e->path[0] == 0;
	if (root) {
		if ((r = unpack_place_root(u, e->kind)) < 0)
			return r;
		if (!u->top[0] && e->kind != TREE_DIR)
			return unpack_fail(u, EISDIR, "destination", NULL);
		dirfd = u->parent_fd;
		name = u->top[0] ? u->top : ".";
	} else {
		if ((r = dirs_pop_until(u, e->path)) < 0)
			return r;
		const char *slash = strrchr(e->path, '/');
		name = slash ? slash + 1 : e->path;
		if (slash) {
			memcpy(parent, e->path, (size_t)(slash - e->path));
			parent[slash - e->path] = 0;
			dirfd = open_beneath(u->root_fd, parent, O_RDONLY | O_DIRECTORY);
			if (dirfd < 0)
				return unpack_fail(u, -dirfd, "open directory", parent);
		} else {
			dirfd = u->root_fd;
		}
	}
	struct timespec ts[2];
	ns_to_ts(e->mtime_ns, ts);
	r = 0;
	if (e->kind == TREE_DELETE) {
		r = remove_tree(dirfd, name, 0);
		if (r < 0)
			unpack_fail(u, -r, "remove", e->path);
	} else if (root && !u->top[0]) {
		/* The destination itself (cp SRC/. DEST, or applying to DEST). */
		u->root_fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (u->root_fd < 0)
			r = unpack_fail(u, errno, "open", NULL);
		else if (e->opaque && (u->flags & TREE_APPLY) && (r = empty_dir(u->root_fd)) < 0)
			unpack_fail(u, -r, "empty", NULL);
	} else if ((r = clear_name(u, dirfd, name, e->kind, e->path)) < 0) {
		/* said */
	} else if (e->kind == TREE_FILE) {
		struct stat st;
		u->fd = r == 2 ? openat(dirfd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
			       : -1;
		if (u->fd >= 0 && (fstat(u->fd, &st) < 0 || !S_ISREG(st.st_mode) ||
				   st.st_nlink != 1 || ftruncate(u->fd, 0) < 0)) {
			/* It changed since we looked: replace it after all. */
			close(u->fd);
			u->fd = -1;
			unlinkat(dirfd, name, 0);
		}
		if (u->fd < 0)
			u->fd = openat(dirfd, name,
				       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		r = 0;
		if (u->fd < 0)
			r = unpack_fail(u, errno, "create", e->path);
		u->file_mode = e->mode;
		u->file_mtime = e->mtime_ns;
	} else if (e->kind == TREE_SYMLINK) {
		if (symlinkat(e->link, dirfd, name) < 0)
			r = unpack_fail(u, errno, "create symlink", e->path);
		else
			utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
	} else {
		bool existed = r == 1;
		r = 0;
		if (!existed && mkdirat(dirfd, name, 0700) < 0)
			r = unpack_fail(u, errno, "create directory", e->path);
		int fd = r < 0
			     ? -1
			     : openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (r == 0 && fd < 0)
			r = unpack_fail(u, errno, "open directory", e->path);
		/* Writable while it is filled (the final mode may not be); set for real later. */
		if (r == 0 && fchmod(fd, e->mode | 0700) < 0)
			r = unpack_fail(u, errno, "chmod", e->path);
		if (r == 0 && existed && e->opaque && (u->flags & TREE_APPLY) &&
		    (r = empty_dir(fd)) < 0)
			unpack_fail(u, -r, "empty", e->path);
		if (root && r == 0) {
			u->root_fd = fd;
			fd = -1;
		}
		if (fd >= 0)
			close(fd);
	}
	if (dirfd != u->root_fd && dirfd != u->parent_fd)
		close(dirfd);
	if (r < 0 || e->kind != TREE_DIR)
		return r;
	/* Remember the directory until its entries are done. */
	size_t n = strlen(e->path);
	memcpy(u->cur, e->path, n + 1);
	u->dirs[u->depth++] =
	    (struct tree_unpack_dir){ .path_len = n, .mode = e->mode, .mtime_ns = e->mtime_ns };
	return 0;
}

static int unpack_data(void *o, const uint8_t *p, size_t n)
{
	struct tree_unpack *u = o;
	if (u->skipping)
		return 0;
	while (n > 0) {
		ssize_t k = write(u->fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return unpack_fail(u, errno, "write", u->parser.path);
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int unpack_file_end(void *o)
{
	struct tree_unpack *u = o;
	if (u->skipping)
		return 0;
	struct timespec ts[2];
	ns_to_ts(u->file_mtime, ts);
	int r = 0;
	if (fchmod(u->fd, u->file_mode) < 0 || futimens(u->fd, ts) < 0)
		r = unpack_fail(u, errno, "set mode and time of", u->parser.path);
	if (close(u->fd) < 0 && r == 0)
		r = unpack_fail(u, errno, "close", u->parser.path);
	u->fd = -1;
	return r;
}

static const struct tree_parse_ops unpack_ops = {
	.entry = unpack_entry,
	.data = unpack_data,
	.file_end = unpack_file_end,
};

int tree_unpack_init(struct tree_unpack *u, const char *dest, const char *src_base, unsigned flags)
{
	memset(u, 0, sizeof(*u));
	u->parent_fd = u->root_fd = u->fd = -1;
	u->flags = flags;
	tree_parse_init(&u->parser, (flags & TREE_APPLY) != 0);
	u->dest = strdup(dest);
	u->src_base = strdup(src_base && *src_base ? src_base : "root");
	if (!u->dest || !u->src_base || strchr(u->src_base, '/') || !strcmp(u->src_base, ".") ||
	    !strcmp(u->src_base, "..")) {
		snprintf(u->err, sizeof(u->err), "bad source name");
		return -EINVAL;
	}
	return 0;
}

int tree_unpack_feed(struct tree_unpack *u, const uint8_t *p, size_t n)
{
	int r = tree_parse_feed(&u->parser, p, n, &unpack_ops, u);
	if (r == -EPROTO && !u->err[0])
		snprintf(u->err, sizeof(u->err), "malformed tree stream (record %llu)",
			 (unsigned long long)u->parser.records + 1);
	return r;
}

int tree_unpack_finish(struct tree_unpack *u)
{
	if (tree_parse_done(&u->parser) < 0) {
		snprintf(u->err, sizeof(u->err), "the tree stream was cut short");
		return -EPROTO;
	}
	return dirs_pop_until(u, NULL);
}

void tree_unpack_fini(struct tree_unpack *u)
{
	if (u->fd >= 0)
		close(u->fd);
	if (u->root_fd >= 0)
		close(u->root_fd);
	if (u->parent_fd >= 0)
		close(u->parent_fd);
	free(u->dest);
	free(u->src_base);
	u->fd = u->root_fd = u->parent_fd = -1;
	u->dest = u->src_base = NULL;
}
