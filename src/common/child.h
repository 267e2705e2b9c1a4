/* SPDX-License-Identifier: MIT */
/*
 * The processes the host side starts (QEMU, mke2fs, `qemu --version`) and what of ours they may
 * see. A secret given as `--secret NAME@HOST` arrives in our environment; nothing we start
 * inherits that environment, and the value is wiped from our own environment block.
 */
#ifndef MATCHLOCK_CHILD_H
#define MATCHLOCK_CHILD_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The whole environment of every child: PATH (ours, or a default when ours is unset or longer
 * than CHILD_PATH_MAX) and LANG=C (messages we parse and show stay in English). QEMU needs
 * nothing else: its devices come as fds and arguments. Built on the first call, in static
 * storage: call it before fork() and use the result in the child.
 */
#define CHILD_PATH_MAX 4096
char *const *child_env(void);
/*
 * Run argv (looked up in PATH) with child_env(), stdin from /dev/null, and capture the first
 * outn - 1 bytes of its stdout (and stderr when with_stderr; else stderr goes to /dev/null) into
 * out, NUL-terminated. Returns the wait status (>= 0) or -errno if it could not be started.
 */
int child_run(char *const argv[], bool with_stderr, char *out, size_t outn);
/* child_run with one more NAME=VALUE (extra, when not NULL) in the child's environment. */
int child_run_env(char *const argv[], const char *extra, bool with_stderr, char *out, size_t outn);
/*
 * Overwrite with NUL bytes the value of every variable in our own environment whose value is
 * exactly value[0..n) (NAME=VALUE stays NAME=). /proc/PID/environ shows the block the kernel
 * gave us at exec, which unsetenv() leaves intact; nothing of ours calls setenv(), so environ's
 * strings are that block. Only whole values: wiping every substring would cut PATH and HOME
 * apart for a short value. No-op when n == 0.
 */
void child_wipe_env_value(const void *value, size_t n);

#endif
