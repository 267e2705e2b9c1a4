/* SPDX-License-Identifier: MIT */
/*
 * Copying a file so that zero pages become holes: a template's RAM (src/host/snapshot.c) is
 * mostly zero, and as holes those pages cost no disk and, mapped by a restored guest, are read
 * as zeros without I/O.
 */
#define _GNU_SOURCE
#include "sparse.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether the page at p (or the n bytes left, if fewer) is all zero. */
static bool page_is_zero(const char *p, size_t n)
{
	static const char zero[4096];
	return !memcmp(p, zero, n < sizeof(zero) ? n : sizeof(zero));
}

static int pread_full(int fd, char *p, size_t n, off_t at)
{
	while (n) {
		ssize_t k = pread(fd, p, n, at);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		p += k;
		n -= (size_t)k;
		at += k;
	}
	return 0;
}

static int pwrite_full(int fd, const char *p, size_t n, off_t at)
{
	while (n) {
		ssize_t k = pwrite(fd, p, n, at);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		p += k;
		n -= (size_t)k;
		at += k;
	}
	return 0;
}

int sparse_copy(int from, int to, off_t size)
{
	enum { CHUNK = 1 << 20, PAGE = 4096 };
	if (ftruncate(to, size) < 0)
		return -errno;
	char *buf = malloc(CHUNK);
	if (!buf)
		return -ENOMEM;
	int r = 0;
	for (off_t at = 0; r == 0 && at < size;) {
		off_t data = lseek(from, at, SEEK_DATA), hole;
		if (data < 0 && errno == ENXIO)
			break; /* nothing but holes from here */
		if (data < 0 || (hole = lseek(from, data, SEEK_HOLE)) < 0) {
			r = -errno;
			break;
		}
		if (hole > size)
			hole = size;
		for (off_t o = data; r == 0 && o < hole; o += CHUNK) {
			size_t len = hole - o < CHUNK ? (size_t)(hole - o) : CHUNK;
			r = pread_full(from, buf, len, o);
			/* Runs of pages that are not zero, one write each. */
			for (size_t p = 0; r == 0 && p < len;) {
				size_t end = p;
				while (end < len && !page_is_zero(buf + end, len - end))
					end += PAGE;
				if (end > len)
					end = len;
				if (end > p)
					r = pwrite_full(to, buf + p, end - p, o + (off_t)p);
				p = end + PAGE;
			}
		}
		at = hole;
	}
	free(buf);
	return r;
}
