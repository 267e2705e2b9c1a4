/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"
#include "net/addrpool.h"
#include "net/policy.h"

static const char *blocked(const char *a)
{
	uint8_t b[16];
	if (inet_pton(AF_INET, a, b) == 1)
		return policy_addr_blocked(AF_INET, b);
	inet_pton(AF_INET6, a, b);
	return policy_addr_blocked(AF_INET6, b);
}

/* Rules: default deny, globs, refusals, runtime deletes, "*". */
static void test_rules(void)
{
	static struct policy p; /* large: POLICY_MAX_RULES rules */

	/* Default deny. */
	CHECK(policy_match(&p, "api.x.com") == NULL);

	CHECK(policy_add(&p, "api.x.com") == 0);
	CHECK(policy_match(&p, "api.x.com") != NULL);
	CHECK(policy_match(&p, "x.com") == NULL);
	CHECK(policy_match(&p, "v2.api.x.com") == NULL);

	/* *.x.com: subdomains only, at any depth; never the apex or a lookalike suffix. */
	CHECK(policy_add(&p, "*.Y.com.") == 0);
	CHECK(policy_match(&p, "a.y.com") && !strcmp(policy_match(&p, "a.y.com"), "*.y.com"));
	CHECK(policy_match(&p, "a.b.y.com") != NULL);
	CHECK(policy_match(&p, "y.com") == NULL);
	CHECK(policy_match(&p, "evily.com") == NULL);
	CHECK(policy_match(&p, "a.y.com.evil") == NULL);

	/* Bad globs are refused; duplicates are one rule. */
	CHECK(policy_add(&p, "a.*.com") == -EINVAL);
	CHECK(policy_add(&p, "*x.com") == -EINVAL);
	CHECK(policy_add(&p, "") == -EINVAL);
	CHECK(policy_add(&p, "a..b") == -EINVAL);
	CHECK(policy_add(&p, "sp ace.com") == -EINVAL);
	unsigned n = p.nrules;
	CHECK(policy_add(&p, "API.x.com") == 0 && p.nrules == n);
	CHECK(policy_add_list(&p, "a.com,b.com") == 0 && policy_match(&p, "b.com"));
	CHECK(policy_add_list(&p, "c.com,") == -EINVAL);
	CHECK(policy_add_list(&p, ",c.com") == -EINVAL);

	/* Runtime change: delete takes effect at once; the last delete seals. */
	CHECK(policy_delete(&p, "b.com") == 0 && !policy_match(&p, "b.com"));
	CHECK(policy_delete(&p, "b.com") == -ENOENT);

	/* "*" allows every valid name, but never an invalid one, and not under --no-network. */
	CHECK(policy_add(&p, "*") == 0);
	CHECK(policy_match(&p, "anything.example") != NULL);
	CHECK(policy_match(&p, "bad name") == NULL);
	p.no_network = true;
	CHECK(policy_match(&p, "anything.example") == NULL);
	p.no_network = false;
}

/* A table with a named maximum. */
static void test_max_rules(void)
{
	static struct policy full;
	char g[32];
	int r = 0;
	for (int i = 0; i < POLICY_MAX_RULES && r == 0; i++) {
		snprintf(g, sizeof(g), "h%d.test", i);
		r = policy_add(&full, g);
	}
	CHECK(r == 0 && policy_add(&full, "one-more.test") == -ENOSPC);
}

static void test_pins(void)
{
	static struct policy p;

	CHECK(policy_pin(&p, "db.test:10.0.0.5") == 0);
	CHECK(policy_find_pin(&p, "db.test") && policy_find_pin(&p, "db.test")->family == AF_INET);
	CHECK(policy_pin(&p, "v6.test:[::1]") == 0 &&
	      policy_find_pin(&p, "v6.test")->family == AF_INET6);
	CHECK(policy_pin(&p, "v6b.test:fe80::1") == 0);
	CHECK(policy_pin(&p, "nocolon") == -EINVAL);
	CHECK(policy_pin(&p, "x.test:not-an-ip") == -EINVAL);
	CHECK(policy_pin(&p, ":1.2.3.4") == -EINVAL);
}

/* Private, loopback, link-local, CGNAT, metadata; public passes. */
static void test_blocked_addresses(void)
{
	CHECK(blocked("127.0.0.1") && !strcmp(blocked("127.0.0.1"), "loopback"));
	CHECK(blocked("10.1.2.3") && blocked("172.31.0.1") && blocked("192.168.1.1"));
	CHECK(!strcmp(blocked("169.254.169.254"), "cloud metadata"));
	CHECK(!strcmp(blocked("169.254.1.1"), "link-local"));
	CHECK(!strcmp(blocked("100.64.0.1"), "carrier-grade NAT"));
	CHECK(blocked("0.0.0.0") && blocked("255.255.255.255") && blocked("224.0.0.1"));
	CHECK(blocked("198.18.0.1") != NULL);
	CHECK(blocked("172.32.0.1") == NULL && blocked("93.184.216.34") == NULL);
	CHECK(!strcmp(blocked("::1"), "loopback"));
	CHECK(blocked("::") && blocked("fe80::1") && blocked("fd00::1") && blocked("ff02::1"));
	CHECK(!strcmp(blocked("fd00:ec2::254"), "cloud metadata"));
	CHECK(!strcmp(blocked("::ffff:127.0.0.1"), "loopback"));
	CHECK(!strcmp(blocked("64:ff9b::a00:1"), "private"));
	CHECK(blocked("2606:4700::1111") == NULL);

	/* IPv4 carried in IPv6 transition addresses is judged as IPv4 (the table of issue 11). */
	static const struct {
		const char *a;
		bool bad;
	} embedded[] = {
		{ "::ffff:10.0.0.1", true }, /* mapped */
		{ "::ffff:0:10.0.0.1", true }, /* translated ::ffff:0:0:0/96 */
		{ "::ffff:0:8.8.8.8", false },
		{ "::10.0.0.1", true }, /* compatible ::/96 */
		{ "::8.8.8.8", false },
		{ "64:ff9b::7f00:1", true }, /* NAT64 */
		{ "64:ff9b::808:808", false },
		{ "64:ff9b:1::a9fe:a9fe", true }, /* local-use NAT64 /48, metadata */
		{ "64:ff9b:1:2:3:4:808:808", false },
		{ "2002:7f00:1::1", true }, /* 6to4 of 127.0.0.1 */
		{ "2002:c0a8:101::5", true }, /* 6to4 of 192.168.1.1 */
		{ "2002:808:808::1", false },
		{ "2001:0:4136:e378:8000:63bf:f5ff:fffe", true }, /* Teredo client ~ = 10.0.0.1 */
		{ "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
		  false }, /* client 8.8.8.8, server public */
		{ "2001:0:a00:1:8000:63bf:f7f7:f7f7", true }, /* Teredo server 10.0.0.1 */
		{ "2001:4860::1", false }, /* 2001:4860 is not Teredo */
	};
	for (size_t i = 0; i < sizeof(embedded) / sizeof(embedded[0]); i++) {
		bool bad = blocked(embedded[i].a) != NULL;
		if (bad != embedded[i].bad)
			fprintf(stderr, "  %s: expected %s\n", embedded[i].a,
				embedded[i].bad ? "blocked" : "public");
		CHECK(bad == embedded[i].bad);
	}
	uint8_t v6[16], v4[4];
	inet_pton(AF_INET6, "2001:0:4136:e378:8000:63bf:f5ff:fffe", v6);
	CHECK(policy_v6_embedded_v4(v6, v4) && !strcmp(policy_v6_embedded_v4(v6, v4), "Teredo") &&
	      v4[0] == 10 && v4[1] == 0 && v4[2] == 0 && v4[3] == 1);
	inet_pton(AF_INET6, "2606:4700::1111", v6);
	CHECK(policy_v6_embedded_v4(v6, v4) == NULL);
}

/* Ports: a bare name opens 80 and 443; NAME:PORT that port; NAME:* all. */
static void test_ports(void)
{
	struct policy pp = { 0 };
	CHECK(policy_add(&pp, "web.test") == 0 && policy_add(&pp, "db.test:05432") == 0);
	CHECK(policy_add(&pp, "*.any.test:*") == 0);
	CHECK(policy_match_port(&pp, "web.test", 80) && policy_match_port(&pp, "web.test", 443));
	CHECK(!policy_match_port(&pp, "web.test", 2222) && policy_match(&pp, "web.test"));
	CHECK(policy_match_port(&pp, "db.test", 5432) && !strcmp(pp.rules[1], "db.test:5432"));
	CHECK(!policy_match_port(&pp, "db.test", 80) && !policy_match_port(&pp, "db.test", 443));
	CHECK(policy_match_port(&pp, "a.any.test", 2222) &&
	      !policy_match_port(&pp, "any.test", 80));
	CHECK(policy_add(&pp, "x.test:0") == -EINVAL && policy_add(&pp, "x.test:65536") == -EINVAL);
	CHECK(policy_add(&pp, "x.test:") == -EINVAL && policy_add(&pp, "x.test:8a") == -EINVAL);
	CHECK(policy_add(&pp, "x.test:80:80") == -EINVAL && policy_add(&pp, ":80") == -EINVAL);
	CHECK(policy_add_list(&pp, "e.test:8080,f.test:*") == 0 &&
	      policy_match_port(&pp, "f.test", 1));
	CHECK(policy_delete(&pp, "db.test:5432") == 0 && !policy_match(&pp, "db.test"));
	CHECK(policy_glob_matches("*.any.test:*", "b.any.test") &&
	      !policy_glob_matches("web.test:80", "web.tes"));
}

/* The synthetic pool: stable index per name, address <-> name both ways, bounded. */
static void test_addrpool(void)
{
	struct addrpool pool;
	addrpool_init(&pool);
	int a = addrpool_get(&pool, "a.test"), b = addrpool_get(&pool, "b.test");
	CHECK(a == 1 && b == 2 && addrpool_get(&pool, "a.test") == 1);
	uint8_t ad[16];
	addrpool_addr(2, AF_INET, ad);
	CHECK(ad[0] == 198 && ad[1] == 18 && ad[3] == 2);
	CHECK(addrpool_name(&pool, AF_INET, ad) &&
	      !strcmp(addrpool_name(&pool, AF_INET, ad), "b.test"));
	addrpool_addr(1, AF_INET6, ad);
	CHECK(addrpool_name(&pool, AF_INET6, ad) &&
	      !strcmp(addrpool_name(&pool, AF_INET6, ad), "a.test"));
	addrpool_addr(3, AF_INET, ad); /* never handed out */
	CHECK(addrpool_name(&pool, AF_INET, ad) == NULL);
	uint8_t pub[4] = { 8, 8, 8, 8 };
	CHECK(addrpool_name(&pool, AF_INET, pub) == NULL);
	char g[32];
	int r = 0;
	for (int i = 0; i < ADDRPOOL_MAX && r >= 0; i++) {
		snprintf(g, sizeof(g), "n%d.test", i);
		r = addrpool_get(&pool, g);
	}
	CHECK(r == -ENOSPC);
	addrpool_fini(&pool);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_rules);
	CHECK_RUN(test_max_rules);
	CHECK_RUN(test_pins);
	CHECK_RUN(test_blocked_addresses);
	CHECK_RUN(test_ports);
	CHECK_RUN(test_addrpool);
	return check_summary();
}
