/* SPDX-License-Identifier: MIT */
/*
 * Bounds-checked byte buffers.
 *
 * struct buf is a growable FIFO of bytes (append at the end, consume from the front) used for
 * encoding messages and for output queues. A failed append (out of memory) makes the buffer
 * sticky-bad: later appends are refused too, so a message is never sent with a piece silently
 * missing; a writer appends a whole message and tests buf->bad once (buf_fini clears it).
 * struct rd is a read cursor over bytes someone else
 * owns; every read is checked and a failed read makes the cursor sticky-bad, so a parser can read
 * a whole structure and test rd->bad once. All untrusted bytes are read through struct rd.
 */
#ifndef MATCHLOCK_BUF_H
#define MATCHLOCK_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *p;
	size_t off; /* first unconsumed byte */
	size_t len; /* end of valid bytes */
	size_t cap;
	bool bad; /* an append failed: the contents are incomplete */
};

void buf_fini(struct buf *b);
/* Make room for n more bytes; returns a pointer to them or NULL (-ENOMEM, b turns bad). */
uint8_t *buf_reserve(struct buf *b, size_t n);
/* Each returns 0 or -ENOMEM (also when b was bad already). */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_put_u8(struct buf *b, uint8_t v);
int buf_put_u16(struct buf *b, uint16_t v);
int buf_put_u32(struct buf *b, uint32_t v);
int buf_put_u64(struct buf *b, uint64_t v);
/* Big-endian (network order), for wire formats such as DNS. */
int buf_put_be16(struct buf *b, uint16_t v);
int buf_put_be32(struct buf *b, uint32_t v);
void buf_consume(struct buf *b, size_t n);
/* The same, wiping the bytes first: what passes through may carry a secret. */
void buf_consume_wiped(struct buf *b, size_t n);
static inline size_t buf_used(const struct buf *b)
{
	return b->len - b->off;
}
static inline uint8_t *buf_head(const struct buf *b)
{
	return b->p ? b->p + b->off : b->p;
}

struct rd {
	const uint8_t *p;
	size_t len;
	size_t off;
	bool bad;
};

static inline struct rd rd_make(const void *p, size_t len)
{
	return (struct rd){ .p = p, .len = len };
}
static inline size_t rd_left(const struct rd *r)
{
	return r->bad ? 0 : r->len - r->off;
}
uint8_t rd_u8(struct rd *r);
uint16_t rd_u16(struct rd *r);
uint32_t rd_u32(struct rd *r);
uint64_t rd_u64(struct rd *r);
/* Big-endian (network order) reads, for wire formats such as DNS and TLS. */
uint16_t rd_be16(struct rd *r);
uint32_t rd_be24(struct rd *r);
uint32_t rd_be32(struct rd *r);
/* Returns a pointer to the next n bytes and advances, or NULL (and marks r bad). */
const uint8_t *rd_bytes(struct rd *r, size_t n);
/* A cursor over the next n bytes (a length-prefixed part); r advances past them. */
struct rd rd_sub(struct rd *r, size_t n);
/*
 * The next line ending in CRLF, without it (*len bytes), and advance past the CRLF; NULL
 * when no CRLF is in the bytes left (r turns bad, a line is never cut).
 */
const uint8_t *rd_line(struct rd *r, size_t *len);

/* Little-endian helpers for fixed headers. */
static inline uint16_t le16_get(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint16_t be16_get(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void le16_put(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void le32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

#endif
