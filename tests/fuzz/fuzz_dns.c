/* SPDX-License-Identifier: MIT */
/* libFuzzer: the DNS query parser and reply builder, and the HTTP head parser, on guest bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "net/dns.h"
#include "net/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	struct dns_query q;
	int r = dns_parse_query(p, n, &q);
	struct buf b = { 0 };
	struct dns_answer a = { .type = DNS_AAAA };
	if (r < 0)
		q.question_end = 0;
	dns_build_reply(&b, p, n, &q, r == 0 ? DNS_NOERROR : DNS_FORMERR, &a, r == 0, 60);
	if (r == 0 && (strlen(q.name) > DNS_NAME_TEXT_MAX || buf_used(&b) < q.question_end))
		__builtin_trap();
	buf_fini(&b);
	http_sniff_request(p, n);
	return 0;
}
