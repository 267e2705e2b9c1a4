/* SPDX-License-Identifier: MIT */
/* Network hook rules: parsing, matching and the edits they make (see hooks.h). */
#define _GNU_SOURCE
#include "hooks.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/pathglob.h"

const char *const hook_action_names[HOOK_ACTION_END] = {
	[HOOK_EDIT] = "edit",
	[HOOK_ALLOW] = "allow",
	[HOOK_BLOCK] = "block",
	[HOOK_CALLBACK] = "callback",
};

/* Headers that frame or route a message: the proxy owns them, no rule may set or delete them. */
static const char *const reserved_headers[] = {
	"host",	      "content-length",	  "transfer-encoding",
	"connection", "upgrade",	  "te",
	"keep-alive", "proxy-connection", "expect",
	"trailer",    "http2-settings",	  NULL,
};

/* ---- packed field lists ------------------------------------------------------------------ */

int hooks_field_put(struct buf *b, const void *name, size_t nl, const void *v, size_t vl)
{
	buf_put_u32(b, (uint32_t)nl);
	buf_put_u32(b, (uint32_t)vl);
	buf_append(b, name, nl);
	buf_append(b, v, vl);
	return b->bad ? -ENOMEM : 0;
}

static bool field_next(struct rd *r, const uint8_t **name, size_t *nl, const uint8_t **v,
		       size_t *vl)
{
	if (!rd_left(r))
		return false;
	*nl = rd_u32(r);
	*vl = rd_u32(r);
	*name = rd_bytes(r, *nl);
	*v = rd_bytes(r, *vl);
	return !r->bad;
}

static bool name_is(const uint8_t *name, size_t nl, const char *want)
{
	return strlen(want) == nl && !strncasecmp((const char *)name, want, nl);
}

const uint8_t *hooks_field_get(const uint8_t *f, size_t n, const char *name, size_t *vl)
{
	struct rd r = rd_make(f, n);
	const uint8_t *nm, *v;
	size_t nl;
	while (field_next(&r, &nm, &nl, &v, vl))
		if (name_is(nm, nl, name))
			return v;
	*vl = 0;
	return NULL;
}

/* ---- paths ------------------------------------------------------------------------------- */

static int hexval(uint8_t c)
{
	return c >= '0' && c <= '9'			? c - '0'
	       : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
							: -1;
}

void hooks_path_normalise(const uint8_t *p, size_t n, char *out, size_t outn)
{
	/* An absolute-form target (scheme://authority/path) or "*": only its path counts. */
	size_t i0 = 0;
	if (n && p[0] != '/') {
		const uint8_t *sep = memmem(p, n, "://", 3);
		const uint8_t *sl = sep ? memchr(sep + 3, '/', n - (size_t)(sep + 3 - p)) : NULL;
		i0 = sl ? (size_t)(sl - p) : n;
	}
	/* Decoded, with "//" collapsed, into out; then dot segments removed in place. */
	size_t k = 0;
	out[k++] = '/';
	for (size_t i = i0; i < n && p[i] != '?' && p[i] != '#' && k + 1 < outn; i++) {
		uint8_t c = p[i];
		if (c == '%' && i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
			c = (uint8_t)(hexval(p[i + 1]) << 4 | hexval(p[i + 2]));
			i += 2;
		}
		if (c == 0)
			c = '_'; /* a NUL would end the string early */
		if (c == '/' && out[k - 1] == '/')
			continue;
		out[k++] = (char)c;
	}
	out[k] = 0;
	/* RFC 3986 5.2.4 over '/'-separated segments. */
	char *w = out;
	const char *s = out;
	while (*s) {
		/* s points at a '/' */
		const char *e = strchr(s + 1, '/');
		size_t sl = e ? (size_t)(e - s) : strlen(s);
		if (sl == 2 && s[1] == '.') {
			s += sl;
			if (!*s)
				*w++ = '/';
			continue;
		}
		if (sl == 3 && s[1] == '.' && s[2] == '.') {
			while (w > out && *--w != '/')
				;
			s += sl;
			if (!*s)
				*w++ = '/';
			continue;
		}
		memmove(w, s, sl);
		w += sl;
		s += sl;
	}
	if (w == out)
		*w++ = '/';
	*w = 0;
}

/* ---- parsing ----------------------------------------------------------------------------- */

static bool token_char(unsigned char c)
{
	return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c);
}

static bool header_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > HOOKS_FIELD_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!token_char((unsigned char)s[i]))
			return false;
	for (int i = 0; reserved_headers[i]; i++)
		if (!strcasecmp(s, reserved_headers[i]))
			return false;
	return true;
}

static bool value_ok(const char *s, size_t n)
{
	if (n > HOOKS_VALUE_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 ? s[i] != '\t' : s[i] == 0x7f)
			return false;
	return true;
}

/* A query key or value as the rule gives it (percent-encoded when it goes out): no controls. */
static bool query_part_ok(const char *s, bool key)
{
	size_t n = strlen(s);
	if ((key && !n) || n > (key ? HOOKS_FIELD_MAX : HOOKS_VALUE_MAX))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool path_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || s[0] != '/' || n > HOOKS_VALUE_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '?' || s[i] == '#')
			return false;
	return true;
}

static char *lower_dup(const char *s)
{
	char *d = strdup(s);
	for (char *p = d; p && *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

struct pctx {
	char *err;
	size_t errn;
	const char *rule; /* for messages */
};

static int perr(struct pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(struct pctx *c, const char *fmt, ...)
{
	char m[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	snprintf(c->err, c->errn, "hook rule %s: %s", c->rule, m);
	return -EINVAL;
}

/* {name: value} into kv (names checked as headers when header, else as query keys). */
static int parse_map(struct pctx *c, const json_t *o, const char *key, bool header, bool lower,
		     struct hook_kv *kv, unsigned *n)
{
	if (!o)
		return 0;
	if (!json_is_object(o) || json_object_size(o) > HOOKS_MAX_EDITS)
		return perr(c, "%s must be an object of at most 16 string values", key);
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v)
	{
		const char *s = json_string_value(v);
		if (!s)
			return perr(c, "%s: every value must be a string", key);
		bool ok = header ? header_name_ok(k) && value_ok(s, json_string_length(v))
				 : query_part_ok(k, true) && query_part_ok(s, false);
		if (!ok || strlen(s) != json_string_length(v))
			return perr(c,
				    "%s: a name or value that may not be used (a header the proxy "
				    "owns, a malformed name, or a control character)",
				    key);
		kv[*n].k = lower ? lower_dup(k) : strdup(k);
		kv[*n].v = strdup(s);
		(*n)++;
		if (!kv[*n - 1].k || !kv[*n - 1].v)
			return -ENOMEM;
	}
	return 0;
}

/* [names] into out. */
static int parse_names(struct pctx *c, const json_t *a, const char *key, bool header, char **out,
		       unsigned *n)
{
	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > HOOKS_MAX_EDITS)
		return perr(c, "%s must be an array of at most 16 strings", key);
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		const char *s = json_string_value(v);
		if (!s || strlen(s) != json_string_length(v) ||
		    !(header ? header_name_ok(s) : query_part_ok(s, true)))
			return perr(c, "%s: a name that may not be used", key);
		out[(*n)++] = header ? lower_dup(s) : strdup(s);
		if (!out[*n - 1])
			return -ENOMEM;
	}
	return 0;
}

static int parse_edits(struct pctx *c, const json_t *o, struct hook_edits *e, bool headers_only)
{
	int r = parse_map(c, json_object_get(o, "set_headers"), "set_headers", true, true, e->set,
			  &e->nset);
	if (!r)
		r = parse_names(c, json_object_get(o, "delete_headers"), "delete_headers", true,
				e->del, &e->ndel);
	if (r || headers_only)
		return r;
	r = parse_map(c, json_object_get(o, "set_query"), "set_query", false, false, e->qset,
		      &e->nqset);
	if (!r)
		r = parse_names(c, json_object_get(o, "delete_query"), "delete_query", false,
				e->qdel, &e->nqdel);
	const json_t *p = json_object_get(o, "rewrite_path");
	if (!r && p) {
		const char *s = json_string_value(p);
		if (!s || strlen(s) != json_string_length(p) || !path_ok(s))
			return perr(c, "%s must be a path starting with / (no query, no spaces)",
				    "rewrite_path");
		if (!(e->path = strdup(s)))
			return -ENOMEM;
	}
	return r;
}

static void edits_free(struct hook_edits *e)
{
	for (unsigned i = 0; i < e->nset; i++) {
		free(e->set[i].k);
		free(e->set[i].v);
	}
	for (unsigned i = 0; i < e->nqset; i++) {
		free(e->qset[i].k);
		free(e->qset[i].v);
	}
	for (unsigned i = 0; i < e->ndel; i++)
		free(e->del[i]);
	for (unsigned i = 0; i < e->nqdel; i++)
		free(e->qdel[i]);
	free(e->path);
	memset(e, 0, sizeof(*e));
}

static void rule_free(struct hook_rule *r)
{
	edits_free(&r->rq);
	free(r->path);
	for (unsigned i = 0; i < r->nrset; i++) {
		free(r->rset[i].k);
		free(r->rset[i].v);
	}
	for (unsigned i = 0; i < r->nrdel; i++)
		free(r->rdel[i]);
	for (unsigned i = 0; i < r->nbody; i++) {
		free(r->body[i].k);
		free(r->body[i].v);
	}
}

static const char *const rule_keys[] = {
	"name",
	"action",
	"hosts",
	"methods",
	"path",
	"set_headers",
	"delete_headers",
	"set_query",
	"delete_query",
	"rewrite_path",
	"set_response_headers",
	"delete_response_headers",
	"body_replacements",
	NULL,
};

static int parse_rule(struct pctx *c, const json_t *o, struct hook_rule *r)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v)
	{
		bool known = false;
		for (int i = 0; rule_keys[i] && !known; i++)
			known = !strcmp(k, rule_keys[i]);
		if (!known)
			return perr(c, "unknown field %.64s", k);
	}
	const json_t *j = json_object_get(o, "name");
	if (j) {
		const char *s = json_string_value(j);
		if (!s || !*s || strlen(s) > HOOKS_NAME_MAX || !value_ok(s, strlen(s)))
			return perr(c, "%s must be a string of 1 to 64 printable characters",
				    "name");
		snprintf(r->name, sizeof(r->name), "%s", s);
		c->rule = r->name;
	}
	j = json_object_get(o, "action");
	if (j) {
		const char *s = json_string_value(j);
		int a = -1;
		for (int i = 0; s && i < HOOK_ACTION_END; i++)
			if (!strcmp(s, hook_action_names[i]))
				a = i;
		if (a < 0)
			return perr(c, "%s must be one of edit, allow, block, callback", "action");
		r->action = (enum hook_action)a;
	}
	j = json_object_get(o, "hosts");
	if (j) {
		if (!json_is_array(j) || json_array_size(j) > HOOKS_MAX_HOSTS)
			return perr(c, "%s must be an array of at most 16 host globs", "hosts");
		size_t i;
		json_t *h;
		json_array_foreach(j, i, h)
		{
			const char *s = json_string_value(h);
			if (!s ||
			    policy_glob_normalise(s, r->hosts[r->nhosts], sizeof(r->hosts[0])) < 0)
				return perr(
				    c, "hosts: %s is not a host name or glob (as --allow-host)",
				    s ? s : "(not a string)");
			r->nhosts++;
		}
	}
	j = json_object_get(o, "methods");
	if (j) {
		if (!json_is_array(j) || json_array_size(j) > HOOKS_MAX_METHODS)
			return perr(c, "%s must be an array of at most 8 methods", "methods");
		size_t i;
		json_t *m;
		json_array_foreach(j, i, m)
		{
			const char *s = json_string_value(m);
			size_t l = s ? strlen(s) : 0;
			bool ok = l > 0 && l < sizeof(r->methods[0]);
			for (size_t x = 0; ok && x < l; x++)
				ok = token_char((unsigned char)s[x]);
			if (!ok)
				return perr(c, "methods: %s is not an HTTP method",
					    s ? s : "(not a string)");
			for (size_t x = 0; x <= l; x++)
				r->methods[r->nmethods][x] = (char)toupper((unsigned char)s[x]);
			r->nmethods++;
		}
	}
	j = json_object_get(o, "path");
	if (j) {
		const char *s = json_string_value(j);
		if (!s || strlen(s) != json_string_length(j) || !pathglob_valid(s))
			return perr(c, "%s must be a glob starting with /", "path");
		if (!(r->path = strdup(s)))
			return -ENOMEM;
	}
	int e = parse_edits(c, o, &r->rq, false);
	if (!e)
		e = parse_map(c, json_object_get(o, "set_response_headers"), "set_response_headers",
			      true, true, r->rset, &r->nrset);
	if (!e)
		e = parse_names(c, json_object_get(o, "delete_response_headers"),
				"delete_response_headers", true, r->rdel, &r->nrdel);
	if (e)
		return e;
	j = json_object_get(o, "body_replacements");
	if (j) {
		if (!json_is_array(j) || json_array_size(j) > HOOKS_MAX_BODY)
			return perr(c, "%s must be an array of at most 8 {find, replace}",
				    "body_replacements");
		size_t i;
		json_t *b;
		json_array_foreach(j, i, b)
		{
			json_t *fj = json_object_get(b, "find"),
			       *rj = json_object_get(b, "replace");
			if (!json_is_object(b) || json_object_size(b) != 2 || !json_is_string(fj) ||
			    !json_is_string(rj) || !json_string_length(fj) ||
			    json_string_length(fj) > HOOKS_VALUE_MAX ||
			    json_string_length(rj) > HOOKS_VALUE_MAX ||
			    strlen(json_string_value(fj)) != json_string_length(fj) ||
			    strlen(json_string_value(rj)) != json_string_length(rj))
				return perr(
				    c,
				    "%s: each must be {find, replace} with a non-empty find "
				    "(at most 4096 bytes each, no NUL)",
				    "body_replacements");
			r->body[r->nbody].k = strdup(json_string_value(fj));
			r->body[r->nbody].v = strdup(json_string_value(rj));
			r->nbody++;
			if (!r->body[r->nbody - 1].k || !r->body[r->nbody - 1].v)
				return -ENOMEM;
		}
	}
	return 0;
}

int hooks_parse(const json_t *rules, struct hooks **out, char *err, size_t errn)
{
	*out = NULL;
	if (!json_is_array(rules)) {
		snprintf(err, errn, "network hook rules must be an array of rule objects");
		return -EINVAL;
	}
	if (json_array_size(rules) > HOOKS_MAX_RULES) {
		snprintf(err, errn, "too many network hook rules (at most %d)", HOOKS_MAX_RULES);
		return -EINVAL;
	}
	struct hooks *h = calloc(1, sizeof(*h));
	size_t n = json_array_size(rules);
	if (!h || (n && !(h->rule = calloc(n, sizeof(*h->rule))))) {
		free(h);
		snprintf(err, errn, "out of memory");
		return -ENOMEM;
	}
	h->timeout_ms = HOOK_ASK_TIMEOUT_MS_DEFAULT;
	size_t i;
	json_t *o;
	json_array_foreach(rules, i, o)
	{
		char idx[32];
		snprintf(idx, sizeof(idx), "#%zu", i);
		struct pctx c = { err, errn, idx };
		struct hook_rule *r = &h->rule[i];
		h->n = (unsigned)i + 1;
		snprintf(r->name, sizeof(r->name), "%s", idx);
		int k =
		    json_is_object(o) ? parse_rule(&c, o, r) : perr(&c, "%s", "must be an object");
		if (k < 0) {
			if (k == -ENOMEM)
				snprintf(err, errn, "out of memory");
			hooks_free(h);
			return k;
		}
	}
	*out = h;
	return 0;
}

int hooks_parse_text(const uint8_t *p, size_t n, struct hooks **out, char *err, size_t errn)
{
	*out = NULL;
	if (n > HOOKS_TEXT_MAX) {
		snprintf(err, errn, "network hook rules longer than %u bytes", HOOKS_TEXT_MAX);
		return -EINVAL;
	}
	json_error_t je;
	json_t *j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		snprintf(err, errn, "network hook rules: not JSON: %s", je.text);
		return -EINVAL;
	}
	int r = hooks_parse(j, out, err, errn);
	json_decref(j);
	return r;
}

void hooks_free(struct hooks *h)
{
	if (!h)
		return;
	for (unsigned i = 0; i < h->n; i++)
		rule_free(&h->rule[i]);
	free(h->rule);
	free(h);
}

void hooks_replace(struct hooks *h, struct hooks *fresh)
{
	for (unsigned i = 0; i < h->n; i++)
		rule_free(&h->rule[i]);
	free(h->rule);
	h->n = fresh->n;
	h->rule = fresh->rule;
	h->gen++;
	free(fresh);
}

static json_t *kv_json(const struct hook_kv *kv, unsigned n)
{
	json_t *o = json_object();
	for (unsigned i = 0; i < n; i++)
		json_object_set_new(o, kv[i].k, json_string(kv[i].v));
	return o;
}

static json_t *names_json(char *const *v, unsigned n)
{
	json_t *a = json_array();
	for (unsigned i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

json_t *hooks_json(const struct hooks *h)
{
	json_t *a = json_array();
	for (unsigned i = 0; h && i < h->n; i++) {
		const struct hook_rule *r = &h->rule[i];
		json_t *o =
		    json_pack("{s:s,s:s}", "name", r->name, "action", hook_action_names[r->action]);
		if (!o)
			continue;
		if (r->nhosts) {
			json_t *hs = json_array();
			for (unsigned k = 0; k < r->nhosts; k++)
				json_array_append_new(hs, json_string(r->hosts[k]));
			json_object_set_new(o, "hosts", hs);
		}
		if (r->nmethods) {
			json_t *ms = json_array();
			for (unsigned k = 0; k < r->nmethods; k++)
				json_array_append_new(ms, json_string(r->methods[k]));
			json_object_set_new(o, "methods", ms);
		}
		if (r->path)
			json_object_set_new(o, "path", json_string(r->path));
		if (r->rq.nset)
			json_object_set_new(o, "set_headers", kv_json(r->rq.set, r->rq.nset));
		if (r->rq.ndel)
			json_object_set_new(o, "delete_headers", names_json(r->rq.del, r->rq.ndel));
		if (r->rq.nqset)
			json_object_set_new(o, "set_query", kv_json(r->rq.qset, r->rq.nqset));
		if (r->rq.nqdel)
			json_object_set_new(o, "delete_query", names_json(r->rq.qdel, r->rq.nqdel));
		if (r->rq.path)
			json_object_set_new(o, "rewrite_path", json_string(r->rq.path));
		if (r->nrset)
			json_object_set_new(o, "set_response_headers", kv_json(r->rset, r->nrset));
		if (r->nrdel)
			json_object_set_new(o, "delete_response_headers",
					    names_json(r->rdel, r->nrdel));
		if (r->nbody) {
			json_t *b = json_array();
			for (unsigned k = 0; k < r->nbody; k++)
				json_array_append_new(b,
						      json_pack("{s:s,s:s}", "find", r->body[k].k,
								"replace", r->body[k].v));
			json_object_set_new(o, "body_replacements", b);
		}
		json_array_append_new(a, o);
	}
	return a;
}

/* ---- requests ---------------------------------------------------------------------------- */

static bool rule_matches(const struct hook_rule *r, const char *host, const uint8_t *meth,
			 size_t ml, const char *npath)
{
	bool ok = !r->nhosts;
	for (unsigned i = 0; i < r->nhosts && !ok; i++)
		ok = policy_glob_matches(r->hosts[i], host);
	if (!ok)
		return false;
	ok = !r->nmethods;
	for (unsigned i = 0; i < r->nmethods && !ok; i++)
		ok = strlen(r->methods[i]) == ml && !memcmp(r->methods[i], meth, ml);
	return ok && (!r->path || pathglob_match(r->path, npath));
}

static bool in_names(char *const *v, unsigned n, const uint8_t *name, size_t nl)
{
	for (unsigned i = 0; i < n; i++)
		if (name_is(name, nl, v[i]))
			return true;
	return false;
}

static bool in_kv(const struct hook_kv *kv, unsigned n, const uint8_t *name, size_t nl)
{
	for (unsigned i = 0; i < n; i++)
		if (name_is(name, nl, kv[i].k))
			return true;
	return false;
}

/* A query key or value percent-encoded (what is not unreserved). */
static void query_put(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || strchr("-._~", c)) {
			buf_put_u8(b, c);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			buf_append(b, e, 3);
		}
	}
}

/* The target p[0..n) with e's path and query edits, into out. */
static void target_edit(const struct hook_edits *e, const uint8_t *p, size_t n, struct buf *out)
{
	const uint8_t *q = memchr(p, '?', n);
	size_t pl = q ? (size_t)(q - p) : n;
	if (e->path)
		buf_append(out, e->path, strlen(e->path));
	else
		buf_append(out, p, pl);
	bool first = true;
	if (q) {
		const uint8_t *s = q + 1, *end = p + n;
		while (s < end) {
			const uint8_t *amp = memchr(s, '&', (size_t)(end - s));
			const uint8_t *pe = amp ? amp : end;
			const uint8_t *eq = memchr(s, '=', (size_t)(pe - s));
			size_t kl = (size_t)((eq ? eq : pe) - s);
			if (!in_names(e->qdel, e->nqdel, s, kl) &&
			    !in_kv(e->qset, e->nqset, s, kl) && pe > s) {
				buf_put_u8(out, first ? '?' : '&');
				buf_append(out, s, (size_t)(pe - s));
				first = false;
			}
			s = pe + 1;
		}
	}
	for (unsigned i = 0; i < e->nqset; i++) {
		buf_put_u8(out, first ? '?' : '&');
		query_put(out, e->qset[i].k);
		buf_put_u8(out, '=');
		query_put(out, e->qset[i].v);
		first = false;
	}
}

/* f with e applied, into out. */
static int edits_apply(const struct hook_edits *e, const uint8_t *f, size_t n, struct buf *out)
{
	struct rd r = rd_make(f, n);
	const uint8_t *nm, *v;
	size_t nl, vl;
	while (field_next(&r, &nm, &nl, &v, &vl)) {
		if (name_is(nm, nl, ":path") && (e->path || e->nqset || e->nqdel)) {
			struct buf t = { 0 };
			target_edit(e, v, vl, &t);
			hooks_field_put(out, nm, nl, buf_head(&t), buf_used(&t));
			buf_fini(&t);
			continue;
		}
		if (nl && nm[0] != ':' &&
		    (in_names(e->del, e->ndel, nm, nl) || in_kv(e->set, e->nset, nm, nl)))
			continue;
		hooks_field_put(out, nm, nl, v, vl);
	}
	for (unsigned i = 0; i < e->nset; i++)
		hooks_field_put(out, e->set[i].k, strlen(e->set[i].k), e->set[i].v,
				strlen(e->set[i].v));
	return out->bad ? -ENOMEM : 0;
}

int hooks_request(const struct hooks *h, const char *host, const uint8_t *f, size_t n,
		  struct buf *out, struct hooks_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->gen = h ? h->gen : 0;
	size_t ml, pl;
	const uint8_t *meth = hooks_field_get(f, n, ":method", &ml);
	const uint8_t *path = hooks_field_get(f, n, ":path", &pl);
	if (!meth || !path)
		return -EPROTO;
	/* Decoding never lengthens: the whole path fits, nothing a rule should see is cut off. */
	char *np = malloc(pl + 2);
	if (!np)
		return -ENOMEM;
	hooks_path_normalise(path, pl, np, pl + 2);
	struct buf cur = { 0 };
	buf_append(&cur, f, n);
	for (unsigned i = 0; h && i < h->n && v->d == HOOKS_PASS; i++) {
		const struct hook_rule *r = &h->rule[i];
		if (!rule_matches(r, host, meth, ml, np))
			continue;
		v->matched |= 1ull << i;
		struct buf next = { 0 };
		int k = edits_apply(&r->rq, buf_head(&cur), buf_used(&cur), &next);
		buf_fini(&cur);
		cur = next;
		if (k < 0) {
			buf_fini(&cur);
			free(np);
			return k;
		}
		if (r->action == HOOK_BLOCK)
			v->d = HOOKS_BLOCK;
		else if (r->action == HOOK_CALLBACK)
			v->d = HOOKS_ASK;
		if (r->action != HOOK_EDIT)
			snprintf(v->rule, sizeof(v->rule), "%s", r->name);
		if (r->action == HOOK_ALLOW)
			break;
	}
	free(np);
	int k = buf_append(out, buf_head(&cur), buf_used(&cur));
	buf_fini(&cur);
	return k < 0 ? -ENOMEM : 0;
}

json_t *hooks_question(const char *rule, const char *host, uint16_t port, const uint8_t *f,
		       size_t n)
{
	size_t ml, pl;
	const uint8_t *meth = hooks_field_get(f, n, ":method", &ml);
	const uint8_t *path = hooks_field_get(f, n, ":path", &pl);
	json_t *hd = json_object();
	struct rd r = rd_make(f, n);
	const uint8_t *nm, *v;
	size_t nl, vl;
	while (hd && field_next(&r, &nm, &nl, &v, &vl)) {
		if (!nl || nm[0] == ':' || nl > HOOKS_FIELD_MAX)
			continue;
		char name[HOOKS_FIELD_MAX + 1];
		for (size_t i = 0; i < nl; i++)
			name[i] = (char)tolower(nm[i]);
		name[nl] = 0;
		/* Values from the guest: json_stringn refuses invalid UTF-8; those are left out. */
		json_t *s = json_stringn((const char *)v, vl);
		if (s)
			json_object_set_new(hd, name, s);
	}
	json_t *q = json_pack("{s:s,s:s,s:s%,s:s,s:i,s:s%,s:o}", "kind", "network", "rule", rule,
			      "method", meth ? (const char *)meth : "", meth ? ml : 0, "host", host,
			      "port", (int)port, "path", path ? (const char *)path : "",
			      path ? pl : 0, "headers", hd);
	return q;
}

int hooks_answer(const json_t *answer, const uint8_t *f, size_t n, struct buf *out, char *err,
		 size_t errn)
{
	if (!answer) {
		snprintf(err, errn, "no answer from the SDK callback in time");
		return 0;
	}
	const char *a = json_string_value(json_object_get(answer, "action"));
	if (!json_is_object(answer) || !a || (strcmp(a, "allow") && strcmp(a, "block"))) {
		snprintf(err, errn, "the SDK callback's answer has no action allow or block");
		return 0;
	}
	if (!strcmp(a, "block")) {
		snprintf(err, errn, "the SDK callback blocked it");
		return 0;
	}
	struct hook_edits e = { 0 };
	struct pctx c = { err, errn, "(callback answer)" };
	int k = parse_edits(&c, answer, &e, true);
	if (k == 0)
		k = edits_apply(&e, f, n, out);
	edits_free(&e);
	if (k == -EINVAL)
		return 0;
	return k < 0 ? k : 1;
}

/* ---- responses --------------------------------------------------------------------------- */

static bool resp_edited(const struct hooks *h, uint64_t matched, uint32_t gen)
{
	if (!h || !matched || gen != h->gen)
		return false;
	for (unsigned i = 0; i < h->n; i++)
		if ((matched >> i & 1) && (h->rule[i].nrset || h->rule[i].nrdel))
			return true;
	return false;
}

static bool resp_dropped(const struct hooks *h, uint64_t matched, const uint8_t *nm, size_t nl)
{
	for (unsigned i = 0; i < h->n; i++)
		if ((matched >> i & 1) && (in_names(h->rule[i].rdel, h->rule[i].nrdel, nm, nl) ||
					   in_kv(h->rule[i].rset, h->rule[i].nrset, nm, nl)))
			return true;
	return false;
}

int hooks_response_fields(const struct hooks *h, uint64_t matched, uint32_t gen, const uint8_t *f,
			  size_t n, struct buf *out)
{
	if (!resp_edited(h, matched, gen))
		return 0;
	struct rd r = rd_make(f, n);
	const uint8_t *nm, *v;
	size_t nl, vl;
	while (field_next(&r, &nm, &nl, &v, &vl))
		if ((nl && nm[0] == ':') || !resp_dropped(h, matched, nm, nl))
			hooks_field_put(out, nm, nl, v, vl);
	for (unsigned i = 0; i < h->n; i++)
		for (unsigned k = 0; (matched >> i & 1) && k < h->rule[i].nrset; k++)
			hooks_field_put(out, h->rule[i].rset[k].k, strlen(h->rule[i].rset[k].k),
					h->rule[i].rset[k].v, strlen(h->rule[i].rset[k].v));
	return out->bad ? -ENOMEM : 1;
}

int hooks_response_head(const struct hooks *h, uint64_t matched, uint32_t gen, const uint8_t *head,
			const struct http_msg *m, struct buf *out)
{
	if (!resp_edited(h, matched, gen))
		return 0;
	/* The start line and the fields that stay, then the set ones, then the empty line. */
	buf_append(out, head, m->line_len + 2);
	for (unsigned i = 0; i < m->nfields; i++) {
		const struct http_field *fl = &m->field[i];
		if (!resp_dropped(h, matched, head + fl->name_off, fl->name_len))
			buf_append(out, head + fl->name_off, fl->end + 2 - fl->name_off);
	}
	for (unsigned i = 0; i < h->n; i++) {
		for (unsigned k = 0; (matched >> i & 1) && k < h->rule[i].nrset; k++) {
			const struct hook_kv *kv = &h->rule[i].rset[k];
			buf_append(out, kv->k, strlen(kv->k));
			buf_append(out, ": ", 2);
			buf_append(out, kv->v, strlen(kv->v));
			buf_append(out, "\r\n", 2);
		}
	}
	buf_append(out, "\r\n", 2);
	return out->bad ? -ENOMEM : 1;
}

/* ---- response bodies --------------------------------------------------------------------- */

struct hooks_body {
	struct subst st;
	unsigned n;
	struct {
		char *find, *rep;
		size_t flen, rlen;
	} r[HOOKS_BODY_MAX];
};

struct hooks_body *hooks_body_new(const struct hooks *h, uint64_t matched, uint32_t gen)
{
	if (!h || !matched || gen != h->gen)
		return NULL;
	struct hooks_body *b = NULL;
	for (unsigned i = 0; i < h->n; i++) {
		const struct hook_rule *r = &h->rule[i];
		for (unsigned k = 0; (matched >> i & 1) && k < r->nbody; k++) {
			if (!b && !(b = calloc(1, sizeof(*b))))
				return NULL;
			if (b->n == HOOKS_BODY_MAX)
				return b;
			b->r[b->n].find = strdup(r->body[k].k);
			b->r[b->n].rep = strdup(r->body[k].v);
			if (!b->r[b->n].find || !b->r[b->n].rep) {
				free(b->r[b->n].find);
				free(b->r[b->n].rep);
				hooks_body_free(b);
				return NULL;
			}
			b->r[b->n].flen = strlen(b->r[b->n].find);
			b->r[b->n].rlen = strlen(b->r[b->n].rep);
			b->n++;
		}
	}
	return b;
}

void hooks_body_free(struct hooks_body *b)
{
	if (!b)
		return;
	subst_fini(&b->st);
	for (unsigned i = 0; i < b->n; i++) {
		free(b->r[i].find);
		free(b->r[i].rep);
	}
	free(b);
}

/* subst.h's find: the leftmost pattern; at one offset the longest, a partial one first. */
static enum subst_find body_find(void *ctx, const uint8_t *p, size_t n, bool final,
				 struct subst_match *m)
{
	const struct hooks_body *b = ctx;
	for (size_t at = 0; at < n; at++) {
		bool maybe = false, found = false;
		for (unsigned i = 0; i < b->n; i++) {
			size_t fl = b->r[i].flen, left = n - at;
			if (fl <= left) {
				if (!memcmp(p + at, b->r[i].find, fl) && (!found || fl > m->len)) {
					found = true;
					m->len = fl;
					m->id = i;
				}
			} else if (!final && !memcmp(p + at, b->r[i].find, left)) {
				maybe = true;
			}
		}
		if (maybe || found) {
			m->at = at;
			return maybe ? SUBST_MAYBE : SUBST_FOUND;
		}
	}
	return SUBST_NONE;
}

static int body_put(void *ctx, const uint8_t *matched, const struct subst_match *m, struct buf *out)
{
	const struct hooks_body *b = ctx;
	(void)matched;
	return buf_append(out, b->r[m->id].rep, b->r[m->id].rlen);
}

int hooks_body_feed(struct hooks_body *b, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	struct subst_rules r = { body_find, body_put, b };
	return subst_feed(&b->st, &r, p, n, final, out);
}
