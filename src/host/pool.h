/* SPDX-License-Identifier: MIT */
/*
 * A pool of pre-started sandboxes, without a daemon. `pool set` records a shape (image,
 * resources) and starts N standbys: each a detached process restored from the shape's template,
 * past one first command (the TCG translation cache is warm), waiting in
 * <state>/pools/<key>/ready/<ID>. A start of the same shape (run, run -d, rpc create: the
 * template path is the key, so every field that makes a template makes the shape) claims one by
 * renaming its entry (atomic: no standby is handed out twice), takes its VM over the standby's
 * pool.sock (sandbox_release_vm -> sandbox_adopt: the fds, QEMU's pid, the link's numbering),
 * pushes its own identity through the one path every start uses, and spawns a replacement. The
 * standby's process then becomes QEMU's holder (`pool __hold`): its parent, a few hundred KB,
 * killing it when the claimer's lease socket closes (the claimer ended, or died).
 *
 * Layout of <state>/pools/<key>/: conf (the shape: image, cpus, memory_mb, disk_size_mb, accel,
 * size), lock (flock while counting and spawning), ready/<ID> and starting/<TOKEN> ("PID START":
 * whose process, and its start time against pid reuse), claimed/<ID>.<PID> (being handed over).
 */
#ifndef MATCHLOCK_POOL_H
#define MATCHLOCK_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "sandbox.h"
#include "state.h"

#define POOL_MAX_SIZE 32 /* standbys per pool */
#define POOL_MAX_POOLS 64 /* pools `pool ls` and a gc look at */
#define POOL_KEY_LEN 32 /* hex digits of the template's name */
#define POOL_HANDOFF_MS 3000 /* a standby that does not hand over its VM by then is skipped */

/* A pool's shape and size (the conf file). */
struct pool_conf {
	char image[512];
	double cpus;
	long long memory_mb;
	long long disk_size_mb; /* 0: the default */
	char accel[8];
	char platform[32]; /* linux/amd64 or linux/arm64 (arch.h) */
	unsigned size;
};

/* A standby taken over: the sandbox's ID, directory and disk are the standby's. */
struct pool_claim {
	char id[16];
	char dir[4200];
	char disk[4300];
	struct sandbox_vm vm;
	int lease_fd;
};

/* The pool key of a template path (its file name's hex digits), or -EINVAL. */
int pool_key_of(const char *template_path, char key[POOL_KEY_LEN + 1]);
/*
 * Claim a ready standby of the pool for template_path and cpus: 0 with c filled (the caller adopts
 * c->vm with c->lease_fd, and owns c->dir), or -ENOENT when there is no pool or no standby that can
 * be handed over (crashed ones found on the way are cleaned). Spawns replacements either way.
 */
int pool_claim(struct state *st, const char *template_path, double cpus, struct pool_claim *c);

/* `matchlock pool ...` (cmd_pool.c) and its helpers. */
int pool_set(struct pool_conf *conf, char *key, char *err, size_t errn);
/* Remove pool key and its standbys (waits, bounded, until they are gone). */
int pool_remove(struct state *st, const char *key, char *err, size_t errn);
/* List the pools' keys (at most POOL_MAX_POOLS); returns how many. */
int pool_keys(char keys[][POOL_KEY_LEN + 1], int max);
int pool_conf_read(const char *key, struct pool_conf *conf);
/* Why the pool's last standby failed to start (until one starts), or -ENOENT. */
int pool_last_error(const char *key, char *out, size_t n);
/* Count a pool's live standbys (ready, starting), cleaning crashed ones on the way. */
void pool_count(struct state *st, const char *key, unsigned *ready, unsigned *starting);
/* Remove the pools of image ref (image rm); returns how many. */
int pool_remove_image(struct state *st, const char *ref);
/* gc: crashed standbys' entries and sandboxes. Returns how many were cleaned. */
int pool_gc(struct state *st);
/* The hidden verbs: a standby's life, and QEMU's holder after the handoff. */
int pool_standby_main(const char *key, const char *token, pid_t claimer);
int pool_hold_main(int lease_fd, int pidfd);

#endif
