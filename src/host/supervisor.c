/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "supervisor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "control.h"
#include "exec_stdio.h"
#include "proto/msg.h"

struct ctl_client {
	struct watch w;
	struct supervisor *sup;
	struct exec_stdio *e;
	int fds[3];
	int nfds;
	bool wants_stop_reply;
	struct ctl_client *next;
};

static void client_close_fds(struct ctl_client *c)
{
	for (int i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	c->nfds = 0;
}

static void client_drop(struct ctl_client *c)
{
	struct supervisor *sup = c->sup;
	if (c->e)
		exec_stdio_abort(c->e); /* the client is gone: so is its process */
	c->e = NULL;
	client_close_fds(c);
	for (struct ctl_client **p = &sup->clients; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	sup->nclients--;
	loop_unwatch(sup->l, &c->w);
	close(c->w.fd);
	loop_defer_free(sup->l, c, free);
}

static void on_exec_done(struct exec_stdio *e, int status, const char *err, void *opaque)
{
	(void)e;
	struct ctl_client *c = opaque;
	c->e = NULL;
	client_close_fds(c);
	struct buf b = { 0 };
	buf_put_u16(&b, CTRL_EXIT);
	msg_put_u32(&b, T_EXIT_CODE, status < 0 ? 125 : (uint32_t)status);
	if (err)
		msg_put_str(&b, T_MESSAGE, err);
	control_send(c->w.fd, &b, NULL, 0);
	buf_fini(&b);
}

/* A client's exec request: decoded (and bounded) by the one exec-request codec. */
static int client_exec(struct ctl_client *c, struct rd *r, char *err, size_t errn)
{
	struct exec_request req;
	if (c->e) {
		snprintf(err, errn, "this connection already runs a process");
		return -EBUSY;
	}
	if (c->nfds != 3) {
		snprintf(err, errn, "exec needs stdin, stdout and stderr");
		return -EINVAL;
	}
	int k = exec_request_decode(r, &req);
	if (k < 0) {
		snprintf(err, errn, "malformed exec request: %s",
			 k == -E2BIG	? "a limit is exceeded"
			 : k == -ENOMEM ? "out of memory"
					: "bad fields");
		return -EINVAL;
	}
	c->e = exec_stdio_start(c->sup->sb, c->sup->l, &req, c->fds[0], c->fds[1], c->fds[2],
				on_exec_done, c, err, errn);
	exec_request_free(&req);
	return c->e ? 0 : -EIO;
}

static void on_tree_done(struct exec_stdio *e, int status, const char *err, void *opaque)
{
	(void)e;
	struct ctl_client *c = opaque;
	c->e = NULL;
	client_close_fds(c); /* the client's end sees EOF: the stream is complete */
	if (status == 0)
		control_simple(c->w.fd, CTRL_OK, 0, NULL);
	else
		control_simple(c->w.fd, CTRL_FAIL, T_MESSAGE, err ? err : strerror(-status));
}

/* A tree into or out of the guest (matchlock cp, diff), streamed through the client's fd. */
static int client_tree(struct ctl_client *c, uint16_t type, struct rd *r, char *err, size_t errn)
{
	struct file_request fr = { .op = type == CTRL_TREE_PACK ? SVC_TREE_PACK : SVC_TREE_UNPACK };
	char *path = NULL, *name = NULL;
	uint16_t tag;
	struct rd v;
	if (c->e) {
		snprintf(err, errn, "this connection is busy");
		return -EBUSY;
	}
	if (c->nfds != 1) {
		snprintf(err, errn, "a copy needs one file descriptor");
		return -EINVAL;
	}
	while (msg_next(r, &tag, &v) > 0) {
		if (tag == T_PATH && !path)
			msg_dup_str(&v, MSG_MAX_STR, &path);
		else if (tag == T_NAME && !name)
			msg_dup_str(&v, 255, &name);
		else if (tag == T_FLAGS)
			msg_get_u32(&v, &fr.flags);
		else if (tag == T_SHARE)
			msg_get_u32(&v, &fr.share);
	}
	fr.path = path ? path : "/";
	fr.name = name;
	c->e = exec_stdio_start_file(c->sup->sb, c->sup->l, &fr, c->fds[0], on_tree_done, c, err,
				     errn);
	free(path);
	free(name);
	return c->e ? 0 : -EIO;
}

/* The host folders, for `matchlock diff`: which mounts are overlays, and of what. */
static void client_mounts(struct ctl_client *c)
{
	const struct sandbox_config *cfg = sandbox_config(c->sup->sb);
	struct buf b = { 0 };
	buf_put_u16(&b, CTRL_OK);
	for (unsigned i = 0; i < cfg->nmounts; i++) {
		char line[MSG_MAX_STR];
		snprintf(line, sizeof(line), "%u %s %s", i,
			 sandbox_mount_mode_names[cfg->mounts[i].mode], cfg->mounts[i].guest);
		msg_put_str(&b, T_MOUNT, line);
		msg_put_str(&b, T_PATH, cfg->mounts[i].host);
	}
	control_send(c->w.fd, &b, NULL, 0);
	buf_fini(&b);
}

static void client_port_forward(struct ctl_client *c, struct rd *r)
{
	uint16_t tag, remote = 0, local = 0, bound;
	char *addr = NULL, err[300];
	struct rd v;
	while (msg_next(r, &tag, &v) > 0) {
		if (tag == T_PORT)
			msg_get_u16(&v, &remote);
		else if (tag == T_LOCAL_PORT)
			msg_get_u16(&v, &local);
		else if (tag == T_ADDR_TEXT && !addr)
			msg_dup_str(&v, 64, &addr);
	}
	if (!remote) {
		control_simple(c->w.fd, CTRL_FAIL, T_MESSAGE, "port forward: no remote port");
	} else if (portfwd_add(&c->sup->pf, addr, local, remote, &bound, err, sizeof(err)) < 0) {
		control_simple(c->w.fd, CTRL_FAIL, T_MESSAGE, err);
	} else {
		struct buf b = { 0 };
		buf_put_u16(&b, CTRL_OK);
		msg_put_u16(&b, T_LOCAL_PORT, bound);
		control_send(c->w.fd, &b, NULL, 0);
		buf_fini(&b);
	}
	free(addr);
}

/* Change the egress allow-list; the engine reads the policy on every query and connect. */
static void client_allow(struct ctl_client *c, struct rd *r, bool add)
{
	struct policy *p = sandbox_config(c->sup->sb)->policy;
	uint16_t tag;
	struct rd v;
	char err[300] = "";
	if (!p || p->no_network) {
		control_simple(c->w.fd, CTRL_FAIL, T_MESSAGE,
			       "this sandbox has no network (--no-network)");
		return;
	}
	while (msg_next(r, &tag, &v) > 0 && !err[0]) {
		char *name = NULL;
		if (tag != T_NAME || msg_dup_str(&v, POLICY_NAME_MAX + 2, &name) < 0)
			continue;
		int k = add ? policy_add(p, name) : policy_delete(p, name);
		if (k < 0 && !(k == -ENOENT && !add))
			snprintf(err, sizeof(err), "%s: %s", name,
				 k == -ENOSPC ? "too many rules" : "not a host name or glob");
		free(name);
	}
	if (err[0]) {
		control_simple(c->w.fd, CTRL_FAIL, T_MESSAGE, err);
		return;
	}
	info("allow-list %s: now %u rule(s)", add ? "add" : "delete", p->nrules);
	struct buf b = { 0 };
	buf_put_u16(&b, CTRL_OK);
	for (unsigned i = 0; i < p->nrules; i++)
		msg_put_str(&b, T_NAME, p->rules[i]);
	control_send(c->w.fd, &b, NULL, 0);
	buf_fini(&b);
}

static void on_client(struct watch *w, uint32_t events)
{
	(void)events;
	struct ctl_client *c = w->obj;
	static uint8_t msg[CONTROL_MAX_MSG];
	int fds[3], nfds = 0;
	ssize_t n = control_recv(w->fd, msg, sizeof(msg), fds, &nfds);
	if (n == -EAGAIN)
		return;
	if (n <= 0 && n != -EMSGSIZE) {
		client_drop(c);
		return;
	}
	char err[512] = "";
	if (n == -EMSGSIZE || n < 2) {
		control_simple(w->fd, CTRL_FAIL, T_MESSAGE, "message too large or too short");
		return;
	}
	/* Fds only ever come with an exec or a copy; anything else passed is closed. */
	struct rd r = rd_make(msg, (size_t)n);
	uint16_t type = rd_u16(&r);
	if ((type == CTRL_EXEC || type == CTRL_TREE_PACK || type == CTRL_TREE_UNPACK) && !c->e) {
		client_close_fds(c);
		memcpy(c->fds, fds, sizeof(int) * (size_t)nfds);
		c->nfds = nfds;
	} else {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	}
	switch (type) {
	case CTRL_EXEC:
		if (client_exec(c, &r, err, sizeof(err)) < 0) {
			client_close_fds(c);
			control_simple(w->fd, CTRL_FAIL, T_MESSAGE, err);
		}
		break;
	case CTRL_INTERRUPT:
		if (c->e)
			exec_stdio_interrupt(c->e);
		break;
	case CTRL_RESIZE: {
		uint16_t tag, rows = 0, cols = 0;
		struct rd v;
		while (msg_next(&r, &tag, &v) > 0) {
			if (tag == T_ROWS)
				msg_get_u16(&v, &rows);
			else if (tag == T_COLS)
				msg_get_u16(&v, &cols);
		}
		if (c->e)
			exec_stdio_resize(c->e, rows, cols);
		break;
	}
	case CTRL_STOP:
		c->wants_stop_reply = true;
		c->sup->stop = true;
		break;
	case CTRL_PORT_FORWARD:
		client_port_forward(c, &r);
		break;
	case CTRL_ALLOW_ADD:
	case CTRL_ALLOW_DEL:
		client_allow(c, &r, type == CTRL_ALLOW_ADD);
		break;
	case CTRL_TREE_PACK:
	case CTRL_TREE_UNPACK:
		if (client_tree(c, type, &r, err, sizeof(err)) < 0) {
			client_close_fds(c);
			control_simple(w->fd, CTRL_FAIL, T_MESSAGE, err);
		}
		break;
	case CTRL_MOUNTS:
		client_mounts(c);
		break;
	default:
		control_simple(w->fd, CTRL_FAIL, T_MESSAGE, "unknown request");
		break;
	}
}

static void on_accept(struct watch *w, uint32_t events)
{
	(void)events;
	struct supervisor *sup = w->obj;
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (!control_peer_allowed(fd)) {
			warn("control socket: refused a client of another user");
			control_simple(fd, CTRL_FAIL, T_MESSAGE,
				       "permission denied: this sandbox belongs to another user");
			close(fd);
			continue;
		}
		struct ctl_client *c =
		    sup->nclients < CONTROL_MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
		if (!c) {
			control_simple(fd, CTRL_FAIL, T_MESSAGE, "too many clients");
			close(fd);
			continue;
		}
		c->sup = sup;
		watch_init(&c->w, fd, on_client, c);
		c->next = sup->clients;
		sup->clients = c;
		sup->nclients++;
		loop_watch(sup->l, &c->w, EPOLLIN);
	}
}

static void on_lifetime(struct timer *t)
{
	struct supervisor *sup = t->obj;
	info("sandbox lifetime (--timeout) reached: stopping");
	sup->stop = true;
}

int supervisor_start(struct supervisor *sup, struct loop *l, struct sandbox *sb, const char *dir,
		     unsigned lifetime_s, char *err, size_t errn)
{
	memset(sup, 0, sizeof(*sup));
	sup->l = l;
	sup->sb = sb;
	int fd = control_listen(dir, err, errn);
	if (fd < 0)
		return fd;
	watch_init(&sup->listen_w, fd, on_accept, sup);
	sup->pf = (struct portfwd){ .l = l, .sb = sb };
	loop_watch(l, &sup->listen_w, EPOLLIN);
	sup->lifetime = (struct timer){ .fn = on_lifetime, .obj = sup };
	if (lifetime_s)
		loop_timer_set(l, &sup->lifetime, now_ns() + lifetime_s * 1000000000ull);
	return 0;
}

void supervisor_finish(struct supervisor *sup)
{
	if (sup->listen_w.fd >= 0) {
		loop_unwatch(sup->l, &sup->listen_w);
		close(sup->listen_w.fd);
		sup->listen_w.fd = -1;
	}
	loop_timer_cancel(sup->l, &sup->lifetime);
	portfwd_fini(&sup->pf);
	while (sup->clients) {
		struct ctl_client *c = sup->clients;
		if (c->wants_stop_reply)
			control_simple(c->w.fd, CTRL_OK, 0, NULL);
		client_drop(c);
	}
}
