/* SPDX-License-Identifier: MIT */
/*
 * Logging. Messages go to stderr prefixed with the program name, and, once a sandbox has a log
 * file, to that file with a timestamp. Debug messages appear only with MATCHLOCK_DEBUG=1. Every
 * message is passed through log_sanitize() first.
 */
#ifndef MATCHLOCK_LOG_H
#define MATCHLOCK_LOG_H

#include <stddef.h>
#include <sys/types.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_init(const char *prog);
/*
 * The sandbox log: the guest's console, QEMU's messages, a detached command's output and every
 * message of ours, in one file capped at LOG_FILE_CAP bytes. A write that would pass the cap
 * first renames the file to PATH.1 (replacing the previous one) and starts a new one, so a
 * sandbox never holds more than twice the cap of log on disk, whatever its guest writes.
 */
#define LOG_FILE_CAP (8u << 20)
#define LOG_FILE_OLD_SUFFIX ".1"
struct log_file;
/*
 * Open path as a sandbox log (append; created 0600) rotating at cap bytes; NULL with errno. Our
 * own messages go to the most recently opened log still open.
 */
struct log_file *log_file_open(const char *path, size_t cap);
/* Append raw bytes (the guest's output, as it is); lf may be NULL. */
void log_file_write(struct log_file *lf, const void *p, size_t n);
void log_file_close(struct log_file *lf);

/*
 * Reads a sandbox log from its oldest byte: PATH.1 if there is one, then PATH, and onwards as it
 * grows and rotates (`log -f`): at the end of a file that was rotated away it moves to the new
 * one. A reader that falls more than a whole rotation behind misses the generation in between.
 */
struct log_reader;
/* NULL with errno set when there is no log at path. */
struct log_reader *log_reader_open(const char *path);
/* Bytes read (> 0), 0 when there is nothing more for now, or -errno. */
ssize_t log_reader_read(struct log_reader *lr, void *buf, size_t n);
void log_reader_free(struct log_reader *lr);
/* Quiet mode: only errors reach stderr (the file still gets everything). */
void log_set_quiet(int quiet);
/*
 * Copy src into dst (n bytes, NUL-terminated when n > 0) as text safe for a terminal: C0 controls
 * (newline and tab too: one message is one line), DEL, C1 controls (U+0080..U+009F) and bytes
 * that are not valid UTF-8 become \xNN; printable UTF-8 passes unchanged. Text from the guest,
 * an image or a registry reaches our messages (names, reasons): it must not move the cursor,
 * recolour or retitle the terminal, or forge a line. Cuts before a character or escape that would
 * not fit. Returns the length written.
 */
size_t log_sanitize(char *dst, size_t n, const char *src);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
