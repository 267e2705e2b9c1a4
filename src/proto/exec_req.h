/* SPDX-License-Identifier: MIT */
/*
 * The exec request and its one codec. It crosses two boundaries in the same TLVs (msg.h): the
 * control socket (the CLI's `matchlock exec` -> the supervisor, after a CTRL_EXEC type) and the
 * link (the host -> the agent, the body of an SVC_EXEC OPEN). Every side encodes and decodes it
 * here, so a field or a limit changes in one place.
 */
#ifndef MATCHLOCK_EXEC_REQ_H
#define MATCHLOCK_EXEC_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "msg.h"

#define EXEC_MAX_ARG (MSG_MAX_STR * 32) /* one argument or KEY=VALUE */
#define EXEC_MAX_USER 256
#define EXEC_MAX_RLIMITS 16 /* RLIM_NLIMITS on Linux */
#define EXEC_ENV_SPARE 2 /* a decoded env has room for this many more entries (PATH, HOME) */

struct exec_request {
	char **argv; /* NULL-terminated */
	char **env; /* KEY=VALUE, NULL-terminated; may be NULL */
	const char *cwd, *user; /* may be NULL */
	bool stdin_on; /* the process reads what we write (else /dev/null) */
	bool tty; /* a PTY; output arrives on channel 1 only */
	uint16_t rows, cols; /* 0: not given */
	unsigned timeout_s; /* 0 = none; expiry: SIGTERM, SIGKILL a second later, status 124 */
	/* Resource limits set before the exec (resource < EXEC_MAX_RLIMITS, soft <= hard). */
	struct exec_rlimit {
		uint32_t resource;
		uint64_t soft, hard;
	} rlimits[EXEC_MAX_RLIMITS];
	unsigned nrlimits;
	/* Decoded requests only: */
	size_t argc, envc;
	void *mem; /* one allocation holding the vectors and the strings */
};

/*
 * Append the request's TLVs to b: T_ARGV and T_ENV in order, then T_CWD, T_USER, T_STDIN,
 * T_TIMEOUT_S (when set), T_TTY with T_ROWS/T_COLS (when set), T_RLIMIT each. A failed append
 * leaves b bad (buf.h); returns 0 or -ENOMEM.
 */
int exec_request_encode(const struct exec_request *req, struct buf *b);
/*
 * Decode the TLVs left in r (unknown tags skipped) into req, which owns what it points to
 * until exec_request_free. Bounded: at most MSG_MAX_ARGS arguments and MSG_MAX_ENV variables,
 * each at most EXEC_MAX_ARG bytes; cwd at most MSG_MAX_STR, user EXEC_MAX_USER. Returns 0,
 * -EPROTO (not whole TLVs, a value of the wrong width, a NUL inside a string), -E2BIG (past a
 * limit), -EINVAL (no command, an environment entry that is not KEY=VALUE) or -ENOMEM.
 */
int exec_request_decode(struct rd *r, struct exec_request *req);
void exec_request_free(struct exec_request *req);

#endif
