/* SPDX-License-Identifier: MIT */
#include "exec_req.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

int exec_request_encode(const struct exec_request *req, struct buf *b)
{
	for (char *const *a = req->argv; a && *a; a++)
		msg_put_str(b, T_ARGV, *a);
	for (char *const *e = req->env; e && *e; e++)
		msg_put_str(b, T_ENV, *e);
	if (req->cwd)
		msg_put_str(b, T_CWD, req->cwd);
	if (req->user)
		msg_put_str(b, T_USER, req->user);
	msg_put_u8(b, T_STDIN, req->stdin_on);
	if (req->timeout_s)
		msg_put_u32(b, T_TIMEOUT_S, req->timeout_s);
	for (unsigned i = 0; i < req->nrlimits && i < EXEC_MAX_RLIMITS; i++) {
		uint8_t v[20];
		const struct exec_rlimit *l = &req->rlimits[i];
		for (int k = 0; k < 4; k++)
			v[k] = (uint8_t)(l->resource >> (8 * k));
		for (int k = 0; k < 8; k++) {
			v[4 + k] = (uint8_t)(l->soft >> (8 * k));
			v[12 + k] = (uint8_t)(l->hard >> (8 * k));
		}
		msg_put_tlv(b, T_RLIMIT, v, sizeof(v));
	}
	if (req->tty) {
		msg_put_u8(b, T_TTY, 1);
		if (req->rows)
			msg_put_u16(b, T_ROWS, req->rows);
		if (req->cols)
			msg_put_u16(b, T_COLS, req->cols);
	}
	return b->bad ? -ENOMEM : 0;
}

/* A string value: no NUL inside, at most max bytes. */
static int str_check(const struct rd *v, size_t max)
{
	size_t n = rd_left(v);
	if (n > max)
		return -E2BIG;
	return memchr(v->p + v->off, 0, n) ? -EPROTO : 0;
}

static char *str_copy(const struct rd *v, char **at)
{
	size_t n = rd_left(v);
	char *s = *at;
	memcpy(s, v->p + v->off, n);
	s[n] = 0;
	*at += n + 1;
	return s;
}

/*
 * First pass: check every field and count what the strings and vectors need, so the copy
 * that follows is one bounded allocation.
 */
static int req_measure(struct rd r, struct exec_request *req, size_t *bytes)
{
	uint16_t tag;
	struct rd v;
	int k, e = 0;
	while (e == 0 && (k = msg_next(&r, &tag, &v)) > 0) {
		uint8_t u8;
		switch (tag) {
		case T_ARGV:
		case T_ENV:
			e = str_check(&v, EXEC_MAX_ARG);
			if (e == 0 && tag == T_ENV &&
			    (!rd_left(&v) || v.p[v.off] == '=' ||
			     !memchr(v.p + v.off, '=', rd_left(&v))))
				e = -EINVAL;
			if (e == 0 && ++*(tag == T_ARGV ? &req->argc : &req->envc) >
					  (tag == T_ARGV ? MSG_MAX_ARGS : MSG_MAX_ENV))
				e = -E2BIG;
			*bytes += rd_left(&v) + 1;
			break;
		case T_CWD:
		case T_USER:
			e = str_check(&v, tag == T_CWD ? MSG_MAX_STR : EXEC_MAX_USER);
			*bytes += rd_left(&v) + 1;
			break;
		case T_STDIN:
			e = msg_get_u8(&v, &u8);
			req->stdin_on = u8;
			break;
		case T_TTY:
			e = msg_get_u8(&v, &u8);
			req->tty = u8;
			break;
		case T_ROWS:
			e = msg_get_u16(&v, &req->rows);
			break;
		case T_COLS:
			e = msg_get_u16(&v, &req->cols);
			break;
		case T_RLIMIT: {
			struct exec_rlimit l = { 0 };
			if (rd_left(&v) != 20 || req->nrlimits >= EXEC_MAX_RLIMITS) {
				e = rd_left(&v) != 20 ? -EPROTO : -E2BIG;
				break;
			}
			const uint8_t *p = v.p + v.off;
			for (int i = 0; i < 4; i++)
				l.resource |= (uint32_t)p[i] << (8 * i);
			for (int i = 0; i < 8; i++) {
				l.soft |= (uint64_t)p[4 + i] << (8 * i);
				l.hard |= (uint64_t)p[12 + i] << (8 * i);
			}
			if (l.resource >= EXEC_MAX_RLIMITS || l.soft > l.hard)
				e = -EINVAL;
			else
				req->rlimits[req->nrlimits++] = l;
			break;
		}
		case T_TIMEOUT_S: {
			uint32_t t;
			e = msg_get_u32(&v, &t);
			req->timeout_s = t;
			break;
		}
		default:
			break;
		}
	}
	if (e < 0)
		return e;
	if (k < 0)
		return k;
	return req->argc ? 0 : -EINVAL;
}

int exec_request_decode(struct rd *r, struct exec_request *req)
{
	*req = (struct exec_request){ 0 };
	size_t bytes = 0;
	int e = req_measure(*r, req, &bytes);
	if (e < 0)
		return e;
	size_t vec = (req->argc + 1 + req->envc + 1 + EXEC_ENV_SPARE) * sizeof(char *);
	char **mem = malloc(vec + bytes);
	if (!mem)
		return -ENOMEM;
	req->mem = mem;
	req->argv = mem;
	req->env = mem + req->argc + 1;
	char *at = (char *)mem + vec;
	size_t na = 0, ne = 0;
	uint16_t tag;
	struct rd v;
	while (msg_next(r, &tag, &v) > 0) {
		if (tag == T_ARGV)
			req->argv[na++] = str_copy(&v, &at);
		else if (tag == T_ENV)
			req->env[ne++] = str_copy(&v, &at);
		else if (tag == T_CWD)
			req->cwd = str_copy(&v, &at); /* the last one counts, as before */
		else if (tag == T_USER)
			req->user = str_copy(&v, &at);
	}
	req->argv[na] = NULL;
	req->env[ne] = NULL;
	if (!req->argv[0][0]) {
		exec_request_free(req);
		return -EINVAL;
	}
	return 0;
}

void exec_request_free(struct exec_request *req)
{
	free(req->mem);
	*req = (struct exec_request){ 0 };
}
