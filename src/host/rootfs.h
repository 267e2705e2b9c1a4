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
/*
 * ROOTFS_KEY_STABLE: key a directory by path, type, mode, owner, size, link target and the
 * mtime of files with content; not inode numbers, ctimes, or the times of directories,
 * symlinks and empty files. An engine's fresh overlay mount of the same image (new inodes, its
 * mount points made anew) then finds the same disk and template.
 */
#define ROOTFS_KEY_STABLE 1u
int rootfs_prepare_flags(const char *src, unsigned flags, char *out, size_t n, char *err,
			 size_t errn);

#endif
