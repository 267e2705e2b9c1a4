/* SPDX-License-Identifier: MIT */
/*
 * A tiny netlink message builder for the agent (rtnetlink and nftables): attributes appended
 * into a fixed buffer, nests closed by offset, and a send that collects every ACK.
 */
#ifndef MATCHLOCK_AGENT_NL_H
#define MATCHLOCK_AGENT_NL_H

#include <stddef.h>
#include <stdint.h>

#define NL_BUF_MAX 8192

struct nl_buf {
	uint8_t p[NL_BUF_MAX];
	size_t len;
	size_t msg; /* offset of the message being built */
	unsigned nmsgs;
	int overflow;
};

/* Start a message: header + fixed part (copied from fixed, fixed_len bytes). */
void nl_msg_begin(struct nl_buf *b, uint16_t type, uint16_t flags, const void *fixed,
		  size_t fixed_len);
void nl_msg_end(struct nl_buf *b);
void nl_put(struct nl_buf *b, uint16_t type, const void *p, size_t n);
void nl_put_str(struct nl_buf *b, uint16_t type, const char *s);
void nl_put_u32(struct nl_buf *b, uint16_t type, uint32_t v);
void nl_put_be32(struct nl_buf *b, uint16_t type, uint32_t v);
size_t nl_nest_begin(struct nl_buf *b, uint16_t type);
void nl_nest_end(struct nl_buf *b, size_t at);
/* Send every message of b on a new socket of protocol; returns 0 or the first -errno ACKed. */
int nl_transact(int protocol, struct nl_buf *b);

#endif
