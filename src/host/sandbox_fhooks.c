/* SPDX-License-Identifier: MIT */
/*
 * File hooks at the file service's door (sandbox_fs.c calls in here once per request, before
 * and after the file server handles it; fs/fhooks.h has the rules). A request a "before" rule
 * blocks is answered EACCES without reaching the host; one a callback or rewrite rule holds
 * waits, with every later request of its share behind it, until the SDK answers or the asker's
 * bound runs out (then EACCES: fail closed). A rewritten write writes the SDK's bytes at the
 * guest's offset and is answered with the size the guest wrote, so its write() sees success.
 */
#define _GNU_SOURCE
#include "sandbox_fhooks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/log.h"
#include "sandbox_impl.h"

static void on_answer(void *who, const json_t *answer)
{
	struct fhook_gate *g = who;
	g->ticket = 0;
	g->answered = true;
	g->answer = answer ? json_deep_copy(answer) : NULL;
	g->wake(g->wake_opaque);
}

void fhook_gate_fini(struct fhook_gate *g)
{
	if (g->ticket > 0 && g->asker)
		g->asker->cancel(g->asker->opaque, g->ticket);
	g->ticket = 0;
	json_decref(g->answer);
	g->answer = NULL;
	g->answered = false;
}

/* The guest path of p (inside share index). */
static void guest_path(const struct sandbox *sb, unsigned index, const char *p, char *out, size_t n)
{
	const char *g = sb->cfg.mounts[index].guest;
	if (!strcmp(p, "/"))
		snprintf(out, n, "%s", g);
	else
		snprintf(out, n, "%s%s", strcmp(g, "/") ? g : "", p);
}

static void event(struct sandbox *sb, const struct fs_opinfo *in, const char *rule, bool blocked,
		  const char *reason, int result)
{
	if (!sb->cfg.file_event)
		return;
	struct sandbox_file_event ev = { in->op, in->path, in->path2[0] ? in->path2 : NULL,
					 rule,	 blocked,  reason,
					 result };
	sb->cfg.file_event(&ev, sb->cfg.net_opaque);
}

static int refuse(struct sandbox *sb, struct fs_opinfo *in, const char *rule, const char *why,
		  struct buf *reply)
{
	char reason[600];
	snprintf(reason, sizeof(reason), "matchlock: %s %.300s blocked by file hook rule %s%s%s",
		 in->op, in->path, rule, why ? ": " : "", why ? why : "");
	event(sb, in, rule, true, reason, -EACCES);
	struct fuse_out_header oh = { .len = sizeof(oh), .error = -EACCES, .unique = in->unique };
	buf_append(reply, &oh, sizeof(oh));
	return FHOOK_REPLIED;
}

/* The question about in for rule r: {kind: "file", rule, op, path[, path2, offset, data]}. */
static json_t *question(const struct fhook_rule *r, const struct fs_opinfo *in, const uint8_t *req)
{
	json_t *q = json_pack("{s:s,s:s,s:s,s:s}", "kind", "file", "rule", r->name, "op", in->op,
			      "path", in->path);
	if (q && in->path2[0])
		json_object_set_new(q, "path2", json_string(in->path2));
	if (q && r->action == FH_REWRITE && in->is_write) {
		struct buf b = { 0 };
		base64_encode(&b, req + in->data_off, in->data_len);
		json_object_set_new(q, "offset", json_integer((json_int_t)in->offset));
		json_object_set_new(
		    q, "data",
		    json_stringn(buf_used(&b) ? (char *)buf_head(&b) : "", buf_used(&b)));
		buf_fini(&b);
	}
	return q;
}

int fhook_gate_before(struct sandbox *sb, struct fs_share *share, unsigned index,
		      struct fhook_gate *g, const uint8_t *req, size_t len, struct fs_opinfo *in,
		      struct buf *alt, struct buf *reply)
{
	const struct fhooks *h = sb->cfg.fhooks;
	in->ops = 0;
	if (!h || !h->n)
		return FHOOK_GO;
	if (g->ticket > 0)
		return FHOOK_WAIT;
	char rel[FHOOKS_PATH_MAX], rel2[FHOOKS_PATH_MAX];
	if (fs_share_describe(share, req, len, in) < 0 || !in->ops) {
		in->ops = 0; /* the file server answers what it cannot make sense of */
		return FHOOK_GO;
	}
	snprintf(rel, sizeof(rel), "%s", in->path);
	snprintf(rel2, sizeof(rel2), "%s", in->path2);
	guest_path(sb, index, rel, in->path, sizeof(in->path));
	if (rel2[0])
		guest_path(sb, index, rel2, in->path2, sizeof(in->path2));
	const struct fhook_rule *r =
	    fhooks_before(h, in->ops, in->path, in->path2[0] ? in->path2 : NULL);
	/* A rewrite rule acts on the data of writes; other requests it matches go on. */
	if (r && r->action == FH_REWRITE && !in->is_write)
		r = NULL;
	if (!r || r->action == FH_ALLOW) {
		fhook_gate_fini(g);
		return FHOOK_GO;
	}
	if (r->action == FH_BLOCK) {
		fhook_gate_fini(g);
		return refuse(sb, in, r->name, NULL, reply);
	}
	if (g->answered) {
		/* The answer to the question about this very request (it waited at the head). */
		json_t *a = g->answer;
		g->answer = NULL;
		g->answered = false;
		const char *act = json_string_value(json_object_get(a, "action"));
		const char *data = json_string_value(json_object_get(a, "data"));
		int res;
		if (!a)
			res = refuse(sb, in, r->name, "no answer from the SDK callback in time",
				     reply);
		else if (!act || (strcmp(act, "allow") && strcmp(act, "block")))
			res =
			    refuse(sb, in, r->name,
				   "the SDK callback's answer has no action allow or block", reply);
		else if (!strcmp(act, "block"))
			res = refuse(sb, in, r->name, "the SDK callback blocked it", reply);
		else
			res = FHOOK_GO;
		if (res == FHOOK_GO && r->action == FH_REWRITE && data) {
			struct buf d = { 0 };
			int k = base64_decode(&d, data, strlen(data));
			if (k == 0)
				k = fhooks_write_rewrite(req, len, buf_head(&d), buf_used(&d), alt);
			buf_fini(&d);
			if (k < 0) {
				buf_fini(alt);
				res = refuse(
				    sb, in, r->name,
				    "the SDK callback's data is not base64 of at most 128 KiB",
				    reply);
			}
		}
		json_decref(a);
		return res;
	}
	const struct hook_asker *ak = h->asker;
	if (!ak)
		return refuse(sb, in, r->name, "no SDK is connected to answer its callback", reply);
	json_t *q = question(r, in, req);
	if (q)
		json_object_set_new(q, "timeout_ms", json_integer(h->timeout_ms));
	int64_t t = q ? ak->ask(ak->opaque, q, on_answer, g) : -ENOMEM;
	if (t <= 0)
		return refuse(sb, in, r->name, "its callback could not be asked", reply);
	g->asker = ak;
	g->ticket = t;
	return FHOOK_WAIT;
}

void fhook_gate_after(struct sandbox *sb, const struct fs_opinfo *in, bool rewritten,
		      uint8_t *reply, size_t rn)
{
	struct fuse_out_header oh;
	if (!in->ops || rn < sizeof(oh))
		return;
	memcpy(&oh, reply, sizeof(oh));
	if (rewritten && oh.error == 0 && rn >= sizeof(oh) + sizeof(struct fuse_write_out)) {
		/* The guest wrote its bytes as far as it knows. */
		struct fuse_write_out w;
		memcpy(&w, reply + sizeof(oh), sizeof(w));
		w.size = (uint32_t)in->data_len;
		memcpy(reply + sizeof(oh), &w, sizeof(w));
	}
	const struct fhook_rule *r =
	    fhooks_after(sb->cfg.fhooks, in->ops, in->path, in->path2[0] ? in->path2 : NULL);
	if (r)
		event(sb, in, r->name, false, NULL, oh.error);
}
