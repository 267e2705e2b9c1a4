/* SPDX-License-Identifier: MIT */
/*
 * The exec environment merge (src/proto/env.c): layers replace earlier keys; the bounds
 * (MSG_MAX_ENV entries, ENV_MAX_BYTES in all) are errors, never an overflow or a silent drop.
 * 17 entries crossed the old 16-slot array in cmd_rpc.c's env_merge (a heap overflow).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "proto/env.h"

/* Fill a layer with n distinct KEY=VALUE entries K<prefix><i>=<i>. */
static int fill(struct env *e, const char *prefix, size_t n)
{
	char kv[64];
	for (size_t i = 0; i < n; i++) {
		snprintf(kv, sizeof(kv), "K%s%zu=%zu", prefix, i, i);
		int k = env_set(e, kv);
		if (k < 0)
			return k;
	}
	return 0;
}

static const char *get(struct env *e, const char *key)
{
	size_t kl = strlen(key);
	for (char **v = env_vector(e); *v; v++)
		if (!strncmp(*v, key, kl) && (*v)[kl] == '=')
			return *v + kl + 1;
	return NULL;
}

static size_t count(struct env *e)
{
	size_t n = 0;
	for (char **v = env_vector(e); *v; v++)
		n++;
	return n;
}

static void test_layers(void)
{
	struct env e = { 0 };
	CHECK(env_vector(&e) && !env_vector(&e)[0]);
	CHECK_EQ_INT(env_set(&e, "PATH=/bin"), 0);
	CHECK_EQ_INT(env_set(&e, "A=1"), 0);
	CHECK_EQ_INT(env_set_kv(&e, "A", "2"), 0); /* a later layer wins */
	CHECK_EQ_INT(env_set(&e, "AB=3"), 0); /* AB is not A */
	CHECK_EQ_INT(env_set(&e, "EMPTY="), 0);
	CHECK_EQ_INT(count(&e), 4);
	CHECK(get(&e, "A") && !strcmp(get(&e, "A"), "2"));
	CHECK(get(&e, "AB") && !strcmp(get(&e, "AB"), "3"));
	CHECK(get(&e, "EMPTY") && !strcmp(get(&e, "EMPTY"), ""));
	CHECK_EQ_INT(env_set(&e, "NOEQUALS"), -EINVAL);
	CHECK_EQ_INT(env_set(&e, "=v"), -EINVAL);
	CHECK_EQ_INT(env_set_kv(&e, "", "v"), -EINVAL);
	CHECK_EQ_INT(env_set_kv(&e, "K=X", "v"), -EINVAL);
	CHECK_EQ_INT(count(&e), 4);

	struct env c;
	CHECK_EQ_INT(env_copy(&c, &e), 0);
	CHECK_EQ_INT(env_set_kv(&c, "A", "3"), 0);
	CHECK(!strcmp(get(&c, "A"), "3") && !strcmp(get(&e, "A"), "2"));
	CHECK_EQ_INT(c.bytes, e.bytes);
	env_fini(&c);
	env_fini(&e);
	env_fini(&e); /* fini twice is harmless */
}

/* 17 and 20: past the old 16 slots; two layers of 20 with overlapping keys. */
static void test_past_sixteen(void)
{
	struct env e = { 0 };
	CHECK_EQ_INT(fill(&e, "", 17), 0);
	CHECK_EQ_INT(count(&e), 17);
	CHECK_EQ_INT(fill(&e, "", 20), 0); /* 17 replaced, 3 new */
	CHECK_EQ_INT(fill(&e, "b", 20), 0);
	CHECK_EQ_INT(count(&e), 40);
	CHECK(!strcmp(get(&e, "K19"), "19") && !strcmp(get(&e, "Kb19"), "19"));
	env_fini(&e);
}

static void test_1024_and_the_maximum(void)
{
	struct env e = { 0 };
	CHECK_EQ_INT(fill(&e, "", 1024), 0);
	CHECK_EQ_INT(count(&e), 1024);
	struct env c;
	CHECK_EQ_INT(env_copy(&c, &e), 0);
	CHECK_EQ_INT(fill(&c, "x", 1024), 0);
	CHECK_EQ_INT(count(&c), 2048);
	env_fini(&c);
	env_fini(&e);

	/* MSG_MAX_ENV fits; one more is -E2BIG and changes nothing; replacing still works. */
	CHECK_EQ_INT(fill(&e, "", MSG_MAX_ENV), 0);
	CHECK_EQ_INT(count(&e), MSG_MAX_ENV);
	size_t bytes = e.bytes;
	CHECK_EQ_INT(env_set(&e, "ONE_MORE=1"), -E2BIG);
	CHECK_EQ_INT(env_set_kv(&e, "ONE_MORE", "1"), -E2BIG);
	CHECK_EQ_INT(count(&e), MSG_MAX_ENV);
	CHECK_EQ_INT(e.bytes, bytes);
	CHECK_EQ_INT(env_set(&e, "K0=zero"), 0);
	CHECK(!strcmp(get(&e, "K0"), "zero"));
	CHECK(strstr(env_strerror(-E2BIG), "4096") != NULL);
	env_fini(&e);
}

/* An entry (or a sum) larger than one exec frame can carry: refused, before copying. */
static void test_oversized(void)
{
	struct env e = { 0 };
	size_t big = ENV_MAX_BYTES + 10;
	char *s = malloc(big + 1);
	if (!CHECK(s))
		return;
	memset(s, 'v', big);
	s[big] = 0;
	memcpy(s, "BIG=", 4);
	CHECK_EQ_INT(env_set(&e, s), -EMSGSIZE);
	CHECK_EQ_INT(env_set_kv(&e, "BIG", s + 4), -EMSGSIZE);
	CHECK_EQ_INT(count(&e), 0);

	/* 1000 keys of ~8 KB (the image that exhausted the stack): the sum is refused. */
	char *kv = malloc(8200);
	if (!CHECK(kv)) {
		free(s);
		return;
	}
	int k = 0;
	size_t i;
	for (i = 0; i < 1000 && k == 0; i++) {
		snprintf(kv, 8200, "K%zu_", i);
		size_t l = strlen(kv);
		memset(kv + l, 'k', 8000);
		kv[l + 8000] = '=';
		kv[l + 8001] = 'v';
		kv[l + 8002] = 0;
		k = env_set(&e, kv);
	}
	CHECK_EQ_INT(k, -EMSGSIZE);
	CHECK(i < 1000);
	CHECK(e.bytes <= ENV_MAX_BYTES);
	CHECK(strstr(env_strerror(-EMSGSIZE), "KiB") != NULL);
	/* A replacement that shrinks an entry is fine even when full. */
	snprintf(kv, 8200, "K0_");
	memset(kv + 3, 'k', 8000);
	memcpy(kv + 8003, "=small", 7);
	CHECK_EQ_INT(env_set(&e, kv), 0);
	env_fini(&e);
	free(kv);
	free(s);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_layers);
	CHECK_RUN(test_past_sixteen);
	CHECK_RUN(test_1024_and_the_maximum);
	CHECK_RUN(test_oversized);
	return check_summary();
}
