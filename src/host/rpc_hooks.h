/* SPDX-License-Identifier: MIT */
/*
 * The RPC server's side of hooks (spec/rpc.md, "Hooks"): questions to the client for callback
 * rules (a JSON-RPC request "hook" from the server, id "hook-N", answered by the client's
 * response with that id), each with its bounded wait on the server's loop; the methods
 * hooks_set / hooks_get; and the `file` event. cmd_rpc.c carries the lines.
 */
#ifndef MATCHLOCK_RPC_HOOKS_H
#define MATCHLOCK_RPC_HOOKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/hookask.h"
#include "common/loop.h"
#include "sandbox.h"

#define RPC_HOOKS_MAX_QUESTIONS 64 /* questions out at once, all sandboxes; more are refused */

struct rpc_question {
	int64_t ticket; /* 0: free */
	hook_answer_fn fn;
	void *who;
	struct timer t;
	struct rpc_hooks *rh;
};

struct rpc_hooks {
	struct loop *l;
	/* Send one message (consumed) to the client; -errno when it cannot (gone, no memory). */
	int (*send)(void *ctx, json_t *msg);
	void *ctx;
	int64_t next;
	struct rpc_question q[RPC_HOOKS_MAX_QUESTIONS];
};

/* One sandbox's asker: questions carry its ID. */
struct rpc_hooks_asker {
	struct hook_asker a;
	struct rpc_hooks *rh;
	const char *sandbox; /* its ID (the caller's, outlives the asker) */
};

void rpc_hooks_init(struct rpc_hooks *rh, struct loop *l, int (*send)(void *, json_t *), void *ctx);
/* Every question still out is answered NULL (refused): the client is gone. */
void rpc_hooks_fini(struct rpc_hooks *rh);
void rpc_hooks_asker_init(struct rpc_hooks_asker *ra, struct rpc_hooks *rh, const char *sandbox);
/* A response from the client (no "method"): true if it answers one of our questions. */
bool rpc_hooks_on_response(struct rpc_hooks *rh, const json_t *msg);
/*
 * hooks_set {hooks: {network, files, callback_timeout_ms}} on a sandbox's rules: the result
 * (what is in force), or NULL with err. hooks_get: the result.
 */
json_t *rpc_hooks_set(struct hooks *h, struct fhooks *fh, const json_t *params, char *err,
		      size_t errn);
json_t *rpc_hooks_get(const struct hooks *h, const struct fhooks *fh);
/* The `file` member of a file event. */
json_t *rpc_hooks_file_event(const struct sandbox_file_event *ev);

#endif
