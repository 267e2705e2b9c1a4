/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "resolve.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int resolver_init(struct resolver *r)
{
	r->inflight = 0;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, r->fds) < 0)
		return -errno;
	fcntl(r->fds[0], F_SETFL, O_NONBLOCK);
	return 0;
}

void resolver_fini(struct resolver *r)
{
	struct resolve_job *j;
	if (r->fds[0] < 0)
		return;
	while ((j = resolver_take(r)))
		free(j);
	close(r->fds[0]);
	close(r->fds[1]);
	r->fds[0] = r->fds[1] = -1;
}

/* Whether addr (or the IPv4 address an IPv6 one carries) is on one of this host's interfaces. */
static bool addr_is_local(const struct ifaddrs *ifs, int family, const uint8_t *addr)
{
	uint8_t v4[4];
	bool carries = family == AF_INET6 && policy_v6_embedded_v4(addr, v4);
	for (const struct ifaddrs *i = ifs; i; i = i->ifa_next) {
		const struct sockaddr *sa = i->ifa_addr;
		if (!sa)
			continue;
		if (sa->sa_family == AF_INET) {
			const uint8_t *a =
			    (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
			if ((family == AF_INET && !memcmp(a, addr, 4)) ||
			    (carries && !memcmp(a, v4, 4)))
				return true;
		} else if (sa->sa_family == AF_INET6 && family == AF_INET6) {
			const uint8_t *a =
			    (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
			if (!memcmp(a, addr, 16))
				return true;
		}
	}
	return false;
}

static void *resolve_thread(void *arg)
{
	struct resolve_job *j = arg;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
	int e = getaddrinfo(j->name, NULL, &hints, &res);
	if (e == 0) {
		for (struct addrinfo *a = res; a && j->n < RESOLVE_MAX_ADDRS; a = a->ai_next) {
			struct resolve_addr *o = &j->addrs[j->n];
			if (a->ai_family == AF_INET) {
				o->family = AF_INET;
				memcpy(o->addr, &((struct sockaddr_in *)a->ai_addr)->sin_addr, 4);
			} else if (a->ai_family == AF_INET6) {
				o->family = AF_INET6;
				memcpy(o->addr, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr,
				       16);
			} else {
				continue;
			}
			j->n++;
		}
		freeaddrinfo(res);
		j->err = j->n ? 0 : -ENOENT;
		/*
		 * Read the interfaces now, after the lookup, so the check sees them as they are
		 * when we dial. If they cannot be read, every answer counts as local: fail closed.
		 */
		struct ifaddrs *ifs = NULL;
		bool have_ifs = getifaddrs(&ifs) == 0;
		for (unsigned i = 0; i < j->n; i++)
			j->addrs[i].local =
			    !have_ifs || addr_is_local(ifs, j->addrs[i].family, j->addrs[i].addr);
		if (have_ifs)
			freeifaddrs(ifs);
	} else {
		j->err = e == EAI_NONAME || e == EAI_NODATA ? -ENOENT
			 : e == EAI_AGAIN		    ? -EAGAIN
							    : -EIO;
	}
	int fd = j->post_fd;
	/* The loop gone (socket closed): nobody will free the job but us. */
	if (send(fd, &j, sizeof(j), MSG_NOSIGNAL) != sizeof(j))
		free(j);
	close(fd);
	return NULL;
}

struct resolve_job *resolver_start(struct resolver *r, const char *name, void *owner)
{
	if (r->inflight >= RESOLVE_MAX_INFLIGHT) {
		errno = EAGAIN;
		return NULL;
	}
	struct resolve_job *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	snprintf(j->name, sizeof(j->name), "%s", name);
	j->owner = owner;
	j->post_fd = fcntl(r->fds[1], F_DUPFD_CLOEXEC, 0);
	pthread_attr_t attr;
	pthread_t t;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	int e = j->post_fd < 0 ? errno : pthread_create(&t, &attr, resolve_thread, j);
	pthread_attr_destroy(&attr);
	if (e) {
		if (j->post_fd >= 0)
			close(j->post_fd);
		free(j);
		errno = e;
		return NULL;
	}
	r->inflight++;
	return j;
}

struct resolve_job *resolver_take(struct resolver *r)
{
	struct resolve_job *j;
	if (recv(r->fds[0], &j, sizeof(j), MSG_DONTWAIT) != sizeof(j))
		return NULL;
	r->inflight--;
	return j;
}
