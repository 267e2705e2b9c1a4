/* SPDX-License-Identifier: MIT */
#include "base64.h"

#include <errno.h>
#include <stdbool.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_encode(struct buf *out, const uint8_t *p, size_t n)
{
	uint8_t *o = buf_reserve(out, (n + 2) / 3 * 4);
	if (!o)
		return -ENOMEM;
	size_t i = 0, k = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		o[k++] = (uint8_t)b64[v >> 18];
		o[k++] = (uint8_t)b64[(v >> 12) & 63];
		o[k++] = (uint8_t)b64[(v >> 6) & 63];
		o[k++] = (uint8_t)b64[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
		o[k++] = (uint8_t)b64[v >> 18];
		o[k++] = (uint8_t)b64[(v >> 12) & 63];
		o[k++] = i + 1 < n ? (uint8_t)b64[(v >> 6) & 63] : '=';
		o[k++] = '=';
	}
	out->len += k;
	return 0;
}

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(struct buf *out, const char *s, size_t n)
{
	if (n % 4)
		return -EINVAL;
	uint8_t *o = buf_reserve(out, n / 4 * 3);
	if (!o && n)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < n; i += 4) {
		int a = b64_val(s[i]), b = b64_val(s[i + 1]);
		bool last = i + 4 == n;
		int c = last && s[i + 2] == '=' ? -2 : b64_val(s[i + 2]);
		int d = last && s[i + 3] == '=' ? -2 : b64_val(s[i + 3]);
		if (a < 0 || b < 0 || c == -1 || d == -1 || (c == -2 && d != -2))
			return -EINVAL;
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 |
			     (uint32_t)(c < 0 ? 0 : c) << 6 | (uint32_t)(d < 0 ? 0 : d);
		o[k++] = (uint8_t)(v >> 16);
		if (c >= 0)
			o[k++] = (uint8_t)(v >> 8);
		if (d >= 0)
			o[k++] = (uint8_t)v;
	}
	out->len += k;
	return 0;
}
