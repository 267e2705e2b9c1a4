/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
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
	CHECK(policy_pin(&p, "v6.test:[::1]") == 0 && policy_find_pin(&p, "v6.test")->family == AF_INET6);
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
	CHECK(addrpool_name(&pool, AF_INET, ad) && !strcmp(addrpool_name(&pool, AF_INET, ad), "b.test"));
	addrpool_addr(1, AF_INET6, ad);
	CHECK(addrpool_name(&pool, AF_INET6, ad) && !strcmp(addrpool_name(&pool, AF_INET6, ad), "a.test"));
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
	CHECK_RUN(test_addrpool);
	return check_summary();
}
