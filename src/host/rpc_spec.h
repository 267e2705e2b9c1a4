/* SPDX-License-Identifier: MIT */
/*
 * The RPC's `create` params into a struct sandbox_spec (session.h). Only shape is judged here:
 * names and types; every value is sandbox_spec_check's, so each entry point words it the same.
 */
#ifndef MATCHLOCK_RPC_SPEC_H
#define MATCHLOCK_RPC_SPEC_H

#include <jansson.h>
#include <stddef.h>

#include "proto/env.h"
#include "session.h"

/*
 * create's params p into sp (made by sandbox_spec_init). Returns 0, -EINVAL with err (a field
 * this server does not know, a value of the wrong type, a bad env entry or host), or -ENOMEM.
 */
int rpc_spec_from_json(json_t *p, struct sandbox_spec *sp, char *err, size_t errn);
/*
 * Refuse a key of obj that is not in known (NULL-terminated), in sandbox_spec_unsupported's
 * words naming where.KEY. Returns 0 or -EINVAL with err.
 */
int rpc_spec_keys_known(json_t *obj, const char *where, const char *const *known, char *err,
			size_t errn);
/*
 * Put a {KEY: VALUE} object (a request's env) on top of e. Returns 0, or -errno with err saying
 * which variable and why (where names the parameter).
 */
int rpc_spec_env_put(struct env *e, json_t *obj, const char *where, char *err, size_t errn);

#endif
