/* SPDX-License-Identifier: MIT */
/*
 * Logging. Messages go to stderr prefixed with the program name, and, once a sandbox has a log
 * file, to that file with a timestamp. Debug messages appear only with MATCHLOCK_DEBUG=1.
 */
#ifndef MATCHLOCK_LOG_H
#define MATCHLOCK_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_init(const char *prog);
/* Also copy every message to fd (not owned); -1 stops. */
void log_set_file(int fd);
/* Quiet mode: only errors reach stderr (the file still gets everything). */
void log_set_quiet(int quiet);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
