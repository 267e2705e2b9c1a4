/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "matchlock";
static int log_quiet;
static int log_debug_on;

void log_init(const char *prog)
{
	const char *d = getenv("MATCHLOCK_DEBUG");
	log_prog = prog;
	log_debug_on = d && *d && strcmp(d, "0") != 0;
}

/*
 * One per sandbox (a process may serve several). Our own messages go to the most recently
 * opened one still open: a process that serves several sandboxes logs its messages in one.
 */
struct log_file {
	int fd;
	size_t cap, size;
	struct log_file *prev; /* the default before this one was opened */
	char path[];
};

static struct log_file *log_default;

struct log_file *log_file_open(const char *path, size_t cap)
{
	struct stat st;
	size_t len = strlen(path);
	struct log_file *lf = malloc(sizeof(*lf) + len + 1);
	if (!lf)
		return NULL;
	lf->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (lf->fd < 0 || fstat(lf->fd, &st) < 0) {
		int e = errno;
		if (lf->fd >= 0)
			close(lf->fd);
		free(lf);
		errno = e;
		return NULL;
	}
	memcpy(lf->path, path, len + 1);
	lf->cap = cap ? cap : 1;
	lf->size = (size_t)st.st_size;
	lf->prev = log_default;
	log_default = lf;
	return lf;
}

void log_file_close(struct log_file *lf)
{
	if (!lf)
		return;
	/* Unlink it from the chain of defaults. */
	for (struct log_file **pp = &log_default; *pp; pp = &(*pp)->prev) {
		if (*pp == lf) {
			*pp = lf->prev;
			break;
		}
	}
	close(lf->fd);
	free(lf);
}

/* Make room for n more bytes: the current file becomes PATH.1 and a new one starts. */
static void log_rotate(struct log_file *lf)
{
	size_t len = strlen(lf->path);
	char *old = malloc(len + sizeof(LOG_FILE_OLD_SUFFIX));
	int fd = -1;
	if (old) {
		memcpy(old, lf->path, len);
		memcpy(old + len, LOG_FILE_OLD_SUFFIX, sizeof(LOG_FILE_OLD_SUFFIX));
		if (rename(lf->path, old) == 0)
			fd = open(lf->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
				  0600);
		free(old);
	}
	if (fd < 0) {
		/* Cannot rotate: lose the old lines rather than the bound. */
		if (ftruncate(lf->fd, 0) == 0)
			lf->size = 0;
		return;
	}
	close(lf->fd);
	lf->fd = fd;
	lf->size = 0;
}

static void log_append(struct log_file *lf, const char *p, size_t n)
{
	if (!lf || n == 0)
		return;
	if (n > lf->cap) {
		p += n - lf->cap;
		n = lf->cap;
	}
	if (lf->size + n > lf->cap)
		log_rotate(lf);
	if (lf->size + n > lf->cap)
		return; /* neither rotated nor truncated: stay under the cap */
	ssize_t k = write(lf->fd, p, n);
	if (k > 0)
		lf->size += (size_t)k;
}

void log_file_write(struct log_file *lf, const void *p, size_t n)
{
	int saved = errno;
	log_append(lf, p, n);
	errno = saved;
}

struct log_reader {
	int fd;
	bool in_old; /* reading PATH.1; PATH comes next */
	char path[];
};

struct log_reader *log_reader_open(const char *path)
{
	size_t len = strlen(path);
	struct log_reader *lr = malloc(sizeof(*lr) + len + sizeof(LOG_FILE_OLD_SUFFIX));
	if (!lr)
		return NULL;
	/* PATH.1 first: spelled in place, then cut back to PATH. */
	memcpy(lr->path, path, len);
	memcpy(lr->path + len, LOG_FILE_OLD_SUFFIX, sizeof(LOG_FILE_OLD_SUFFIX));
	lr->in_old = true;
	lr->fd = open(lr->path, O_RDONLY | O_CLOEXEC);
	lr->path[len] = 0;
	if (lr->fd < 0) {
		lr->in_old = false;
		lr->fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (lr->fd < 0) {
		int e = errno;
		free(lr);
		errno = e;
		return NULL;
	}
	return lr;
}

ssize_t log_reader_read(struct log_reader *lr, void *buf, size_t n)
{
	for (;;) {
		ssize_t k = read(lr->fd, buf, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k != 0)
			return k < 0 ? -errno : k;
		if (!lr->in_old) {
			/* At the end of PATH: still the file of that name, or rotated away since?
			 */
			struct stat now, ours;
			if (stat(lr->path, &now) < 0 || fstat(lr->fd, &ours) < 0 ||
			    (now.st_ino == ours.st_ino && now.st_dev == ours.st_dev))
				return 0;
			/* Rotated: what reached it before the rename is still to be read. */
			k = read(lr->fd, buf, n);
			if (k != 0)
				return k < 0 ? -errno : k;
		}
		int fd = open(lr->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return errno == ENOENT ? 0 : -errno; /* mid-rotation: PATH comes back */
		close(lr->fd);
		lr->fd = fd;
		lr->in_old = false;
	}
}

void log_reader_free(struct log_reader *lr)
{
	if (!lr)
		return;
	close(lr->fd);
	free(lr);
}
void log_set_quiet(int quiet)
{
	log_quiet = quiet;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned char c = p[0];
	if (c < 0x80)
		return 1;
	size_t len = c >= 0xc2 && c <= 0xdf   ? 2
		     : c >= 0xe0 && c <= 0xef ? 3
		     : c >= 0xf0 && c <= 0xf4 ? 4
					      : 0;
	/* The second byte's range excludes overlong forms, surrogates and code points > U+10FFFF.
	 */
	unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
	unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
	for (size_t i = 1; i < len; i++)
		if (p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xbf))
			return 0;
	return len;
}

size_t log_sanitize(char *dst, size_t n, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)src;
	size_t o = 0;
	if (n == 0)
		return 0;
	while (*p) {
		size_t len = utf8_len(p);
		/* C1 controls are U+0080..U+009F: 0xc2 0x80..0x9f in UTF-8. */
		bool safe = len > 1 ? !(p[0] == 0xc2 && p[1] <= 0x9f)
				    : len == 1 && *p >= 0x20 && *p != 0x7f;
		if (safe) {
			if (o + len >= n)
				break;
			memcpy(dst + o, p, len);
			o += len;
			p += len;
			continue;
		}
		/* One byte at a time: what follows a bad lead byte is judged on its own. */
		if (o + 4 >= n)
			break;
		dst[o++] = '\\';
		dst[o++] = 'x';
		dst[o++] = hex[*p >> 4];
		dst[o++] = hex[*p & 15];
		p++;
	}
	dst[o] = 0;
	return o;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = { "debug", "info", "warning", "error" };
	char raw[1024], msg[1024];
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	log_sanitize(msg, sizeof(msg), raw);

	if (lvl == LOG_ERROR || (!log_quiet && (lvl > LOG_DEBUG || log_debug_on))) {
		char line[1200];
		int n =
		    lvl == LOG_ERROR || lvl == LOG_INFO
			? snprintf(line, sizeof(line), "%s: %s\n", log_prog, msg)
			: snprintf(line, sizeof(line), "%s: %s: %s\n", log_prog, names[lvl], msg);
		if (n > 0)
			(void)!write(STDERR_FILENO, line,
				     (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	}
	if (log_default) {
		struct timespec ts;
		char line[1200];
		clock_gettime(CLOCK_REALTIME, &ts);
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		int n =
		    snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: %s\n",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			     tm.tm_sec, ts.tv_nsec / 1000000, log_prog, names[lvl], msg);
		if (n > 0)
			log_append(log_default, line,
				   (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	}
	errno = saved;
}
