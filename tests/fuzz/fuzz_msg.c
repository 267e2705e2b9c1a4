/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the TLV reader (msg_next and the value getters), which parses OPEN and
 * CTL payloads from the peer. Beyond "no crash, no leak", it aborts when:
 *  - msg_next fails with anything but -EPROTO, or reports the end before the input is used up;
 *  - a value cursor points outside the input, or does not end where the reader continues;
 *  - a fixed-width getter accepts a wrong length or rejects the right one;
 *  - msg_dup_str accepts an embedded NUL or an over-long value, rejects a good one, or copies
 *    it wrongly;
 *  - re-encoding the TLVs read with msg_put_tlv does not give back the input bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_getters(const struct rd *val)
{
	size_t n = rd_left(val);
	struct rd v;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;

	v = *val;
	if ((msg_get_u8(&v, &u8) == 0) != (n == 1))
		abort();
	v = *val;
	if ((msg_get_u16(&v, &u16) == 0) != (n == 2))
		abort();
	v = *val;
	if ((msg_get_u32(&v, &u32) == 0) != (n == 4))
		abort();
	v = *val;
	if ((msg_get_u64(&v, &u64) == 0) != (n == 8))
		abort();
	if (n == 8 && (uint8_t)u64 != val->p[val->off])
		abort();
}

static void check_dup_str(const struct rd *val, size_t max)
{
	const uint8_t *p = val->p + val->off;
	size_t n = rd_left(val);
	struct rd v = *val;
	char *s = NULL;
	int r = msg_dup_str(&v, max, &s);

	if (n > max) {
		if (r != -E2BIG || s)
			abort();
	} else if (n && memchr(p, 0, n)) {
		if (r != -EPROTO || s)
			abort();
	} else if (r == -ENOMEM) {
		return;
	} else if (r != 0 || !s || strlen(s) != n || memcmp(s, p, n) != 0 || rd_left(&v) != 0) {
		abort();
	}
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd r = rd_make(data, size);
	struct buf re = { 0 };
	size_t good = 0; /* end of the last whole TLV */
	uint16_t tag;
	struct rd val;
	int k;

	while ((k = msg_next(&r, &tag, &val)) == 1) {
		size_t n = rd_left(&val);
		if (val.bad || val.off != 0 || val.p < data || n > size ||
		    val.p + n != data + r.off || r.off - good != 6 + n)
			abort();
		good = r.off;
		check_getters(&val);
		check_dup_str(&val, MSG_MAX_STR);
		check_dup_str(&val, tag & 0xf);
		if (msg_put_tlv(&re, tag, val.p, (uint32_t)n) < 0)
			goto out;
	}
	if (k == 0 ? good != size : k != -EPROTO || good == size)
		abort();
	/* The TLVs read re-encode to exactly the bytes they came from. */
	if (buf_used(&re) != good || (good && memcmp(buf_head(&re), data, good) != 0))
		abort();
out:
	buf_fini(&re);
	return 0;
}
