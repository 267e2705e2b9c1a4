/* SPDX-License-Identifier: MIT */
/*
 * Applying image layers to a staging directory: whiteouts (".wh.NAME" and opaque directories),
 * hard links, symlinks, modes including setuid, owners (when running as root) and mtimes.
 * Every path is cleaned first and walked one component at a time with O_NOFOLLOW from the
 * staging root, so an entry with "..", an absolute path or a symlinked parent is refused before
 * anything is written, and nothing outside the staging directory is ever touched.
 */
#ifndef MATCHLOCK_OCI_UNPACK_H
#define MATCHLOCK_OCI_UNPACK_H

#include <stddef.h>
#include <stdint.h>

#define OCI_MAX_PATH 4096 /* one entry's path, and a symlink target */
#define OCI_MAX_DEPTH 256 /* components in one path */
#define OCI_MAX_LAYER_ENTRIES 1000000 /* entries in one layer */
#define OCI_MAX_IMAGE_BYTES (64ull << 30) /* file bytes written for a whole image */

struct oci_unpack_stats {
	uint64_t bytes; /* file bytes written so far (all layers) */
	uint64_t entries; /* entries applied so far */
};

/*
 * Clean a tar entry name into out: drop "./" prefixes, "." components and duplicate or trailing
 * slashes. Returns 0, 1 when the name means the root itself, or -EINVAL for an absolute path, a
 * ".." component, an over-long path or component, or too many components.
 */
int oci_tar_path_clean(const char *in, char *out, size_t n);

/*
 * Apply the (possibly gzip/zstd-compressed) tar layer at path to the directory rootfd. what names
 * the layer in errors. Returns 0 or -errno with a one-line reason in err; on failure the staging
 * directory is in an undefined state and must be thrown away.
 */
int oci_unpack_layer(int rootfd, const char *path, const char *what, struct oci_unpack_stats *st,
		     char *err, size_t errn);

#endif
