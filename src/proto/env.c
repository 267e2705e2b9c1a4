/* SPDX-License-Identifier: MIT */
#include "env.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t key_len(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? (size_t)(eq - kv) : 0;
}

/* Index of the entry whose key is kv's key, or e->n. */
static size_t env_find(const struct env *e, const char *kv, size_t klen)
{
	for (size_t i = 0; i < e->n; i++)
		if (!strncmp(e->v[i], kv, klen + 1))
			return i;
	return e->n;
}

/* Takes ownership of kv (freed on error). */
static int env_put(struct env *e, char *kv)
{
	size_t klen = key_len(kv);
	if (!klen) {
		free(kv);
		return -EINVAL;
	}
	size_t len = strlen(kv) + 1;
	size_t i = env_find(e, kv, klen);
	size_t old = i < e->n ? strlen(e->v[i]) + 1 : 0;
	if (e->bytes - old + len > ENV_MAX_BYTES) {
		free(kv);
		return -EMSGSIZE;
	}
	if (i < e->n) {
		free(e->v[i]);
		e->v[i] = kv;
		e->bytes = e->bytes - old + len;
		return 0;
	}
	if (e->n >= MSG_MAX_ENV) {
		free(kv);
		return -E2BIG;
	}
	if (e->n + 2 > e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 16;
		char **v = realloc(e->v, cap * sizeof(*v));
		if (!v) {
			free(kv);
			return -ENOMEM;
		}
		e->v = v;
		e->cap = cap;
	}
	e->v[e->n++] = kv;
	e->v[e->n] = NULL;
	e->bytes += len;
	return 0;
}

int env_set(struct env *e, const char *kv)
{
	/* Refuse before copying: an oversized entry costs nothing. */
	size_t len = strnlen(kv, ENV_MAX_BYTES + 1);
	if (len > ENV_MAX_BYTES)
		return -EMSGSIZE;
	char *copy = strndup(kv, len);
	if (!copy)
		return -ENOMEM;
	return env_put(e, copy);
}

int env_set_kv(struct env *e, const char *key, const char *value)
{
	size_t kl = strnlen(key, ENV_MAX_BYTES + 1), vl = strnlen(value, ENV_MAX_BYTES + 1);
	if (!kl || memchr(key, '=', kl))
		return -EINVAL;
	if (kl + vl + 2 > ENV_MAX_BYTES)
		return -EMSGSIZE;
	char *kv = malloc(kl + vl + 2);
	if (!kv)
		return -ENOMEM;
	memcpy(kv, key, kl);
	kv[kl] = '=';
	memcpy(kv + kl + 1, value, vl);
	kv[kl + 1 + vl] = 0;
	return env_put(e, kv);
}

int env_merge(struct env *e, char *const *layer, size_t *bad)
{
	for (size_t i = 0; layer && layer[i]; i++) {
		int k = env_set(e, layer[i]);
		if (k < 0) {
			*bad = i;
			return k;
		}
	}
	return 0;
}

int env_copy(struct env *dst, const struct env *src)
{
	struct env e = { .cap = src->n + 2, .bytes = src->bytes };
	if (!(e.v = calloc(e.cap, sizeof(*e.v))))
		return -ENOMEM;
	/* src's keys are already unique and within bounds: copy without looking up. */
	for (; e.n < src->n; e.n++) {
		if (!(e.v[e.n] = strdup(src->v[e.n]))) {
			env_fini(&e);
			return -ENOMEM;
		}
	}
	*dst = e;
	return 0;
}

char **env_vector(struct env *e)
{
	static char *empty[1] = { NULL };
	return e->n ? e->v : empty;
}

void env_fini(struct env *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
	*e = (struct env){ 0 };
}

#define STR_(x) #x
#define STR(x) STR_(x)
_Static_assert(ENV_MAX_BYTES == ENV_MAX_KIB * 1024, "ENV_MAX_KIB names ENV_MAX_BYTES");

const char *env_strerror(int err)
{
	switch (err) {
	case -EINVAL:
		return "not KEY=VALUE with a non-empty KEY";
	case -E2BIG:
		return "too many variables (at most " STR(MSG_MAX_ENV) ")";
	case -EMSGSIZE:
		return "environment too large (at most " STR(ENV_MAX_KIB) " KiB in all)";
	default:
		return strerror(-err);
	}
}
