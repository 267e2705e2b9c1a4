/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "portfwd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "common/log.h"
#include "exec_stdio.h"

struct portfwd_listener {
	struct watch w;
	struct portfwd *pf;
	uint16_t remote;
};

int portfwd_parse(const char *spec, uint16_t *local, uint16_t *remote)
{
	unsigned long l, r;
	const char *colon = strrchr(spec, ':');
	if (colon) {
		char lp[16];
		size_t n = (size_t)(colon - spec);
		if (n == 0 || n >= sizeof(lp))
			return -EINVAL;
		memcpy(lp, spec, n);
		lp[n] = 0;
		if (cli_parse_uint(lp, 0, 65535, &l) < 0 ||
		    cli_parse_uint(colon + 1, 1, 65535, &r) < 0)
			return -EINVAL;
	} else {
		if (cli_parse_uint(spec, 1, 65535, &r) < 0)
			return -EINVAL;
		l = r;
	}
	*local = (uint16_t)l;
	*remote = (uint16_t)r;
	return 0;
}

/* One forwarded connection: the accepted socket is ours until the relay ends. */
struct pf_conn {
	struct portfwd *pf;
	int fd;
};

static void on_conn_done(struct exec_stdio *e, int status, const char *err, void *opaque)
{
	(void)e;
	struct pf_conn *c = opaque;
	if (status < 0)
		debug("port forward: %s", err ? err : strerror(-status));
	close(c->fd);
	c->pf->nconns--;
	free(c);
}

static void on_accept(struct watch *w, uint32_t events)
{
	(void)events;
	struct portfwd_listener *ln = w->obj;
	struct portfwd *pf = ln->pf;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct pf_conn *c = pf->nconns < PORTFWD_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
		char err[256];
		if (c) {
			*c = (struct pf_conn){ .pf = pf, .fd = fd };
			if (exec_stdio_start_port(pf->sb, pf->l, ln->remote, fd, on_conn_done, c,
						  err, sizeof(err))) {
				pf->nconns++;
				continue;
			}
			warn("port forward to %u: %s", ln->remote, err);
			free(c);
		}
		close(fd);
	}
}

int portfwd_add(struct portfwd *pf, const char *address, uint16_t local, uint16_t remote,
		uint16_t *bound, char *err, size_t errn)
{
	const char *addr = address && *address ? address : "127.0.0.1";
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(local);
		len = sizeof(*a4);
	} else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(local);
		len = sizeof(*a6);
	} else {
		snprintf(err, errn, "--address %s: not an IPv4 or IPv6 address", addr);
		return -EINVAL;
	}
	if (pf->nls >= PORTFWD_MAX_LISTENERS) {
		snprintf(err, errn, "too many port forwards (at most %d)", PORTFWD_MAX_LISTENERS);
		return -ENOSPC;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0) {
		int e = errno;
		snprintf(err, errn, "cannot listen on %s:%u: %s", addr, local, strerror(e));
		if (fd >= 0)
			close(fd);
		return -e;
	}
	getsockname(fd, (struct sockaddr *)&ss, &len);
	*bound = ntohs(ss.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
	struct portfwd_listener *ln = calloc(1, sizeof(*ln));
	if (!ln) {
		close(fd);
		return -ENOMEM;
	}
	ln->pf = pf;
	ln->remote = remote;
	watch_init(&ln->w, fd, on_accept, ln);
	loop_watch(pf->l, &ln->w, EPOLLIN);
	pf->ls[pf->nls++] = ln;
	info("forwarding %s:%u to port %u in the sandbox", addr, *bound, remote);
	return 0;
}

void portfwd_fini(struct portfwd *pf)
{
	for (unsigned i = 0; i < pf->nls; i++) {
		loop_unwatch(pf->l, &pf->ls[i]->w);
		close(pf->ls[i]->w.fd);
		loop_defer_free(pf->l, pf->ls[i], free);
	}
	pf->nls = 0;
}
