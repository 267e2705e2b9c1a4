/* SPDX-License-Identifier: MIT */
/* Layer application; see unpack.h. */
#define _GNU_SOURCE
#include "unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/util.h"

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

int oci_tar_path_clean(const char *in, char *out, size_t n)
{
	size_t len = 0, depth = 0;
	if (n == 0 || strnlen(in, OCI_MAX_PATH + 1) > OCI_MAX_PATH || in[0] == '/')
		return -EINVAL;
	for (const char *p = in; *p;) {
		while (*p == '/')
			p++;
		const char *e = strchrnul(p, '/');
		size_t cl = (size_t)(e - p);
		if (cl == 0)
			break;
		if (cl == 2 && p[0] == '.' && p[1] == '.')
			return -EINVAL;
		if (!(cl == 1 && p[0] == '.')) {
			if (cl > 255 || ++depth > OCI_MAX_DEPTH || len + cl + 2 > n)
				return -EINVAL;
			if (len)
				out[len++] = '/';
			memcpy(out + len, p, cl);
			len += cl;
		}
		p = e;
	}
	out[len] = 0;
	return len ? 0 : 1;
}

/*
 * Open the parent directory of the clean path p under rootfd, one component at a time, never
 * following a symlink; missing parents are created 0755 when create is set. *base points at the
 * last component. Returns an fd, -ELOOP for a symlinked parent, -ENOTDIR for a file parent.
 */
static int walk_parent(int rootfd, const char *p, bool create, const char **base)
{
	int fd = dup(rootfd);
	if (fd < 0)
		return -errno;
	char comp[256];
	for (;;) {
		const char *e = strchr(p, '/');
		if (!e)
			break;
		size_t cl = (size_t)(e - p);
		memcpy(comp, p, cl);
		comp[cl] = 0;
		int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
				int r = -errno;
				close(fd);
				return r;
			}
			nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (nfd < 0) {
			int r = errno == ELOOP ? -ELOOP : -errno;
			struct stat st;
			if (r == -ENOTDIR && fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(st.st_mode))
				r = -ELOOP;
			close(fd);
			return r;
		}
		close(fd);
		fd = nfd;
		p = e + 1;
	}
	*base = p;
	return fd;
}

struct rec {
	char *path;
	bool dir;
	struct timespec mtime;
};

struct layer_state {
	int rootfd;
	struct rec *recs;
	size_t nrecs, cap;
	char **opaque;
	size_t nopaque, opaque_cap;
	bool root;
	struct oci_unpack_stats *st;
};

static int rec_add(struct layer_state *ls, const char *path, bool dir, struct timespec mt)
{
	if (ls->nrecs == ls->cap) {
		size_t nc = ls->cap ? ls->cap * 2 : 1024;
		struct rec *nr = realloc(ls->recs, nc * sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		ls->recs = nr;
		ls->cap = nc;
	}
	char *d = strdup(path);
	if (!d)
		return -ENOMEM;
	ls->recs[ls->nrecs++] = (struct rec){ d, dir, mt };
	return 0;
}

static int rec_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rec *)a)->path, ((const struct rec *)b)->path);
}

static bool created_here(struct layer_state *ls, const char *path)
{
	struct rec key = { .path = (char *)path };
	return bsearch(&key, ls->recs, ls->nrecs, sizeof(*ls->recs), rec_cmp) != NULL;
}

/* Opaque directory: remove what lower layers put under prefix, keeping this layer's entries. */
static int opaque_clean(struct layer_state *ls, int dirfd, const char *prefix, int depth)
{
	if (depth > OCI_MAX_DEPTH)
		return -ELOOP;
	int dfd = dup(dirfd);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -ENOMEM;
	}
	int r = 0;
	struct dirent *de;
	char full[OCI_MAX_PATH + 260];
	while (r == 0 && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(full, sizeof(full), "%s%s%s", prefix, *prefix ? "/" : "", de->d_name);
		if (!created_here(ls, full)) {
			r = rm_tree_at(dirfd, de->d_name, OCI_MAX_DEPTH);
			continue;
		}
		int sub =
		    openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0) {
			r = opaque_clean(ls, sub, full, depth + 1);
			close(sub);
		}
	}
	closedir(d);
	return r;
}

static int apply_owner_mode(struct layer_state *ls, int fd, struct archive_entry *e)
{
	if (ls->root && fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0)
		return -errno;
	/* After chown, which clears setuid/setgid. */
	if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
		return -errno;
	return 0;
}

static struct timespec entry_mtime(struct archive_entry *e)
{
	return (struct timespec){ .tv_sec = archive_entry_mtime(e),
				  .tv_nsec = archive_entry_mtime_is_set(e)
						 ? archive_entry_mtime_nsec(e)
						 : 0 };
}

/* Make room for a new non-directory at base: whatever is there goes (a directory with its tree). */
static int clear_slot(int pfd, const char *base)
{
	struct stat st;
	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	return S_ISDIR(st.st_mode) ? rm_tree_at(pfd, base, OCI_MAX_DEPTH)
				   : (unlinkat(pfd, base, 0) < 0 ? -errno : 0);
}

static int write_file(struct layer_state *ls, struct archive *a, struct archive_entry *e, int pfd,
		      const char *base, char *err, size_t errn)
{
	int r = clear_slot(pfd, base);
	if (r < 0)
		return r;
	_cleanup_close_ int fd =
	    openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	const void *buf;
	size_t size;
	la_int64_t off;
	int k;
	while ((k = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK) {
		ls->st->bytes += size;
		if (ls->st->bytes > OCI_MAX_IMAGE_BYTES) {
			snprintf(err, errn, "more than %llu bytes of files", OCI_MAX_IMAGE_BYTES);
			return -EFBIG;
		}
		if (off < 0)
			return -EINVAL;
		for (size_t done = 0; done < size;) {
			ssize_t w =
			    pwrite(fd, (const char *)buf + done, size - done, off + (off_t)done);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			done += (size_t)w;
		}
	}
	if (k != ARCHIVE_EOF) {
		snprintf(err, errn, "%s",
			 archive_error_string(a) ? archive_error_string(a) : "read error");
		return -EIO;
	}
	if (archive_entry_size_is_set(e) && ftruncate(fd, archive_entry_size(e)) < 0)
		return -errno;
	if ((r = apply_owner_mode(ls, fd, e)) < 0)
		return r;
	struct timespec ts[2] = { entry_mtime(e), entry_mtime(e) };
	return futimens(fd, ts) < 0 ? -errno : 0;
}

static int make_dir(struct layer_state *ls, struct archive_entry *e, int pfd, const char *base)
{
	struct stat st;
	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
	    unlinkat(pfd, base, 0) < 0)
		return -errno;
	if (mkdirat(pfd, base, 0700) < 0 && errno != EEXIST)
		return -errno;
	_cleanup_close_ int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	(void)ls;
	return apply_owner_mode(ls, fd, e);
}

static int set_link_meta(struct layer_state *ls, struct archive_entry *e, int pfd, const char *base)
{
	if (ls->root && fchownat(pfd, base, (uid_t)archive_entry_uid(e),
				 (gid_t)archive_entry_gid(e), AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	struct timespec ts[2] = { entry_mtime(e), entry_mtime(e) };
	return utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int apply_entry(struct layer_state *ls, struct archive *a, struct archive_entry *e,
		       const char *path, char *err, size_t errn)
{
	const char *base;
	int r;
	_cleanup_close_ int pfd = walk_parent(ls->rootfd, path, true, &base);
	if (pfd < 0)
		return pfd;

	if (!strncmp(base, WH_PREFIX, strlen(WH_PREFIX))) {
		if (!strcmp(base, WH_OPAQUE)) {
			if (ls->nopaque == ls->opaque_cap) {
				size_t nc = ls->opaque_cap ? ls->opaque_cap * 2 : 16;
				char **no = realloc(ls->opaque, nc * sizeof(*no));
				if (!no)
					return -ENOMEM;
				ls->opaque = no;
				ls->opaque_cap = nc;
			}
			size_t plen = (size_t)(base - path);
			char *d = strndup(path, plen ? plen - 1 : 0);
			if (!d)
				return -ENOMEM;
			ls->opaque[ls->nopaque++] = d;
			return 0;
		}
		const char *victim = base + strlen(WH_PREFIX);
		if (!*victim || !strcmp(victim, ".") || !strcmp(victim, ".."))
			return -EINVAL;
		return rm_tree_at(pfd, victim, OCI_MAX_DEPTH);
	}

	const char *hl = archive_entry_hardlink(e);
	if (hl) {
		char target[OCI_MAX_PATH + 1];
		const char *tbase;
		if (oci_tar_path_clean(hl, target, sizeof(target)) != 0) {
			snprintf(err, errn, "hard link %.200s points outside the image (%.200s)",
				 path, hl);
			return -EXDEV;
		}
		_cleanup_close_ int tfd = walk_parent(ls->rootfd, target, false, &tbase);
		if (tfd < 0)
			return tfd;
		struct stat st;
		if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode)) {
			snprintf(err, errn,
				 "hard link %.200s: target %.200s is missing or a directory", path,
				 target);
			return -EINVAL;
		}
		if (!strcmp(target, path))
			return 0;
		if ((r = clear_slot(pfd, base)) < 0)
			return r;
		if (linkat(tfd, tbase, pfd, base, 0) < 0)
			return -errno;
		return rec_add(ls, path, false, entry_mtime(e));
	}

	switch (archive_entry_filetype(e)) {
	case AE_IFREG:
		r = write_file(ls, a, e, pfd, base, err, errn);
		break;
	case AE_IFDIR:
		r = make_dir(ls, e, pfd, base);
		if (r == 0)
			return rec_add(ls, path, true, entry_mtime(e));
		break;
	case AE_IFLNK: {
		const char *t = archive_entry_symlink(e);
		if (!t || !*t || strlen(t) > OCI_MAX_PATH) {
			snprintf(err, errn, "symlink %.200s has an empty or over-long target",
				 path);
			return -EINVAL;
		}
		if ((r = clear_slot(pfd, base)) < 0)
			return r;
		/* The target is stored as is: it is only ever resolved inside the guest. */
		if (symlinkat(t, pfd, base) < 0)
			return -errno;
		r = set_link_meta(ls, e, pfd, base);
		break;
	}
	case AE_IFCHR:
	case AE_IFBLK:
	case AE_IFIFO:
		if (!ls->root && archive_entry_filetype(e) != AE_IFIFO)
			return 0; /* device nodes need root; the guest's /dev is a devtmpfs anyway
				   */
		if ((r = clear_slot(pfd, base)) < 0)
			return r;
		if (mknodat(pfd, base, archive_entry_filetype(e) | (archive_entry_perm(e) & 0777),
			    archive_entry_rdev(e)) < 0)
			return -errno;
		r = set_link_meta(ls, e, pfd, base);
		break;
	default:
		return 0; /* sockets and the like carry no content */
	}
	if (r < 0)
		return r;
	return rec_add(ls, path, false, entry_mtime(e));
}

/* Directory mtimes last, deepest first, since writing inside a directory changes its mtime. */
static void fix_dir_times(struct layer_state *ls)
{
	for (size_t i = ls->nrecs; i-- > 0;) {
		if (!ls->recs[i].dir)
			continue;
		const char *base;
		int pfd = walk_parent(ls->rootfd, ls->recs[i].path, false, &base);
		if (pfd < 0)
			continue;
		struct timespec ts[2] = { ls->recs[i].mtime, ls->recs[i].mtime };
		utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
		close(pfd);
	}
}

static int finish_layer(struct layer_state *ls)
{
	qsort(ls->recs, ls->nrecs, sizeof(*ls->recs), rec_cmp);
	for (size_t i = 0; i < ls->nopaque; i++) {
		int fd;
		if (!*ls->opaque[i]) {
			fd = dup(ls->rootfd);
		} else {
			const char *base;
			char p[OCI_MAX_PATH + 4];
			snprintf(p, sizeof(p), "%s/x", ls->opaque[i]);
			int pfd = walk_parent(ls->rootfd, p, false, &base);
			if (pfd < 0)
				return pfd;
			fd = pfd;
		}
		if (fd < 0)
			return -errno;
		int r = opaque_clean(ls, fd, ls->opaque[i], 0);
		close(fd);
		if (r < 0)
			return r;
	}
	fix_dir_times(ls);
	return 0;
}

int oci_unpack_layer(int rootfd, const char *path, const char *what, struct oci_unpack_stats *st,
		     char *err, size_t errn)
{
	struct layer_state ls = { .rootfd = rootfd, .root = geteuid() == 0, .st = st };
	struct archive *a = archive_read_new();
	char clean[OCI_MAX_PATH + 1], why[512] = "";
	int r = 0, k;
	size_t entries = 0;
	if (!a)
		return -ENOMEM;
	/* Layer paths are UTF-8 (pax headers); under the C locale libarchive could not convert
	 * them. */
	locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0), old = (locale_t)0;
	if (utf8)
		old = uselocale(utf8);
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		snprintf(err, errn, "%s is truncated or corrupt: %s", what,
			 archive_error_string(a));
		r = -EIO;
		goto out;
	}
	struct archive_entry *e;
	while ((k = archive_read_next_header(a, &e)) == ARCHIVE_OK || k == ARCHIVE_WARN) {
		const char *name = archive_entry_pathname(e);
		if (++entries > OCI_MAX_LAYER_ENTRIES) {
			snprintf(err, errn, "%s has more than %d entries", what,
				 OCI_MAX_LAYER_ENTRIES);
			r = -E2BIG;
			goto out;
		}
		int c = name ? oci_tar_path_clean(name, clean, sizeof(clean)) : -EINVAL;
		if (c < 0) {
			snprintf(err, errn,
				 "%s: refused entry '%.200s': absolute, '..' or over-long path",
				 what, name ? name : "(no name)");
			r = -EPERM;
			goto out;
		}
		if (c == 1)
			continue; /* the root directory itself */
		why[0] = 0;
		r = apply_entry(&ls, a, e, clean, why, sizeof(why));
		if (r < 0) {
			if (why[0])
				snprintf(err, errn, "%s: %s: %s", what, clean, why);
			else if (r == -ELOOP)
				snprintf(err, errn,
					 "%s: refused entry '%.200s': it writes through a "
					 "symlinked parent directory",
					 what, clean);
			else
				snprintf(err, errn, "%s: %s: %s", what, clean, strerror(-r));
			goto out;
		}
		st->entries++;
	}
	if (k != ARCHIVE_EOF) {
		snprintf(err, errn, "%s is truncated or corrupt: %s", what,
			 archive_error_string(a));
		r = -EIO;
		goto out;
	}
	if ((r = finish_layer(&ls)) < 0)
		snprintf(err, errn, "%s: applying opaque directories: %s", what, strerror(-r));
out:
	archive_read_free(a);
	if (utf8) {
		uselocale(old);
		freelocale(utf8);
	}
	for (size_t i = 0; i < ls.nrecs; i++)
		free(ls.recs[i].path);
	free(ls.recs);
	for (size_t i = 0; i < ls.nopaque; i++)
		free(ls.opaque[i]);
	free(ls.opaque);
	return r;
}
