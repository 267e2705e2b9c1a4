/* SPDX-License-Identifier: MIT */
/*
 * DNS messages from the guest: parse one query (header + one question) through the checked
 * reader, and build the reply the egress engine decides on. Nothing here resolves anything: the
 * answers are synthetic addresses, so a query never needs to leave the host.
 */
#ifndef MATCHLOCK_DNS_H
#define MATCHLOCK_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define DNS_HDR_LEN 12
#define DNS_MAX_MSG 4096 /* largest query we read or reply we write */
#define DNS_MAX_ANSWERS 8
#define DNS_NAME_TEXT_MAX 255 /* text form, escaped bytes as '?' (never matches a rule) */

enum dns_type { DNS_A = 1, DNS_CNAME = 5, DNS_TXT = 16, DNS_AAAA = 28, DNS_ANY = 255 };
enum dns_rcode {
	DNS_NOERROR = 0,
	DNS_FORMERR = 1,
	DNS_SERVFAIL = 2,
	DNS_NXDOMAIN = 3,
	DNS_NOTIMP = 4,
	DNS_REFUSED = 5
};

struct dns_query {
	uint16_t id;
	uint16_t flags; /* as received */
	uint16_t qtype, qclass;
	char name[DNS_NAME_TEXT_MAX + 1]; /* lower case, no final dot, "" for the root */
	bool name_ok; /* only letters, digits, '-' and '_' in labels */
	size_t question_end; /* offset just past the question: the reply copies it verbatim */
};

/*
 * Parse a query. Returns 0, -EPROTO if it is not a well-formed standard query with exactly
 * one question (q->id is set whenever the header was readable, so FORMERR can be sent), or
 * -EOPNOTSUPP for another opcode (NOTIMP).
 */
int dns_parse_query(const uint8_t *p, size_t n, struct dns_query *q);

struct dns_answer {
	uint16_t type; /* DNS_A (4 bytes of addr) or DNS_AAAA (16) */
	uint8_t addr[16];
};

/*
 * Append the reply to q (whose raw bytes are p[0..n)) to out: rcode, then the answers, all
 * with ttl. A header-only FORMERR is written when q has no readable question.
 */
int dns_build_reply(struct buf *out, const uint8_t *p, size_t n, const struct dns_query *q,
		    enum dns_rcode rcode, const struct dns_answer *ans, unsigned nans,
		    uint32_t ttl);

/* "A", "AAAA", "TXT", ... or "TYPE<n>" in buf. */
const char *dns_type_name(uint16_t type, char *buf, size_t n);

#endif
