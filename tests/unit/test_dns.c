/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "net/dns.h"
#include "check.h"
#include "net/http.h"

/* Build a query for name/type into out; returns its length. */
static size_t query(uint8_t *out, const char *name, uint16_t type)
{
	static const uint8_t hdr[12] = { 0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0 };
	size_t n = 12;
	memcpy(out, hdr, 12);
	while (*name) {
		size_t l = strcspn(name, ".");
		out[n++] = (uint8_t)l;
		memcpy(out + n, name, l);
		n += l;
		name += l + (name[l] == '.');
	}
	out[n++] = 0;
	out[n++] = (uint8_t)(type >> 8);
	out[n++] = (uint8_t)type;
	out[n++] = 0;
	out[n++] = 1;
	return n;
}

int main(void)
{
	uint8_t q[600];
	struct dns_query dq;
	size_t n = query(q, "Api.X.com", DNS_A);
	CHECK(dns_parse_query(q, n, &dq) == 0);
	CHECK(!strcmp(dq.name, "api.x.com") && dq.name_ok && dq.qtype == DNS_A && dq.id == 0xabcd);

	/* The reply: same id, QR set, the question copied, one A answer with a pointer name. */
	struct buf b = { 0 };
	struct dns_answer ans = { .type = DNS_A, .addr = { 198, 18, 0, 7 } };
	CHECK(dns_build_reply(&b, q, n, &dq, DNS_NOERROR, &ans, 1, 60) == 0);
	const uint8_t *r = buf_head(&b);
	CHECK(buf_used(&b) == n + 16);
	CHECK(r[0] == 0xab && r[1] == 0xcd && (r[2] & 0x80) && (r[3] & 0x0f) == 0);
	CHECK(r[7] == 1 && !memcmp(r + 12, q + 12, n - 12));
	CHECK(r[n] == 0xc0 && r[n + 1] == 12 && !memcmp(r + n + 12, ans.addr, 4));
	buf_fini(&b);

	/* NXDOMAIN: no answers. */
	b = (struct buf){ 0 };
	CHECK(dns_build_reply(&b, q, n, &dq, DNS_NXDOMAIN, NULL, 0, 60) == 0);
	CHECK((buf_head(&b)[3] & 0x0f) == 3 && buf_head(&b)[7] == 0);
	buf_fini(&b);

	/* Names that are not host names parse, but are marked (they never match a rule). */
	n = query(q, "a_b.x-y.com", DNS_AAAA);
	CHECK(dns_parse_query(q, n, &dq) == 0 && dq.name_ok);
	memcpy(q + 13, "a b", 3);
	CHECK(dns_parse_query(q, n, &dq) == 0 && !dq.name_ok);

	/* Malformed: truncated, response bit, two questions, compression, overlong names. */
	n = query(q, "x.com", DNS_A);
	for (size_t k = 0; k < n; k++)
		CHECK(dns_parse_query(q, k, &dq) == -EPROTO);
	q[2] |= 0x80;
	CHECK(dns_parse_query(q, n, &dq) == -EPROTO);
	q[2] &= 0x7f;
	q[5] = 2;
	CHECK(dns_parse_query(q, n, &dq) == -EPROTO);
	q[5] = 1;
	q[2] = 0x28; /* opcode 5 (UPDATE) */
	CHECK(dns_parse_query(q, n, &dq) == -EOPNOTSUPP);
	q[2] = 0x01;
	q[12] = 0xc0;
	CHECK(dns_parse_query(q, n, &dq) == -EPROTO);
	memset(q + 12, 0, sizeof(q) - 12);
	size_t k = 12;
	for (int i = 0; i < 5; i++) { /* 5 labels of 63: 320 bytes on the wire, over 255 */
		q[k++] = 63;
		memset(q + k, 'a', 63);
		k += 63;
	}
	q[k++] = 0;
	k += 4;
	CHECK(dns_parse_query(q, k, &dq) == -EPROTO);
	q[12] = 64; /* a label length with the top bits 01: reserved */
	CHECK(dns_parse_query(q, k, &dq) == -EPROTO);

	/* A FORMERR for an unreadable question is a bare header. */
	b = (struct buf){ 0 };
	struct dns_query none = { .id = 7 };
	CHECK(dns_build_reply(&b, q, 12, &none, DNS_FORMERR, NULL, 0, 0) == 0 &&
	      buf_used(&b) == 12);
	buf_fini(&b);

	/* Plain HTTP: which first bytes are a request (then checked with http_parse_request). */
#define SNIFF(x) http_sniff_request((const uint8_t *)(x), strlen(x))
	CHECK(SNIFF("GET / HTTP/1.1\r\n") == 1 && SNIFF("\r\nPOST /x http/1.0\r\n") == 1);
	CHECK(SNIFF("get http://a.test/ HTTP/1.1\n") == 1); /* lenient servers take these */
	CHECK(SNIFF("GET / HT") == 0 && SNIFF("GE") == 0 && SNIFF("") == 0);
	CHECK(SNIFF("SSH-2.0-OpenSSH_9.2\r\n") == -1 && SNIFF("\x16\x03\x01") == -1);
	CHECK(SNIFF("SET k v\r\n") == -1 && SNIFF(" GET / HTTP/1.1\r\n") == -1);
	static uint8_t big[HTTP_MAX_HEAD + 10];
	memset(big, 'A', sizeof(big));
	CHECK(http_sniff_request(big, sizeof(big)) ==
	      1); /* too long to tell: checked (and refused) */
#undef SNIFF
	b = (struct buf){ 0 };
	CHECK(http_build_403(&b, "blocked: rule x") == 0);
	CHECK(buf_used(&b) > 20 && !memcmp(buf_head(&b), "HTTP/1.1 403 Forbidden\r\n", 24));
	buf_fini(&b);
	return check_summary();
}
