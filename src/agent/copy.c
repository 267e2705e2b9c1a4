/* SPDX-License-Identifier: MIT */
/*
 * Trees for `matchlock cp` and overlay diffs (SVC_TREE_PACK, SVC_TREE_UNPACK): a walk packed
 * into the tree stream (proto/tree.h) as credit allows, or a stream unpacked where the host
 * says, the way `docker cp` places it. Like files.c, each request ends with CTL_EXIT (0) or
 * CTL_ERROR (errno and a one-line message); the file system work is local (tmpfs, the overlay)
 * or a FUSE mount whose relay runs in another process, so it never waits on this loop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "proto/msg.h"
#include "proto/tree.h"

#define MAX_COPY_OPS 16

struct copy_op {
	struct mux_stream *s;
	uint16_t svc;
	struct tree_pack pack;
	struct tree_unpack unpack;
	struct copy_op *next;
};

static struct copy_op *ops;
static unsigned nops;

static void send_end(struct mux_stream *s, int err, const char *msg)
{
	struct buf b = { 0 };
	if (err) {
		buf_put_u16(&b, CTL_ERROR);
		msg_put_u32(&b, T_ERRNO, (uint32_t)err);
		msg_put_str(&b, T_MESSAGE, msg && *msg ? msg : strerror(err));
	} else {
		buf_put_u16(&b, CTL_EXIT);
		msg_put_u32(&b, T_EXIT_CODE, 0);
	}
	mux_send_msg(&agent.mux, s->id, &b);
	buf_fini(&b);
}

static void op_end(struct copy_op *c, int err, const char *msg)
{
	send_end(c->s, err, msg);
	agent_stream_own(c->s, AGENT_STREAM_NONE, NULL);
	mux_close(&agent.mux, c->s, 0);
	agent_link_wants_write();
	tree_pack_close(&c->pack);
	tree_unpack_fini(&c->unpack);
	for (struct copy_op **p = &ops; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	nops--;
	free(c);
}

/* Send the packed stream while credit lasts; end after its last byte. */
static void op_pump(struct copy_op *c)
{
	uint8_t tmp[MUX_DATA_CHUNK];
	while (c->s->send_credit > 0 && !mux_congested(&agent.mux)) {
		size_t room = c->s->send_credit < sizeof(tmp) ? c->s->send_credit : sizeof(tmp);
		ssize_t n = tree_pack_read(&c->pack, tmp, room);
		if (n < 0) {
			op_end(c, (int)-n, c->pack.err);
			return;
		}
		if (n == 0) {
			op_end(c, 0, NULL);
			return;
		}
		mux_send_data(&agent.mux, c->s, MUX_CHAN_OUT, tmp, (uint32_t)n);
		agent_link_wants_write();
	}
}

int copy_open(struct mux_stream *s, uint16_t svc, struct rd *body)
{
	char *path = NULL, *name = NULL, upper[128];
	uint32_t flags = 0, share = 0;
	bool has_share = false;
	uint16_t tag;
	struct rd v;
	int k, r;
	while ((k = msg_next(body, &tag, &v)) > 0) {
		if (tag == T_PATH && !path)
			k = msg_dup_str(&v, MSG_MAX_STR, &path);
		else if (tag == T_NAME && !name)
			k = msg_dup_str(&v, 255, &name);
		else if (tag == T_FLAGS)
			k = msg_get_u32(&v, &flags);
		else if (tag == T_SHARE && (k = msg_get_u32(&v, &share)) == 0)
			has_share = true;
		if (k < 0)
			break;
	}
	struct copy_op *c = NULL;
	if (k < 0) {
		send_end(s, EINVAL, "malformed copy request");
		goto refuse;
	}
	if (svc == SVC_TREE_PACK && (flags & TREE_UPPER)) {
		if (!has_share || fuse_upper_path(share, upper, sizeof(upper)) < 0) {
			send_end(s, ENOENT, "no such overlay mount");
			goto refuse;
		}
		free(path);
		path = strdup(upper);
		flags |= TREE_OVERLAY;
	}
	if (!path || path[0] != '/') {
		send_end(s, EINVAL, "copy: an absolute guest path is needed");
		goto refuse;
	}
	if (nops >= MAX_COPY_OPS || !(c = calloc(1, sizeof(*c)))) {
		send_end(s, EMFILE, "too many copies at once");
		goto refuse;
	}
	c->s = s;
	c->svc = svc;
	c->pack.fd = c->unpack.fd = c->unpack.root_fd = c->unpack.parent_fd = -1;
	c->next = ops;
	ops = c;
	nops++;
	agent_stream_own(s, AGENT_STREAM_COPY, c);
	if (svc == SVC_TREE_PACK) {
		r = tree_pack_open(&c->pack, path, flags & (TREE_OVERLAY | TREE_NO_DATA));
		if (r < 0) /* the host names the path already: the reason alone */
			op_end(c, -r, strerror(-r));
		else
			op_pump(c);
	} else {
		r = tree_unpack_init(&c->unpack, path, name ? name : "", flags & TREE_CONTENTS);
		if (r < 0)
			op_end(c, -r, c->unpack.err);
	}
	free(path);
	free(name);
	return 0;
refuse:
	free(path);
	free(name);
	mux_close(&agent.mux, s, 0);
	agent_link_wants_write();
	return 0;
}

int copy_on_frame(struct mux_stream *s, const struct mux_frame *f)
{
	struct copy_op *c = s->user;
	int r;
	switch (f->type) {
	case MUX_DATA:
		mux_consumed(&agent.mux, s, f->len);
		agent_link_wants_write();
		if (c->svc == SVC_TREE_UNPACK && f->chan == MUX_CHAN_IN &&
		    (r = tree_unpack_feed(&c->unpack, f->payload, f->len)) < 0)
			op_end(c, -r, c->unpack.err);
		break;
	case MUX_EOF:
		if (c->svc == SVC_TREE_UNPACK && f->chan == MUX_CHAN_IN) {
			r = tree_unpack_finish(&c->unpack);
			op_end(c, r < 0 ? -r : 0, c->unpack.err);
		}
		break;
	case MUX_CREDIT:
		if (c->svc == SVC_TREE_PACK)
			op_pump(c);
		break;
	case MUX_CTL: {
		/* CTL_SIGNAL: the host's client went away (an exec would be killed). */
		struct rd cr = rd_make(f->payload, f->len);
		if (rd_u16(&cr) == CTL_SIGNAL)
			op_end(c, ECANCELED, "copy cancelled");
		break;
	}
	case MUX_CLOSE:
		op_end(c, ECANCELED, "copy cancelled");
		break;
	}
	return 0;
}

void copy_resume_all(void)
{
	for (struct copy_op *c = ops, *next; c; c = next) {
		next = c->next;
		if (c->svc == SVC_TREE_PACK)
			op_pump(c);
	}
}
