/* SPDX-License-Identifier: MIT */
/* Network and file hook rules: parsing, matching, edits (net/hooks.h, fs/fhooks.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "common/pathglob.h"
#include "fs/fhooks.h"
#include "net/hooks.h"

static struct hooks *parse(const char *text, char *err, size_t errn)
{
	struct hooks *h = NULL;
	int r = hooks_parse_text((const uint8_t *)text, strlen(text), &h, err, errn);
	CHECK((r == 0) == (h != NULL));
	return h;
}

static int parse_err(const char *text, char *err, size_t errn)
{
	struct hooks *h = NULL;
	int r = hooks_parse_text((const uint8_t *)text, strlen(text), &h, err, errn);
	hooks_free(h);
	return r;
}

/* Packed fields of a request: method, path, then "name", "value" pairs; NULL ends. */
static void request(struct buf *b, const char *method, const char *path, ...)
{
	va_list ap;
	buf_fini(b);
	hooks_field_put(b, ":method", 7, method, strlen(method));
	hooks_field_put(b, ":path", 5, path, strlen(path));
	va_start(ap, path);
	for (const char *n; (n = va_arg(ap, const char *));) {
		const char *v = va_arg(ap, const char *);
		hooks_field_put(b, n, strlen(n), v, strlen(v));
	}
	va_end(ap);
}

static const char *get(const struct buf *b, const char *name, char *out, size_t n)
{
	size_t vl;
	const uint8_t *v = hooks_field_get(buf_head(b), buf_used(b), name, &vl);
	if (!v)
		return NULL;
	snprintf(out, n, "%.*s", (int)vl, (const char *)v);
	return out;
}

static void test_parse_errors(void)
{
	char err[512];
	CHECK(parse_err("{}", err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "array"));
	CHECK(parse_err("[{\"actoin\": \"block\"}]", err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "#0") && strstr(err, "unknown field actoin"));
	CHECK(parse_err("[{\"name\": \"x\", \"action\": \"deny\"}]", err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "hook rule x") && strstr(err, "action"));
	/* Headers the proxy owns cannot be set or deleted. */
	CHECK(parse_err("[{\"set_headers\": {\"Host\": \"evil\"}}]", err, sizeof(err)) == -EINVAL);
	CHECK(parse_err("[{\"delete_headers\": [\"content-length\"]}]", err, sizeof(err)) ==
	      -EINVAL);
	CHECK(parse_err("[{\"set_headers\": {\"X-A\": \"a\\r\\nX-B: b\"}}]", err, sizeof(err)) ==
	      -EINVAL);
	CHECK(parse_err("[{\"set_headers\": {\"bad name\": \"v\"}}]", err, sizeof(err)) == -EINVAL);
	CHECK(parse_err("[{\"path\": \"relative\"}]", err, sizeof(err)) == -EINVAL);
	CHECK(parse_err("[{\"rewrite_path\": \"/a?b\"}]", err, sizeof(err)) == -EINVAL);
	CHECK(parse_err("[{\"hosts\": [\"not a host\"]}]", err, sizeof(err)) == -EINVAL);
	CHECK(parse_err("[{\"methods\": [\"GE T\"]}]", err, sizeof(err)) == -EINVAL);
	CHECK(parse_err("[{\"body_replacements\": [{\"find\": \"\", \"replace\": \"x\"}]}]", err,
			sizeof(err)) == -EINVAL);
	CHECK(parse_err("[1]", err, sizeof(err)) == -EINVAL);
	CHECK(parse_err("not json", err, sizeof(err)) == -EINVAL);
	/* At most HOOKS_MAX_RULES. */
	char many[HOOKS_MAX_RULES * 3 + 8] = "[";
	for (int i = 0; i <= HOOKS_MAX_RULES; i++)
		strcat(many, i ? ",{}" : "{}");
	strcat(many, "]");
	CHECK(parse_err(many, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "too many"));
}

static void test_block_and_match(void)
{
	char err[512], v[256];
	struct hooks *h = parse("[{\"name\": \"admin\", \"hosts\": [\"*.x.com\", \"api.y.com\"], "
				"\"methods\": [\"post\", \"DELETE\"], \"path\": \"/admin/**\", "
				"\"action\": \"block\"}]",
				err, sizeof(err));
	CHECK(h != NULL);
	struct buf f = { 0 }, out = { 0 };
	struct hooks_verdict vd;
	request(&f, "POST", "/admin/users?x=1", "Host", "a.x.com", NULL);
	CHECK(hooks_request(h, "a.x.com", buf_head(&f), buf_used(&f), &out, &vd) == 0);
	CHECK_EQ_INT(vd.d, HOOKS_BLOCK);
	CHECK(!strcmp(vd.rule, "admin"));
	/* The subtree's root, dot segments, encoded slashes and double slashes: still /admin. */
	/* A path long enough that a fixed buffer would cut it before its dot segments end. */
	static char deep[12000];
	size_t dl = 0;
	for (int i = 0; i < 1500; i++)
		dl += (size_t)snprintf(deep + dl, sizeof(deep) - dl, "/a");
	for (int i = 0; i < 1500; i++)
		dl += (size_t)snprintf(deep + dl, sizeof(deep) - dl, "/..");
	snprintf(deep + dl, sizeof(deep) - dl, "/admin/x");
	const char *evasions[] = { "/admin",
				   "/public/../admin/x",
				   "/%61dmin/x",
				   "//admin//x",
				   "/./admin",
				   "/x/%2e%2e/admin",
				   "https://api.y.com/admin/x",
				   "HTTPS://api.y.com:443/x/../admin?q",
				   deep };
	for (size_t i = 0; i < sizeof(evasions) / sizeof(evasions[0]); i++) {
		request(&f, "POST", evasions[i], NULL);
		buf_fini(&out);
		hooks_request(h, "api.y.com", buf_head(&f), buf_used(&f), &out, &vd);
		CHECK_EQ_INT(vd.d, HOOKS_BLOCK);
	}
	/* Another method, host or path: passes untouched. */
	request(&f, "GET", "/admin/users", NULL);
	buf_fini(&out);
	hooks_request(h, "a.x.com", buf_head(&f), buf_used(&f), &out, &vd);
	CHECK_EQ_INT(vd.d, HOOKS_PASS);
	CHECK_EQ_MEM(buf_head(&out), buf_used(&out), buf_head(&f), buf_used(&f));
	request(&f, "POST", "/administrator", NULL);
	buf_fini(&out);
	hooks_request(h, "x.com", buf_head(&f), buf_used(&f), &out, &vd);
	CHECK_EQ_INT(vd.d, HOOKS_PASS);
	CHECK(!vd.matched);
	(void)v;
	buf_fini(&f);
	buf_fini(&out);
	hooks_free(h);
}

static void test_edits(void)
{
	char err[512], v[512];
	struct hooks *h =
	    parse("[{\"name\": \"e1\", \"set_headers\": {\"X-Team\": \"blue\", \"Authorization\": "
		  "\"none\"},"
		  " \"delete_headers\": [\"Cookie\"], \"set_query\": {\"v\": \"2 3\"},"
		  " \"delete_query\": [\"debug\"], \"rewrite_path\": \"/v2/items\","
		  " \"set_response_headers\": {\"X-Seen\": \"1\"},"
		  " \"delete_response_headers\": [\"Server\"]},"
		  " {\"name\": \"stop\", \"action\": \"allow\"},"
		  " {\"name\": \"never\", \"action\": \"block\"}]",
		  err, sizeof(err));
	CHECK(h != NULL);
	struct buf f = { 0 }, out = { 0 };
	struct hooks_verdict vd;
	request(&f, "GET", "/v1/items?debug=1&a=b&v=1", "Cookie", "s=1", "authorization", "old",
		"Accept", "*/*", NULL);
	CHECK(hooks_request(h, "api.test", buf_head(&f), buf_used(&f), &out, &vd) == 0);
	CHECK_EQ_INT(vd.d, HOOKS_PASS); /* "allow" ended the evaluation before "never" */
	CHECK_EQ_INT(vd.matched, 3);
	CHECK(!strcmp(get(&out, ":path", v, sizeof(v)), "/v2/items?a=b&v=2%203"));
	CHECK(get(&out, "cookie", v, sizeof(v)) == NULL);
	CHECK(!strcmp(get(&out, "authorization", v, sizeof(v)), "none"));
	CHECK(!strcmp(get(&out, "x-team", v, sizeof(v)), "blue"));
	CHECK(!strcmp(get(&out, "accept", v, sizeof(v)), "*/*"));

	/* Response edits: only the matched rules', only while the rules are the same. */
	struct http_msg m;
	const char *why;
	const char *resp = "HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 0\r\n\r\n";
	CHECK(http_parse_response((const uint8_t *)resp, strlen(resp), false, &m, &why) == 0);
	struct buf rh = { 0 };
	CHECK(hooks_response_head(h, vd.matched, vd.gen, (const uint8_t *)resp, &m, &rh) == 1);
	const char *want = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-seen: 1\r\n\r\n";
	CHECK_EQ_MEM(buf_head(&rh), buf_used(&rh), want, strlen(want));
	buf_fini(&rh);
	CHECK(hooks_response_head(h, 0, vd.gen, (const uint8_t *)resp, &m, &rh) == 0);
	struct hooks *fresh = parse("[]", err, sizeof(err));
	hooks_replace(h, fresh);
	CHECK(hooks_response_head(h, vd.matched, vd.gen, (const uint8_t *)resp, &m, &rh) == 0);
	buf_fini(&f);
	buf_fini(&out);
	hooks_free(h);
}

static void test_callback_answer(void)
{
	char err[512], v[256];
	struct hooks *h = parse("[{\"name\": \"ask\", \"path\": \"/q\", \"action\": \"callback\"}]",
				err, sizeof(err));
	struct buf f = { 0 }, out = { 0 }, ans = { 0 };
	struct hooks_verdict vd;
	request(&f, "GET", "/q", "X-Old", "1", "X-Key", "SANDBOX_SECRET_x", NULL);
	hooks_request(h, "h.test", buf_head(&f), buf_used(&f), &out, &vd);
	CHECK_EQ_INT(vd.d, HOOKS_ASK);
	json_t *q = hooks_question(vd.rule, "h.test", 443, buf_head(&out), buf_used(&out));
	CHECK(!strcmp(json_string_value(json_object_get(q, "path")), "/q"));
	CHECK(!strcmp(json_string_value(json_object_get(json_object_get(q, "headers"), "x-key")),
		      "SANDBOX_SECRET_x"));
	json_decref(q);
	json_t *a = json_pack("{s:s,s:{s:s},s:[s]}", "action", "allow", "set_headers", "X-New",
			      "yes", "delete_headers", "x-old");
	CHECK(hooks_answer(a, buf_head(&out), buf_used(&out), &ans, err, sizeof(err)) == 1);
	CHECK(!strcmp(get(&ans, "x-new", v, sizeof(v)), "yes"));
	CHECK(get(&ans, "x-old", v, sizeof(v)) == NULL);
	json_decref(a);
	/* Fail closed: no answer, block, nonsense, a forbidden header. */
	CHECK(hooks_answer(NULL, buf_head(&out), buf_used(&out), &ans, err, sizeof(err)) == 0);
	a = json_pack("{s:s}", "action", "block");
	CHECK(hooks_answer(a, buf_head(&out), buf_used(&out), &ans, err, sizeof(err)) == 0);
	json_decref(a);
	a = json_pack("{s:i}", "action", 1);
	CHECK(hooks_answer(a, buf_head(&out), buf_used(&out), &ans, err, sizeof(err)) == 0);
	json_decref(a);
	a = json_pack("{s:s,s:{s:s}}", "action", "allow", "set_headers", "Host", "evil");
	CHECK(hooks_answer(a, buf_head(&out), buf_used(&out), &ans, err, sizeof(err)) == 0);
	json_decref(a);
	buf_fini(&f);
	buf_fini(&out);
	buf_fini(&ans);
	hooks_free(h);
}

static void test_roundtrip(void)
{
	char err[512];
	const char *text =
	    "[{\"name\": \"r\", \"action\": \"edit\", \"hosts\": [\"a.test\"], \"methods\": "
	    "[\"GET\"], \"path\": \"/p/*\", \"set_headers\": {\"x-a\": \"1\"}, \"delete_headers\": "
	    "[\"x-b\"], \"set_query\": {\"q\": \"1\"}, \"delete_query\": [\"z\"], "
	    "\"rewrite_path\": "
	    "\"/n\", \"set_response_headers\": {\"x-r\": \"2\"}, \"delete_response_headers\": "
	    "[\"x-s\"], \"body_replacements\": [{\"find\": \"a\", \"replace\": \"b\"}]}]";
	struct hooks *h = parse(text, err, sizeof(err));
	json_t *j = hooks_json(h), *want = json_loads(text, 0, NULL);
	CHECK(json_equal(j, want));
	json_decref(j);
	json_decref(want);
	hooks_free(h);
}

static void test_pathglob(void)
{
	CHECK(pathglob_match("/data/**", "/data"));
	CHECK(pathglob_match("/data/**", "/data/a/b"));
	CHECK(!pathglob_match("/data/**", "/database"));
	CHECK(pathglob_match("/w/*.txt", "/w/a.txt"));
	CHECK(!pathglob_match("/w/*.txt", "/w/d/a.txt"));
	CHECK(pathglob_match("/**", "/anything/at/all"));
	CHECK(pathglob_match("/*/x/**", "/a/x/y"));
	CHECK(!pathglob_valid("rel"));
	char n[64];
	hooks_path_normalise((const uint8_t *)"/a/b/../../../c?x", 17, n, sizeof(n));
	CHECK(!strcmp(n, "/c"));
	hooks_path_normalise((const uint8_t *)"/a/./b/", 7, n, sizeof(n));
	CHECK(!strcmp(n, "/a/b/"));
	hooks_path_normalise((const uint8_t *)"", 0, n, sizeof(n));
	CHECK(!strcmp(n, "/"));
}

static void test_file_rules(void)
{
	char err[512];
	struct fhooks *h = NULL;
	const char *bad[] = {
		"{}",
		"[{\"ops\": [\"writ\"]}]",
		"[{\"phase\": \"during\"}]",
		"[{\"phase\": \"after\", \"action\": \"block\"}]",
		"[{\"action\": \"rewrite\", \"ops\": [\"write\", \"create\"]}]",
		"[{\"path\": \"x\"}]",
		"[{\"oops\": 1}]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(fhooks_parse_text((const uint8_t *)bad[i], strlen(bad[i]), &h, err,
					sizeof(err)) == -EINVAL);
		CHECK(h == NULL);
	}
	const char *good =
	    "[{\"name\": \"ro\", \"ops\": [\"write\", \"remove\"], \"path\": \"/w/locked/**\", "
	    "\"action\": \"block\"}, {\"name\": \"log\", \"phase\": \"after\", \"ops\": "
	    "[\"create\"]}, {\"name\": \"rw\", \"ops\": [\"write\"], \"path\": \"/w/r.txt\", "
	    "\"action\": \"rewrite\"}]";
	CHECK(fhooks_parse_text((const uint8_t *)good, strlen(good), &h, err, sizeof(err)) == 0);
	const struct fhook_rule *r = fhooks_before(h, FH_WRITE, "/w/locked/a", NULL);
	/* A rename matches through either of its names. */
	CHECK(fhooks_before(h, FH_RENAME | FH_REMOVE, "/w/x", "/w/locked/y") == h->rule);
	CHECK(r && !strcmp(r->name, "ro") && r->action == FH_BLOCK);
	CHECK(fhooks_before(h, FH_READ, "/w/locked/a", NULL) == NULL);
	/* Only the rule's operations: a rename is not among them. */
	CHECK(fhooks_before(h, FH_RENAME, "/w/x", "/w/locked/y") == NULL);
	r = fhooks_before(h, FH_WRITE | FH_CREATE, "/w/r.txt", NULL);
	CHECK(r && r->action == FH_REWRITE);
	r = fhooks_after(h, FH_CREATE, "/anything", NULL);
	CHECK(r && !strcmp(r->name, "log") && r->action == FH_EVENT);
	json_t *j = fhooks_json(h);
	CHECK(json_array_size(j) == 3);
	json_decref(j);
	fhooks_free(h);
}

/* Body replacements: the same result however the body is cut; the longest pattern wins. */
static void test_body_replacements(void)
{
	char err[512];
	struct hooks *h = parse("[{\"body_replacements\": [{\"find\": \"secret\", \"replace\": "
				"\"[x]\"}, {\"find\": \"secretary\", \"replace\": \"clerk\"}, "
				"{\"find\": \"a\", \"replace\": \"\"}]}]",
				err, sizeof(err));
	CHECK(h != NULL);
	const char *in = "my secretary has a secret; secre";
	const char *want = "my clerk hs  [x]; secre";
	for (size_t cut = 0; cut <= strlen(in); cut++) {
		struct hooks_body *b = hooks_body_new(h, 1, h->gen);
		struct buf out = { 0 };
		CHECK(b != NULL);
		CHECK(hooks_body_feed(b, (const uint8_t *)in, cut, false, &out) == 0);
		CHECK(hooks_body_feed(b, (const uint8_t *)in + cut, strlen(in) - cut, true, &out) ==
		      0);
		CHECK_EQ_MEM(buf_head(&out), buf_used(&out), want, strlen(want));
		buf_fini(&out);
		hooks_body_free(b);
	}
	CHECK(hooks_body_new(h, 0, h->gen) == NULL);
	CHECK(hooks_body_new(h, 1, h->gen + 1) == NULL);
	hooks_free(h);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_parse_errors);
	CHECK_RUN(test_block_and_match);
	CHECK_RUN(test_edits);
	CHECK_RUN(test_callback_answer);
	CHECK_RUN(test_roundtrip);
	CHECK_RUN(test_pathglob);
	CHECK_RUN(test_file_rules);
	CHECK_RUN(test_body_replacements);
	return check_summary();
}
