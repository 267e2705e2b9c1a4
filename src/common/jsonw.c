/* SPDX-License-Identifier: MIT */
#include "jsonw.h"

#include <stdio.h>
#include <string.h>

int jsonw_raw(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int jsonw_str(struct buf *b, const char *s)
{
	int r = buf_put_u8(b, '"');
	for (const unsigned char *p = (const unsigned char *)s; r == 0 && *p; p++) {
		char esc[8];
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			r = buf_append(b, esc, 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			r = buf_append(b, esc, 6);
		} else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			/* A C1 control in UTF-8 (U+0080..U+009F): a terminal may act on it raw. */
			snprintf(esc, sizeof(esc), "\\u%04x", *++p);
			r = buf_append(b, esc, 6);
		} else {
			r = buf_put_u8(b, *p);
		}
	}
	return r ? r : buf_put_u8(b, '"');
}

static int jsonw_key(struct buf *b, int first, const char *key)
{
	int r = first ? 0 : buf_put_u8(b, ',');
	if (r == 0)
		r = jsonw_str(b, key);
	return r ? r : buf_put_u8(b, ':');
}

int jsonw_kv_str(struct buf *b, int first, const char *key, const char *val)
{
	int r = jsonw_key(b, first, key);
	if (r)
		return r;
	return val ? jsonw_str(b, val) : jsonw_raw(b, "null");
}

int jsonw_kv_int(struct buf *b, int first, const char *key, long long val)
{
	char num[32];
	snprintf(num, sizeof(num), "%lld", val);
	int r = jsonw_key(b, first, key);
	return r ? r : jsonw_raw(b, num);
}

int jsonw_kv_bool(struct buf *b, int first, const char *key, int val)
{
	int r = jsonw_key(b, first, key);
	return r ? r : jsonw_raw(b, val ? "true" : "false");
}

int jsonw_kv_raw(struct buf *b, int first, const char *key, const char *raw)
{
	int r = jsonw_key(b, first, key);
	return r ? r : jsonw_raw(b, raw);
}
