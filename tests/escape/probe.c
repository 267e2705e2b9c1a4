/* SPDX-License-Identifier: MIT */
/*
 * The escape suite's attacker (tests/escape/): run as root inside a sandbox, it does what a
 * hostile guest root can, and prints one line per attempt for the host side to judge. Built
 * static with the agent's musl toolchain and copied into the suite's root filesystem.
 *
 *   probe forge KIND      take the agent's link (PID 1's /dev/vport fd, through pidfd_getfd),
 *                         stop the agent (ptrace), write the frames of KIND (below), then read and
 *                         drop what the host answers until the link is quiet and let the agent go.
 *                         Prints "forge KIND: wrote N bytes" and, if the host still answers,
 *                         "forge KIND: released". A frame that breaks the protocol ends the whole
 *                         sandbox, so for those the line after "wrote" never comes.
 *   probe forge-fs KIND   the same on the file-service link ("matchlock.fs"), as the FUSE relay
 *                         (the process holding that port): see forge_fs for the kinds.
 *   probe net PORT        every way out a guest root has that is not the egress engine's TCP
 *                         relay, against the host's loopback listeners on PORT (TCP and UDP,
 *                         127.0.0.1 and ::1): direct, IPv6, IPv4-mapped IPv6 connects, UDP, raw,
 *                         packet and ICMP sockets. One "net WHAT: RESULT" line each.
 *   probe streams N ADDR PORT SECONDS
 *                         open N TCP connections at once (each a link stream), hold them
 *                         SECONDS, print how many connected, failed or were still pending.
 *   probe dns N DOMAIN    64 tunnel-shaped queries through the guest's DNS stub (63-byte labels,
 *                         names of 250 and past 255 bytes, TXT/MX/NULL/ANY, binary labels, a
 *                         pointer loop; 8 of each), then N for distinct names under DOMAIN (64
 *                         in flight). One "dns odd|many: ..." line each, answers by rcode.
 *   probe setxattr PATH   set attributes a host would act on (a file capability granting
 *                         CAP_SETUID, trusted.*, security.selinux, an ACL) and a user.* one;
 *                         one "setxattr NAME: RESULT" line each.
 *   probe memscan HEX     search for a string (given as hex of its bytes XOR 0x5a, so that it
 *                         is nowhere in the guest but in this process) in the memory of every
 *                         other guest process (/proc/PID/mem over /proc/PID/maps), their environ
 *                         and cmdline, every file of the root filesystem, /sys/firmware, the
 *                         kernel's command line and log; prints "memscan: N processes, M bytes,
 *                         F files, K hits (H in memory)" and each file it was found in.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/klog.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "proto/msg.h"
#include "proto/mux.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

#define DRAIN_MAX_MS 10000 /* reading the host's answers after the frames */
#define QUIET_MS 1000 /* the link counts as drained after this long with nothing to read */
#define FORGE_HOLD_MS 20000 /* after a fatal frame: how long we wait for the sandbox to end */
#define MAX_STREAMS 8192
#define MAX_HOLD_S 60
#define SCAN_CHUNK (1u << 20)

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void die(const char *what)
{
	say("probe: FAILED: %s: %s", what, strerror(errno));
	exit(1);
}

#include "../fixtures/link_takeover.h"

/* ---- forge: raw frames on the agent's link ------------------------------------------- */

static int link_fd = -1;
static struct buf pending;

static void frame(uint32_t stream, uint8_t type, uint8_t chan, uint16_t flags, uint32_t len,
		  const void *p, size_t n)
{
	uint8_t h[MUX_HDR_LEN];
	le32_put(h, stream);
	h[4] = type;
	h[5] = chan;
	le16_put(h + 6, flags);
	le32_put(h + 8, len);
	buf_append(&pending, h, sizeof(h));
	if (n)
		buf_append(&pending, p, n);
}

/* A well-formed frame: the header's length is the payload's. */
static void put(uint32_t stream, uint8_t type, uint8_t chan, const void *p, uint32_t len)
{
	frame(stream, type, chan, 0, len, p, len);
}

/* OPEN of a service the host does not offer: the host refuses it with CLOSE, keeps the id. */
static void put_open_unknown(uint32_t id)
{
	uint8_t svc[2];
	le16_put(svc, 0x7fff);
	put(id, MUX_OPEN, 0, svc, 2);
}

/*
 * Write what is pending, reading and dropping what the host sends meanwhile, until pending is
 * empty and nothing came for QUIET_MS, or `until`. Returns the bytes read back.
 */
static uint64_t pump(uint64_t until)
{
	static uint8_t rbuf[64 * 1024];
	uint64_t last_in = now_ms(), in = 0;
	for (;;) {
		uint64_t t = now_ms();
		if (t >= until || (!buf_used(&pending) && t - last_in >= QUIET_MS))
			return in;
		struct pollfd p = { link_fd, (short)(POLLIN | (buf_used(&pending) ? POLLOUT : 0)),
				    0 };
		int n = poll(&p, 1, 200);
		if (n < 0 && errno != EINTR)
			die("poll");
		if (n <= 0)
			continue;
		if (p.revents & POLLIN) {
			ssize_t k = read(link_fd, rbuf, sizeof(rbuf));
			if (k > 0) {
				in += (uint64_t)k;
				last_in = now_ms();
			}
		}
		if ((p.revents & POLLOUT) && buf_used(&pending)) {
			ssize_t k = write(link_fd, buf_head(&pending), buf_used(&pending));
			if (k > 0)
				buf_consume(&pending, (size_t)k);
			else if (k < 0 && errno != EAGAIN && errno != EINTR)
				die("write to the link");
		}
		if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) {
			errno = EPIPE;
			die("the link");
		}
	}
}

/*
 * Stream ids the guest opens must grow, across runs in one sandbox too: a run takes ids from
 * 1 << 24 + 1 << 16 * (its run number), kept in a file.
 */
static uint32_t fresh_ids(void)
{
	unsigned run = 0;
	FILE *f = fopen("/tmp/probe.runs", "r");
	if (f) {
		if (fscanf(f, "%u", &run) != 1)
			run = 0;
		fclose(f);
	}
	f = fopen("/tmp/probe.runs", "w");
	if (f) {
		fprintf(f, "%u\n", run + 1);
		fclose(f);
	}
	return (1u << 24) + (run << 16);
}

/* Builds the frames of kind; returns false for an unknown kind. */
static bool forge_build(const char *kind, uint32_t id)
{
	static uint8_t big[MUX_MAX_PAYLOAD];
	uint8_t four[4] = { 0 };
	if (!strcmp(kind, "huge-len")) {
		/* A header claiming 4 GB: refused from the header, nothing allocated or awaited. */
		frame(id, MUX_DATA, 0, 0, 0xffffffffu, NULL, 0);
	} else if (!strcmp(kind, "oversized")) {
		/* One byte past the largest payload, and the payload really sent. */
		frame(id, MUX_DATA, 0, 0, MUX_MAX_PAYLOAD + 1, big, sizeof(big));
		buf_append(&pending, "x", 1);
	} else if (!strcmp(kind, "flags")) {
		put_open_unknown(id);
		frame(id, MUX_DATA, 0, 0x8000, 1, "x", 1);
	} else if (!strcmp(kind, "type")) {
		frame(id, MUX_TYPE_END, 0, 0, 0, NULL, 0);
	} else if (!strcmp(kind, "chan")) {
		put_open_unknown(id);
		put(id, MUX_DATA, MUX_CHAN_END, "x", 1);
	} else if (!strcmp(kind, "stream0-data")) {
		put(0, MUX_DATA, 0, "x", 1);
	} else if (!strcmp(kind, "never-opened")) {
		/* DATA on a guest id above any the guest opened. */
		put(id + 2, MUX_DATA, 0, "x", 1);
	} else if (!strcmp(kind, "host-id-open")) {
		/* OPEN with an odd id: those are the host's to open. */
		uint8_t svc[2];
		le16_put(svc, SVC_TCP);
		put(0x7fffffffu, MUX_OPEN, 0, svc, 2);
	} else if (!strcmp(kind, "reopen")) {
		/* An id opened twice (ids are never reused). */
		put_open_unknown(id);
		put_open_unknown(id);
	} else if (!strcmp(kind, "backwards")) {
		/* Ids must grow: an OPEN below the last one. */
		put_open_unknown(id + 4);
		put_open_unknown(id + 2);
	} else if (!strcmp(kind, "window")) {
		/* More DATA than the window the host granted (it credits nothing on a refused
		 * stream). */
		put_open_unknown(id);
		put(id, MUX_DATA, 0, big, MUX_WINDOW);
		put(id, MUX_DATA, 0, "x", 1);
	} else if (!strcmp(kind, "credit-overflow")) {
		/* Credit past the window on a stream the host never sent on. */
		put_open_unknown(id);
		le32_put(four, MUX_WINDOW);
		put(id, MUX_CREDIT, 0, four, 4);
		put(id, MUX_CREDIT, 0, four, 4);
	} else if (!strcmp(kind, "after-close")) {
		/* Every frame after our CLOSE on a stream (the host may still hold it). */
		put_open_unknown(id);
		put(id, MUX_CLOSE, 0, NULL, 0);
		put(id, MUX_DATA, 0, "x", 1);
		put(id, MUX_EOF, 0, NULL, 0);
		put(id, MUX_CLOSE, 0, NULL, 0);
	} else if (!strcmp(kind, "ctl-garbage")) {
		/* A CTL on the link's stream 0 whose TLVs run past the frame. */
		uint8_t p[8] = { 0xff, 0x7f, 0x01, 0x00, 0xff, 0xff, 0xff, 0x7f };
		put(0, MUX_CTL, 0, p, sizeof(p));
	} else if (!strcmp(kind, "ctl-unknown")) {
		/* A CTL type the host does not know, well-formed: ignored or refused, never acted
		 * on. */
		uint8_t p[2];
		le16_put(p, 0x7ffe);
		put(0, MUX_CTL, 0, p, sizeof(p));
	} else if (!strcmp(kind, "own-exec")) {
		/*
		 * Everything a guest can say about an exec the host opened: on stream 1, the first
		 * the host opens in a fresh sandbox (the probe's own exec when it is the first), a
		 * CTL_ERROR with terminal escapes in its message, output with escapes on both
		 * channels, two different exits, EOFs, and a CLOSE with an errno. All legal frames.
		 */
		struct buf b = { 0 };
		char msg[400];
		memset(msg, 'm', sizeof(msg) - 1);
		memcpy(msg, "\x1b[2J\x1b]0;owned\x07\r\n\x9b", 17);
		msg[sizeof(msg) - 1] = 0;
		buf_put_u16(&b, CTL_ERROR);
		msg_put_u32(&b, T_ERRNO, 0xffffffffu);
		msg_put_u32(&b, T_SIGNAL, 0xffffffffu);
		msg_put_str(&b, T_MESSAGE, msg);
		put(1, MUX_CTL, 0, buf_head(&b), (uint32_t)buf_used(&b));
		put(1, MUX_DATA, MUX_CHAN_ERR, "forged-stderr\x1b]0;t\x07\n", 20);
		put(1, MUX_DATA, MUX_CHAN_OUT, "forged-stdout\n", 14);
		buf_consume(&b, buf_used(&b));
		buf_put_u16(&b, CTL_EXIT);
		msg_put_u32(&b, T_EXIT_CODE, 0x1007);
		msg_put_u32(&b, T_EXIT_SIGNAL, 0xffffffffu);
		put(1, MUX_CTL, 0, buf_head(&b), (uint32_t)buf_used(&b));
		put(1, MUX_EOF, MUX_CHAN_OUT, NULL, 0);
		put(1, MUX_EOF, MUX_CHAN_ERR, NULL, 0);
		le32_put(four, 0xffffffffu);
		put(1, MUX_CLOSE, 0, four, 4);
		buf_fini(&b);
	} else if (!strcmp(kind, "late-frames")) {
		/* Frames for a stream the host already freed (opened, refused, closed): ignored. */
		put_open_unknown(id);
		put(id, MUX_CLOSE, 0, NULL, 0);
		return true;
	} else {
		return false;
	}
	return true;
}

static int forge(const char *kind)
{
	uint32_t id = fresh_ids();
	if (!forge_build(kind, id)) {
		say("probe: unknown forge kind %s", kind);
		return 2;
	}
	link_fd = find_agent_link();
	stop_agent();
	size_t total = buf_used(&pending);
	pump(now_ms() + DRAIN_MAX_MS);
	if (!strcmp(kind, "late-frames")) {
		/* The host has freed the stream by now: its frames are in flight from its view. */
		put(id, MUX_DATA, 0, "x", 1);
		put(id, MUX_EOF, 0, NULL, 0);
		put(id, MUX_CLOSE, 0, NULL, 0);
		total += buf_used(&pending);
		pump(now_ms() + DRAIN_MAX_MS);
	}
	if (buf_used(&pending)) {
		say("forge %s: only %zu of %zu bytes written", kind, total - buf_used(&pending),
		    total);
		return 1;
	}
	say("forge %s: wrote %zu bytes", kind, total);
	/* A fatal frame ends the VM within moments: give it the time, then carry on. */
	uint64_t until = now_ms() + 3000;
	while (now_ms() < until)
		pump(until);
	if (ptrace(PTRACE_DETACH, victim, 0, 0) < 0)
		die("ptrace(PTRACE_DETACH)");
	say("forge %s: released", kind);
	return 0;
}

/*
 * The same on the file-service link, as the FUSE relay: its stream for the first host folder
 * is 2 (agent/fuse.c opens one per folder, in order, before anything else).
 *   huge-len     a frame header claiming 4 GB (breaks the link: the sandbox ends)
 *   never-opened DATA on a guest id the relay never opened (breaks the link)
 *   record-len   a request record on stream 2 claiming 4 GB (the host ends that stream only)
 *   wrong-chan   DATA on stream 2's output channel (the host ends that stream only)
 */
static int forge_fs(const char *kind)
{
	uint8_t rec[4];
	if (!strcmp(kind, "huge-len")) {
		frame(2, MUX_DATA, 0, 0, 0xffffffffu, NULL, 0);
	} else if (!strcmp(kind, "never-opened")) {
		put(1u << 20, MUX_DATA, 0, "x", 1);
	} else if (!strcmp(kind, "record-len")) {
		le32_put(rec, 0xffffffffu);
		put(2, MUX_DATA, 0, rec, sizeof(rec));
	} else if (!strcmp(kind, "wrong-chan")) {
		put(2, MUX_DATA, MUX_CHAN_OUT, "x", 1);
	} else {
		say("probe: unknown forge-fs kind %s", kind);
		return 2;
	}
	link_fd = find_fs_link();
	stop_agent();
	size_t total = buf_used(&pending);
	pump(now_ms() + DRAIN_MAX_MS);
	if (buf_used(&pending)) {
		say("forge-fs %s: only %zu of %zu bytes written", kind, total - buf_used(&pending),
		    total);
		return 1;
	}
	say("forge-fs %s: wrote %zu bytes", kind, total);
	uint64_t until = now_ms() + 3000;
	while (now_ms() < until)
		pump(until);
	if (ptrace(PTRACE_DETACH, victim, 0, 0) < 0)
		die("ptrace(PTRACE_DETACH)");
	say("forge-fs %s: released", kind);
	return 0;
}

/* ---- net: every other way out ---------------------------------------------------------- */

static const char *errname(int e)
{
	return e ? strerror(e) : "ok";
}

/* A TCP connect to addr, with a 3 s bound; "connected" only if it really was. */
static void try_connect(const char *what, const struct sockaddr *sa, socklen_t len)
{
	int s = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0) {
		say("net %s: socket: %s", what, strerror(errno));
		return;
	}
	int e = 0;
	if (connect(s, sa, len) < 0 && errno != EINPROGRESS)
		e = errno;
	if (!e) {
		struct pollfd p = { s, POLLOUT, 0 };
		socklen_t el = sizeof(e);
		if (poll(&p, 1, 3000) <= 0)
			e = ETIMEDOUT;
		else if (getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
			e = errno;
	}
	if (!e) {
		/* The agent accepts locally and relays: a byte must come back for a real path. */
		char c;
		(void)!write(s, "probe\n", 6);
		struct pollfd p = { s, POLLIN, 0 };
		ssize_t n = poll(&p, 1, 2000) > 0 ? read(s, &c, 1) : -1;
		say("net %s: connect ok, %s", what, n == 1 ? "answered" : "no answer");
	} else {
		say("net %s: %s", what, errname(e));
	}
	close(s);
}

static void try_udp(const char *what, const struct sockaddr *sa, socklen_t len)
{
	int s = socket(sa->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		say("net %s: socket: %s", what, strerror(errno));
		return;
	}
	int sent = 0, e = 0;
	for (int i = 0; i < 3; i++)
		if (sendto(s, "probe-udp\n", 10, 0, sa, len) == 10)
			sent++;
		else
			e = errno;
	say("net %s: %d of 3 sent%s%s", what, sent, e ? ", " : "", e ? strerror(e) : "");
	close(s);
}

static uint16_t csum(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1)
		s += (uint32_t)b[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* An IPv4 UDP datagram to 127.0.0.1:port from 10.0.2.15, headers built by hand. */
static size_t build_udp4(uint8_t *pkt, uint16_t port)
{
	struct iphdr *ip = (struct iphdr *)pkt;
	struct udphdr *u = (struct udphdr *)(pkt + sizeof(*ip));
	const char msg[] = "probe-raw\n";
	size_t n = sizeof(*ip) + sizeof(*u) + sizeof(msg) - 1;
	memset(pkt, 0, n);
	ip->version = 4;
	ip->ihl = 5;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->tot_len = htons((uint16_t)n);
	ip->saddr = inet_addr("10.0.2.15");
	ip->daddr = htonl(INADDR_LOOPBACK);
	ip->check = htons(csum(ip, sizeof(*ip)));
	u->source = htons(40000);
	u->dest = htons(port);
	u->len = htons((uint16_t)(n - sizeof(*ip)));
	memcpy(pkt + sizeof(*ip) + sizeof(*u), msg, sizeof(msg) - 1);
	return n;
}

static void try_raw(uint16_t port)
{
	uint8_t pkt[128];
	size_t n = build_udp4(pkt, port);
	int s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (s < 0) {
		say("net raw-ip: socket: %s", strerror(errno));
		return;
	}
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = inet_addr("10.0.2.2") };
	ssize_t k = sendto(s, pkt, n, 0, (struct sockaddr *)&to, sizeof(to));
	say("net raw-ip: %s", k == (ssize_t)n ? "sent" : strerror(errno));
	close(s);

	/* ICMP echo to the addresses a host usually has toward a guest. */
	s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
	if (s < 0) {
		say("net icmp: socket: %s", strerror(errno));
		return;
	}
	const char *dsts[] = { "10.0.2.2", "192.168.122.1", "8.8.8.8" };
	int sent = 0, replies = 0;
	for (size_t i = 0; i < sizeof(dsts) / sizeof(dsts[0]); i++) {
		struct icmphdr h = { .type = ICMP_ECHO, .un.echo.id = htons(77) };
		h.checksum = htons(csum(&h, sizeof(h)));
		struct sockaddr_in d = { .sin_family = AF_INET,
					 .sin_addr.s_addr = inet_addr(dsts[i]) };
		if (sendto(s, &h, sizeof(h), 0, (struct sockaddr *)&d, sizeof(d)) > 0)
			sent++;
	}
	struct pollfd p = { s, POLLIN, 0 };
	uint8_t r[256];
	uint64_t until = now_ms() + 2000;
	while (now_ms() < until && poll(&p, 1, 200) >= 0)
		if ((p.revents & POLLIN) && read(s, r, sizeof(r)) > 28 && r[20] == ICMP_ECHOREPLY)
			replies++;
	say("net icmp: %d sent, %d replies", sent, replies);
	close(s);
}

/* An Ethernet frame carrying the same datagram out of every interface but lo. */
static void try_packet(uint16_t port)
{
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (s < 0) {
		say("net packet: socket: %s", strerror(errno));
		return;
	}
	struct if_nameindex *ifs = if_nameindex();
	int tried = 0, sent = 0;
	for (struct if_nameindex *i = ifs; i && i->if_index; i++) {
		if (!strcmp(i->if_name, "lo"))
			continue;
		uint8_t f[14 + 128];
		memset(f, 0xff, 6); /* broadcast */
		memset(f + 6, 0x02, 6);
		f[12] = 0x08;
		f[13] = 0x00;
		size_t n = 14 + build_udp4(f + 14, port);
		struct sockaddr_ll ll = { .sll_family = AF_PACKET,
					  .sll_protocol = htons(ETH_P_IP),
					  .sll_ifindex = (int)i->if_index,
					  .sll_halen = 6 };
		memset(ll.sll_addr, 0xff, 6);
		tried++;
		if (sendto(s, f, n, 0, (struct sockaddr *)&ll, sizeof(ll)) == (ssize_t)n)
			sent++;
	}
	if (ifs)
		if_freenameindex(ifs);
	say("net packet: %d interfaces, %d frames sent", tried, sent);
	close(s);
}

static void sa4(struct sockaddr_in *a, const char *ip, uint16_t port)
{
	*a = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, ip, &a->sin_addr);
}

static void sa6(struct sockaddr_in6 *a, const char *ip, uint16_t port)
{
	*a = (struct sockaddr_in6){ .sin6_family = AF_INET6, .sin6_port = htons(port) };
	inet_pton(AF_INET6, ip, &a->sin6_addr);
}

static int net(uint16_t port)
{
	struct sockaddr_in a;
	struct sockaddr_in6 b;
	/* Direct addresses: the host's loopback, QEMU's usual host address, a public one. */
	const char *v4[] = { "127.0.0.1", "10.0.2.2", "8.8.8.8", "169.254.169.254",
			     "198.19.255.254" };
	for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
		char what[64];
		snprintf(what, sizeof(what), "tcp %s", v4[i]);
		sa4(&a, v4[i], port);
		try_connect(what, (struct sockaddr *)&a, sizeof(a));
	}
	const char *v6[] = { "::1",	"::ffff:127.0.0.1",	"::ffff:10.0.2.2",
			     "fe80::2", "2001:4860:4860::8888", "fd6d:6c6f:636b:1::fffe" };
	for (size_t i = 0; i < sizeof(v6) / sizeof(v6[0]); i++) {
		char what[80];
		snprintf(what, sizeof(what), "tcp6 %s", v6[i]);
		sa6(&b, v6[i], port);
		if (!strncmp(v6[i], "fe80", 4))
			b.sin6_scope_id = 2;
		try_connect(what, (struct sockaddr *)&b, sizeof(b));
	}
	sa4(&a, "127.0.0.1", port);
	try_udp("udp 127.0.0.1", (struct sockaddr *)&a, sizeof(a));
	sa4(&a, "10.0.2.2", port);
	try_udp("udp 10.0.2.2", (struct sockaddr *)&a, sizeof(a));
	sa6(&b, "::1", port);
	try_udp("udp6 ::1", (struct sockaddr *)&b, sizeof(b));
	sa6(&b, "::ffff:127.0.0.1", port);
	try_udp("udp6 ::ffff:127.0.0.1", (struct sockaddr *)&b, sizeof(b));
	/* DNS to a resolver of our choosing, not the stub's. */
	sa4(&a, "8.8.8.8", 53);
	try_udp("udp 8.8.8.8:53", (struct sockaddr *)&a, sizeof(a));
	try_raw(port);
	try_packet(port);
	say("net: done");
	return 0;
}

/* ---- streams: thousands of connections at once ------------------------------------------ */

static int streams(int n, const char *addr, uint16_t port, int hold_s)
{
	if (n < 1 || n > MAX_STREAMS || hold_s < 0 || hold_s > MAX_HOLD_S) {
		say("probe: streams: N in 1..%d, SECONDS in 0..%d", MAX_STREAMS, MAX_HOLD_S);
		return 2;
	}
	static struct pollfd p[MAX_STREAMS];
	struct sockaddr_in a;
	sa4(&a, addr, port);
	/* Root may lift its own descriptor limit: the guest's default 1024 is no bound. */
	struct rlimit rl = { MAX_STREAMS + 64, MAX_STREAMS + 64 };
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("setrlimit(RLIMIT_NOFILE)");
	int opened = 0, failed = 0, ok = 0;
	for (int i = 0; i < n; i++) {
		p[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		p[i].events = POLLOUT;
		if (p[i].fd < 0) {
			failed++;
			continue;
		}
		opened++;
		if (connect(p[i].fd, (struct sockaddr *)&a, sizeof(a)) < 0 &&
		    errno != EINPROGRESS) {
			close(p[i].fd);
			p[i].fd = -1;
			failed++;
		}
	}
	uint64_t until = now_ms() + (uint64_t)hold_s * 1000;
	while (now_ms() < until) {
		if (poll(p, (nfds_t)n, 200) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			if (p[i].fd < 0 || !p[i].revents)
				continue;
			int e = 0;
			socklen_t el = sizeof(e);
			getsockopt(p[i].fd, SOL_SOCKET, SO_ERROR, &e, &el);
			if (e || (p[i].revents & (POLLERR | POLLHUP)))
				failed++;
			else
				ok++;
			close(p[i].fd);
			p[i].fd = -1; /* poll skips it from now on */
		}
	}
	int waiting = 0;
	for (int i = 0; i < n; i++)
		if (p[i].fd >= 0) {
			waiting++;
			close(p[i].fd);
		}
	say("streams: %d sockets, %d connected, %d failed, %d pending", opened, ok, failed,
	    waiting);
	return 0;
}

/* ---- dns: tunnelling through the stub ---------------------------------------------------- */

#define DNS_WINDOW 64 /* queries in flight at once */
#define DNS_WAIT_MS 3000

/* A query for name (dotted, or raw wire labels when wire is set) of qtype, id. */
static size_t dns_build(uint8_t *q, uint16_t id, const char *name, const uint8_t *wire,
			size_t wirelen, uint16_t qtype)
{
	size_t n = 0;
	uint8_t h[12] = { (uint8_t)(id >> 8), (uint8_t)id, 0x01, 0, 0, 1 };
	memcpy(q, h, sizeof(h));
	n = sizeof(h);
	if (wire) {
		memcpy(q + n, wire, wirelen);
		n += wirelen;
	} else {
		const char *p = name;
		while (*p) {
			const char *dot = strchr(p, '.');
			size_t l = dot ? (size_t)(dot - p) : strlen(p);
			q[n++] = (uint8_t)l;
			memcpy(q + n, p, l);
			n += l;
			p += l + (dot ? 1 : 0);
		}
		q[n++] = 0;
	}
	q[n++] = (uint8_t)(qtype >> 8);
	q[n++] = (uint8_t)qtype;
	q[n++] = 0;
	q[n++] = 1;
	return n;
}

struct dns_tally {
	unsigned answered, synthetic, rcode[16], lost;
};

/* The first A answer's address of a reply, or 0. */
static uint32_t dns_first_a(const uint8_t *r, size_t n)
{
	if (n < 12)
		return 0;
	size_t at = 12;
	for (unsigned q = (unsigned)(r[4] << 8 | r[5]); q; q--) {
		while (at < n && r[at] && !(r[at] & 0xc0))
			at += r[at] + 1u;
		at += at < n && (r[at] & 0xc0) ? 2 : 1;
		at += 4;
	}
	for (unsigned a = (unsigned)(r[6] << 8 | r[7]); a && at < n; a--) {
		while (at < n && r[at] && !(r[at] & 0xc0))
			at += r[at] + 1u;
		at += at < n && (r[at] & 0xc0) ? 2 : 1;
		if (at + 10 > n)
			return 0;
		uint16_t type = (uint16_t)(r[at] << 8 | r[at + 1]);
		uint16_t rdlen = (uint16_t)(r[at + 8] << 8 | r[at + 9]);
		at += 10;
		if (type == 1 && rdlen == 4 && at + 4 <= n)
			return (uint32_t)r[at] << 24 | (uint32_t)r[at + 1] << 16 |
			       (uint32_t)r[at + 2] << 8 | r[at + 3];
		at += rdlen;
	}
	return 0;
}

/* Send count queries (query i built by mk) through the stub, DNS_WINDOW at a time. */
static void dns_run(int s, unsigned count, size_t (*mk)(uint8_t *, uint16_t, unsigned),
		    struct dns_tally *t)
{
	static uint64_t sent_at[65536];
	unsigned next = 0, inflight = 0;
	uint8_t q[600], r[4096];
	memset(sent_at, 0, sizeof(sent_at));
	uint64_t last = now_ms();
	while ((next < count || inflight) && now_ms() - last < DNS_WAIT_MS) {
		while (next < count && inflight < DNS_WINDOW) {
			uint16_t id = (uint16_t)(next & 0xffff);
			size_t n = mk(q, id, next);
			if (send(s, q, n, 0) == (ssize_t)n) {
				sent_at[id] = now_ms();
				inflight++;
			} else {
				t->lost++;
			}
			next++;
		}
		struct pollfd p = { s, POLLIN, 0 };
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t k = recv(s, r, sizeof(r), 0);
		if (k < 12)
			continue;
		uint16_t id = (uint16_t)(r[0] << 8 | r[1]);
		if (!sent_at[id])
			continue;
		sent_at[id] = 0;
		inflight--;
		last = now_ms();
		t->answered++;
		t->rcode[r[3] & 15]++;
		uint32_t a = dns_first_a(r, (size_t)k);
		if ((a >> 17) == (198u << 7 | 18u >> 1)) /* 198.18.0.0/15 */
			t->synthetic++;
	}
	t->lost += inflight;
}

static const char *dns_domain;

static size_t mk_many(uint8_t *q, uint16_t id, unsigned i)
{
	char name[300];
	snprintf(name, sizeof(name), "n%u-%08x.%s", i, i * 2654435761u, dns_domain);
	return dns_build(q, id, name, NULL, 0, 1);
}

/* Tunnel-shaped queries: long labels, full-length names, TXT and other types, raw bytes. */
static size_t mk_odd(uint8_t *q, uint16_t id, unsigned i)
{
	char name[400], label[64];
	memset(label, 'a' + (int)(i % 26), 63);
	label[63] = 0;
	uint8_t wire[300];
	size_t w = 0;
	switch (i % 8) {
	case 0: /* 63-byte labels up to a 250-byte name, A */
		snprintf(name, sizeof(name), "%s.%s.%s.%.*s%s", label, label, label,
			 (int)(250 - 3 * 64 - strlen(dns_domain) - 1), label, "");
		snprintf(name + strlen(name), sizeof(name) - strlen(name), ".%s", dns_domain);
		return dns_build(q, id, name, NULL, 0, 1);
	case 1: /* the same as TXT, MX, NULL, ANY */
	case 2:
	case 3:
	case 4: {
		static const uint16_t types[] = { 16, 15, 10, 255 };
		snprintf(name, sizeof(name), "%s.%s", label, dns_domain);
		return dns_build(q, id, name, NULL, 0, types[i % 8 - 1]);
	}
	case 5: /* a name past 255 bytes */
		snprintf(name, sizeof(name), "%s.%s.%s.%s.%s", label, label, label, label,
			 dns_domain);
		return dns_build(q, id, name, NULL, 0, 1);
	case 6: /* binary label bytes */
		wire[w++] = 8;
		for (int k = 0; k < 8; k++)
			wire[w++] = (uint8_t)(i * 31 + (unsigned)k * 97);
		for (const char *p = dns_domain; *p;) {
			const char *dot = strchr(p, '.');
			size_t l = dot ? (size_t)(dot - p) : strlen(p);
			wire[w++] = (uint8_t)l;
			memcpy(wire + w, p, l);
			w += l;
			p += l + (dot ? 1 : 0);
		}
		wire[w++] = 0;
		return dns_build(q, id, NULL, wire, w, 1);
	default: /* a compression pointer loop */
		wire[w++] = 0xc0;
		wire[w++] = 12;
		return dns_build(q, id, NULL, wire, w, 1);
	}
}

static void dns_say(const char *what, unsigned count, const struct dns_tally *t)
{
	say("dns %s: %u queries, %u answers (%u synthetic A), noerror %u, formerr %u, servfail "
	    "%u, nxdomain %u, notimp %u, refused %u, lost %u",
	    what, count, t->answered, t->synthetic, t->rcode[0], t->rcode[1], t->rcode[2],
	    t->rcode[3], t->rcode[4], t->rcode[5], t->lost);
}

static int dns(unsigned count, const char *domain)
{
	if (count < 1 || count > 60000 || strlen(domain) > 40) {
		say("probe: dns: N in 1..60000, DOMAIN at most 40 bytes");
		return 2;
	}
	dns_domain = domain;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a;
	sa4(&a, "127.0.0.1", 53);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("the DNS stub");
	struct dns_tally many = { 0 }, odd = { 0 };
	dns_run(s, 64, mk_odd, &odd);
	dns_say("odd", 64, &odd);
	dns_run(s, count, mk_many, &many);
	dns_say("many", count, &many);
	close(s);
	return 0;
}

/* ---- memscan: the guest's own memory ----------------------------------------------------- */

static uint64_t scanned;

static unsigned scan_fd(int fd, uint64_t from, uint64_t to, const char *needle, size_t nl)
{
	static uint8_t b[SCAN_CHUNK + 256];
	unsigned hits = 0;
	size_t carry = 0;
	for (uint64_t at = from; at < to;) {
		size_t want = to - at < SCAN_CHUNK ? (size_t)(to - at) : SCAN_CHUNK;
		ssize_t k = pread(fd, b + carry, want, (off_t)at);
		if (k <= 0) {
			at += want; /* an unreadable range (a guard page, I/O memory) */
			carry = 0;
			continue;
		}
		scanned += (uint64_t)k;
		size_t n = carry + (size_t)k;
		for (uint8_t *q = b; (q = memmem(q, n - (size_t)(q - b), needle, nl)); q++)
			hits++;
		carry = nl - 1 < n ? nl - 1 : n;
		memmove(b, b + n - carry, carry);
		at += (uint64_t)k;
	}
	return hits;
}

/* Occurrences of needle in the file at path (at most its first 64 MB). */
static unsigned scan_file(const char *path, const char *needle, size_t nl)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return 0;
	struct stat st;
	unsigned hits = 0;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		/* /proc and /sys files say size 0: read them as far as they go. */
		uint64_t end = st.st_size ? (uint64_t)st.st_size : 1u << 20;
		hits = scan_fd(fd, 0, end < (64u << 20) ? end : 64u << 20, needle, nl);
	}
	close(fd);
	return hits;
}

static const char *walk_needle;
static size_t walk_nl;
static unsigned walk_hits, walk_files;

static int walk_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)ftw;
	if (type == FTW_F) {
		walk_files++;
		unsigned h = scan_file(path, walk_needle, walk_nl);
		if (h)
			say("memscan: found in %s", path);
		walk_hits += h;
	}
	return 0;
}

/* The needle arrives as hex of its bytes XOR 0x5a: never in the guest's memory as itself. */
static int memscan(const char *hex)
{
	char needle[201];
	size_t nl = strlen(hex) / 2;
	if (strlen(hex) % 2 || nl < 4 || nl > 200) {
		say("probe: memscan: the string must be 4..200 bytes, given as hex of bytes ^ "
		    "0x5a");
		return 2;
	}
	for (size_t i = 0; i < nl; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return 2;
		needle[i] = (char)(v ^ 0x5a);
	}
	needle[nl] = 0;
	unsigned hits = 0, procs = 0, files = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		int pid = atoi(e->d_name);
		if (pid <= 0 || pid == getpid())
			continue;
		char path[64];
		for (int k = 0; k < 2; k++) {
			snprintf(path, sizeof(path), "/proc/%d/%s", pid, k ? "cmdline" : "environ");
			hits += scan_file(path, needle, nl);
			files++;
		}
		snprintf(path, sizeof(path), "/proc/%d/maps", pid);
		FILE *maps = fopen(path, "r");
		snprintf(path, sizeof(path), "/proc/%d/mem", pid);
		int mem = open(path, O_RDONLY | O_CLOEXEC);
		if (!maps || mem < 0) {
			if (maps)
				fclose(maps);
			if (mem >= 0)
				close(mem);
			continue;
		}
		procs++;
		char line[512];
		while (fgets(line, sizeof(line), maps)) {
			unsigned long long lo, hi;
			char perms[8];
			if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) == 3 && perms[0] == 'r')
				hits += scan_fd(mem, lo, hi, needle, nl);
		}
		fclose(maps);
		close(mem);
	}
	if (d)
		closedir(d);
	unsigned mem_hits = hits;
	/* Every file of the guest's own filesystems, the kernel's command line, firmware tables. */
	walk_needle = needle;
	walk_nl = nl;
	nftw("/", walk_one, 64, FTW_PHYS | FTW_MOUNT);
	nftw("/sys/firmware", walk_one, 64, FTW_PHYS);
	hits += scan_file("/proc/cmdline", needle, nl) + walk_hits;
	files += walk_files + 1;
	/* The kernel's log. */
	static char klog[1 << 20];
	int kn = klogctl(3, klog, sizeof(klog));
	if (kn > 0 && memmem(klog, (size_t)kn, needle, nl))
		hits++;
	/* The whole guest kernel's view of memory, where the kernel offers one. */
	int kc = open("/proc/kcore", O_RDONLY | O_CLOEXEC);
	say("memscan: kcore %s", kc >= 0 ? "readable" : strerror(errno));
	if (kc >= 0)
		close(kc);
	say("memscan: %u processes, %llu bytes, %u files, %u hits (%u in memory)", procs,
	    (unsigned long long)scanned, files, hits, mem_hits);
	return 0;
}

/* ---- setxattr: attributes a host would act on ------------------------------------------ */

/* A file capability (VFS_CAP_REVISION_2) granting CAP_SETUID, then the namespaces Linux keeps. */
static int xattrs(const char *path)
{
	uint32_t cap[5] = { 0x02000001u, 1u << 7, 1u << 7, 0, 0 };
	struct {
		const char *name;
		const void *v;
		size_t n;
	} a[] = {
		{ "security.capability", cap, sizeof(cap) },
		{ "trusted.probe", "x", 1 },
		{ "security.selinux", "system_u:object_r:shadow_t:s0", 29 },
		{ "system.posix_acl_access", "\x02\0\0\0", 4 },
		{ "user.probe", "kept", 4 },
	};
	for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++)
		say("setxattr %s: %s", a[i].name,
		    setxattr(path, a[i].name, a[i].v, a[i].n, 0) < 0 ? strerror(errno) : "ok");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "forge"))
		return forge(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "forge-fs"))
		return forge_fs(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "net"))
		return net((uint16_t)atoi(argv[2]));
	if (argc == 6 && !strcmp(argv[1], "streams"))
		return streams(atoi(argv[2]), argv[3], (uint16_t)atoi(argv[4]), atoi(argv[5]));
	if (argc == 4 && !strcmp(argv[1], "dns"))
		return dns((unsigned)atoi(argv[2]), argv[3]);
	if (argc == 3 && !strcmp(argv[1], "setxattr"))
		return xattrs(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "memscan"))
		return memscan(argv[2]);
	fprintf(
	    stderr,
	    "usage: probe forge KIND | forge-fs KIND | net PORT | streams N ADDR PORT SECONDS | "
	    "dns N DOMAIN | setxattr PATH | memscan STRING\n");
	return 2;
}
