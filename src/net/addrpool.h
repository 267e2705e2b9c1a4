/* SPDX-License-Identifier: MIT */
/*
 * Synthetic addresses: each allowed name the guest asks about gets an index, shown to the guest
 * as 198.18.0.0/15 + index (IPv4) and ADDRPOOL_V6_PREFIX::index (IPv6). A connection to such an
 * address is therefore known by name. One pool per sandbox; entries live as long as it does.
 */
#ifndef MATCHLOCK_ADDRPOOL_H
#define MATCHLOCK_ADDRPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

#define ADDRPOOL_MAX 4096 /* names per sandbox; more are answered SERVFAIL */
/* fd6d:6c6f:636b:1::/64, a ULA prefix ("mlock") that nothing real uses. */
#define ADDRPOOL_V6_PREFIX                                     \
	{                                                      \
		0xfd, 0x6d, 0x6c, 0x6f, 0x63, 0x6b, 0x00, 0x01 \
	}

struct addrpool {
	unsigned n;
	char (*names)[POLICY_NAME_MAX + 1]; /* index i+1 is names[i] */
	unsigned cap;
};

void addrpool_init(struct addrpool *p);
void addrpool_fini(struct addrpool *p);
/* The index of name, adding it if new. -ENOSPC when full, -ENOMEM. */
int addrpool_get(struct addrpool *p, const char *name);
/* The address of index in family (4 or 16 bytes written). */
void addrpool_addr(unsigned index, int family, uint8_t *out);
/* The name behind a synthetic address, or NULL (not ours, or never handed out). */
const char *addrpool_name(const struct addrpool *p, int family, const uint8_t *addr);

#endif
