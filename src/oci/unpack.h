/* SPDX-License-Identifier: MIT */
/*
 * Reading image layers (and --rootfs tarballs): the one place a tar entry from an image is
 * judged. Every name is cleaned and refused when absolute, with a ".." component or over-long;
 * a hard link's target likewise; whiteouts (".wh.NAME", opaque ".wh..wh..opq") are recognised;
 * a layer has at most OCI_MAX_LAYER_ENTRIES entries, an image at most OCI_MAX_IMAGE_BYTES of file
 * bytes as the headers declare them, an entry at most OCI_MAX_XATTRS extended attributes. What
 * the entries mean for the tree (symlinked parents, replacing, hard link targets that must
 * exist) is judged by the writer, src/oci/ext4.c.
 */
#ifndef MATCHLOCK_OCI_UNPACK_H
#define MATCHLOCK_OCI_UNPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct archive;
struct archive_entry;

#define OCI_MAX_PATH 4096 /* one entry's path, and a symlink target */
#define OCI_MAX_DEPTH 256 /* components in one path */
#define OCI_MAX_LAYER_ENTRIES 1000000 /* entries in one layer */
#define OCI_MAX_IMAGE_BYTES (64ull << 30) /* file bytes written for a whole image */
#define OCI_MAX_XATTRS 32 /* extended attributes of one entry */
#define OCI_MAX_XATTR_VALUE 4000 /* bytes of one value: what fits ext4's one attribute block */

/*
 * Clean a tar entry name into out: drop "./" prefixes, "." components and duplicate or trailing
 * slashes. Returns 0, 1 when the name means the root itself, or -EINVAL for an absolute path, a
 * ".." component, an over-long path or component, or too many components.
 */
int oci_tar_path_clean(const char *in, char *out, size_t n);

enum oci_entry_kind {
	OCI_ENTRY_FILE,
	OCI_ENTRY_DIR, /* path "" is the root directory itself */
	OCI_ENTRY_SYMLINK, /* target: as stored, only ever resolved inside the guest */
	OCI_ENTRY_HARDLINK, /* target: a clean path inside the image */
	OCI_ENTRY_CHAR,
	OCI_ENTRY_BLOCK,
	OCI_ENTRY_FIFO,
	OCI_ENTRY_WHITEOUT, /* path: what a lower layer put there, to delete */
	OCI_ENTRY_OPAQUE, /* path: the directory whose lower-layer content is hidden */
};

struct oci_entry {
	enum oci_entry_kind kind;
	uint32_t ordinal; /* this header's index in the layer: the same on every read */
	char path[OCI_MAX_PATH + 1];
	char target[OCI_MAX_PATH + 1];
	uint32_t perm; /* 07777 bits, setuid/setgid/sticky included */
	uint32_t uid, gid;
	uint64_t size; /* regular files */
	uint32_t rdev_major, rdev_minor;
	int64_t mtime;
	uint32_t mtime_nsec;
	size_t nxattrs;
};

struct oci_layer {
	struct archive *a;
	struct archive_entry *cur;
	const char *what; /* names the layer in errors */
	bool whiteouts; /* an image layer; a plain rootfs tarball has no whiteouts */
	uint32_t headers;
	uint64_t *bytes; /* declared file bytes, all layers of the image */
	void *old_locale, *utf8;
};

/*
 * Open the (possibly gzip/zstd/xz-compressed) tar at path. *bytes accumulates over the layers of
 * one image. Returns 0 or -errno with one line in err.
 */
int oci_layer_open(struct oci_layer *l, const char *path, const char *what, bool whiteouts,
		   uint64_t *bytes, char *err, size_t errn);
/*
 * The next entry that means something for the tree (sockets are skipped). Returns 1 with *e
 * filled, 0 at the end, or -errno with one line in err (a refused entry: -EPERM/-EXDEV).
 */
int oci_layer_next(struct oci_layer *l, struct oci_entry *e, char *err, size_t errn);
/* Extended attribute i (< e->nxattrs) of the current entry; name like "security.capability". */
void oci_layer_xattr(struct oci_layer *l, size_t i, const char **name, const void **value,
		     size_t *len);
/*
 * The current regular file's next data block: 1 with *buf, *len and the file offset *off, 0 at its
 * end, -EIO with one line in err.
 */
int oci_layer_data(struct oci_layer *l, const void **buf, size_t *len, uint64_t *off, char *err,
		   size_t errn);
void oci_layer_close(struct oci_layer *l);

#endif
