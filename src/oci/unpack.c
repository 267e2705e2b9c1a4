/* SPDX-License-Identifier: MIT */
/* Reading layers; see unpack.h. */
#define _GNU_SOURCE
#include "unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <locale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int oci_layer_open(struct oci_layer *l, const char *path, const char *what, bool whiteouts,
		   uint64_t *bytes, char *err, size_t errn)
{
	*l = (struct oci_layer){ .what = what, .whiteouts = whiteouts, .bytes = bytes };
	l->a = archive_read_new();
	if (!l->a)
		return -ENOMEM;
	/* Layer paths are UTF-8 (pax headers); under the C locale libarchive could not convert
	 * them. */
	locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	if (utf8) {
		l->utf8 = utf8;
		l->old_locale = uselocale(utf8);
	}
	archive_read_support_filter_gzip(l->a);
	archive_read_support_filter_zstd(l->a);
	archive_read_support_filter_xz(l->a);
	archive_read_support_format_tar(l->a);
	if (archive_read_open_filename(l->a, path, 1 << 16) != ARCHIVE_OK) {
		snprintf(err, errn, "%s is truncated or corrupt: %s", what,
			 archive_error_string(l->a));
		oci_layer_close(l);
		return -EIO;
	}
	return 0;
}

void oci_layer_close(struct oci_layer *l)
{
	if (l->a)
		archive_read_free(l->a);
	l->a = NULL;
	if (l->utf8) {
		uselocale((locale_t)l->old_locale);
		freelocale((locale_t)l->utf8);
		l->utf8 = NULL;
	}
}

static int count_xattrs(struct oci_layer *l, struct oci_entry *e, char *err, size_t errn)
{
	const char *name;
	const void *value;
	size_t len;
	e->nxattrs = (size_t)archive_entry_xattr_reset(l->cur);
	if (e->nxattrs > OCI_MAX_XATTRS) {
		snprintf(err, errn, "%s: %.200s has more than %d extended attributes", l->what,
			 e->path, OCI_MAX_XATTRS);
		return -E2BIG;
	}
	while (archive_entry_xattr_next(l->cur, &name, &value, &len) == ARCHIVE_OK) {
		if (!name || !*name || strlen(name) > 255 || len > OCI_MAX_XATTR_VALUE) {
			snprintf(err, errn,
				 "%s: %.200s has an invalid or over-long extended attribute",
				 l->what, e->path);
			return -EINVAL;
		}
	}
	return 0;
}

/* Fill e from the current header; 0, 1 for an entry to skip, or -errno. */
static int entry_fill(struct oci_layer *l, struct oci_entry *e, char *err, size_t errn)
{
	struct archive_entry *ae = l->cur;
	const char *name = archive_entry_pathname(ae);
	int c = name ? oci_tar_path_clean(name, e->path, sizeof(e->path)) : -EINVAL;
	if (c < 0) {
		snprintf(err, errn, "%s: refused entry '%.200s': absolute, '..' or over-long path",
			 l->what, name ? name : "(no name)");
		return -EPERM;
	}
	e->target[0] = 0;
	e->perm = archive_entry_perm(ae) & 07777;
	e->uid = (uint32_t)archive_entry_uid(ae);
	e->gid = (uint32_t)archive_entry_gid(ae);
	e->size = 0;
	e->rdev_major = e->rdev_minor = 0;
	e->mtime = archive_entry_mtime(ae);
	e->mtime_nsec = archive_entry_mtime_is_set(ae) ? (uint32_t)archive_entry_mtime_nsec(ae) : 0;
	if (e->mtime_nsec >= 1000000000u)
		e->mtime_nsec = 0;

	const char *base = strrchr(e->path, '/');
	base = base ? base + 1 : e->path;
	if (l->whiteouts && c == 0 && !strncmp(base, WH_PREFIX, strlen(WH_PREFIX))) {
		size_t plen = (size_t)(base - e->path);
		if (!strcmp(base, WH_OPAQUE)) {
			e->kind = OCI_ENTRY_OPAQUE;
			e->path[plen ? plen - 1 : 0] = 0;
			return 0;
		}
		const char *victim = base + strlen(WH_PREFIX);
		if (!*victim || !strcmp(victim, ".") || !strcmp(victim, "..")) {
			snprintf(err, errn, "%s: refused whiteout '%.200s'", l->what, e->path);
			return -EPERM;
		}
		memmove(e->path + plen, victim, strlen(victim) + 1);
		e->kind = OCI_ENTRY_WHITEOUT;
		return 0;
	}

	const char *hl = archive_entry_hardlink(ae);
	if (hl) {
		if (c == 1 || oci_tar_path_clean(hl, e->target, sizeof(e->target)) != 0) {
			snprintf(err, errn,
				 "%s: hard link %.200s points outside the image (%.200s)", l->what,
				 e->path, hl);
			return -EXDEV;
		}
		e->kind = OCI_ENTRY_HARDLINK;
		return count_xattrs(l, e, err, errn);
	}
	switch (archive_entry_filetype(ae)) {
	case AE_IFREG:
		e->kind = OCI_ENTRY_FILE;
		if (archive_entry_size(ae) < 0) {
			snprintf(err, errn, "%s: %.200s has a negative size", l->what, e->path);
			return -EINVAL;
		}
		e->size = (uint64_t)archive_entry_size(ae);
		*l->bytes += e->size;
		if (*l->bytes > OCI_MAX_IMAGE_BYTES) {
			snprintf(err, errn, "%s: more than %llu bytes of files", l->what,
				 OCI_MAX_IMAGE_BYTES);
			return -EFBIG;
		}
		break;
	case AE_IFDIR:
		e->kind = OCI_ENTRY_DIR;
		break;
	case AE_IFLNK: {
		const char *t = archive_entry_symlink(ae);
		if (!t || !*t || strlen(t) > OCI_MAX_PATH) {
			snprintf(err, errn, "%s: symlink %.200s has an empty or over-long target",
				 l->what, e->path);
			return -EINVAL;
		}
		strcpy(e->target, t);
		e->kind = OCI_ENTRY_SYMLINK;
		break;
	}
	case AE_IFCHR:
	case AE_IFBLK:
		e->kind = archive_entry_filetype(ae) == AE_IFCHR ? OCI_ENTRY_CHAR : OCI_ENTRY_BLOCK;
		e->rdev_major = (uint32_t)archive_entry_rdevmajor(ae) & 0xfff;
		e->rdev_minor = (uint32_t)archive_entry_rdevminor(ae) & 0xfffff;
		break;
	case AE_IFIFO:
		e->kind = OCI_ENTRY_FIFO;
		break;
	default:
		return 1; /* sockets and the like carry no content */
	}
	if (c == 1 && e->kind != OCI_ENTRY_DIR) {
		snprintf(err, errn, "%s: refused entry '%.200s': the root must be a directory",
			 l->what, name);
		return -EPERM;
	}
	return count_xattrs(l, e, err, errn);
}

int oci_layer_next(struct oci_layer *l, struct oci_entry *e, char *err, size_t errn)
{
	for (;;) {
		int k = archive_read_next_header(l->a, &l->cur);
		if (k == ARCHIVE_EOF)
			return 0;
		if (k != ARCHIVE_OK && k != ARCHIVE_WARN) {
			snprintf(err, errn, "%s is truncated or corrupt: %s", l->what,
				 archive_error_string(l->a));
			return -EIO;
		}
		if (l->headers++ >= OCI_MAX_LAYER_ENTRIES) {
			snprintf(err, errn, "%s has more than %d entries", l->what,
				 OCI_MAX_LAYER_ENTRIES);
			return -E2BIG;
		}
		e->ordinal = l->headers - 1;
		int r = entry_fill(l, e, err, errn);
		if (r < 0)
			return r;
		if (r == 0)
			return 1;
	}
}

void oci_layer_xattr(struct oci_layer *l, size_t i, const char **name, const void **value,
		     size_t *len)
{
	archive_entry_xattr_reset(l->cur);
	for (size_t k = 0; k <= i; k++)
		archive_entry_xattr_next(l->cur, name, value, len);
}

int oci_layer_data(struct oci_layer *l, const void **buf, size_t *len, uint64_t *off, char *err,
		   size_t errn)
{
	la_int64_t o;
	int k = archive_read_data_block(l->a, buf, len, &o);
	if (k == ARCHIVE_EOF)
		return 0;
	if (k != ARCHIVE_OK || o < 0) {
		snprintf(err, errn, "%s is truncated or corrupt: %s", l->what,
			 archive_error_string(l->a) ? archive_error_string(l->a) : "bad offset");
		return -EIO;
	}
	*off = (uint64_t)o;
	return 1;
}
