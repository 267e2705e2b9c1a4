/* SPDX-License-Identifier: MIT */
/*
 * The guest's network: no NIC. Loopback, a dummy interface holding the IPv4 and IPv6 default
 * routes (so connects have a route and reach the nat hook), the redirect rules (nft.c), the
 * DNS stub (dnsstub.c), and the transparent TCP proxy here: every redirected connection is
 * accepted on loopback, its original destination read back from conntrack, and relayed over
 * one SVC_TCP stream to the host's egress engine, which decides. Credit flows both ways: a
 * socket is read only while its stream has credit, host bytes are credited once written.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "agent.h"
#include "common/log.h"
#include "common/util.h"
#include "nl.h"
#include "proto/msg.h"

/*
 * From linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h, whose includes clash with
 * musl's net/if.h: the conntrack getsockopt that returns a redirected socket's destination.
 */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

#define NET_DUMMY "dummy0"
#define NET_MAX_CONNS 256

struct net_conn {
	struct mux_stream *s;
	/*
	 * Redirected egress (guest-opened SVC_TCP): socket bytes go up on IN, the host's come
	 * down on OUT. Port forwarding (host-opened SVC_PORT) is the mirror image.
	 */
	uint8_t up_chan, down_chan;
	struct watch ev;
	struct buf down; /* host bytes not yet written to the socket */
	bool host_eof, down_shut, sock_eof;
	bool dead; /* freed after the current loop batch */
};

static struct watch listen_ev[2] = { { .fd = -1 }, { .fd = -1 } };
static struct net_conn *conns[NET_MAX_CONNS];
static unsigned nconns;

static void on_listen(struct watch *w, uint32_t events);
static void on_conn(struct watch *w, uint32_t events);

/* ---- interface, addresses, routes ------------------------------------------------------ */

static int rtnl_dummy(void)
{
	static struct nl_buf b;
	memset(&b, 0, sizeof(b));
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC,
				 .ifi_flags = IFF_UP,
				 .ifi_change = IFF_UP };
	nl_msg_begin(&b, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, &ifi,
		     sizeof(ifi));
	nl_put_str(&b, IFLA_IFNAME, NET_DUMMY);
	size_t li = nl_nest_begin(&b, IFLA_LINKINFO);
	nl_put_str(&b, IFLA_INFO_KIND, "dummy");
	nl_nest_end(&b, li);
	nl_msg_end(&b);
	return nl_transact(NETLINK_ROUTE, &b);
}

static int rtnl_dummy_delete(void)
{
	static struct nl_buf b;
	memset(&b, 0, sizeof(b));
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
	nl_msg_begin(&b, RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, &ifi, sizeof(ifi));
	nl_put_str(&b, IFLA_IFNAME, NET_DUMMY);
	nl_msg_end(&b);
	return nl_transact(NETLINK_ROUTE, &b);
}

static int rtnl_addr_route(int ifindex)
{
	static struct nl_buf b;
	memset(&b, 0, sizeof(b));
	struct ifinfomsg up = { .ifi_family = AF_UNSPEC,
				.ifi_index = ifindex,
				.ifi_flags = IFF_UP,
				.ifi_change = IFF_UP };
	nl_msg_begin(&b, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, &up, sizeof(up));
	nl_msg_end(&b);
	/* Addresses from the documentation ranges: the guest has a source address, nothing more. */
	uint8_t v4[4] = { 192, 0, 2, 2 };
	uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 2 };
	struct ifaddrmsg a4 = { .ifa_family = AF_INET,
				.ifa_prefixlen = 24,
				.ifa_index = (uint32_t)ifindex };
	nl_msg_begin(&b, RTM_NEWADDR, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, &a4, sizeof(a4));
	nl_put(&b, IFA_LOCAL, v4, 4);
	nl_put(&b, IFA_ADDRESS, v4, 4);
	nl_msg_end(&b);
	/* No duplicate address detection: the address is usable at once. */
	struct ifaddrmsg a6 = { .ifa_family = AF_INET6,
				.ifa_prefixlen = 64,
				.ifa_flags = IFA_F_NODAD,
				.ifa_index = (uint32_t)ifindex };
	nl_msg_begin(&b, RTM_NEWADDR, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, &a6, sizeof(a6));
	nl_put(&b, IFA_ADDRESS, v6, 16);
	nl_put_u32(&b, IFA_FLAGS, IFA_F_NODAD);
	nl_msg_end(&b);
	for (int fam = 0; fam < 2; fam++) {
		struct rtmsg rt = { .rtm_family = fam ? AF_INET6 : AF_INET,
				    .rtm_table = RT_TABLE_MAIN,
				    .rtm_protocol = RTPROT_BOOT,
				    .rtm_scope = RT_SCOPE_LINK,
				    .rtm_type = RTN_UNICAST };
		nl_msg_begin(&b, RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, &rt,
			     sizeof(rt));
		nl_put_u32(&b, RTA_OIF, (uint32_t)ifindex);
		nl_msg_end(&b);
	}
	return nl_transact(NETLINK_ROUTE, &b);
}

static int listen_on(int family, uint16_t port, int type)
{
	int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		s6->sin6_addr = in6addr_loopback;
		sl = sizeof(*s6);
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 ||
	    (type == SOCK_STREAM && listen(fd, 128) < 0)) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int net_listen(int family, uint16_t port, int type)
{
	return listen_on(family, port, type);
}

static int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	int r = write_all(fd, text, strlen(text));
	close(fd);
	return r;
}

/*
 * The redirected network, set up once at boot, before the agent says hello, so that it is part
 * of a template snapshot and costs a restored sandbox nothing: the dummy interface with the
 * default routes, the nftables redirect, the proxy listeners and the DNS stub.
 */
int net_prepare(void)
{
	int r = rtnl_dummy();
	if (r == -EEXIST) /* a built-in dummy driver makes dummy0 at boot */
		r = 0;
	int ifindex = (int)if_nametoindex(NET_DUMMY);
	if (r < 0 || ifindex <= 0 || (r = rtnl_addr_route(ifindex)) < 0) {
		error("network: dummy interface and routes: %s", strerror(-r));
		return r;
	}
	if ((r = nft_install_redirect(NET_PROXY_PORT)) < 0) {
		error("network: nftables redirect rules: %s", strerror(-r));
		return r;
	}
	for (int i = 0; i < 2; i++) {
		int fd = listen_on(i ? AF_INET6 : AF_INET, NET_PROXY_PORT, SOCK_STREAM);
		if (fd < 0) {
			error("network: proxy listener: %s", strerror(-fd));
			return fd;
		}
		watch_init(&listen_ev[i], fd, on_listen, NULL);
		loop_watch(&agent.loop, &listen_ev[i], EPOLLIN);
	}
	return dnsstub_start();
}

/* --no-network: take it all down again, leaving loopback only (connects fail at once). */
static void net_teardown(void)
{
	for (int i = 0; i < 2; i++) {
		if (listen_ev[i].fd >= 0) {
			loop_unwatch(&agent.loop, &listen_ev[i]);
			close(listen_ev[i].fd);
			listen_ev[i].fd = -1;
		}
	}
	dnsstub_stop();
	nft_remove_all();
	rtnl_dummy_delete();
	unlink("/etc/resolv.conf");
}

int net_setup(bool enabled, char **hosts, size_t nhosts)
{
	char text[16384];
	size_t k = (size_t)snprintf(text, sizeof(text),
				    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n");
	char hn[65] = "";
	gethostname(hn, sizeof(hn) - 1);
	if (*hn)
		k += (size_t)snprintf(text + k, sizeof(text) - k, "127.0.1.1\t%s\n", hn);
	for (size_t i = 0; i < nhosts && k < sizeof(text) - 300; i++)
		k += (size_t)snprintf(text + k, sizeof(text) - k, "%s\n", hosts[i]);
	mkdir_p("/etc", 0755);
	if (write_text("/etc/hosts", text) < 0)
		warn("cannot write /etc/hosts: %s", strerror(errno));
	if (!enabled) {
		net_teardown();
		return 0;
	}
	if (write_text("/etc/resolv.conf", "nameserver 127.0.0.1\noptions ndots:0\n") < 0)
		warn("cannot write /etc/resolv.conf: %s", strerror(errno));
	return 0;
}

/* ---- the proxy ------------------------------------------------------------------------- */

static void conn_free(struct net_conn *c, bool reset)
{
	if (c->ev.fd >= 0) {
		if (reset) {
			struct linger l = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(c->ev.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		}
		loop_unwatch(&agent.loop, &c->ev);
		close(c->ev.fd);
		c->ev.fd = -1;
	}
	if (c->s) {
		agent_stream_own(c->s, AGENT_STREAM_NONE, NULL);
		mux_close(&agent.mux, c->s, reset ? ECONNRESET : 0);
		c->s = NULL;
		agent_link_wants_write();
	}
	buf_fini(&c->down);
	for (unsigned i = 0; i < nconns; i++) {
		if (conns[i] == c) {
			conns[i] = conns[--nconns];
			break;
		}
	}
	c->dead = true;
	loop_defer_free(&agent.loop, c, free);
}

static void conn_update(struct net_conn *c)
{
	uint32_t ev = 0;
	if (!c->sock_eof && c->s->send_credit > 0 && !agent_link_congested())
		ev |= EPOLLIN;
	if (buf_used(&c->down))
		ev |= EPOLLOUT;
	loop_watch(&agent.loop, &c->ev, ev);
}

/* Both directions finished: close the stream normally. */
static bool conn_maybe_done(struct net_conn *c)
{
	if (c->sock_eof && c->down_shut) {
		conn_free(c, false);
		return true;
	}
	return false;
}

/* Socket -> host. Returns false if c was freed. */
static bool conn_pump_up(struct net_conn *c)
{
	uint8_t tmp[MUX_DATA_CHUNK];
	while (!c->sock_eof && c->s->send_credit > 0 && !agent_link_congested()) {
		size_t room = c->s->send_credit < sizeof(tmp) ? c->s->send_credit : sizeof(tmp);
		/* Spliced to the port (one copy, in the kernel), or copied behind a queue. */
		ssize_t n = link_splice_data(c->s, c->up_chan, c->ev.fd, MUX_SPLICE_MAX);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EINVAL || errno == EBUSY))
			n = recv(c->ev.fd, tmp, room, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			conn_free(c, true);
			return false;
		}
		if (n == 0) {
			c->sock_eof = true;
			mux_send_eof(&agent.mux, c->s, c->up_chan);
			break;
		}
		mux_send_data(&agent.mux, c->s, c->up_chan, tmp, (uint32_t)n);
	}
	agent_link_wants_write();
	return !conn_maybe_done(c);
}

/* Host -> socket. Returns false if c was freed. */
static bool conn_pump_down(struct net_conn *c)
{
	while (buf_used(&c->down)) {
		ssize_t n = send(c->ev.fd, buf_head(&c->down), buf_used(&c->down),
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			conn_free(c, true);
			return false;
		}
		buf_consume(&c->down, (size_t)n);
		mux_consumed(&agent.mux, c->s, (uint32_t)n);
		agent_link_wants_write();
	}
	if (!buf_used(&c->down) && c->host_eof && !c->down_shut) {
		shutdown(c->ev.fd, SHUT_WR);
		c->down_shut = true;
	}
	return !conn_maybe_done(c);
}

static void conn_pump(struct net_conn *c)
{
	if (conn_pump_up(c) && conn_pump_down(c))
		conn_update(c);
}

static void net_accept(int lfd)
{
	for (int i = 0; i < 16; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct sockaddr_storage dst = { 0 };
		socklen_t dl = sizeof(dst);
		struct sockaddr_storage self;
		socklen_t sl = sizeof(self);
		getsockname(fd, (struct sockaddr *)&self, &sl);
		int ok = self.ss_family == AF_INET
			     ? getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dl)
			     : getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &dl);
		struct buf b = { 0 };
		if (ok == 0 && dst.ss_family == AF_INET) {
			struct sockaddr_in *d = (struct sockaddr_in *)&dst;
			msg_put_tlv(&b, T_ADDR, &d->sin_addr, 4);
			msg_put_u16(&b, T_PORT, ntohs(d->sin_port));
		} else if (ok == 0 && dst.ss_family == AF_INET6) {
			struct sockaddr_in6 *d = (struct sockaddr_in6 *)&dst;
			msg_put_tlv(&b, T_ADDR, &d->sin6_addr, 16);
			msg_put_u16(&b, T_PORT, ntohs(d->sin6_port));
		}
		struct net_conn *c = NULL;
		if (buf_used(&b) && nconns < NET_MAX_CONNS && (c = calloc(1, sizeof(*c))))
			c->s = mux_open(&agent.mux, SVC_TCP, buf_head(&b), (uint32_t)buf_used(&b));
		buf_fini(&b);
		if (!c || !c->s) {
			/* Not redirected (a direct connect to the proxy), or no room: reset it. */
			struct linger l = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
			close(fd);
			free(c);
			continue;
		}
		agent_stream_own(c->s, AGENT_STREAM_NET, c);
		c->up_chan = MUX_CHAN_IN;
		c->down_chan = MUX_CHAN_OUT;
		watch_init(&c->ev, fd, on_conn, c);
		loop_watch(&agent.loop, &c->ev, EPOLLIN);
		conns[nconns++] = c;
		agent_link_wants_write();
	}
}

static void on_listen(struct watch *w, uint32_t events)
{
	(void)events;
	net_accept(w->fd);
}

static void on_conn(struct watch *w, uint32_t events)
{
	(void)events;
	struct net_conn *c = w->obj;
	if (!c->dead)
		conn_pump(c);
}

int net_on_frame(struct mux_stream *s, const struct mux_frame *f)
{
	struct net_conn *c = s->user;
	if (f->type == MUX_OPEN)
		return -EPROTO; /* the host never opens guest-numbered streams */
	switch (f->type) {
	case MUX_DATA: {
		if (f->chan != c->down_chan || c->host_eof) {
			conn_free(c, true);
			return 0;
		}
		/* Nothing queued: straight from the frame to the socket, queue only the rest. */
		ssize_t n = 0;
		if (!buf_used(&c->down) && c->ev.fd >= 0)
			n = send(c->ev.fd, f->payload, f->len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0)
			mux_consumed(&agent.mux, c->s, (uint32_t)n);
		else
			n = 0; /* an error shows again on the queued bytes' send */
		if (buf_append(&c->down, f->payload + n, f->len - (size_t)n) < 0) {
			conn_free(c, true);
			return 0;
		}
		conn_pump(c);
		break;
	}
	case MUX_EOF:
		c->host_eof = true;
		conn_pump(c);
		break;
	case MUX_CREDIT:
		conn_pump(c);
		break;
	case MUX_CLOSE: {
		/* Denied or failed upstream: reset. A normal close first delivers what is queued.
		 */
		uint32_t err = f->len == 4 ? le32_get(f->payload) : 0;
		if (!err && c->ev.fd >= 0 && buf_used(&c->down)) {
			/* Bounded: a client that never reads cannot hold the agent. */
			struct timeval tv = { .tv_sec = 1 };
			int fl = fcntl(c->ev.fd, F_GETFL);
			setsockopt(c->ev.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			fcntl(c->ev.fd, F_SETFL, fl & ~O_NONBLOCK);
			(void)!write_all(c->ev.fd, buf_head(&c->down), buf_used(&c->down));
		}
		conn_free(c, err != 0);
		break;
	}
	default:
		break;
	}
	return 0;
}

/* SVC_PORT: the host forwards a connection to a port on our loopback (IPv4, else IPv6). */
int net_port_open(struct mux_stream *s, struct rd *body)
{
	uint16_t tag, port = 0;
	struct rd v;
	while (msg_next(body, &tag, &v) > 0)
		if (tag == T_PORT)
			msg_get_u16(&v, &port);
	int fd = -1, err = ECONNREFUSED;
	struct sockaddr_in a4 = { .sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6,
				   .sin6_port = htons(port),
				   .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr *addrs[2] = { (struct sockaddr *)&a4, (struct sockaddr *)&a6 };
	socklen_t lens[2] = { sizeof(a4), sizeof(a6) };
	/* Loopback connects complete (or fail) at once: no need to wait on the loop. */
	for (int i = 0; i < 2 && fd < 0 && port; i++) {
		fd = socket(addrs[i]->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, addrs[i], lens[i]) < 0) {
			err = errno;
			close(fd);
			fd = -1;
		}
	}
	struct net_conn *c = fd >= 0 && nconns < NET_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		if (fd >= 0)
			close(fd);
		mux_close(&agent.mux, s, fd >= 0 ? EMFILE : (uint32_t)err);
		agent_link_wants_write();
		return 0;
	}
	fd_set_nonblock(fd, 1);
	c->s = s;
	agent_stream_own(s, AGENT_STREAM_NET, c);
	c->up_chan = MUX_CHAN_OUT;
	c->down_chan = MUX_CHAN_IN;
	watch_init(&c->ev, fd, on_conn, c);
	loop_watch(&agent.loop, &c->ev, EPOLLIN);
	conns[nconns++] = c;
	return 0;
}

void net_resume_all(void)
{
	for (unsigned i = nconns; i-- > 0;)
		if (i < nconns)
			conn_pump(conns[i]);
}
