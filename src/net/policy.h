/* SPDX-License-Identifier: MIT */
/*
 * Egress policy of one sandbox: which host names may be reached on which ports (GLOB[:PORT|:*],
 * a bare glob meaning 80 and 443; default deny), names pinned to an address (--add-host), and
 * the switches --no-network and --allow-private-ips.
 * The owner may change it while the sandbox runs (allow-list add/delete): the egress engine
 * consults it on every query and every connect, never caching a verdict.
 */
#ifndef MATCHLOCK_POLICY_H
#define MATCHLOCK_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POLICY_MAX_RULES 256
#define POLICY_MAX_PINS 64
#define POLICY_NAME_MAX 253 /* longest DNS name in text form, without the final dot */
#define POLICY_RULE_MAX (POLICY_NAME_MAX + 8) /* "*." NAME ":65535" */

struct policy_pin {
	char name[POLICY_NAME_MAX + 1];
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
};

struct policy {
	bool no_network; /* no DNS answers and no connects at all */
	bool allow_private; /* allowed names may resolve to private/loopback/... addresses */
	unsigned nrules;
	/* GLOB[:PORT|:*]: "*", "*.x.com" or "x.com"; no port means 80 and 443 */
	char rules[POLICY_MAX_RULES][POLICY_RULE_MAX + 1];
	unsigned npins;
	struct policy_pin pins[POLICY_MAX_PINS];
};

/* A host name we accept: 1-253 chars, labels of 1-63 letters, digits, '-' or '_'. */
bool policy_name_valid(const char *name);
/*
 * Lower-case copy of a rule, GLOB[:PORT|:*], without a final dot on the name and with the port
 * in plain decimal; -EINVAL if it is not a valid rule.
 */
int policy_glob_normalise(const char *glob, char *out, size_t n);
/*
 * "*" matches all, "*.x.com" subdomains of x.com only, else the exact name (lower case). A
 * port suffix on the rule is ignored here (see policy_rule_port_ok).
 */
bool policy_glob_matches(const char *glob, const char *name);
/* The ports a normalised rule opens: none given means 80 and 443; ":*" all; ":N" only N. */
bool policy_rule_port_ok(const char *rule, uint16_t port);
/* Add one rule (normalised); adding an existing one is a no-op. -EINVAL, -ENOSPC. */
int policy_add(struct policy *p, const char *glob);
/* Add a comma-separated list; stops at the first bad entry (returns its error). */
int policy_add_list(struct policy *p, const char *list);
/* Remove one glob; -ENOENT if absent. Removing the last one leaves the sandbox sealed. */
int policy_delete(struct policy *p, const char *glob);
/*
 * The first rule naming name (lower case, no final dot) on any port, or NULL: default deny.
 * DNS answers for such a name; connections need policy_match_port.
 */
const char *policy_match(const struct policy *p, const char *name);
/* The first rule allowing name on port, or NULL. */
const char *policy_match_port(const struct policy *p, const char *name, uint16_t port);
/* --add-host NAME:IP (IPv6 as NAME:[ADDR] or NAME:ADDR). -EINVAL, -ENOSPC. */
int policy_pin(struct policy *p, const char *spec);
const struct policy_pin *policy_find_pin(const struct policy *p, const char *name);
/*
 * Addresses no allowed name may resolve to unless --allow-private-ips: returns a short reason
 * ("loopback", "private", "link-local", "metadata", ...) or NULL if the address is public.
 * An IPv6 address that carries an IPv4 one (mapped, translated, compatible, NAT64, 6to4,
 * Teredo) is also judged by the IPv4 address it carries.
 */
const char *policy_addr_blocked(int family, const uint8_t *addr);
/*
 * The IPv4 address carried inside an IPv6 transition address, copied to v4: returns a short
 * name of the mechanism ("IPv4-mapped", "6to4", "Teredo", ...) or NULL if it carries none.
 */
const char *policy_v6_embedded_v4(const uint8_t *addr, uint8_t v4[4]);

#endif
