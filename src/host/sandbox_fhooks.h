/* SPDX-License-Identifier: MIT */
/* File hooks at the file service's door: see sandbox_fhooks.c. */
#ifndef MATCHLOCK_SANDBOX_FHOOKS_H
#define MATCHLOCK_SANDBOX_FHOOKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/hookask.h"
#include "fs/fhooks.h"

struct sandbox;

/* One per file-service stream: the question out about the request at its head. */
struct fhook_gate {
	const struct hook_asker *asker;
	int64_t ticket;
	bool answered;
	json_t *answer;
	void (*wake)(void *opaque); /* handle the stream's requests again */
	void *wake_opaque;
};

enum { FHOOK_GO, FHOOK_REPLIED, FHOOK_WAIT };

/*
 * Before request req[0..len) of share index is handled: FHOOK_GO (handle it; alt, when not
 * empty, is the request to handle instead), FHOOK_REPLIED (its EACCES reply is in reply),
 * FHOOK_WAIT (an SDK callback is asked; the gate's wake comes). *in describes it for after.
 */
int fhook_gate_before(struct sandbox *sb, struct fs_share *share, unsigned index,
		      struct fhook_gate *g, const uint8_t *req, size_t len, struct fs_opinfo *in,
		      struct buf *alt, struct buf *reply);
/* After it was handled (reply[0..rn), a rewritten write's size is put back): events. */
void fhook_gate_after(struct sandbox *sb, const struct fs_opinfo *in, bool rewritten,
		      uint8_t *reply, size_t rn);
/* The stream ends: a question out is cancelled. */
void fhook_gate_fini(struct fhook_gate *g);

#endif
