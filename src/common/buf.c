/* SPDX-License-Identifier: MIT */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void buf_fini(struct buf *b)
{
	free(b->p);
	*b = (struct buf){ 0 };
}

static uint8_t *buf_grow(struct buf *b, size_t n);

uint8_t *buf_reserve(struct buf *b, size_t n)
{
	if (b->bad)
		return NULL;
	uint8_t *p = buf_grow(b, n);
	if (!p)
		b->bad = true;
	return p;
}

static uint8_t *buf_grow(struct buf *b, size_t n)
{
	/* A fresh buffer has no storage even for n == 0: allocate so success is never NULL. */
	if (b->p && b->cap - b->len >= n)
		return b->p + b->len;
	/* Slide unconsumed bytes down before growing: queues mostly drain fully. */
	if (b->off) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->cap - b->len >= n)
			return b->p + b->len;
	}
	if (n > SIZE_MAX / 2 - b->len)
		return NULL;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p)
		return NULL;
	b->p = p;
	b->cap = cap;
	return b->p + b->len;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	uint8_t *dst = buf_reserve(b, n);
	if (!dst)
		return -ENOMEM;
	if (n)
		memcpy(dst, p, n);
	b->len += n;
	return 0;
}

int buf_put_u8(struct buf *b, uint8_t v)
{
	return buf_append(b, &v, 1);
}

int buf_put_u16(struct buf *b, uint16_t v)
{
	uint8_t x[2];
	le16_put(x, v);
	return buf_append(b, x, 2);
}

int buf_put_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4];
	le32_put(x, v);
	return buf_append(b, x, 4);
}

int buf_put_u64(struct buf *b, uint64_t v)
{
	uint8_t x[8];
	le32_put(x, (uint32_t)v);
	le32_put(x + 4, (uint32_t)(v >> 32));
	return buf_append(b, x, 8);
}

int buf_put_be16(struct buf *b, uint16_t v)
{
	uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	return buf_append(b, x, 2);
}

int buf_put_be32(struct buf *b, uint32_t v)
{
	uint8_t x[4];
	be32_put(x, v);
	return buf_append(b, x, 4);
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= buf_used(b)) {
		b->off = b->len = 0;
		return;
	}
	b->off += n;
}

void buf_consume_wiped(struct buf *b, size_t n)
{
	size_t k = n < buf_used(b) ? n : buf_used(b);
	if (k)
		explicit_bzero(buf_head(b), k);
	buf_consume(b, n);
}

const uint8_t *rd_bytes(struct rd *r, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p ? r->p + r->off : r->p; /* an empty buffer's NULL: no arithmetic */
	r->off += n;
	return p;
}

uint8_t rd_u8(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 1);
	return p ? p[0] : 0;
}

uint16_t rd_u16(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 2);
	return p ? le16_get(p) : 0;
}

uint32_t rd_u32(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 4);
	return p ? le32_get(p) : 0;
}

uint64_t rd_u64(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 8);
	return p ? (uint64_t)le32_get(p) | (uint64_t)le32_get(p + 4) << 32 : 0;
}

uint16_t rd_be16(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 2);
	return p ? be16_get(p) : 0;
}

uint32_t rd_be24(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 3);
	return p ? (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2] : 0;
}

uint32_t rd_be32(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 4);
	return p ? be32_get(p) : 0;
}

struct rd rd_sub(struct rd *r, size_t n)
{
	const uint8_t *p = rd_bytes(r, n);
	struct rd s = rd_make(p, p ? n : 0);
	s.bad = !p;
	return s;
}

const uint8_t *rd_line(struct rd *r, size_t *len)
{
	const uint8_t *start = r->p ? r->p + r->off : r->p;
	size_t left = rd_left(r);
	for (size_t i = 0; i + 1 < left; i++) {
		if (start[i] == '\r' && start[i + 1] == '\n') {
			*len = i;
			r->off += i + 2;
			return start;
		}
	}
	r->bad = true;
	return NULL;
}
