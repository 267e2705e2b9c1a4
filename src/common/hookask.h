/* SPDX-License-Identifier: MIT */
/*
 * Asking the program that drives a sandbox (an SDK, over `matchlock rpc`) about one HTTP request
 * or one file operation, for what declarative hook rules cannot express. The proxy (net/hooks.h)
 * and the file service (fs/fhooks.h) ask; the RPC server (host/cmd_rpc.c) carries the question
 * to its client as a JSON-RPC request and the answer back. The asker owns the bounded wait: every
 * question is answered exactly once, from the loop and never from inside ask(), with the
 * client's answer or with NULL (no answer in time, the client failed or went away), unless the
 * asker was told to cancel it first. A NULL answer is a refusal: hooks fail closed.
 */
#ifndef MATCHLOCK_HOOKASK_H
#define MATCHLOCK_HOOKASK_H

#include <jansson.h>
#include <stdint.h>

#define HOOK_ASK_TIMEOUT_MS_DEFAULT 5000 /* how long a question waits unless a spec says */
#define HOOK_ASK_TIMEOUT_MS_MAX 60000

/* answer: the client's result object (borrowed for the call), or NULL: refuse. */
typedef void (*hook_answer_fn)(void *who, const json_t *answer);

struct hook_asker {
	/*
	 * Ask question q (consumed; an object with "kind" and the details). Returns a ticket
	 * (> 0) for cancel, or -errno: no answer will come and the caller refuses at once.
	 */
	int64_t (*ask)(void *opaque, json_t *q, hook_answer_fn fn, void *who);
	/* The one who asked is going away: its answer must never be delivered. */
	void (*cancel)(void *opaque, int64_t ticket);
	void *opaque;
};

#endif
