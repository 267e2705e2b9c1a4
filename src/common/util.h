/* SPDX-License-Identifier: MIT */
/* Small helpers shared by the host and the agent: cleanup attributes, clocks, fd I/O. */
#ifndef MATCHLOCK_UTIL_H
#define MATCHLOCK_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* Compile-time check that a string table matches its enum. */
#define STATIC_ASSERT_TABLE(tbl, count) _Static_assert(ARRAY_SIZE(tbl) == (count), #tbl " size")

void cleanup_fdp(int *fd);
void cleanup_freep(void *p);
#define _cleanup_close_ __attribute__((cleanup(cleanup_fdp)))
#define _cleanup_free_ __attribute__((cleanup(cleanup_freep)))

/* Transfer ownership out of a cleanup variable. */
static inline int take_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

uint64_t now_ns(void); /* CLOCK_MONOTONIC */
uint64_t boottime_ns(void); /* CLOCK_BOOTTIME */

int fd_set_nonblock(int fd, int on);
int fd_set_cloexec(int fd);
/* Write all of p, retrying on EINTR (and waiting on EAGAIN); -errno on failure. */
int write_all(int fd, const void *p, size_t n);
/* Read a whole small file into a NUL-terminated malloc'd string, at most max bytes. */
int read_file_str(const char *path, size_t max, char **out);
int mkdir_p(const char *path, mode_t mode);
#define RM_MAX_DEPTH 1024
/*
 * Remove name (a file or a whole tree) under dirfd without following symlinks, at most
 * max_depth directories deep (-ELOOP beyond); -errno on the first failure.
 */
int rm_tree_at(int dirfd, const char *name, int max_depth);
int rm_rf(const char *path);

#endif
