/* SPDX-License-Identifier: MIT */
/* File hook rules, and what a FUSE request would do (fhooks.h). */
#define _GNU_SOURCE
#include "fs/fhooks.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/pathglob.h"
#include "fs/share_impl.h"

const char *const fhook_op_names[FH_NOPS] = {
	"read", "write", "create", "mkdir", "remove", "rename", "setattr",
};
const char *const fhook_action_names[FH_ACTION_END] = {
	[FH_ALLOW] = "allow",	  [FH_BLOCK] = "block", [FH_CALLBACK] = "callback",
	[FH_REWRITE] = "rewrite", [FH_EVENT] = "event",
};

/* ---- rules ------------------------------------------------------------------------------- */

static int rule_err(char *err, size_t errn, const char *rule, const char *what)
{
	snprintf(err, errn, "file hook rule %s: %s", rule, what);
	return -EINVAL;
}

static int parse_rule(const json_t *o, struct fhook_rule *r, char *err, size_t errn)
{
	static const char *const keys[] = { "name", "phase", "ops", "path", "action", NULL };
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v)
	{
		bool known = false;
		for (int i = 0; keys[i] && !known; i++)
			known = !strcmp(k, keys[i]);
		if (!known)
			return rule_err(err, errn, r->name,
					"unknown field (name, phase, ops, path, action)");
	}
	const char *s = json_string_value(json_object_get(o, "name"));
	if (json_object_get(o, "name")) {
		if (!s || !*s || strlen(s) > FHOOKS_NAME_MAX || strpbrk(s, "\r\n"))
			return rule_err(err, errn, r->name,
					"name must be a string of 1 to 64 characters");
		snprintf(r->name, sizeof(r->name), "%s", s);
	}
	s = json_string_value(json_object_get(o, "phase"));
	if (json_object_get(o, "phase") && (!s || (strcmp(s, "before") && strcmp(s, "after"))))
		return rule_err(err, errn, r->name, "phase must be before or after");
	r->after = s && !strcmp(s, "after");
	json_t *ops = json_object_get(o, "ops");
	if (!ops) {
		r->ops = FH_OPS_ALL;
	} else if (!json_is_array(ops) || !json_array_size(ops) ||
		   json_array_size(ops) > FH_NOPS * 2) {
		return rule_err(err, errn, r->name,
				"ops must be a non-empty array of read, write, create, mkdir, "
				"remove, rename, setattr");
	} else {
		size_t i;
		json_array_foreach(ops, i, v)
		{
			const char *op = json_string_value(v);
			unsigned bit = 0;
			for (int b = 0; op && b < FH_NOPS; b++)
				if (!strcmp(op, fhook_op_names[b]))
					bit = 1u << b;
			if (!bit)
				return rule_err(err, errn, r->name,
						"ops: each must be read, write, create, mkdir, "
						"remove, rename or setattr");
			r->ops |= bit;
		}
	}
	json_t *p = json_object_get(o, "path");
	if (p) {
		s = json_string_value(p);
		if (!s || strlen(s) != json_string_length(p) || !pathglob_valid(s))
			return rule_err(err, errn, r->name, "path must be a glob starting with /");
		if (!(r->path = strdup(s)))
			return -ENOMEM;
	}
	s = json_string_value(json_object_get(o, "action"));
	int a = r->after ? FH_EVENT : -1;
	if (s) {
		a = -1;
		for (int i = 0; i < FH_ACTION_END; i++)
			if (!strcmp(s, fhook_action_names[i]))
				a = i;
	}
	if (a < 0 || (r->after != (a == FH_EVENT)))
		return rule_err(err, errn, r->name,
				r->after ? "an after rule's action is event"
					 : "action must be allow, block, callback or rewrite");
	if (a == FH_REWRITE && r->ops != FH_WRITE)
		return rule_err(err, errn, r->name, "a rewrite rule's ops must be [\"write\"]");
	r->action = (enum fhook_action)a;
	return 0;
}

int fhooks_parse(const json_t *rules, struct fhooks **out, char *err, size_t errn)
{
	*out = NULL;
	if (!json_is_array(rules) || json_array_size(rules) > FHOOKS_MAX_RULES) {
		snprintf(err, errn, "file hook rules must be an array of at most %d rule objects",
			 FHOOKS_MAX_RULES);
		return -EINVAL;
	}
	size_t n = json_array_size(rules);
	struct fhooks *h = calloc(1, sizeof(*h));
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
		struct fhook_rule *r = &h->rule[i];
		h->n = (unsigned)i + 1;
		snprintf(r->name, sizeof(r->name), "#%zu", i);
		int k = json_is_object(o) ? parse_rule(o, r, err, errn)
					  : rule_err(err, errn, r->name, "must be an object");
		if (k < 0) {
			if (k == -ENOMEM)
				snprintf(err, errn, "out of memory");
			fhooks_free(h);
			return k;
		}
	}
	*out = h;
	return 0;
}

int fhooks_parse_text(const uint8_t *p, size_t n, struct fhooks **out, char *err, size_t errn)
{
	*out = NULL;
	json_error_t je;
	json_t *j =
	    n <= (256u << 10) ? json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &je) : NULL;
	if (!j) {
		snprintf(err, errn, "file hook rules: not JSON (or over 256 KiB)");
		return -EINVAL;
	}
	int r = fhooks_parse(j, out, err, errn);
	json_decref(j);
	return r;
}

void fhooks_free(struct fhooks *h)
{
	if (!h)
		return;
	for (unsigned i = 0; i < h->n; i++)
		free(h->rule[i].path);
	free(h->rule);
	free(h);
}

void fhooks_replace(struct fhooks *h, struct fhooks *fresh)
{
	for (unsigned i = 0; i < h->n; i++)
		free(h->rule[i].path);
	free(h->rule);
	h->n = fresh->n;
	h->rule = fresh->rule;
	h->gen++;
	free(fresh);
}

json_t *fhooks_json(const struct fhooks *h)
{
	json_t *a = json_array();
	for (unsigned i = 0; h && i < h->n; i++) {
		const struct fhook_rule *r = &h->rule[i];
		json_t *ops = json_array();
		for (int b = 0; b < FH_NOPS; b++)
			if (r->ops >> b & 1)
				json_array_append_new(ops, json_string(fhook_op_names[b]));
		json_t *o = json_pack("{s:s,s:s,s:o,s:s}", "name", r->name, "phase",
				      r->after ? "after" : "before", "ops", ops, "action",
				      fhook_action_names[r->action]);
		if (o && r->path)
			json_object_set_new(o, "path", json_string(r->path));
		if (o)
			json_array_append_new(a, o);
	}
	return a;
}

static const struct fhook_rule *find(const struct fhooks *h, bool after, unsigned ops,
				     const char *p, const char *p2)
{
	for (unsigned i = 0; h && i < h->n; i++) {
		const struct fhook_rule *r = &h->rule[i];
		if (r->after != after || !(r->ops & ops))
			continue;
		if (!r->path || pathglob_match(r->path, p) || (p2 && pathglob_match(r->path, p2)))
			return r;
	}
	return NULL;
}

const struct fhook_rule *fhooks_before(const struct fhooks *h, unsigned ops, const char *p,
				       const char *p2)
{
	return find(h, false, ops, p, p2);
}

const struct fhook_rule *fhooks_after(const struct fhooks *h, unsigned ops, const char *p,
				      const char *p2)
{
	return find(h, true, ops, p, p2);
}

/* ---- requests ---------------------------------------------------------------------------- */

/* The host path behind fd, made relative to the share's root ("/" for the root). */
static int fd_rel(struct fs_share *s, int fd, char *out, size_t n)
{
	char link[40], root[FHOOKS_PATH_MAX], full[FHOOKS_PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", s->nodes[0].fd);
	ssize_t rl = readlink(link, root, sizeof(root) - 1);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t fl = readlink(link, full, sizeof(full) - 1);
	if (rl <= 0 || fl <= 0)
		return -EIO;
	root[rl] = full[fl] = 0;
	if (rl == 1)
		rl = 0; /* the share is "/" */
	if (strncmp(full, root, (size_t)rl) || (full[rl] && full[rl] != '/'))
		return -EXDEV;
	snprintf(out, n, "%s", full[rl] ? full + rl : "/");
	return 0;
}

/* dir "/" name into out; -ENAMETOOLONG if it does not fit. */
static int join(char *out, size_t n, const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	bool root = dl == 1;
	if (dl + !root + nl + 1 > n)
		return -ENAMETOOLONG;
	memcpy(out, dir, dl);
	if (!root)
		out[dl++] = '/';
	memcpy(out + dl, name, nl + 1);
	return 0;
}

/* The path of node idx inside the share. */
static int node_rel(struct fs_share *s, uint32_t idx, char *out, size_t n)
{
	struct fs_node *nd = &s->nodes[idx];
	if (nd->fd >= 0)
		return fd_rel(s, nd->fd, out, n);
	uint32_t dir;
	const char *name;
	int r = fs_node_name(s, idx, &dir, &name);
	if (r < 0)
		return r;
	char d[FHOOKS_PATH_MAX];
	r = fd_rel(s, s->nodes[dir].fd, d, sizeof(d));
	return r ? r : join(out, n, d, name);
}

/* The path of name in directory node nodeid. */
static int child_rel(struct fs_share *s, uint64_t nodeid, const char *name, char *out, size_t n)
{
	uint32_t idx;
	char d[FHOOKS_PATH_MAX];
	int r = fs_node_get(s, nodeid, &idx);
	if (r == 0)
		r = node_rel(s, idx, d, sizeof(d));
	return r ? r : join(out, n, d, name);
}

int fs_share_describe(struct fs_share *s, const uint8_t *req, size_t n, struct fs_opinfo *info)
{
	struct fuse_in_header h;
	memset(info, 0, sizeof(*info));
	if (n < sizeof(h))
		return -EPROTO;
	memcpy(&h, req, sizeof(h));
	if (h.len != n)
		return -EPROTO;
	info->unique = h.unique;
	struct fs_req q = { .h = (const struct fuse_in_header *)req,
			    .body = rd_make(req + sizeof(h), n - sizeof(h)) };
	const char *name = NULL, *name2 = NULL;
	uint32_t idx;
	int r = 0;
	switch (h.opcode) {
	case FUSE_CREATE:
	case FUSE_MKNOD:
	case FUSE_MKDIR:
	case FUSE_LINK:
	case FUSE_SYMLINK:
	case FUSE_UNLINK:
	case FUSE_RMDIR: {
		size_t skip = h.opcode == FUSE_CREATE  ? sizeof(struct fuse_create_in)
			      : h.opcode == FUSE_MKNOD ? sizeof(struct fuse_mknod_in)
			      : h.opcode == FUSE_MKDIR ? sizeof(struct fuse_mkdir_in)
			      : h.opcode == FUSE_LINK  ? sizeof(struct fuse_link_in)
						       : 0;
		if (!rd_bytes(&q.body, skip) && skip)
			return -EINVAL;
		if ((r = fs_req_name(&q, &name)) < 0)
			return r;
		if (h.opcode == FUSE_LINK) {
			/* A second name for a file is a way to write it: both names are told. */
			struct fuse_link_in li;
			memcpy(&li, req + sizeof(h), sizeof(li));
			if ((r = fs_node_get(s, li.oldnodeid, &idx)) < 0 ||
			    (r = node_rel(s, idx, info->path2, sizeof(info->path2))) < 0)
				return r;
		}
		info->ops = h.opcode == FUSE_CREATE  ? FH_CREATE | FH_WRITE
			    : h.opcode == FUSE_LINK  ? FH_CREATE | FH_WRITE
			    : h.opcode == FUSE_MKDIR ? FH_MKDIR
			    : h.opcode == FUSE_UNLINK || h.opcode == FUSE_RMDIR ? FH_REMOVE
										: FH_CREATE;
		info->op = h.opcode == FUSE_MKDIR			       ? "mkdir"
			   : h.opcode == FUSE_UNLINK || h.opcode == FUSE_RMDIR ? "remove"
									       : "create";
		return child_rel(s, h.nodeid, name, info->path, sizeof(info->path));
	}
	case FUSE_RENAME:
	case FUSE_RENAME2: {
		uint64_t newdir;
		size_t sz = h.opcode == FUSE_RENAME ? sizeof(struct fuse_rename_in)
						    : sizeof(struct fuse_rename2_in);
		const uint8_t *in = rd_bytes(&q.body, sz);
		if (!in)
			return -EINVAL;
		memcpy(&newdir, in, sizeof(newdir));
		if ((r = fs_req_name(&q, &name)) < 0 || (r = fs_req_name(&q, &name2)) < 0)
			return r;
		/* What either name holds changes: a write to both paths, too. */
		info->ops = FH_RENAME | FH_WRITE;
		info->op = "rename";
		r = child_rel(s, h.nodeid, name, info->path, sizeof(info->path));
		return r ? r : child_rel(s, newdir, name2, info->path2, sizeof(info->path2));
	}
	case FUSE_OPEN: {
		struct fuse_open_in o;
		if ((r = fs_req_in(&q, &o, sizeof(o))) < 0)
			return r;
		bool w = (o.flags & O_ACCMODE) != O_RDONLY || (o.flags & O_TRUNC);
		info->ops = w ? FH_WRITE : FH_READ;
		info->op = w ? "write" : "read";
		if ((r = fs_node_get(s, h.nodeid, &idx)) < 0)
			return r;
		return node_rel(s, idx, info->path, sizeof(info->path));
	}
	case FUSE_SETATTR: {
		struct fuse_setattr_in a;
		if ((r = fs_req_in(&q, &a, sizeof(a))) < 0)
			return r;
		bool size = a.valid & FATTR_SIZE;
		info->ops = size ? FH_WRITE : FH_SETATTR;
		info->op = size ? "write" : "setattr";
		if ((r = fs_node_get(s, h.nodeid, &idx)) < 0)
			return r;
		return node_rel(s, idx, info->path, sizeof(info->path));
	}
	case FUSE_WRITE:
	case FUSE_FALLOCATE: {
		uint64_t fh;
		const uint8_t *in =
		    rd_bytes(&q.body, h.opcode == FUSE_WRITE ? sizeof(struct fuse_write_in)
							     : sizeof(struct fuse_fallocate_in));
		if (!in)
			return -EINVAL;
		memcpy(&fh, in, sizeof(fh));
		struct fs_handle *hd;
		if ((r = fs_handle_get(s, fh, false, &hd)) < 0)
			return r;
		info->ops = FH_WRITE;
		info->op = "write";
		if (h.opcode == FUSE_WRITE) {
			struct fuse_write_in w;
			memcpy(&w, in, sizeof(w));
			info->is_write = true;
			info->offset = w.offset;
			info->data_off = sizeof(h) + sizeof(w);
			info->data_len = rd_left(&q.body) < w.size ? rd_left(&q.body) : w.size;
		}
		return fd_rel(s, hd->fd, info->path, sizeof(info->path));
	}
	default:
		return 0;
	}
}

int fhooks_write_rewrite(const uint8_t *req, size_t n, const uint8_t *data, size_t dn,
			 struct buf *out)
{
	struct fuse_in_header h;
	struct fuse_write_in w;
	if (n < sizeof(h) + sizeof(w) || dn > FS_MAX_WRITE)
		return -EPROTO;
	memcpy(&h, req, sizeof(h));
	memcpy(&w, req + sizeof(h), sizeof(w));
	if (h.opcode != FUSE_WRITE)
		return -EPROTO;
	h.len = (uint32_t)(sizeof(h) + sizeof(w) + dn);
	w.size = (uint32_t)dn;
	buf_append(out, &h, sizeof(h));
	buf_append(out, &w, sizeof(w));
	buf_append(out, data, dn);
	return out->bad ? -ENOMEM : 0;
}
