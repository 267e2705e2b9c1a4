/* SPDX-License-Identifier: MIT */
/*
 * Writable disks: the per-sandbox disk that holds everything a sandbox writes (the root
 * overlay's upper and the overlay mounts' uppers), and named volumes that outlive sandboxes.
 * Both are sparse raw files holding an empty ext4 file system; the guest mounts them (the agent,
 * at CONFIG). A file never grows past its size, whatever the guest writes: a full disk is ENOSPC
 * inside, never a host problem.
 *
 * A sandbox's disk is a sparse copy of a pre-formatted template of its size, made once with
 * mke2fs and kept under <cache>/disks: copying the few MB of metadata (SEEK_DATA/SEEK_HOLE,
 * copy_file_range, or a reflink where the file system has them) is faster than running mke2fs
 * for every start. A sandbox restored from a snapshot template gets a copy of the disk as that
 * template's guest had it when it was saved (snapshot.h): the guest's memory and its disk must
 * match, and that disk holds nothing but the empty root layer.
 */
#ifndef MATCHLOCK_DISK_H
#define MATCHLOCK_DISK_H

#include <stdbool.h>
#include <stddef.h>

#define DISK_DEFAULT_MB 8192
#define DISK_MIN_MB 64 /* ext4 with a journal, and room to write something */
#define DISK_MAX_MB (1024LL * 1024) /* 1 TiB: sparse, so only what is written costs */
#define DISK_FILE "disk.img" /* in the sandbox's state directory */

/*
 * Make <dir>/DISK_FILE: a copy of from when it is not NULL (a template's disk), else an empty
 * ext4 of size_mb. Returns 0 with its path, or -errno with err.
 */
int disk_make(const char *dir, long long size_mb, const char *from, char *path, size_t n, char *err,
	      size_t errn);
/*
 * Copy src to dst sparsely, through a temporary name (dst is whole or absent); -EEXIST when dst
 * exists (it is never replaced), else -errno.
 */
int disk_copy(const char *src, const char *dst);

/* ---- named volumes: <cache>/volumes/NAME.ext4 ---- */

#define VOLUME_NAME_MAX 64
#define VOLUME_DEFAULT_MB 1024

/* 1-64 of [A-Za-z0-9_.-], not starting with '.' or '-'. */
bool volume_name_ok(const char *name);
/* The file of volume name (it may not exist). */
int volume_path(const char *name, char *out, size_t n);
/* Create an empty volume; -EEXIST if it exists. err says why on failure. */
int volume_create(const char *name, long long size_mb, char *err, size_t errn);
/* Remove a volume; -EBUSY while a sandbox uses it, -ENOENT if there is none. err says why. */
int volume_remove(const char *name, char *err, size_t errn);
/*
 * Hold a volume for a sandbox's life: a lock on its file, shared for ro, exclusive for rw (so a
 * volume is written by one sandbox at a time and never removed while in use). Returns the fd
 * holding the lock (close it to release), or -EBUSY / -ENOENT / -errno with err.
 */
int volume_lock(const char *name, bool rw, char *err, size_t errn);
/* Each volume: name, size in MB, whether a sandbox uses it; fn returns < 0 to stop. */
int volume_list(int (*fn)(const char *name, long long size_mb, bool in_use, void *opaque),
		void *opaque);

#endif
