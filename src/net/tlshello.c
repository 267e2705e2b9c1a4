/* SPDX-License-Identifier: MIT */
#include "tlshello.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "common/buf.h"

static uint32_t rd_u24be(struct rd *r)
{
	const uint8_t *b = rd_bytes(r, 3);
	return b ? (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2] : 0;
}

static uint16_t rd_u16be(struct rd *r)
{
	const uint8_t *b = rd_bytes(r, 2);
	return b ? (uint16_t)(b[0] << 8 | b[1]) : 0;
}

/* A sub-cursor over the next n bytes of r. */
static struct rd rd_sub(struct rd *r, size_t n)
{
	const uint8_t *b = rd_bytes(r, n);
	struct rd s = rd_make(b, b ? n : 0);
	s.bad = !b;
	return s;
}

int tlshello_sni(const uint8_t *p, size_t n, char *sni, size_t snin)
{
	sni[0] = 0;
	if (n >= 1 && p[0] != 0x16)
		return -ENOENT;
	if (n >= 2 && p[1] != 0x03)
		return -ENOENT;
	if (n >= 3 && p[2] > 0x04)
		return -ENOENT;
	if (n >= 6 && p[5] != 0x01) /* handshake type ClientHello */
		return -EPROTO;
	if (n < 5)
		return 0;
	size_t rlen = (size_t)p[3] << 8 | p[4];
	if (rlen < 4 || rlen > TLSHELLO_MAX - 5)
		return -EPROTO;
	if (n < 5 + rlen)
		return 0;
	struct rd r = rd_make(p + 5, rlen);
	rd_u8(&r); /* type, checked */
	uint32_t hlen = rd_u24be(&r);
	/* A hello longer than its record continues in the next one: read what we have. */
	struct rd h = rd_sub(&r, hlen < rd_left(&r) ? hlen : rd_left(&r));
	rd_bytes(&h, 2 + 32); /* version, random */
	struct rd sid = rd_sub(&h, rd_u8(&h));
	struct rd suites = rd_sub(&h, rd_u16be(&h));
	struct rd comp = rd_sub(&h, rd_u8(&h));
	(void)sid, (void)suites, (void)comp;
	if (h.bad)
		return -EPROTO;
	if (!rd_left(&h))
		return 1; /* no extensions */
	struct rd ext = rd_sub(&h, rd_u16be(&h));
	while (rd_left(&ext) >= 4) {
		uint16_t type = rd_u16be(&ext);
		struct rd body = rd_sub(&ext, rd_u16be(&ext));
		if (body.bad)
			return 1;
		if (type != 0)
			continue;
		struct rd list = rd_sub(&body, rd_u16be(&body));
		while (rd_left(&list) >= 3) {
			uint8_t nt = rd_u8(&list);
			uint16_t nl = rd_u16be(&list);
			const uint8_t *name = rd_bytes(&list, nl);
			if (!name)
				return -EPROTO;
			if (nt != 0)
				continue;
			if (nl == 0 || nl >= snin)
				return -EPROTO;
			for (size_t i = 0; i < nl; i++) {
				if (!isalnum(name[i]) && name[i] != '-' && name[i] != '.' && name[i] != '_')
					return -EPROTO;
				sni[i] = (char)tolower(name[i]);
			}
			sni[nl] = 0;
			if (nl && sni[nl - 1] == '.')
				sni[nl - 1] = 0;
			return 1;
		}
		return 1;
	}
	return 1;
}
