/* SPDX-License-Identifier: MIT */
/*
 * The read-only ext4 disk a sandbox boots from, built from an unpacked tree with `mke2fs -d`
 * (an image's layers, or a --rootfs directory or tarball). No journal and no reserved blocks:
 * the guest mounts it read-only under an overlay.
 */
#ifndef MATCHLOCK_OCI_EXT4_H
#define MATCHLOCK_OCI_EXT4_H

#include <stddef.h>

/*
 * Build an ext4 image at dst from the tree at dir, sized from the tree (the file is sparse).
 * Written to a temp file next to dst, then renamed, so dst is never half-written. Returns 0 or
 * -errno with one line in err.
 */
int oci_ext4_build(const char *dir, const char *dst, char *err, size_t errn);

#endif
