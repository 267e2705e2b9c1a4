/* SPDX-License-Identifier: MIT */
/*
 * Egress policy of one sandbox: which host names may be reached (globs, default deny), names
 * pinned to an address (--add-host), and the switches --no-network and --allow-private-ips.
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

struct policy_pin {
	char name[POLICY_NAME_MAX + 1];
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
};

struct policy {
	bool no_network; /* no DNS answers and no connects at all */
	bool allow_private; /* allowed names may resolve to private/loopback/... addresses */
	unsigned nrules;
	char rules[POLICY_MAX_RULES][POLICY_NAME_MAX + 3]; /* "*", "*.x.com" or "x.com" */
	unsigned npins;
	struct policy_pin pins[POLICY_MAX_PINS];
};

/* A host name we accept: 1-253 chars, labels of 1-63 letters, digits, '-' or '_'. */
bool policy_name_valid(const char *name);
/* Lower-case copy of a glob without a final dot; -EINVAL if it is not a valid glob. */
int policy_glob_normalise(const char *glob, char *out, size_t n);
/* "*" matches all, "*.x.com" subdomains of x.com only, else the exact name (lower case). */
bool policy_glob_matches(const char *glob, const char *name);
/* Add one glob (normalised to lower case); adding an existing one is a no-op. -EINVAL, -ENOSPC. */
int policy_add(struct policy *p, const char *glob);
/* Add a comma-separated list; stops at the first bad entry (returns its error). */
int policy_add_list(struct policy *p, const char *list);
/* Remove one glob; -ENOENT if absent. Removing the last one leaves the sandbox sealed. */
int policy_delete(struct policy *p, const char *glob);
/* The rule allowing name (lower case, no final dot), or NULL: default deny. */
const char *policy_match(const struct policy *p, const char *name);
/* --add-host NAME:IP (IPv6 as NAME:[ADDR] or NAME:ADDR). -EINVAL, -ENOSPC. */
int policy_pin(struct policy *p, const char *spec);
const struct policy_pin *policy_find_pin(const struct policy *p, const char *name);
/*
 * Addresses no allowed name may resolve to unless --allow-private-ips: returns a short reason
 * ("loopback", "private", "link-local", "metadata", ...) or NULL if the address is public.
 */
const char *policy_addr_blocked(int family, const uint8_t *addr);

#endif
