/* SPDX-License-Identifier: MIT */
#include "addrpool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/buf.h"

static const uint8_t v6_prefix[8] = ADDRPOOL_V6_PREFIX;

void addrpool_init(struct addrpool *p)
{
	memset(p, 0, sizeof(*p));
}

void addrpool_fini(struct addrpool *p)
{
	free(p->names);
	memset(p, 0, sizeof(*p));
}

int addrpool_get(struct addrpool *p, const char *name)
{
	if (strlen(name) > POLICY_NAME_MAX)
		return -EINVAL;
	for (unsigned i = 0; i < p->n; i++)
		if (!strcmp(p->names[i], name))
			return (int)i + 1;
	if (p->n >= ADDRPOOL_MAX)
		return -ENOSPC;
	if (p->n == p->cap) {
		unsigned cap = p->cap ? p->cap * 2 : 16;
		void *nn = realloc(p->names, cap * sizeof(p->names[0]));
		if (!nn)
			return -ENOMEM;
		p->names = nn;
		p->cap = cap;
	}
	strcpy(p->names[p->n], name);
	return (int)++p->n;
}

void addrpool_addr(unsigned index, int family, uint8_t *out)
{
	if (family == AF_INET) {
		/* 198.18.0.0/15: index 1 is 198.18.0.1. */
		be32_put(out, (198u << 24 | 18u << 16) + index);
		return;
	}
	memcpy(out, v6_prefix, 8);
	memset(out + 8, 0, 4);
	be32_put(out + 12, index);
}

const char *addrpool_name(const struct addrpool *p, int family, const uint8_t *addr)
{
	uint32_t index;
	if (family == AF_INET) {
		uint32_t a = be32_get(addr);
		uint32_t base = 198u << 24 | 18u << 16;
		if (a < base || a - base > (1u << 17) - 1)
			return NULL;
		index = a - base;
	} else if (family == AF_INET6) {
		static const uint8_t zero[4];
		if (memcmp(addr, v6_prefix, 8) || memcmp(addr + 8, zero, 4))
			return NULL;
		index = be32_get(addr + 12);
	} else {
		return NULL;
	}
	if (index == 0 || index > p->n)
		return NULL;
	return p->names[index - 1];
}
