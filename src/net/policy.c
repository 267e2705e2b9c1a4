/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

bool policy_name_valid(const char *name)
{
	size_t len = strlen(name), label = 0;
	if (len == 0 || len > POLICY_NAME_MAX)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char c = name[i];
		if (c == '.' || c == 0) {
			if (label == 0 || label > 63)
				return false;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)c) && c != '-' && c != '_')
			return false;
		label++;
	}
	return true;
}

/* Lower-case copy without a final dot; -EINVAL if it does not fit. */
static int normalise(const char *in, char *out, size_t n)
{
	size_t len = strlen(in);
	if (len && in[len - 1] == '.')
		len--;
	if (len >= n)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[len] = 0;
	return 0;
}

/* Where a rule's port suffix starts (":80", ":*"), or its end if it has none. */
static const char *rule_port(const char *rule)
{
	const char *c = strchr(rule, ':');
	return c ? c : rule + strlen(rule);
}

int policy_glob_normalise(const char *glob, char *out, size_t n)
{
	const char *colon = strchr(glob, ':');
	char name[POLICY_RULE_MAX + 1];
	size_t nl = colon ? (size_t)(colon - glob) : strlen(glob);
	if (nl >= sizeof(name))
		return -EINVAL;
	memcpy(name, glob, nl);
	name[nl] = 0;
	if (normalise(name, out, n) < 0)
		return -EINVAL;
	if (strcmp(out, "*")) {
		const char *base = !strncmp(out, "*.", 2) ? out + 2 : out;
		if (!policy_name_valid(base))
			return -EINVAL;
	}
	if (!colon)
		return 0;
	const char *ps = colon + 1;
	char port[8];
	if (!strcmp(ps, "*")) {
		snprintf(port, sizeof(port), ":*");
	} else {
		unsigned long v = 0;
		size_t i = 0;
		for (; ps[i] && i < 6; i++) {
			if (!isdigit((unsigned char)ps[i]))
				return -EINVAL;
			v = v * 10 + (unsigned long)(ps[i] - '0');
		}
		if (i == 0 || ps[i] || v == 0 || v > 65535)
			return -EINVAL;
		snprintf(port, sizeof(port), ":%lu", v);
	}
	size_t ol = strlen(out);
	if (ol + strlen(port) >= n)
		return -EINVAL;
	memcpy(out + ol, port, strlen(port) + 1);
	return 0;
}

bool policy_rule_port_ok(const char *rule, uint16_t port)
{
	const char *ps = rule_port(rule);
	if (!*ps)
		return port == 80 || port == 443;
	if (!strcmp(ps, ":*"))
		return true;
	return strtoul(ps + 1, NULL, 10) == port;
}

int policy_add(struct policy *p, const char *glob)
{
	char g[sizeof(p->rules[0])];
	if (policy_glob_normalise(glob, g, sizeof(g)) < 0)
		return -EINVAL;
	for (unsigned i = 0; i < p->nrules; i++)
		if (!strcmp(p->rules[i], g))
			return 0;
	if (p->nrules >= POLICY_MAX_RULES)
		return -ENOSPC;
	memcpy(p->rules[p->nrules++], g, sizeof(g));
	return 0;
}

int policy_add_list(struct policy *p, const char *list)
{
	char item[sizeof(p->rules[0]) + 8]; /* room for a port written with leading zeros */
	while (*list) {
		size_t n = strcspn(list, ",");
		if (n == 0 || n >= sizeof(item))
			return -EINVAL;
		memcpy(item, list, n);
		item[n] = 0;
		int r = policy_add(p, item);
		if (r < 0)
			return r;
		list += n;
		if (*list == ',' && !*++list)
			return -EINVAL; /* trailing comma */
	}
	return 0;
}

int policy_delete(struct policy *p, const char *glob)
{
	char g[sizeof(p->rules[0])];
	if (policy_glob_normalise(glob, g, sizeof(g)) < 0)
		return -EINVAL;
	for (unsigned i = 0; i < p->nrules; i++) {
		if (strcmp(p->rules[i], g))
			continue;
		memmove(p->rules[i], p->rules[i + 1], (p->nrules - i - 1) * sizeof(p->rules[0]));
		p->nrules--;
		return 0;
	}
	return -ENOENT;
}

/* "*.x.com" matches "a.x.com" and "a.b.x.com" but not "x.com" itself. */
bool policy_glob_matches(const char *glob, const char *name)
{
	size_t gl = (size_t)(rule_port(glob) - glob), nl = strlen(name);
	if (gl == 1 && glob[0] == '*')
		return true;
	if (strncmp(glob, "*.", 2))
		return gl == nl && !memcmp(glob, name, nl);
	gl--; /* ".x.com" */
	return nl > gl && !memcmp(name + nl - gl, glob + 1, gl);
}

const char *policy_match(const struct policy *p, const char *name)
{
	if (p->no_network || !policy_name_valid(name))
		return NULL;
	for (unsigned i = 0; i < p->nrules; i++)
		if (policy_glob_matches(p->rules[i], name))
			return p->rules[i];
	return NULL;
}

const char *policy_match_port(const struct policy *p, const char *name, uint16_t port)
{
	if (p->no_network || !policy_name_valid(name))
		return NULL;
	for (unsigned i = 0; i < p->nrules; i++)
		if (policy_glob_matches(p->rules[i], name) &&
		    policy_rule_port_ok(p->rules[i], port))
			return p->rules[i];
	return NULL;
}

int policy_pin(struct policy *p, const char *spec)
{
	const char *colon = strchr(spec, ':');
	if (!colon || colon == spec)
		return -EINVAL;
	char name[POLICY_NAME_MAX + 2], ip[64];
	size_t nl = (size_t)(colon - spec);
	if (nl >= sizeof(name))
		return -EINVAL;
	memcpy(name, spec, nl);
	name[nl] = 0;
	const char *a = colon + 1;
	size_t al = strlen(a);
	if (al >= 2 && a[0] == '[' && a[al - 1] == ']') {
		a++;
		al -= 2;
	}
	if (al == 0 || al >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, a, al);
	ip[al] = 0;
	struct policy_pin pin = { 0 };
	if (normalise(name, pin.name, sizeof(pin.name)) < 0 || !policy_name_valid(pin.name))
		return -EINVAL;
	if (inet_pton(AF_INET, ip, pin.addr) == 1)
		pin.family = AF_INET;
	else if (inet_pton(AF_INET6, ip, pin.addr) == 1)
		pin.family = AF_INET6;
	else
		return -EINVAL;
	for (unsigned i = 0; i < p->npins; i++) {
		if (!strcmp(p->pins[i].name, pin.name)) {
			p->pins[i] = pin; /* the last --add-host for a name wins */
			return 0;
		}
	}
	if (p->npins >= POLICY_MAX_PINS)
		return -ENOSPC;
	p->pins[p->npins++] = pin;
	return 0;
}

const struct policy_pin *policy_find_pin(const struct policy *p, const char *name)
{
	for (unsigned i = 0; i < p->npins; i++)
		if (!strcmp(p->pins[i].name, name))
			return &p->pins[i];
	return NULL;
}

struct range {
	uint8_t net[16];
	unsigned bits;
	const char *why;
};

static bool in_range(const uint8_t *a, const struct range *r)
{
	unsigned full = r->bits / 8, rest = r->bits % 8;
	if (memcmp(a, r->net, full))
		return false;
	return !rest || ((a[full] ^ r->net[full]) & (0xff << (8 - rest))) == 0;
}

static const struct range v4_blocked[] = {
	{ { 0 }, 8, "unspecified" },
	{ { 10 }, 8, "private" },
	{ { 100, 64 }, 10, "carrier-grade NAT" },
	{ { 127 }, 8, "loopback" },
	{ { 169, 254, 169, 254 }, 32, "cloud metadata" },
	{ { 169, 254 }, 16, "link-local" },
	{ { 172, 16 }, 12, "private" },
	{ { 192, 0, 0 }, 24, "IETF protocol assignments" },
	{ { 192, 168 }, 16, "private" },
	{ { 198, 18 }, 15, "benchmarking (matchlock's synthetic pool)" },
	{ { 224 }, 4, "multicast" },
	{ { 240 }, 4, "reserved" },
};

static const struct range v6_blocked[] = {
	{ { [15] = 1 }, 128, "loopback" },
	{ { 0 }, 127, "unspecified" },
	{ { 0xfd, 0x00, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54 }, 128, "cloud metadata" },
	{ { 0xfc }, 7, "unique local (private)" },
	{ { 0xfe, 0x80 }, 10, "link-local" },
	{ { 0xfe, 0xc0 }, 10, "site-local" },
	{ { 0xff }, 8, "multicast" },
	{ { 0x20, 0x01, 0x0d, 0xb8 }, 32, "documentation" },
};

const char *policy_v6_embedded_v4(const uint8_t *a, uint8_t v4[4])
{
	static const struct {
		uint8_t prefix[12];
		unsigned bytes; /* prefix length; the IPv4 address is the last 4 bytes */
		const char *what;
	} last32[] = {
		{ { [10] = 0xff, [11] = 0xff }, 12, "IPv4-mapped" }, /* ::ffff:0:0/96 */
		{ { [8] = 0xff, [9] = 0xff }, 12, "IPv4-translated" }, /* ::ffff:0:0:0/96 */
		{ { 0x00, 0x64, 0xff, 0x9b }, 12, "NAT64" }, /* 64:ff9b::/96 */
		{ { 0x00, 0x64, 0xff, 0x9b, 0x00, 0x01 }, 6, "NAT64 (local)" }, /* 64:ff9b:1::/48 */
		{ { 0 }, 12, "IPv4-compatible" }, /* ::/96 (:: and ::1 are judged as IPv6 first) */
	};
	for (size_t i = 0; i < sizeof(last32) / sizeof(last32[0]); i++) {
		if (!memcmp(a, last32[i].prefix, last32[i].bytes)) {
			memcpy(v4, a + 12, 4);
			return last32[i].what;
		}
	}
	if (a[0] == 0x20 && a[1] == 0x02) { /* 6to4, 2002:V4::/48 */
		memcpy(v4, a + 2, 4);
		return "6to4";
	}
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) { /* Teredo, 2001::/32 */
		for (int i = 0; i < 4; i++)
			v4[i] = (uint8_t)~a[12 + i]; /* the client, obfuscated */
		return "Teredo";
	}
	return NULL;
}

static const char *v4_blocked_why(const uint8_t *addr)
{
	for (size_t i = 0; i < sizeof(v4_blocked) / sizeof(v4_blocked[0]); i++)
		if (in_range(addr, &v4_blocked[i]))
			return v4_blocked[i].why;
	if (addr[0] == 255 && addr[1] == 255 && addr[2] == 255 && addr[3] == 255)
		return "broadcast";
	return NULL;
}

const char *policy_addr_blocked(int family, const uint8_t *addr)
{
	if (family != AF_INET6)
		return v4_blocked_why(addr);
	for (size_t i = 0; i < sizeof(v6_blocked) / sizeof(v6_blocked[0]); i++)
		if (in_range(addr, &v6_blocked[i]))
			return v6_blocked[i].why;
	/*
	 * IPv4 inside IPv6 is judged as the IPv4 address it carries: a gateway or the host's
	 * stack may deliver it there. Teredo also names its server (bits 32-63).
	 */
	uint8_t v4[4];
	if (!policy_v6_embedded_v4(addr, v4))
		return NULL;
	const char *why = v4_blocked_why(v4);
	if (!why && addr[0] == 0x20 && addr[1] == 0x01 && addr[2] == 0 && addr[3] == 0)
		why = v4_blocked_why(addr + 4);
	return why;
}
