/* SPDX-License-Identifier: MIT */
/*
 * The environment of an exec request: "KEY=VALUE" strings in layers (an image's Env, then the
 * caller's, then a request's), a later layer replacing an earlier KEY, as Docker does. The same
 * merge serves `matchlock run` and the RPC. Bounded by what one exec frame can carry:
 * MSG_MAX_ENV entries and ENV_MAX_BYTES in all; past either the caller gets an error, never a
 * silently shortened environment.
 */
#ifndef MATCHLOCK_ENV_H
#define MATCHLOCK_ENV_H

#include <stddef.h>

#include "msg.h"
#include "mux.h"

/* An environment larger than this could not be sent in an exec's OPEN frame anyway. */
#define ENV_MAX_KIB 252
#define ENV_MAX_BYTES (ENV_MAX_KIB * 1024u)
_Static_assert(ENV_MAX_BYTES < MUX_MAX_PAYLOAD, "an environment must fit in one exec frame");

struct env {
	char **v; /* NULL-terminated when n > 0 (env_vector gives a terminated vector always) */
	size_t n, cap;
	size_t bytes; /* sum of the strings' lengths (+1 each) */
};

/*
 * Set "KEY=VALUE", replacing an earlier KEY. Returns 0, -EINVAL (no '=' or an empty KEY),
 * -E2BIG (more than MSG_MAX_ENV entries), -EMSGSIZE (more than ENV_MAX_BYTES in all) or -ENOMEM.
 * On error e is unchanged.
 */
int env_set(struct env *e, const char *kv);
/* The same with KEY and VALUE apart; -EINVAL also when KEY holds '='. */
int env_set_kv(struct env *e, const char *key, const char *value);
/*
 * Set each "KEY=VALUE" of a NULL-terminated layer (an image's Env) in order. On error returns
 * env_set's -errno with *bad the index of the entry refused (entries before it are set).
 */
int env_merge(struct env *e, char *const *layer, size_t *bad);
/* Copy of src (a layer to build on); 0 or -ENOMEM. */
int env_copy(struct env *dst, const struct env *src);
/* The NULL-terminated vector (owned by e; valid until e changes), never NULL itself. */
char **env_vector(struct env *e);
void env_fini(struct env *e);
/* What env_set's error means, for messages ("too many variables (at most 4096)"). */
const char *env_strerror(int err);

#endif
