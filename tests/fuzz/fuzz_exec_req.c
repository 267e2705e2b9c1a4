/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the exec request codec (proto/exec_req.c) and the environment merge
 * (proto/env.c): the body of an exec OPEN (agent side) and of a CTRL_EXEC on the control socket
 * (supervisor side). Beyond "no crash, no leak", it aborts when a decoded request:
 *  - breaks a documented bound (no command, more than MSG_MAX_ARGS arguments or MSG_MAX_ENV
 *    variables, a string past its limit, an environment entry that is not KEY=VALUE);
 *  - lacks the NULL terminators or the EXEC_ENV_SPARE room its users rely on;
 *  - does not survive encode -> decode unchanged (the host re-encodes what the CLI sent).
 * Every decoded environment entry also goes through env_set, whose result must be consistent
 * with the entry (a decoded entry is KEY=VALUE, so only the size limits may refuse it).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/env.h"
#include "proto/exec_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_strv(char **v, size_t n, size_t max, size_t maxlen)
{
	if (n > max || v[n] != NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		if (!v[i] || strlen(v[i]) > maxlen)
			abort();
}

static void same_str(const char *a, const char *b)
{
	if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
		abort();
}

static void check_env(const struct exec_request *q)
{
	struct env e = { 0 };
	for (size_t i = 0; i < q->envc; i++) {
		const char *eq = strchr(q->env[i], '=');
		if (!eq || eq == q->env[i])
			abort();
		int r = env_set(&e, q->env[i]);
		if (r != 0 && r != -EMSGSIZE && r != -E2BIG && r != -ENOMEM)
			abort();
	}
	char **v = env_vector(&e);
	if (!v || v[e.n] != NULL || e.n > q->envc)
		abort();
	env_fini(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd r = rd_make(data, size);
	struct exec_request q, q2;
	int e = exec_request_decode(&r, &q);
	if (e == -ENOMEM)
		return 0;
	if (e != 0) {
		if (e != -EPROTO && e != -E2BIG && e != -EINVAL)
			abort();
		return 0;
	}
	if (q.argc < 1 || !q.argv[0][0])
		abort();
	check_strv(q.argv, q.argc, MSG_MAX_ARGS, EXEC_MAX_ARG);
	check_strv(q.env, q.envc, MSG_MAX_ENV, EXEC_MAX_ARG);
	if (q.cwd && strlen(q.cwd) > MSG_MAX_STR)
		abort();
	if (q.user && strlen(q.user) > EXEC_MAX_USER)
		abort();
	/* The spare slots after env's terminator are writable (the agent adds PATH, HOME). */
	for (size_t i = 1; i <= EXEC_ENV_SPARE; i++)
		q.env[q.envc + i] = NULL;
	check_env(&q);

	struct buf b = { 0 };
	if (exec_request_encode(&q, &b) != 0) {
		buf_fini(&b);
		exec_request_free(&q);
		return 0;
	}
	struct rd r2 = rd_make(buf_head(&b), buf_used(&b));
	e = exec_request_decode(&r2, &q2);
	if (e == -ENOMEM) {
		buf_fini(&b);
		exec_request_free(&q);
		return 0;
	}
	if (e != 0 || q2.argc != q.argc || q2.envc != q.envc || q2.stdin_on != q.stdin_on ||
	    q2.tty != q.tty || q2.timeout_s != q.timeout_s)
		abort();
	for (size_t i = 0; i < q.argc; i++)
		same_str(q.argv[i], q2.argv[i]);
	for (size_t i = 0; i < q.envc; i++)
		same_str(q.env[i], q2.env[i]);
	same_str(q.cwd, q2.cwd);
	same_str(q.user, q2.user);
	if (q.tty && (q2.rows != q.rows || q2.cols != q.cols))
		abort();
	exec_request_free(&q2);
	exec_request_free(&q);
	buf_fini(&b);
	return 0;
}
