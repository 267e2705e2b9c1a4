/* SPDX-License-Identifier: MIT */
#include "msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int msg_put_tlv(struct buf *b, uint16_t tag, const void *p, uint32_t len)
{
	buf_put_u16(b, tag);
	buf_put_u32(b, len);
	return buf_append(b, p, len);
}

int msg_put_str(struct buf *b, uint16_t tag, const char *s)
{
	size_t n = strlen(s);
	if (n > UINT32_MAX) {
		b->bad = true; /* the message would lack this field: as bad as out of memory */
		return -E2BIG;
	}
	return msg_put_tlv(b, tag, s, (uint32_t)n);
}

int msg_put_u8(struct buf *b, uint16_t tag, uint8_t v)
{
	return msg_put_tlv(b, tag, &v, 1);
}

int msg_put_u16(struct buf *b, uint16_t tag, uint16_t v)
{
	uint8_t x[2];
	le16_put(x, v);
	return msg_put_tlv(b, tag, x, 2);
}

int msg_put_u32(struct buf *b, uint16_t tag, uint32_t v)
{
	uint8_t x[4];
	le32_put(x, v);
	return msg_put_tlv(b, tag, x, 4);
}

int msg_put_u64(struct buf *b, uint16_t tag, uint64_t v)
{
	uint8_t x[8];
	le32_put(x, (uint32_t)v);
	le32_put(x + 4, (uint32_t)(v >> 32));
	return msg_put_tlv(b, tag, x, 8);
}

int msg_next(struct rd *r, uint16_t *tag, struct rd *val)
{
	if (rd_left(r) == 0)
		return r->bad ? -EPROTO : 0;
	*tag = rd_u16(r);
	uint32_t len = rd_u32(r);
	const uint8_t *p = rd_bytes(r, len);
	if (!p)
		return -EPROTO;
	*val = rd_make(p, len);
	return 1;
}

int msg_dup_str(struct rd *val, size_t max, char **out)
{
	size_t n = rd_left(val);
	if (n > max)
		return -E2BIG;
	const uint8_t *p = rd_bytes(val, n);
	if (!p && n)
		return -EPROTO;
	if (n && memchr(p, 0, n))
		return -EPROTO;
	char *s = malloc(n + 1);
	if (!s)
		return -ENOMEM;
	if (n)
		memcpy(s, p, n);
	s[n] = 0;
	*out = s;
	return 0;
}

#define MSG_GET(name, type, width, reader)   \
	int name(struct rd *val, type *v)    \
	{                                    \
		if (rd_left(val) != (width)) \
			return -EPROTO;      \
		*v = reader(val);            \
		return 0;                    \
	}
MSG_GET(msg_get_u8, uint8_t, 1, rd_u8)
MSG_GET(msg_get_u16, uint16_t, 2, rd_u16)
MSG_GET(msg_get_u32, uint32_t, 4, rd_u32)
MSG_GET(msg_get_u64, uint64_t, 8, rd_u64)
