/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "dns.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define DNS_QR 0x8000
#define DNS_OPCODE(f) (((f) >> 11) & 0xf)
#define DNS_AA 0x0400
#define DNS_TC 0x0200
#define DNS_RD 0x0100
#define DNS_RA 0x0080
#define DNS_CLASS_IN 1

/*
 * Read the question name. Compression pointers are refused: a question is the first name in
 * the message, there is nothing earlier to point at.
 */
static int read_name(struct rd *r, struct dns_query *q)
{
	size_t out = 0, wire = 0;
	q->name_ok = true;
	for (;;) {
		uint8_t len = rd_u8(r);
		if (r->bad || (len & 0xc0))
			return -EPROTO;
		wire += 1 + (size_t)len;
		if (wire > 255)
			return -EPROTO;
		if (len == 0)
			break;
		const uint8_t *l = rd_bytes(r, len);
		if (!l)
			return -EPROTO;
		if (out)
			q->name[out++] = '.';
		for (unsigned i = 0; i < len; i++) {
			uint8_t c = l[i];
			if (!isalnum(c) && c != '-' && c != '_') {
				q->name_ok = false;
				c = '?';
			}
			q->name[out++] = (char)tolower(c);
		}
	}
	q->name[out] = 0;
	return 0;
}

int dns_parse_query(const uint8_t *p, size_t n, struct dns_query *q)
{
	memset(q, 0, sizeof(*q));
	if (n > DNS_MAX_MSG)
		return -EPROTO;
	struct rd r = rd_make(p, n);
	q->id = rd_be16(&r);
	q->flags = rd_be16(&r);
	uint16_t qd = rd_be16(&r), an = rd_be16(&r), ns = rd_be16(&r), ar = rd_be16(&r);
	if (r.bad)
		return -EPROTO;
	if (q->flags & DNS_QR)
		return -EPROTO;
	if (DNS_OPCODE(q->flags) != 0)
		return -EOPNOTSUPP;
	/* One question; an EDNS OPT record may follow in the additional section (ignored). */
	if (qd != 1 || an != 0 || ns != 0 || ar > 1)
		return -EPROTO;
	if (read_name(&r, q) < 0)
		return -EPROTO;
	q->qtype = rd_be16(&r);
	q->qclass = rd_be16(&r);
	if (r.bad)
		return -EPROTO;
	q->question_end = r.off;
	return 0;
}

int dns_build_reply(struct buf *out, const uint8_t *p, size_t n, const struct dns_query *q,
		    enum dns_rcode rcode, const struct dns_answer *ans, unsigned nans, uint32_t ttl)
{
	bool have_q = q->question_end > DNS_HDR_LEN && q->question_end <= n;
	if (!have_q || nans > DNS_MAX_ANSWERS)
		nans = 0;
	uint16_t flags = (uint16_t)(DNS_QR | DNS_AA | DNS_RA | (q->flags & DNS_RD) | (rcode & 0xf));
	buf_put_be16(out, q->id);
	buf_put_be16(out, flags);
	buf_put_be16(out, have_q ? 1 : 0);
	buf_put_be16(out, (uint16_t)nans);
	buf_put_be16(out, 0);
	buf_put_be16(out, 0);
	if (have_q)
		buf_append(out, p + DNS_HDR_LEN, q->question_end - DNS_HDR_LEN);
	for (unsigned i = 0; i < nans; i++) {
		uint16_t len = ans[i].type == DNS_A ? 4 : 16;
		buf_put_be16(out, 0xc000 | DNS_HDR_LEN); /* the question's name */
		buf_put_be16(out, ans[i].type);
		buf_put_be16(out, DNS_CLASS_IN);
		buf_put_be32(out, ttl);
		buf_put_be16(out, len);
		buf_append(out, ans[i].addr, len);
	}
	return out->bad ? -ENOMEM : 0;
}

const char *dns_type_name(uint16_t type, char *buf, size_t n)
{
	switch (type) {
	case DNS_A:
		return "A";
	case DNS_AAAA:
		return "AAAA";
	case DNS_CNAME:
		return "CNAME";
	case DNS_TXT:
		return "TXT";
	case DNS_ANY:
		return "ANY";
	default:
		snprintf(buf, n, "TYPE%u", type);
		return buf;
	}
}
