/* SPDX-License-Identifier: MIT */
/*
 * The read-only ext4 disk a sandbox boots from: from an image's layers or a --rootfs tarball,
 * written straight into the file with libext2fs (ext4_layers.c: owners, modes, setuid bits,
 * xattrs, hard links and device nodes kept without root, and the same bytes whoever builds it);
 * from a --rootfs directory with `mke2fs -d`. No journal and no reserved blocks: the guest mounts
 * it read-only under an overlay.
 */
#ifndef MATCHLOCK_OCI_EXT4_H
#define MATCHLOCK_OCI_EXT4_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Build an ext4 image at dst from the tree at dir, sized from the tree (the file is sparse).
 * Written to a temp file next to dst, then renamed, so dst is never half-written. Returns 0 or
 * -errno with one line in err.
 */
int oci_ext4_build(const char *dir, const char *dst, char *err, size_t errn);

struct oci_ext4_layer {
	const char *path; /* a tar, possibly gzip/zstd/xz-compressed */
	const char *what; /* names it in errors */
};

/*
 * Build an ext4 image at dst from tar layers applied in order (whiteouts honoured when
 * whiteouts is set: image layers; not for a plain rootfs tarball). The UUID and directory hash
 * seed derive from seed (e.g. the manifest digest), every time stamp from the entries: the
 * same layers and seed give a byte-identical file, built by root or not. Written to a temp file
 * next to dst, then renamed; with dst NULL the layers are only read and judged (the fuzzer).
 * Returns 0 or -errno with one line in err.
 */
int oci_ext4_from_layers(const struct oci_ext4_layer *layers, size_t n, bool whiteouts,
			 const char *seed, const char *dst, char *err, size_t errn);

#endif
