/* SPDX-License-Identifier: MIT */
/* Network hooks in the proxy: the call sites' halves and the callback wait (proxy_hooks.h). */
#define _GNU_SOURCE
#include "proxy_hooks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow.h"

/* One question out about the request at the head of a flow's req_in (at most one per flow). */
struct hook_wait {
	struct flow *f;
	const struct hook_asker *asker;
	int64_t ticket; /* > 0 while the question is out */
	bool answered;
	json_t *answer; /* the SDK's answer (NULL: refuse) once answered */
};

void mitm_set_hooks(struct mitm *m, struct hooks *h)
{
	m->hooks = h;
}

void flow_set_wake(struct flow *f, void (*fn)(void *opaque), void *opaque)
{
	f->wake = fn;
	f->wake_opaque = opaque;
}

static void on_answer(void *who, const json_t *answer)
{
	struct hook_wait *w = who;
	w->ticket = 0;
	w->answered = true;
	w->answer = answer ? json_deep_copy(answer) : NULL;
	if (w->f->wake)
		w->f->wake(w->f->wake_opaque); /* runs the flow: it may end and free w */
}

static void wait_reset(struct hook_wait *w)
{
	json_decref(w->answer);
	w->answer = NULL;
	w->answered = false;
}

struct hooks_body *proxy_hooks_body_start(struct flow *f, struct hooks_body *old, uint64_t matched,
					  uint32_t gen, int status)
{
	hooks_body_free(old);
	if (status < 200 || status == 101 || status == 204 || status == 304)
		return NULL;
	return hooks_body_new(f->m->hooks, matched, gen);
}

int proxy_hooks_scrub_feed(const struct secrets *ss, struct scrub *sc, struct hooks_body *hb,
			   const uint8_t *p, size_t n, bool final, struct buf *out)
{
	if (!hb)
		return scrub_feed(ss, sc, p, n, final, out);
	struct buf mid = { 0 };
	int r = scrub_feed(ss, sc, p, n, final, &mid);
	if (r == 0)
		r = hooks_body_feed(hb, buf_head(&mid), buf_used(&mid), final, out);
	buf_wipe(&mid);
	return r;
}

void proxy_hooks_fini(struct flow *f)
{
	hooks_body_free(f->rs_hk);
	f->rs_hk = NULL;
	struct hook_wait *w = f->hw;
	if (!w)
		return;
	if (w->ticket > 0)
		w->asker->cancel(w->asker->opaque, w->ticket);
	wait_reset(w);
	free(w);
	f->hw = NULL;
}

/* The packed fields of an HTTP/1 request head: :method, :path, then each header. */
static int h1_fields(const uint8_t *head, const struct http_msg *m, struct buf *out)
{
	hooks_field_put(out, ":method", 7, m->method, strlen(m->method));
	hooks_field_put(out, ":path", 5, head + m->target_off, m->target_len);
	for (unsigned i = 0; i < m->nfields; i++) {
		const struct http_field *fl = &m->field[i];
		hooks_field_put(out, head + fl->name_off, fl->name_len, head + fl->value_off,
				fl->value_len);
	}
	return out->bad ? -ENOMEM : 0;
}

/* An HTTP/1 head from packed fields. */
static int h1_head(const uint8_t *f, size_t n, int minor, struct buf *out)
{
	size_t ml, pl;
	const uint8_t *meth = hooks_field_get(f, n, ":method", &ml);
	const uint8_t *path = hooks_field_get(f, n, ":path", &pl);
	char ver[16];
	int vl = snprintf(ver, sizeof(ver), " HTTP/1.%d\r\n", minor);
	buf_append(out, meth, ml);
	buf_put_u8(out, ' ');
	buf_append(out, path, pl);
	buf_append(out, ver, (size_t)vl);
	struct rd r = rd_make(f, n);
	while (rd_left(&r)) {
		uint32_t nl = rd_u32(&r), l = rd_u32(&r);
		const uint8_t *nm = rd_bytes(&r, nl), *v = rd_bytes(&r, l);
		if (r.bad)
			return -EPROTO;
		if (nl && nm[0] == ':')
			continue;
		buf_append(out, nm, nl);
		buf_append(out, ": ", 2);
		buf_append(out, v, l);
		buf_append(out, "\r\n", 2);
	}
	buf_append(out, "\r\n", 2);
	return out->bad ? -ENOMEM : 0;
}

/*
 * Evaluate the rules (and a callback's answer when one came) on fields: PROXY_HOOKS_GO with the
 * edited fields in out, WAIT or BLOCK. Shared by both versions; ask: callbacks may be asked.
 */
static int evaluate(struct flow *f, const uint8_t *fields, size_t n, bool ask, struct buf *out,
		    uint64_t *matched, uint32_t *gen, char *reason, size_t rn)
{
	struct hooks *h = f->m->hooks;
	struct hook_wait *w = f->hw;
	if (w && w->ticket > 0)
		return PROXY_HOOKS_WAIT;
	struct hooks_verdict v;
	struct buf edited = { 0 };
	if (hooks_request(h, f->name, fields, n, &edited, &v) < 0) {
		buf_wipe(&edited);
		snprintf(reason, rn,
			 "matchlock: request to %s refused: a hook could not be applied", f->name);
		return PROXY_HOOKS_BLOCK;
	}
	*matched = v.matched;
	*gen = v.gen;
	if (v.d != HOOKS_ASK && w && w->answered)
		wait_reset(w); /* the rules changed while it was asked: the answer is moot */
	int res = PROXY_HOOKS_GO;
	if (v.d == HOOKS_BLOCK) {
		snprintf(reason, rn, "matchlock: request to %s blocked by hook rule %s", f->name,
			 v.rule);
		res = PROXY_HOOKS_BLOCK;
	} else if (v.d == HOOKS_ASK && w && w->answered) {
		char why[300];
		int k = hooks_answer(w->answer, buf_head(&edited), buf_used(&edited), out, why,
				     sizeof(why));
		wait_reset(w);
		if (k <= 0) {
			snprintf(reason, rn, "matchlock: request to %s blocked by hook rule %s: %s",
				 f->name, v.rule, k < 0 ? "out of memory" : why);
			res = PROXY_HOOKS_BLOCK;
		}
		buf_wipe(&edited);
		return res;
	} else if (v.d == HOOKS_ASK) {
		const struct hook_asker *a = h->asker;
		if (!ask || !a) {
			snprintf(
			    reason, rn, "matchlock: request to %s blocked by hook rule %s: %s",
			    f->name, v.rule,
			    !a ? "no SDK is connected to answer its callback"
			       : "callbacks are asked about HTTP/1.1 requests only (this one is "
				 "HTTP/2)");
			res = PROXY_HOOKS_BLOCK;
		} else {
			if (!w && !(w = f->hw = calloc(1, sizeof(*w)))) {
				buf_wipe(&edited);
				snprintf(reason, rn, "matchlock: request to %s: out of memory",
					 f->name);
				return PROXY_HOOKS_BLOCK;
			}
			w->f = f;
			w->asker = a;
			json_t *q = hooks_question(v.rule, f->name, f->port, buf_head(&edited),
						   buf_used(&edited));
			if (q)
				json_object_set_new(q, "timeout_ms", json_integer(h->timeout_ms));
			int64_t t = q ? a->ask(a->opaque, q, on_answer, w) : -ENOMEM;
			if (t <= 0) {
				snprintf(reason, rn,
					 "matchlock: request to %s blocked by hook rule %s: its "
					 "callback could not be asked (%s)",
					 f->name, v.rule, strerror(t < 0 ? (int)-t : EIO));
				res = PROXY_HOOKS_BLOCK;
			} else {
				w->ticket = t;
				res = PROXY_HOOKS_WAIT;
			}
		}
	}
	if (res == PROXY_HOOKS_GO)
		buf_append(out, buf_head(&edited), buf_used(&edited));
	buf_wipe(&edited);
	return out->bad ? PROXY_HOOKS_BLOCK : res;
}

int proxy_hooks_request(struct flow *f, struct http_msg *m, long *hl, uint64_t *matched,
			uint32_t *gen, char *reason, size_t rn)
{
	*matched = 0;
	*gen = 0;
	if (!f->m->hooks || (!f->m->hooks->n && !f->hw))
		return PROXY_HOOKS_GO;
	const uint8_t *head = buf_head(&f->req_in);
	struct buf in = { 0 }, out = { 0 }, nh = { 0 };
	int res = h1_fields(head, m, &in) < 0 ? PROXY_HOOKS_BLOCK
					      : evaluate(f, buf_head(&in), buf_used(&in), true,
							 &out, matched, gen, reason, rn);
	if (res == PROXY_HOOKS_GO && !(buf_used(&in) == buf_used(&out) &&
				       !memcmp(buf_head(&in), buf_head(&out), buf_used(&in)))) {
		/* Edited: the new head replaces the old one in req_in, and is parsed again. */
		const char *why;
		struct http_msg nm;
		long nl = 0;
		int k = h1_head(buf_head(&out), buf_used(&out), m->minor, &nh);
		if (k == 0 &&
		    (nl = http_head_len(buf_head(&nh), buf_used(&nh), HTTP_MAX_HEAD)) > 0 &&
		    (size_t)nl == buf_used(&nh) &&
		    http_parse_request(buf_head(&nh), buf_used(&nh), &nm, &why) == 0) {
			buf_append(&nh, head + *hl, buf_used(&f->req_in) - (size_t)*hl);
		} else {
			k = -EPROTO;
		}
		if (k < 0 || nh.bad) {
			snprintf(
			    reason, rn,
			    "matchlock: request to %s refused: its head edited by the hooks is "
			    "not a valid request head (over 16 KiB?)",
			    f->name);
			res = PROXY_HOOKS_BLOCK;
		} else {
			buf_wipe(&f->req_in);
			f->req_in = nh;
			nh = (struct buf){ 0 };
			*m = nm;
			*hl = nl;
		}
	}
	buf_wipe(&in);
	buf_wipe(&out);
	buf_wipe(&nh);
	return res;
}

int proxy_hooks_response(struct flow *f, uint64_t matched, uint32_t gen, bool head_request,
			 struct buf *head)
{
	struct http_msg m;
	const char *why;
	struct buf out = { 0 };
	if (!matched || !f->m->hooks ||
	    http_parse_response(buf_head(head), buf_used(head), head_request, &m, &why) < 0)
		return 0;
	int k = hooks_response_head(f->m->hooks, matched, gen, buf_head(head), &m, &out);
	if (k == 1) {
		buf_wipe(head);
		*head = out;
		return 0;
	}
	buf_wipe(&out);
	return k;
}

bool proxy_hooks_want_h1(const struct flow *f)
{
	const struct hooks *h = f->m->hooks;
	for (unsigned i = 0; h && i < h->n; i++)
		if (h->rule[i].action == HOOK_CALLBACK)
			return true;
	return false;
}

int proxy_hooks_plain(const struct mitm *mt, const char *host, const uint8_t *head,
		      const struct http_msg *m, char *reason, size_t rn)
{
	const struct hooks *h = mt ? mt->hooks : NULL;
	if (!h || !h->n)
		return 0;
	struct buf in = { 0 }, out = { 0 };
	struct hooks_verdict v;
	int r = h1_fields(head, m, &in) < 0
		    ? -ENOMEM
		    : hooks_request(h, host, buf_head(&in), buf_used(&in), &out, &v);
	bool edited = r == 0 && (buf_used(&in) != buf_used(&out) ||
				 memcmp(buf_head(&in), buf_head(&out), buf_used(&in)));
	bool resp = false;
	for (unsigned i = 0; r == 0 && i < h->n; i++)
		resp |= (v.matched >> i & 1) &&
			(h->rule[i].nrset || h->rule[i].nrdel || h->rule[i].nbody);
	buf_fini(&in);
	buf_fini(&out);
	if (r < 0)
		snprintf(reason, rn, "a hook could not be applied (out of memory)");
	else if (v.d == HOOKS_BLOCK)
		snprintf(reason, rn, "request blocked by hook rule %s", v.rule);
	else if (v.d == HOOKS_ASK)
		snprintf(reason, rn,
			 "hook rule %s asks a callback, which is done for HTTPS requests only: "
			 "plain HTTP refused",
			 v.rule);
	else if (edited || resp)
		snprintf(reason, rn,
			 "hook rules edit this request or its response, which they do over HTTPS "
			 "only: refused rather than sent unedited (use https://)");
	else
		return 0;
	return -EACCES;
}

bool proxy_hooks_h2_request(struct flow *f, struct buf *fields, uint64_t *matched, uint32_t *gen,
			    char *reason, size_t rn)
{
	*matched = 0;
	*gen = 0;
	if (!f->m->hooks || !f->m->hooks->n)
		return true;
	struct buf out = { 0 };
	int res =
	    evaluate(f, buf_head(fields), buf_used(fields), false, &out, matched, gen, reason, rn);
	if (res == PROXY_HOOKS_GO) {
		buf_wipe(fields);
		*fields = out;
		return true;
	}
	buf_wipe(&out);
	return false;
}

void proxy_hooks_h2_response(struct flow *f, uint64_t matched, uint32_t gen, struct buf *fields)
{
	struct buf out = { 0 };
	if (matched && f->m->hooks &&
	    hooks_response_fields(f->m->hooks, matched, gen, buf_head(fields), buf_used(fields),
				  &out) == 1) {
		buf_wipe(fields);
		*fields = out;
		return;
	}
	buf_wipe(&out);
}
