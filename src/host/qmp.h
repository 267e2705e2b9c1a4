/* SPDX-License-Identifier: MIT */
/*
 * A small QMP (QEMU Machine Protocol) client for the few moments the supervisor commands QEMU
 * itself: pausing a freshly booted guest and saving it as a snapshot. Calls block, each bounded
 * by a deadline, and are made outside the event loop's dispatch.
 */
#ifndef MATCHLOCK_QMP_H
#define MATCHLOCK_QMP_H

#include <jansson.h>
#include <stddef.h>

#include "common/buf.h"

/* Read the greeting and enter command mode. */
int qmp_handshake(int fd, unsigned timeout_ms, char *err, size_t errn);
/*
 * Run one command (args may be NULL; not consumed). Returns 0 with the "return" value in *ret
 * (may be NULL; caller decrefs), or -EIO with QEMU's error text in err. Events are skipped.
 */
int qmp_call(int fd, const char *cmd, json_t *args, json_t **ret, unsigned timeout_ms, char *err,
	     size_t errn);
/* Hand QEMU a file descriptor under a name (getfd, with SCM_RIGHTS). */
int qmp_send_fd(int fd, const char *name, int pass, unsigned timeout_ms, char *err, size_t errn);

/*
 * The same protocol without blocking, for a caller on an event loop that waits for the monitor
 * to become readable: qmp_send() writes a command (args may be NULL; not consumed);
 * qmp_rx_take() takes what has arrived.
 */
struct qmp_rx {
	struct buf line; /* the message being read, at most QMP_MAX_LINE */
};
int qmp_send(int fd, const char *cmd, json_t *args);
/*
 * Returns 1 with *msg (the greeting, a "return" or an "error"; events are skipped), 0 when no
 * whole message is there yet, or -EIO with err (QEMU closed the monitor, an oversized or
 * malformed message).
 */
int qmp_rx_take(int fd, struct qmp_rx *rx, json_t **msg, char *err, size_t errn);
void qmp_rx_fini(struct qmp_rx *rx);

#endif
