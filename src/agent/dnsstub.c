/* SPDX-License-Identifier: MIT */
/*
 * The guest's DNS stub on 127.0.0.1:53 and [::1]:53, UDP and TCP (redirect rules send every
 * port-53 packet here). It resolves nothing: each query goes to the host as CTL_DNS_QUERY with
 * a tag, and the CTL_DNS_REPLY with that tag goes back to whoever asked. Pending queries live
 * in a small ring; when it is full the oldest is forgotten (its client retries).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "common/log.h"
#include "proto/msg.h"

#define DNS_PORT 53
#define DNS_MAX_PENDING 64
#define DNS_MAX_TCP 16

struct dns_tcp {
	struct watch ev;
	uint8_t in[2 + MSG_MAX_DNS];
	size_t have;
	bool sent; /* the query went to the host: wait for the reply */
	bool dead; /* freed after the current loop batch */
};

struct dns_pending {
	uint32_t tag; /* 0 = free */
	int fd; /* UDP: the socket to answer from */
	struct sockaddr_storage from;
	socklen_t fromlen;
	struct dns_tcp *tcp; /* TCP: the connection to answer on */
};

static struct watch udp_ev[2] = { { .fd = -1 }, { .fd = -1 } };
static struct watch tcp_listen_ev[2] = { { .fd = -1 }, { .fd = -1 } };
static struct dns_pending pending[DNS_MAX_PENDING];
static struct dns_tcp *tcps[DNS_MAX_TCP];
static uint32_t next_tag = 1;

static void tcp_close(struct dns_tcp *t)
{
	for (unsigned i = 0; i < DNS_MAX_PENDING; i++)
		if (pending[i].tcp == t)
			pending[i] = (struct dns_pending){ 0 };
	for (unsigned i = 0; i < DNS_MAX_TCP; i++)
		if (tcps[i] == t)
			tcps[i] = NULL;
	loop_unwatch(&agent.loop, &t->ev);
	close(t->ev.fd);
	t->ev.fd = -1;
	t->dead = true;
	loop_defer_free(&agent.loop, t, free);
}

static struct dns_pending *pending_new(void)
{
	uint32_t tag = next_tag++;
	if (!next_tag)
		next_tag = 1;
	struct dns_pending *p = &pending[tag % DNS_MAX_PENDING];
	if (p->tcp)
		tcp_close(p->tcp);
	*p = (struct dns_pending){ .tag = tag, .fd = -1 };
	return p;
}

static void send_query(uint32_t tag, const uint8_t *msg, size_t n)
{
	struct buf b = { 0 };
	buf_put_u16(&b, CTL_DNS_QUERY);
	msg_put_u32(&b, T_DNS_TAG, tag);
	msg_put_tlv(&b, T_DNS_MSG, msg, (uint32_t)n);
	mux_send_msg(&agent.mux, 0, &b);
	buf_fini(&b);
	agent_link_wants_write();
}

static void on_udp(struct watch *w, uint32_t events)
{
	(void)events;
	int fd = w->fd;
	static uint8_t q[MSG_MAX_DNS + 1];
	for (int i = 0; i < 32; i++) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, q, sizeof(q), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n < 0)
			return;
		if (n < 12 || n > MSG_MAX_DNS)
			continue; /* not a DNS message we carry */
		struct dns_pending *p = pending_new();
		p->fd = fd;
		p->from = from;
		p->fromlen = fl;
		send_query(p->tag, q, (size_t)n);
	}
}

static void on_tcp(struct watch *w, uint32_t events);

static void on_tcp_accept(struct watch *w, uint32_t events)
{
	(void)events;
	int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	unsigned slot = 0;
	while (slot < DNS_MAX_TCP && tcps[slot])
		slot++;
	struct dns_tcp *t = slot < DNS_MAX_TCP ? calloc(1, sizeof(*t)) : NULL;
	if (!t) {
		close(fd);
		return;
	}
	watch_init(&t->ev, fd, on_tcp, t);
	loop_watch(&agent.loop, &t->ev, EPOLLIN);
	tcps[slot] = t;
}

/* One length-prefixed query per connection; the reply ends it. */
static void on_tcp(struct watch *w, uint32_t events)
{
	(void)events;
	struct dns_tcp *t = w->obj;
	if (t->dead)
		return;
	ssize_t n = recv(t->ev.fd, t->in + t->have, sizeof(t->in) - t->have, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || t->sent) {
		tcp_close(t);
		return;
	}
	t->have += (size_t)n;
	if (t->have < 2)
		return;
	size_t len = be16_get(t->in);
	if (len < 12 || len > MSG_MAX_DNS) {
		tcp_close(t);
		return;
	}
	if (t->have < 2 + len)
		return;
	struct dns_pending *p = pending_new();
	p->tcp = t;
	t->sent = true;
	send_query(p->tag, t->in + 2, len);
}

void dnsstub_on_reply(struct rd *r)
{
	uint16_t tag;
	struct rd v, msg = { 0 };
	uint32_t qtag = 0;
	while (msg_next(r, &tag, &v) > 0) {
		if (tag == T_DNS_TAG)
			msg_get_u32(&v, &qtag);
		else if (tag == T_DNS_MSG)
			msg = v;
	}
	struct dns_pending *p = &pending[qtag % DNS_MAX_PENDING];
	size_t n = rd_left(&msg);
	const uint8_t *m = rd_bytes(&msg, n);
	if (!qtag || p->tag != qtag || !m || n > MSG_MAX_DNS)
		return;
	if (p->tcp) {
		uint8_t out[2 + MSG_MAX_DNS];
		out[0] = (uint8_t)(n >> 8);
		out[1] = (uint8_t)n;
		memcpy(out + 2, m, n);
		(void)!send(p->tcp->ev.fd, out, 2 + n, MSG_DONTWAIT | MSG_NOSIGNAL);
		tcp_close(p->tcp);
	} else {
		(void)!sendto(p->fd, m, n, MSG_DONTWAIT, (struct sockaddr *)&p->from, p->fromlen);
	}
	*p = (struct dns_pending){ 0 };
}

int dnsstub_start(void)
{
	for (int i = 0; i < 2; i++) {
		int fam = i ? AF_INET6 : AF_INET;
		int u = net_listen(fam, DNS_PORT, SOCK_DGRAM),
		    t = net_listen(fam, DNS_PORT, SOCK_STREAM);
		if (u < 0 || t < 0) {
			error("network: DNS stub on port 53: %s", strerror(-(u < 0 ? u : t)));
			return u < 0 ? u : t;
		}
		watch_init(&udp_ev[i], u, on_udp, NULL);
		watch_init(&tcp_listen_ev[i], t, on_tcp_accept, NULL);
		loop_watch(&agent.loop, &udp_ev[i], EPOLLIN);
		loop_watch(&agent.loop, &tcp_listen_ev[i], EPOLLIN);
	}
	return 0;
}

void dnsstub_stop(void)
{
	for (int i = 0; i < 2; i++) {
		struct watch *evs[2] = { &udp_ev[i], &tcp_listen_ev[i] };
		for (int k = 0; k < 2; k++) {
			if (evs[k]->fd < 0)
				continue;
			loop_unwatch(&agent.loop, evs[k]);
			close(evs[k]->fd);
			evs[k]->fd = -1;
		}
	}
}
