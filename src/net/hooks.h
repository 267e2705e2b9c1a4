/* SPDX-License-Identifier: MIT */
/*
 * Network hooks: declarative rules the TLS proxy applies to each intercepted HTTP request
 * before anything else looks at it (so before secret substitution: a rule, and an SDK callback,
 * only ever see placeholders). A rule matches on the host (globs as --allow-host takes them),
 * the method and a path glob (common/pathglob.h, matched against the path percent-decoded with
 * its dot segments removed, so "/a/../admin" is "/admin"); every matching rule's edits apply in
 * order (set/delete request headers and query keys, rewrite the path), and its action decides:
 * "allow" ends the evaluation, "block" answers 403, "callback" asks the SDK (common/hookask.h),
 * and a rule without an action only edits. Response actions (set/delete response headers,
 * literal body replacements) of the rules that matched a request apply to its response.
 *
 * Requests are handled as packed field lists, the one shape HTTP/1 and HTTP/2 share: each
 * field is u32 name length, u32 value length, name, value (buf_put_u32 order), with the
 * pseudo-fields ":method" and ":path" (HTTP/2's own; proxy_hooks.c makes them for HTTP/1).
 * Pure code: unit-tested (tests/unit/test_hooks.c) and the rule parser fuzzed.
 */
#ifndef MATCHLOCK_NET_HOOKS_H
#define MATCHLOCK_NET_HOOKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/hookask.h"
#include "http.h"
#include "policy.h"
#include "subst.h"

#define HOOKS_MAX_RULES 64 /* network rules per sandbox (a bit each in hooks_verdict.matched) */
#define HOOKS_MAX_HOSTS 16 /* host globs per rule */
#define HOOKS_MAX_METHODS 8
#define HOOKS_MAX_EDITS 16 /* entries in each edit list of one rule */
#define HOOKS_MAX_BODY 8 /* body replacements per rule */
#define HOOKS_NAME_MAX 64 /* a rule's name */
#define HOOKS_FIELD_MAX 128 /* a header name or a query key */
#define HOOKS_VALUE_MAX 4096 /* a header or query value, a path, a body replacement */
#define HOOKS_TEXT_MAX (256u * 1024) /* a rules document (hooks_parse_text) */

enum hook_action {
	HOOK_EDIT, /* no action given: edit and go on to the next rule */
	HOOK_ALLOW,
	HOOK_BLOCK,
	HOOK_CALLBACK,
	HOOK_ACTION_END
};
extern const char *const hook_action_names[HOOK_ACTION_END];

struct hook_kv {
	char *k, *v;
};

/* Request edits: a rule's, or a callback answer's (headers only). */
struct hook_edits {
	unsigned nset, ndel, nqset, nqdel;
	struct hook_kv set[HOOKS_MAX_EDITS]; /* names lower case */
	char *del[HOOKS_MAX_EDITS];
	struct hook_kv qset[HOOKS_MAX_EDITS];
	char *qdel[HOOKS_MAX_EDITS];
	char *path; /* rewrite_path: the new path (the query is kept), or NULL */
};

struct hook_rule {
	char name[HOOKS_NAME_MAX + 1];
	enum hook_action action;
	unsigned nhosts, nmethods;
	char hosts[HOOKS_MAX_HOSTS][POLICY_RULE_MAX + 1]; /* none: every host */
	char methods[HOOKS_MAX_METHODS][16]; /* upper case; none: every method */
	char *path; /* glob, or NULL: every path */
	struct hook_edits rq;
	unsigned nrset, nrdel, nbody;
	struct hook_kv rset[HOOKS_MAX_EDITS];
	char *rdel[HOOKS_MAX_EDITS];
	struct hook_kv body[HOOKS_MAX_BODY]; /* find -> replace, literal */
};

/*
 * A sandbox's rules. The object stays put for the sandbox's life (the proxy holds it);
 * hooks_replace swaps its rules in place and bumps gen, so a response never gets the response
 * actions of rules that changed since its request.
 */
struct hooks {
	unsigned n;
	struct hook_rule *rule;
	uint32_t gen;
	unsigned timeout_ms; /* a callback's bounded wait */
	const struct hook_asker *asker; /* NULL: nobody to ask; callback rules refuse */
};

/*
 * Parse a JSON array of rules into a new hooks object. Returns 0, -EINVAL with one line in err
 * naming the rule and the field, or -ENOMEM. hooks_parse_text: the same from bytes (the
 * fuzzer's entry, and a rules file's "network" member goes through hooks_parse).
 */
int hooks_parse(const json_t *rules, struct hooks **out, char *err, size_t errn);
int hooks_parse_text(const uint8_t *p, size_t n, struct hooks **out, char *err, size_t errn);
void hooks_free(struct hooks *h);
/* Move fresh's rules into h (h's old ones are freed, fresh is freed); gen goes up. */
void hooks_replace(struct hooks *h, struct hooks *fresh);
/* The rules as JSON (what hooks_parse takes), for `hooks_get`. */
json_t *hooks_json(const struct hooks *h);

enum hooks_decision { HOOKS_PASS, HOOKS_BLOCK, HOOKS_ASK };

struct hooks_verdict {
	enum hooks_decision d;
	char rule[HOOKS_NAME_MAX + 1]; /* the rule that blocked or asks ("" for none) */
	uint64_t matched; /* rules whose response actions apply */
	uint32_t gen;
};

/*
 * Evaluate h on a request to host (the TLS name) whose fields (packed, with :method and :path)
 * are f[0..n). The edited fields go to out (always written, edited or not). Returns 0, or
 * -EPROTO (no :method or :path) / -ENOMEM; *v says what to do.
 */
int hooks_request(const struct hooks *h, const char *host, const uint8_t *f, size_t n,
		  struct buf *out, struct hooks_verdict *v);
/*
 * The question for a callback rule about the (edited) request f: {kind: "network", rule,
 * method, host, port, path, headers: {name: value}}. NULL on no memory.
 */
json_t *hooks_question(const char *rule, const char *host, uint16_t port, const uint8_t *f,
		       size_t n);
/*
 * The SDK's answer to a question about f: {action: "allow"|"block", set_headers,
 * delete_headers}. Returns 1 allowed with the edited fields in out, 0 blocked (a NULL answer,
 * "block", or an answer that is not well formed: err says which), or -ENOMEM.
 */
int hooks_answer(const json_t *answer, const uint8_t *f, size_t n, struct buf *out, char *err,
		 size_t errn);
/*
 * Response edits of the rules in matched (if h is still at gen) on a packed response field list
 * (":status" first for HTTP/2) or an HTTP/1 head (m parsed from head). Return 1 with the edited
 * fields or head in out, 0 when nothing applies (out untouched), -ENOMEM.
 */
int hooks_response_fields(const struct hooks *h, uint64_t matched, uint32_t gen, const uint8_t *f,
			  size_t n, struct buf *out);
int hooks_response_head(const struct hooks *h, uint64_t matched, uint32_t gen, const uint8_t *head,
			const struct http_msg *m, struct buf *out);

/*
 * Literal response-body replacements of the rules in matched (at gen): a streaming replacer
 * (subst.h) over the body as the guest gets it (decoded when compressed, after the secret
 * scrubber). NULL when none apply (or no memory: the body then passes unchanged, which the
 * caller reports). Patterns are copied: the rules may change while a body streams.
 */
#define HOOKS_BODY_MAX 32 /* replacements applied to one body */
struct hooks_body;
struct hooks_body *hooks_body_new(const struct hooks *h, uint64_t matched, uint32_t gen);
int hooks_body_feed(struct hooks_body *b, const uint8_t *p, size_t n, bool final, struct buf *out);
void hooks_body_free(struct hooks_body *b);

/* Packed field lists. */
int hooks_field_put(struct buf *b, const void *name, size_t nl, const void *v, size_t vl);
/* The value of the first field named name (case-insensitive), or NULL. */
const uint8_t *hooks_field_get(const uint8_t *f, size_t n, const char *name, size_t *vl);
/*
 * The path (no query; of an absolute-form target, its path) percent-decoded, dot segments
 * removed, "//" collapsed: what globs see. outn >= n + 2 holds the whole of it.
 */
void hooks_path_normalise(const uint8_t *p, size_t n, char *out, size_t outn);

#endif
