/* SPDX-License-Identifier: MIT */
#ifndef MATCHLOCK_SPARSE_H
#define MATCHLOCK_SPARSE_H

#include <sys/types.h>

/*
 * Copy from's first size bytes into to (made exactly size bytes long), writing only the 4 KiB
 * pages that are not zero: the rest stay holes. Holes in from are skipped unread. Returns 0 or
 * -errno.
 */
int sparse_copy(int from, int to, off_t size);

#endif
