/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "matchlock";
static int log_fd = -1;
static int log_quiet;
static int log_debug_on;

void log_init(const char *prog)
{
	const char *d = getenv("MATCHLOCK_DEBUG");
	log_prog = prog;
	log_debug_on = d && *d && strcmp(d, "0") != 0;
}

void log_set_file(int fd) { log_fd = fd; }
void log_set_quiet(int quiet) { log_quiet = quiet; }

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = { "debug", "info", "warning", "error" };
	char msg[1024];
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (lvl == LOG_ERROR || (!log_quiet && (lvl > LOG_DEBUG || log_debug_on))) {
		char line[1200];
		int n = lvl == LOG_ERROR || lvl == LOG_INFO
				? snprintf(line, sizeof(line), "%s: %s\n", log_prog, msg)
				: snprintf(line, sizeof(line), "%s: %s: %s\n", log_prog, names[lvl], msg);
		if (n > 0)
			(void)!write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	}
	if (log_fd >= 0) {
		struct timespec ts;
		char line[1200];
		clock_gettime(CLOCK_REALTIME, &ts);
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: %s\n",
				 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
				 tm.tm_sec, ts.tv_nsec / 1000000, log_prog, names[lvl], msg);
		if (n > 0)
			(void)!write(log_fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	}
	errno = saved;
}
