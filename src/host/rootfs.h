/* SPDX-License-Identifier: MIT */
/*
 * --rootfs DIR|TARBALL: turn a root filesystem into the read-only ext4 image the guest mounts,
 * cached under <cache>/rootfs/ by a key of its content so a second run reuses it.
 */
#ifndef MATCHLOCK_ROOTFS_H
#define MATCHLOCK_ROOTFS_H

#include <stddef.h>

/* Writes the image path to out. On failure returns -errno and a one-line reason in err. */
int rootfs_prepare(const char *src, char *out, size_t n, char *err, size_t errn);

#endif
