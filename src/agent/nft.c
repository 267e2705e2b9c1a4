/* SPDX-License-Identifier: MIT */
/*
 * The guest's redirect rules, programmed over raw nftables netlink (the image may have no
 * tools). One inet table with a nat output chain:
 *
 *   oif lo                     accept     (local traffic, including the stub and the proxy)
 *   udp dport 53               redirect   (to 127.0.0.1 / ::1 port 53: the DNS stub)
 *   tcp dport 53               redirect
 *   meta l4proto tcp           redirect to :NET_PROXY_PORT (the agent's listener)
 *
 * Nothing else is touched: other UDP, ICMP and raw packets follow the default routes into the
 * dummy interface, which drops them. Flushing these rules only breaks the guest's own network.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <string.h>

#include "agent.h"
#include "nl.h"

#define NFT_TABLE "matchlock"
#define NFT_CHAIN "redirect"
#define NF_IP_PRI_NAT_DST (-100)

static void nft_begin(struct nl_buf *b, uint16_t type, uint16_t flags, uint8_t family)
{
	struct nfgenmsg g = { .nfgen_family = family, .version = NFNETLINK_V0 };
	nl_msg_begin(b, (uint16_t)(NFNL_SUBSYS_NFTABLES << 8 | type), NLM_F_REQUEST | flags, &g,
		     sizeof(g));
}

static size_t expr_begin(struct nl_buf *b, const char *name)
{
	size_t elem = nl_nest_begin(b, NFTA_LIST_ELEM);
	nl_put_str(b, NFTA_EXPR_NAME, name);
	return elem;
}

static void expr_meta(struct nl_buf *b, uint32_t key)
{
	size_t e = expr_begin(b, "meta"), d = nl_nest_begin(b, NFTA_EXPR_DATA);
	nl_put_be32(b, NFTA_META_KEY, key);
	nl_put_be32(b, NFTA_META_DREG, NFT_REG_1);
	nl_nest_end(b, d);
	nl_nest_end(b, e);
}

static void expr_cmp_eq(struct nl_buf *b, const void *v, size_t n)
{
	size_t e = expr_begin(b, "cmp"), d = nl_nest_begin(b, NFTA_EXPR_DATA);
	nl_put_be32(b, NFTA_CMP_SREG, NFT_REG_1);
	nl_put_be32(b, NFTA_CMP_OP, NFT_CMP_EQ);
	size_t data = nl_nest_begin(b, NFTA_CMP_DATA);
	nl_put(b, NFTA_DATA_VALUE, v, n);
	nl_nest_end(b, data);
	nl_nest_end(b, d);
	nl_nest_end(b, e);
}

static void expr_dport(struct nl_buf *b)
{
	size_t e = expr_begin(b, "payload"), d = nl_nest_begin(b, NFTA_EXPR_DATA);
	nl_put_be32(b, NFTA_PAYLOAD_DREG, NFT_REG_1);
	nl_put_be32(b, NFTA_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
	nl_put_be32(b, NFTA_PAYLOAD_OFFSET, 2);
	nl_put_be32(b, NFTA_PAYLOAD_LEN, 2);
	nl_nest_end(b, d);
	nl_nest_end(b, e);
}

static void expr_accept(struct nl_buf *b)
{
	size_t e = expr_begin(b, "immediate"), d = nl_nest_begin(b, NFTA_EXPR_DATA);
	nl_put_be32(b, NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
	size_t data = nl_nest_begin(b, NFTA_IMMEDIATE_DATA);
	size_t verdict = nl_nest_begin(b, NFTA_DATA_VERDICT);
	nl_put_be32(b, NFTA_VERDICT_CODE, NF_ACCEPT);
	nl_nest_end(b, verdict);
	nl_nest_end(b, data);
	nl_nest_end(b, d);
	nl_nest_end(b, e);
}

/* redirect [to :port] — port 0 keeps the destination port. */
static void expr_redirect(struct nl_buf *b, uint16_t port)
{
	if (port) {
		uint16_t be = htons(port);
		size_t e = expr_begin(b, "immediate"), d = nl_nest_begin(b, NFTA_EXPR_DATA);
		nl_put_be32(b, NFTA_IMMEDIATE_DREG, NFT_REG_1);
		size_t data = nl_nest_begin(b, NFTA_IMMEDIATE_DATA);
		nl_put(b, NFTA_DATA_VALUE, &be, 2);
		nl_nest_end(b, data);
		nl_nest_end(b, d);
		nl_nest_end(b, e);
	}
	size_t e = expr_begin(b, "redir"), d = nl_nest_begin(b, NFTA_EXPR_DATA);
	if (port)
		nl_put_be32(b, NFTA_REDIR_REG_PROTO_MIN, NFT_REG_1);
	nl_nest_end(b, d);
	nl_nest_end(b, e);
}

static size_t rule_begin(struct nl_buf *b)
{
	nft_begin(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK, NFPROTO_INET);
	nl_put_str(b, NFTA_RULE_TABLE, NFT_TABLE);
	nl_put_str(b, NFTA_RULE_CHAIN, NFT_CHAIN);
	return nl_nest_begin(b, NFTA_RULE_EXPRESSIONS);
}

static void rule_end(struct nl_buf *b, size_t exprs)
{
	nl_nest_end(b, exprs);
	nl_msg_end(b);
}

int nft_install_redirect(uint16_t proxy_port)
{
	static struct nl_buf b;
	memset(&b, 0, sizeof(b));
	struct nfgenmsg g = { .nfgen_family = AF_UNSPEC,
			      .version = NFNETLINK_V0,
			      .res_id = htons(NFNL_SUBSYS_NFTABLES) };
	nl_msg_begin(&b, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, &g, sizeof(g));
	nl_msg_end(&b);

	nft_begin(&b, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_ACK, NFPROTO_INET);
	nl_put_str(&b, NFTA_TABLE_NAME, NFT_TABLE);
	nl_msg_end(&b);

	nft_begin(&b, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_ACK, NFPROTO_INET);
	nl_put_str(&b, NFTA_CHAIN_TABLE, NFT_TABLE);
	nl_put_str(&b, NFTA_CHAIN_NAME, NFT_CHAIN);
	size_t hook = nl_nest_begin(&b, NFTA_CHAIN_HOOK);
	nl_put_be32(&b, NFTA_HOOK_HOOKNUM, NF_INET_LOCAL_OUT);
	nl_put_be32(&b, NFTA_HOOK_PRIORITY, (uint32_t)NF_IP_PRI_NAT_DST);
	nl_nest_end(&b, hook);
	nl_put_str(&b, NFTA_CHAIN_TYPE, "nat");
	nl_put_be32(&b, NFTA_CHAIN_POLICY, NF_ACCEPT);
	nl_msg_end(&b);

	uint32_t lo = 1; /* the loopback device is always ifindex 1 */
	size_t x = rule_begin(&b);
	expr_meta(&b, NFT_META_OIF);
	expr_cmp_eq(&b, &lo, 4);
	expr_accept(&b);
	rule_end(&b, x);

	static const uint8_t protos[] = { IPPROTO_UDP, IPPROTO_TCP };
	uint16_t dns = htons(53);
	for (size_t i = 0; i < sizeof(protos); i++) {
		x = rule_begin(&b);
		expr_meta(&b, NFT_META_L4PROTO);
		expr_cmp_eq(&b, &protos[i], 1);
		expr_dport(&b);
		expr_cmp_eq(&b, &dns, 2);
		expr_redirect(&b, 0);
		rule_end(&b, x);
	}

	uint8_t tcp = IPPROTO_TCP;
	x = rule_begin(&b);
	expr_meta(&b, NFT_META_L4PROTO);
	expr_cmp_eq(&b, &tcp, 1);
	expr_redirect(&b, proxy_port);
	rule_end(&b, x);

	nl_msg_begin(&b, NFNL_MSG_BATCH_END, NLM_F_REQUEST, &g, sizeof(g));
	nl_msg_end(&b);
	return nl_transact(NETLINK_NETFILTER, &b);
}

int nft_remove_all(void)
{
	static struct nl_buf b;
	struct nfgenmsg g = { .nfgen_family = AF_UNSPEC,
			      .version = NFNETLINK_V0,
			      .res_id = htons(NFNL_SUBSYS_NFTABLES) };
	struct nfgenmsg all = { .nfgen_family = NFPROTO_UNSPEC, .version = NFNETLINK_V0 };
	memset(&b, 0, sizeof(b));
	nl_msg_begin(&b, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, &g, sizeof(g));
	nl_msg_end(&b);
	nl_msg_begin(&b, NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_DELTABLE, NLM_F_REQUEST | NLM_F_ACK,
		     &all, sizeof(all));
	nl_msg_end(&b);
	nl_msg_begin(&b, NFNL_MSG_BATCH_END, NLM_F_REQUEST, &g, sizeof(g));
	nl_msg_end(&b);
	return nl_transact(NETLINK_NETFILTER, &b);
}
