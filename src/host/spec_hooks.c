/* SPDX-License-Identifier: MIT */
/* The hook rules document (spec_hooks.h). */
#define _GNU_SOURCE
#include "spec_hooks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hooks *spec_hooks_new(void)
{
	struct hooks *h = calloc(1, sizeof(*h));
	if (h)
		h->timeout_ms = HOOK_ASK_TIMEOUT_MS_DEFAULT;
	return h;
}

struct fhooks *spec_fhooks_new(void)
{
	struct fhooks *h = calloc(1, sizeof(*h));
	if (h)
		h->timeout_ms = HOOK_ASK_TIMEOUT_MS_DEFAULT;
	return h;
}

int spec_hooks_apply(struct hooks *h, struct fhooks *fh, const json_t *doc, char *err, size_t errn)
{
	if (!json_is_object(doc)) {
		snprintf(err, errn,
			 "hooks must be an object {network, files, callback_timeout_ms}");
		return -EINVAL;
	}
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)doc, k, v)
	{
		if (strcmp(k, "network") && strcmp(k, "files") &&
		    strcmp(k, "callback_timeout_ms")) {
			snprintf(
			    err, errn,
			    "hooks.%.64s is not supported (network, files, callback_timeout_ms)",
			    k);
			return -EINVAL;
		}
	}
	const json_t *t = json_object_get(doc, "callback_timeout_ms");
	json_int_t ms = json_integer_value(t);
	if (t && (!json_is_integer(t) || ms < 1 || ms > HOOK_ASK_TIMEOUT_MS_MAX)) {
		snprintf(err, errn, "hooks.callback_timeout_ms must be 1 to %d",
			 HOOK_ASK_TIMEOUT_MS_MAX);
		return -EINVAL;
	}
	struct hooks *nh = NULL;
	struct fhooks *nf = NULL;
	const json_t *n = json_object_get(doc, "network"), *f = json_object_get(doc, "files");
	int r = n ? hooks_parse(n, &nh, err, errn) : 0;
	if (r == 0 && f)
		r = fhooks_parse(f, &nf, err, errn);
	if (r < 0) {
		hooks_free(nh);
		fhooks_free(nf);
		return r;
	}
	if (nh)
		hooks_replace(h, nh);
	if (nf)
		fhooks_replace(fh, nf);
	if (t)
		h->timeout_ms = fh->timeout_ms = (unsigned)ms;
	return 0;
}

int spec_hooks_load(struct hooks *h, struct fhooks *fh, const char *path, char *err, size_t errn)
{
	json_error_t je;
	json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!doc) {
		snprintf(err, errn, "--hooks %s: %s (line %d)", path, je.text, je.line);
		return -EINVAL;
	}
	char e[700];
	int r = spec_hooks_apply(h, fh, doc, e, sizeof(e));
	json_decref(doc);
	if (r < 0)
		snprintf(err, errn, "--hooks %s: %s", path, e);
	return r;
}

json_t *spec_hooks_json(const struct hooks *h, const struct fhooks *fh)
{
	return json_pack("{s:o,s:o,s:i}", "network", hooks_json(h), "files", fhooks_json(fh),
			 "callback_timeout_ms", (int)(h ? h->timeout_ms : 0));
}
