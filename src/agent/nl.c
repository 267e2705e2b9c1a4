/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "nl.h"

#include <errno.h>
#include <linux/netlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void *nl_reserve(struct nl_buf *b, size_t n)
{
	size_t al = NLMSG_ALIGN(n);
	if (b->overflow || b->len + al > sizeof(b->p)) {
		b->overflow = 1;
		return NULL;
	}
	void *p = b->p + b->len;
	memset(p, 0, al);
	b->len += al;
	return p;
}

void nl_msg_begin(struct nl_buf *b, uint16_t type, uint16_t flags, const void *fixed,
		  size_t fixed_len)
{
	b->msg = b->len;
	struct nlmsghdr *h = nl_reserve(b, sizeof(*h));
	void *f = nl_reserve(b, fixed_len);
	if (!h || !f)
		return;
	h->nlmsg_type = type;
	h->nlmsg_flags = flags;
	h->nlmsg_seq = ++b->nmsgs;
	memcpy(f, fixed, fixed_len);
}

void nl_msg_end(struct nl_buf *b)
{
	if (b->overflow)
		return;
	struct nlmsghdr *h = (struct nlmsghdr *)(b->p + b->msg);
	h->nlmsg_len = (uint32_t)(b->len - b->msg);
}

void nl_put(struct nl_buf *b, uint16_t type, const void *p, size_t n)
{
	struct nlattr *a = nl_reserve(b, NLA_HDRLEN + n);
	if (!a)
		return;
	a->nla_type = type;
	a->nla_len = (uint16_t)(NLA_HDRLEN + n);
	memcpy((uint8_t *)a + NLA_HDRLEN, p, n);
}

void nl_put_str(struct nl_buf *b, uint16_t type, const char *s)
{
	nl_put(b, type, s, strlen(s) + 1);
}

void nl_put_u32(struct nl_buf *b, uint16_t type, uint32_t v)
{
	nl_put(b, type, &v, 4);
}

void nl_put_be32(struct nl_buf *b, uint16_t type, uint32_t v)
{
	uint32_t be = __builtin_bswap32(v);
	nl_put(b, type, &be, 4);
}

size_t nl_nest_begin(struct nl_buf *b, uint16_t type)
{
	size_t at = b->len;
	struct nlattr *a = nl_reserve(b, NLA_HDRLEN);
	if (a)
		a->nla_type = type | NLA_F_NESTED;
	return at;
}

void nl_nest_end(struct nl_buf *b, size_t at)
{
	if (b->overflow)
		return;
	((struct nlattr *)(b->p + at))->nla_len = (uint16_t)(b->len - at);
}

int nl_transact(int protocol, struct nl_buf *b)
{
	if (b->overflow)
		return -E2BIG;
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
	if (fd < 0)
		return -errno;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int r = 0;
	if (sendto(fd, b->p, b->len, 0, (struct sockaddr *)&sa, sizeof(sa)) != (ssize_t)b->len) {
		r = -errno;
		goto out;
	}
	/* Every message asked for an ACK: read until each has one (or an error comes). */
	unsigned acked = 0, want = 0;
	for (size_t off = 0; off < b->len;) {
		struct nlmsghdr *h = (struct nlmsghdr *)(b->p + off);
		if (h->nlmsg_flags & NLM_F_ACK)
			want++;
		off += NLMSG_ALIGN(h->nlmsg_len);
	}
	static uint8_t rb[8192];
	while (acked < want) {
		ssize_t n = recv(fd, rb, sizeof(rb), 0);
		if (n < 0) {
			r = -errno;
			break;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)rb; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type != NLMSG_ERROR)
				continue;
			struct nlmsgerr *e = NLMSG_DATA(h);
			acked++;
			if (e->error && !r)
				r = e->error;
		}
		if (r)
			break;
	}
out:
	close(fd);
	return r;
}
