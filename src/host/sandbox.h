/* SPDX-License-Identifier: MIT */
/*
 * The supervisor of one sandbox: owns the VMM child, the link (mux), the console log and one
 * epoll loop. sandbox_boot() starts the VM and returns once the agent is ready; sandbox_exec()
 * runs one process with the caller's stdio attached; sandbox_stop() powers the VM off.
 */
#ifndef MATCHLOCK_SANDBOX_H
#define MATCHLOCK_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "accel.h"

struct sandbox;

struct sandbox_config {
	const char *id;
	const char *state_dir; /* per-sandbox directory (0700) holding the log */
	const char *kernel, *initrd, *disk;
	enum accel accel;
	unsigned cpus, memory_mb;
	const char *hostname;
	unsigned boot_timeout_ms;
};

struct exec_spec {
	char **argv;
	char **env; /* KEY=VALUE */
	const char *cwd, *user;
	bool stdin_on; /* stream our stdin (-i) */
	bool tty; /* allocate a PTY (-t) */
	unsigned timeout_s; /* 0 = none; expiry kills the process and yields 124 */
	int in_fd, out_fd, err_fd;
};

/* Phase timestamps (monotonic ns on the host; guest values are guest CLOCK_BOOTTIME). */
struct sandbox_times {
	uint64_t spawn, hello, ready, exec_done, stopped;
	uint64_t guest_agent_start, guest_hello;
};

/*
 * Returns NULL with a one-line reason in err (the VM is gone, nothing is left running) and errno
 * set: ETIMEDOUT if the guest never answered, EINTR if a signal interrupted the boot, else EIO.
 */
struct sandbox *sandbox_boot(const struct sandbox_config *c, char *err, size_t errn);
/*
 * Run one process. Returns its status mapped like a shell (code, 128+signal, 124 on timeout,
 * 126/127 when it could not be started), or -errno with a reason in err.
 */
int sandbox_exec(struct sandbox *sb, const struct exec_spec *spec, char *err, size_t errn);
/* Power off (clean, bounded wait) and free; the phase times are copied to *times if given. */
void sandbox_stop(struct sandbox *sb, struct sandbox_times *times);

#endif
