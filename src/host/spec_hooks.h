/* SPDX-License-Identifier: MIT */
/*
 * A sandbox's hook rules as users write them, one JSON document for every entry point (the
 * RPC's create param "hooks", `hooks_set`, and the CLI's --hooks FILE):
 *   {"network": [rule...], "files": [rule...], "callback_timeout_ms": N}
 * (net/hooks.h and fs/fhooks.h say what a rule is). Members left out stay as they were.
 */
#ifndef MATCHLOCK_SPEC_HOOKS_H
#define MATCHLOCK_SPEC_HOOKS_H

#include <jansson.h>
#include <stddef.h>

#include "fs/fhooks.h"
#include "net/hooks.h"

#define SPEC_HOOKS_FILE_MAX (256u << 10)

/* Empty rule sets (what a spec starts with), or NULL (no memory). */
struct hooks *spec_hooks_new(void);
struct fhooks *spec_fhooks_new(void);
/*
 * Parse doc and, only if all of it is valid, replace h's and fh's rules (and timeouts) with
 * it. 0, or -EINVAL / -ENOMEM with err (nothing changed then).
 */
int spec_hooks_apply(struct hooks *h, struct fhooks *fh, const json_t *doc, char *err, size_t errn);
/* The same from a file (--hooks FILE). */
int spec_hooks_load(struct hooks *h, struct fhooks *fh, const char *path, char *err, size_t errn);
/* {network, files, callback_timeout_ms}: what is in force. */
json_t *spec_hooks_json(const struct hooks *h, const struct fhooks *fh);

#endif
