/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: log_sanitize(), which every message matchlock prints passes through. The first byte
 * picks the output size (1..256), the rest is the text. The output must be NUL-terminated within
 * its buffer, hold no C0 control, DEL or C1 control, and be valid UTF-8 (a terminal then has
 * nothing to act on); it must also be a whole number of input characters or escapes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t outn = (size_t)data[0] + 1;
	char in[4096], out[257];
	size_t n = size - 1 < sizeof(in) - 1 ? size - 1 : sizeof(in) - 1;
	memcpy(in, data + 1, n);
	in[n] = 0;
	memset(out, 'A', sizeof(out));
	size_t len = log_sanitize(out, outn, in);
	if (len >= outn || out[len] != 0 || strlen(out) != len)
		abort();
	const unsigned char *p = (const unsigned char *)out;
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		if (c < 0x20 || c == 0x7f)
			abort();
		size_t k = c < 0x80		    ? 1
			   : c >= 0xc2 && c <= 0xdf ? 2
			   : c >= 0xe0 && c <= 0xef ? 3
			   : c >= 0xf0 && c <= 0xf4 ? 4
						    : 0;
		if (k == 0 || i + k > len || (c == 0xc2 && p[i + 1] <= 0x9f))
			abort();
		for (size_t j = 1; j < k; j++)
			if ((p[i + j] & 0xc0) != 0x80)
				abort();
		i += k;
	}
	/* Text with nothing to escape passes unchanged (up to the cut). */
	bool plain = true;
	for (size_t i = 0; i < n; i++)
		plain &= in[i] >= 0x20 && in[i] < 0x7f;
	if (plain && (len != (n < outn - 1 ? n : outn - 1) || memcmp(out, in, len)))
		abort();
	return 0;
}
