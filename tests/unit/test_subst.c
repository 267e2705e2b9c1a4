/* SPDX-License-Identifier: MIT */
/*
 * The streaming substituter (subst.h) and its two rule sets in secrets.c: placeholders in
 * request bodies (any split gives the whole-buffer result, the value's encoding follows the
 * Content-Type, a placeholder headed elsewhere refuses the body, bounded hold-back) and the
 * response scrubber on top of the same engine.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "net/secrets.h"
#include "net/subst.h"

#define S(s) (const uint8_t *)(s), strlen(s)

static struct secrets ss;

static void setup(void)
{
	char err[200];
	const char *v = "sk/real+\"v\"";
	CHECK_EQ_INT(secrets_add(&ss, "API_KEY", (const uint8_t *)v, strlen(v), "api.test", err,
				 sizeof(err)),
		     0);
	CHECK_EQ_INT(secrets_add(&ss, "OTHER", (const uint8_t *)"other-value", 11, "other.test",
				 err, sizeof(err)),
		     0);
}

/* Feed text to a body substituter in pieces cut at cuts[] (ascending), then final. */
static int body_split(const char *host, enum secrets_body_enc enc, const char *text,
		      const size_t *cuts, unsigned ncuts, struct buf *out,
		      const struct secret **leak)
{
	struct secrets_body b;
	secrets_body_init(&b, &ss, host, enc, false);
	size_t at = 0, n = strlen(text);
	int r = 0;
	for (unsigned i = 0; i <= ncuts && r == 0; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		r = secrets_body_feed(&b, (const uint8_t *)text + at, end - at, i == ncuts, out);
		if (r == 0 && i < ncuts && subst_held(&b.st) > SECRET_PLACEHOLDER_LEN - 1)
			r = -E2BIG; /* the bound on what is held back */
		at = end;
	}
	*leak = b.leak;
	secrets_body_fini(&b);
	return r;
}

static void test_body_every_split(void)
{
	const char *ph = ss.s[0].placeholder;
	char text[512], want[512];
	snprintf(text, sizeof(text),
		 "{\"k\":\"%s\",\"x\":\"SANDBOX_SECRET_\",\"y\":\"%s\"}SANDBOX_SEC", ph, ph);
	snprintf(
	    want, sizeof(want),
	    "{\"k\":\"sk/real+\\\"v\\\"\",\"x\":\"SANDBOX_SECRET_\",\"y\":\"sk/real+\\\"v\\\"\"}"
	    "SANDBOX_SEC");
	size_t n = strlen(text);
	for (size_t a = 0; a <= n; a++) {
		for (size_t c = a; c <= n; c += 7) {
			size_t cuts[2] = { a, c };
			struct buf out = { 0 };
			const struct secret *leak;
			int r =
			    body_split("api.test", SECRETS_BODY_JSON, text, cuts, 2, &out, &leak);
			bool ok = CHECK_EQ_INT(r, 0) &&
				  CHECK_EQ_MEM(buf_head(&out), buf_used(&out), want, strlen(want));
			buf_fini(&out);
			if (!ok)
				return;
		}
	}
}

static void test_body_encodings(void)
{
	const char *ph = ss.s[0].placeholder;
	char text[200];
	snprintf(text, sizeof(text), "grant_type=client_credentials&client_secret=%s&x=1", ph);
	struct buf out = { 0 };
	const struct secret *leak;
	CHECK_EQ_INT(body_split("api.test", SECRETS_BODY_FORM, text, NULL, 0, &out, &leak), 0);
	buf_put_u8(&out, 0);
	CHECK(!strcmp((char *)out.p,
		      "grant_type=client_credentials&client_secret=sk%2Freal%2B%22v%22&x=1"));
	buf_fini(&out);
	CHECK_EQ_INT(body_split("api.test", SECRETS_BODY_RAW, ph, NULL, 0, &out, &leak), 0);
	CHECK_EQ_MEM(buf_head(&out), buf_used(&out), "sk/real+\"v\"", 11);
	buf_fini(&out);

	CHECK_EQ_INT(secrets_body_enc_for(S("application/x-www-form-urlencoded; charset=utf-8")),
		     SECRETS_BODY_FORM);
	CHECK_EQ_INT(secrets_body_enc_for(S("Application/JSON")), SECRETS_BODY_JSON);
	CHECK_EQ_INT(secrets_body_enc_for(S("application/vnd.api+json;v=1")), SECRETS_BODY_JSON);
	CHECK_EQ_INT(secrets_body_enc_for(S("multipart/form-data; boundary=x")), SECRETS_BODY_RAW);
	CHECK_EQ_INT(secrets_body_enc_for(NULL, 0), SECRETS_BODY_RAW);
}

static void test_body_leak(void)
{
	/* OTHER's placeholder toward api.test: refused, nothing of it written, named. */
	char text[200];
	snprintf(text, sizeof(text), "a=%s&b=%s", ss.s[0].placeholder, ss.s[1].placeholder);
	for (size_t cut = 0; cut <= strlen(text); cut++) {
		struct buf out = { 0 };
		const struct secret *leak = NULL;
		size_t cuts[1] = { cut };
		int r = body_split("api.test", SECRETS_BODY_FORM, text, cuts, 1, &out, &leak);
		bool ok = CHECK_EQ_INT(r, -EPERM) && CHECK(leak == &ss.s[1]) &&
			  CHECK(!memmem(buf_head(&out), buf_used(&out), "SANDBOX_SECRET_", 15));
		buf_fini(&out);
		if (!ok)
			return;
	}
	/* A compressed body is only inspected: even a placeholder scoped to the host refuses. */
	struct secrets_body b;
	struct buf out = { 0 };
	secrets_body_init(&b, &ss, "api.test", SECRETS_BODY_RAW, true);
	CHECK_EQ_INT(secrets_body_feed(&b, (const uint8_t *)ss.s[0].placeholder,
				       SECRET_PLACEHOLDER_LEN, true, &out),
		     -ENOTSUP);
	CHECK(b.leak == &ss.s[0]);
	secrets_body_fini(&b);
	buf_fini(&out);
	CHECK(secrets_host_bound(&ss, "api.test") && !secrets_host_bound(&ss, "third.test"));
}

/* A trivial rule set on the engine itself: "ab" -> "X", "abc" -> "Y" (longest wins). */
static enum subst_find ab_find(void *ctx, const uint8_t *p, size_t n, bool final,
			       struct subst_match *m)
{
	(void)ctx;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != 'a')
			continue;
		m->at = i;
		if (n - i < 3 && !final && (n - i == 1 || p[i + 1] == 'b'))
			return SUBST_MAYBE;
		if (n - i >= 2 && p[i + 1] == 'b') {
			m->len = n - i >= 3 && p[i + 2] == 'c' ? 3 : 2;
			return SUBST_FOUND;
		}
	}
	return SUBST_NONE;
}

static int ab_put(void *ctx, const uint8_t *matched, const struct subst_match *m, struct buf *out)
{
	(void)ctx, (void)matched;
	return buf_append(out, m->len == 3 ? "Y" : "X", 1);
}

static void test_engine(void)
{
	struct subst_rules r = { ab_find, ab_put, NULL };
	const char *text = "xabcab aab a";
	for (size_t cut = 0; cut <= strlen(text); cut++) {
		struct subst st = { 0 };
		struct buf out = { 0 };
		subst_feed(&st, &r, (const uint8_t *)text, cut, false, &out);
		CHECK(subst_held(&st) <= 2);
		subst_feed(&st, &r, (const uint8_t *)text + cut, strlen(text) - cut, true, &out);
		bool ok = CHECK_EQ_MEM(buf_head(&out), buf_used(&out), "xYX aX a", 8) &&
			  CHECK_EQ_INT(subst_held(&st), 0);
		subst_fini(&st);
		buf_fini(&out);
		if (!ok)
			return;
	}
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	setup();
	CHECK_RUN(test_engine);
	CHECK_RUN(test_body_every_split);
	CHECK_RUN(test_body_encodings);
	CHECK_RUN(test_body_leak);
	secrets_clear(&ss);
	return check_summary();
}
