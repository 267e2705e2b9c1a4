/* SPDX-License-Identifier: MIT */
/* Hook questions over JSON-RPC, hooks_set/get, file events (rpc_hooks.h). */
#define _GNU_SOURCE
#include "rpc_hooks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "spec_hooks.h"

void rpc_hooks_init(struct rpc_hooks *rh, struct loop *l, int (*send)(void *, json_t *), void *ctx)
{
	memset(rh, 0, sizeof(*rh));
	rh->l = l;
	rh->send = send;
	rh->ctx = ctx;
}

/* Answer question q (NULL: refuse) and free its slot; the answer may free anything else. */
static void answer(struct rpc_question *q, const json_t *a)
{
	hook_answer_fn fn = q->fn;
	void *who = q->who;
	loop_timer_cancel(q->rh->l, &q->t);
	q->ticket = 0;
	fn(who, a);
}

static void on_timeout(struct timer *t)
{
	struct rpc_question *q = t->obj;
	warn("hooks: question hook-%lld got no answer in time: refused", (long long)q->ticket);
	answer(q, NULL);
}

void rpc_hooks_fini(struct rpc_hooks *rh)
{
	for (unsigned i = 0; i < RPC_HOOKS_MAX_QUESTIONS; i++)
		if (rh->q[i].ticket)
			answer(&rh->q[i], NULL);
}

static int64_t ask(void *opaque, json_t *question, hook_answer_fn fn, void *who)
{
	struct rpc_hooks_asker *ra = opaque;
	struct rpc_hooks *rh = ra->rh;
	struct rpc_question *q = NULL;
	for (unsigned i = 0; i < RPC_HOOKS_MAX_QUESTIONS && !q; i++)
		if (!rh->q[i].ticket)
			q = &rh->q[i];
	if (!q) {
		json_decref(question);
		return -EBUSY;
	}
	json_int_t ms = json_integer_value(json_object_get(question, "timeout_ms"));
	if (ms < 1 || ms > HOOK_ASK_TIMEOUT_MS_MAX)
		ms = HOOK_ASK_TIMEOUT_MS_DEFAULT;
	int64_t ticket = ++rh->next;
	char id[32];
	snprintf(id, sizeof(id), "hook-%lld", (long long)ticket);
	json_object_set_new(question, "sandbox", json_string(ra->sandbox));
	int k = rh->send(
	    rh->ctx, json_pack("{s:s,s:s,s:o}", "id", id, "method", "hook", "params", question));
	if (k < 0)
		return k;
	*q = (struct rpc_question){ .ticket = ticket, .fn = fn, .who = who, .rh = rh };
	q->t = (struct timer){ .fn = on_timeout, .obj = q };
	loop_timer_set(rh->l, &q->t, rh->l->now + (uint64_t)ms * 1000000ull);
	return ticket;
}

static void cancel(void *opaque, int64_t ticket)
{
	struct rpc_hooks *rh = ((struct rpc_hooks_asker *)opaque)->rh;
	for (unsigned i = 0; i < RPC_HOOKS_MAX_QUESTIONS; i++) {
		if (rh->q[i].ticket == ticket) {
			loop_timer_cancel(rh->l, &rh->q[i].t);
			rh->q[i].ticket = 0;
		}
	}
}

void rpc_hooks_asker_init(struct rpc_hooks_asker *ra, struct rpc_hooks *rh, const char *sandbox)
{
	ra->a = (struct hook_asker){ .ask = ask, .cancel = cancel, .opaque = ra };
	ra->rh = rh;
	ra->sandbox = sandbox;
}

bool rpc_hooks_on_response(struct rpc_hooks *rh, const json_t *msg)
{
	const char *id = json_string_value(json_object_get(msg, "id"));
	long long t;
	char tail;
	if (!id || sscanf(id, "hook-%lld%c", &t, &tail) != 1 || t <= 0)
		return false;
	for (unsigned i = 0; i < RPC_HOOKS_MAX_QUESTIONS; i++) {
		if (rh->q[i].ticket != t)
			continue;
		const json_t *res = json_object_get(msg, "result");
		answer(&rh->q[i], json_is_object(res) ? res : NULL);
		return true;
	}
	return true; /* answered too late (refused already) or cancelled: nothing to do */
}

json_t *rpc_hooks_set(struct hooks *h, struct fhooks *fh, const json_t *params, char *err,
		      size_t errn)
{
	const json_t *doc = json_object_get(params, "hooks");
	if (!doc) {
		snprintf(err, errn, "hooks_set needs hooks {network, files, callback_timeout_ms}");
		return NULL;
	}
	if (spec_hooks_apply(h, fh, doc, err, errn) < 0)
		return NULL;
	return spec_hooks_json(h, fh);
}

json_t *rpc_hooks_get(const struct hooks *h, const struct fhooks *fh)
{
	return spec_hooks_json(h, fh);
}

json_t *rpc_hooks_file_event(const struct sandbox_file_event *ev)
{
	/* Paths come from the host folder's names: json_stringn refuses bad UTF-8, so "?". */
	json_t *p = json_string(ev->path);
	json_t *o = json_pack("{s:s,s:o,s:s,s:b}", "op", ev->op, "path", p ? p : json_string("?"),
			      "rule", ev->rule ? ev->rule : "", "blocked", ev->blocked);
	if (o && ev->path2) {
		json_t *p2 = json_string(ev->path2);
		json_object_set_new(o, "path2", p2 ? p2 : json_string("?"));
	}
	if (o && ev->reason)
		json_object_set_new(o, "reason", json_string(ev->reason) ?: json_string(""));
	if (o && ev->result)
		json_object_set_new(o, "error", json_string(strerror(-ev->result)));
	return o;
}
