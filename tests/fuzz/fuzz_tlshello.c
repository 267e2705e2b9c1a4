/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the ClientHello sniffer (net/tlshello.c), which reads the first bytes a
 * guest sends on every intercepted connection. Input: one byte for the size of the caller's SNI
 * buffer (1..256), then the guest's bytes, in an allocation of exactly their size (so ASan sees
 * any read past them). Beyond "no crash", it aborts when:
 *  - the result is anything but 1, 0, -ENOENT or -EPROTO;
 *  - for a ClientHello, the SNI is not NUL-terminated inside the buffer, or holds anything but
 *    lower-case letters, digits, '-', '.' and '_' (on any other result the caller ignores it,
 *    and it may hold part of a refused name);
 *  - "need more bytes" (0) is answered for a whole first record, or when more bytes would
 *    exceed TLSHELLO_MAX (the sniffer would wait for ever);
 *  - a verdict on a prefix is contradicted by the whole: a prefix that was already "not TLS"
 *    or "malformed" cannot become a ClientHello with more bytes.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tlshello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sniff(const uint8_t *data, size_t n, size_t snin, char *sni)
{
	/* An exact copy, so a read of byte n is out of bounds for ASan. */
	uint8_t *p = malloc(n ? n : 1);
	if (!p)
		return -ENOMEM;
	memcpy(p, data, n);
	memset(sni, 0x5a, snin);
	int r = tlshello_sni(p, n, sni, snin);
	free(p);
	if (r != 1 && r != 0 && r != -ENOENT && r != -EPROTO)
		abort();
	const char *end = r == 1 ? memchr(sni, 0, snin) : sni;
	if (!end)
		abort();
	for (const char *c = sni; c < end; c++)
		if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) && *c != '-' &&
		    *c != '.' && *c != '_')
			abort();
	if (r == 0 && n >= TLSHELLO_MAX)
		abort();
	if (r == 0 && n >= 5 && n >= 5 + (((size_t)data[3] << 8) | data[4]))
		abort();
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t snin = (size_t)data[0] + 1;
	char sni[257], sni_prefix[257];
	int whole = sniff(data + 1, size - 1, snin, sni);
	/* Every prefix (a connection's bytes arrive in pieces): no verdict may flip. */
	for (size_t k = 0; k < size - 1 && k < 64; k++) {
		int part = sniff(data + 1, k, snin, sni_prefix);
		if ((part == -ENOENT || part == -EPROTO) && whole == 1)
			abort();
		if (part == -ENOENT && whole != -ENOENT)
			abort();
	}
	return 0;
}
