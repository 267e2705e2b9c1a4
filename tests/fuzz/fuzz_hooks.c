/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: the hook rule parsers (net/hooks.h, fs/fhooks.h) and what the network rules do to a
 * request. Input: a mode byte (bit 0: the file rules' parser too), the rules (JSON) up to the
 * first NUL, then a request: its method and target on the first line, then "name: value" lines.
 * Invariants: a parsed rule set prints (hooks_json) to JSON that parses to the same rules; the
 * edited request is a well-formed field list that still has its :method and :path; response
 * edits and a callback answer (the request bytes taken as JSON) never crash.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/pathglob.h"
#include "fs/fhooks.h"
#include "net/hooks.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

/* The request part as packed fields. */
static void fields_of(const uint8_t *p, size_t n, struct buf *f)
{
	const uint8_t *end = p + n, *nl = memchr(p, '\n', n);
	const uint8_t *line_end = nl ? nl : end;
	const uint8_t *sp = memchr(p, ' ', (size_t)(line_end - p));
	hooks_field_put(f, ":method", 7, p, sp ? (size_t)(sp - p) : (size_t)(line_end - p));
	hooks_field_put(f, ":path", 5, sp ? sp + 1 : (const uint8_t *)"/",
			sp ? (size_t)(line_end - sp - 1) : 1);
	for (const uint8_t *s = nl ? nl + 1 : end; s < end;) {
		const uint8_t *e = memchr(s, '\n', (size_t)(end - s));
		e = e ? e : end;
		const uint8_t *colon = memchr(s, ':', (size_t)(e - s));
		if (colon)
			hooks_field_put(f, s, (size_t)(colon - s), colon + 1,
					(size_t)(e - colon - 1));
		s = e + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	if (n < 1)
		return 0;
	uint8_t mode = p[0];
	p++, n--;
	const uint8_t *nul = memchr(p, 0, n);
	size_t rl = nul ? (size_t)(nul - p) : n;
	const uint8_t *rq = nul ? nul + 1 : p + n;
	size_t rqn = nul ? n - rl - 1 : 0;
	char err[512];

	if (mode & 1) {
		struct fhooks *fh = NULL;
		if (fhooks_parse_text(p, rl, &fh, err, sizeof(err)) == 0) {
			char path[256];
			size_t k = rqn < sizeof(path) - 2 ? rqn : sizeof(path) - 2;
			path[0] = '/';
			memcpy(path + 1, rq, k);
			path[k + 1] = 0;
			fhooks_before(fh, FH_OPS_ALL, path, NULL);
			fhooks_after(fh, FH_OPS_ALL, path, path);
			json_decref(fhooks_json(fh));
			fhooks_free(fh);
		}
	}
	struct hooks *h = NULL;
	if (hooks_parse_text(p, rl, &h, err, sizeof(err)) < 0)
		return 0;
	/* Round trip: what hooks_json prints parses to the same rules. */
	json_t *j = hooks_json(h);
	struct hooks *again = NULL;
	if (hooks_parse(j, &again, err, sizeof(err)) < 0)
		abort();
	json_t *j2 = hooks_json(again);
	if (!json_equal(j, j2))
		abort();
	json_decref(j);
	json_decref(j2);
	hooks_free(again);

	struct buf f = { 0 }, out = { 0 }, ans = { 0 }, resp = { 0 };
	fields_of(rq, rqn, &f);
	struct hooks_verdict v;
	if (hooks_request(h, "a.test", buf_head(&f), buf_used(&f), &out, &v) == 0) {
		size_t ml, pl;
		if (!hooks_field_get(buf_head(&out), buf_used(&out), ":method", &ml) ||
		    !hooks_field_get(buf_head(&out), buf_used(&out), ":path", &pl))
			abort();
		json_t *q = hooks_question(v.rule, "a.test", 443, buf_head(&out), buf_used(&out));
		json_decref(q);
		json_t *a = json_loadb((const char *)rq, rqn, 0, NULL);
		hooks_answer(a, buf_head(&out), buf_used(&out), &ans, err, sizeof(err));
		json_decref(a);
		hooks_response_fields(h, v.matched, v.gen, buf_head(&f), buf_used(&f), &resp);
	}
	char np[HOOKS_VALUE_MAX + 2];
	hooks_path_normalise(rq, rqn, np, sizeof(np));
	if (np[0] != '/')
		abort();
	buf_fini(&f);
	buf_fini(&out);
	buf_fini(&ans);
	buf_fini(&resp);
	hooks_free(h);
	return 0;
}
