/* SPDX-License-Identifier: MIT */
#include "tlshello.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "common/buf.h"

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
	size_t rlen = be16_get(p + 3);
	if (rlen < 4 || rlen > TLSHELLO_MAX - 5)
		return -EPROTO;
	if (n < 5 + rlen)
		return 0;
	struct rd r = rd_make(p + 5, rlen);
	rd_u8(&r); /* type, checked */
	uint32_t hlen = rd_be24(&r);
	/* A hello longer than its record continues in the next one: read what we have. */
	struct rd h = rd_sub(&r, hlen < rd_left(&r) ? hlen : rd_left(&r));
	rd_bytes(&h, 2 + 32); /* version, random */
	struct rd sid = rd_sub(&h, rd_u8(&h));
	struct rd suites = rd_sub(&h, rd_be16(&h));
	struct rd comp = rd_sub(&h, rd_u8(&h));
	(void)sid, (void)suites, (void)comp;
	if (h.bad)
		return -EPROTO;
	if (!rd_left(&h))
		return 1; /* no extensions */
	struct rd ext = rd_sub(&h, rd_be16(&h));
	while (rd_left(&ext) >= 4) {
		uint16_t type = rd_be16(&ext);
		struct rd body = rd_sub(&ext, rd_be16(&ext));
		if (body.bad)
			return 1;
		if (type != 0)
			continue;
		struct rd list = rd_sub(&body, rd_be16(&body));
		while (rd_left(&list) >= 3) {
			uint8_t nt = rd_u8(&list);
			uint16_t nl = rd_be16(&list);
			const uint8_t *name = rd_bytes(&list, nl);
			if (!name)
				return -EPROTO;
			if (nt != 0)
				continue;
			if (nl == 0 || nl >= snin)
				return -EPROTO;
			for (size_t i = 0; i < nl; i++) {
				if (!isalnum(name[i]) && name[i] != '-' && name[i] != '.' &&
				    name[i] != '_')
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
