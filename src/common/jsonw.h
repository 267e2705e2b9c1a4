/* SPDX-License-Identifier: MIT */
/* A minimal JSON writer into a struct buf: strings escaped, everything else as given. */
#ifndef MATCHLOCK_JSONW_H
#define MATCHLOCK_JSONW_H

#include <stdint.h>

#include "buf.h"

int jsonw_str(struct buf *b, const char *s);
/* "key": string value, with a leading comma unless first. */
int jsonw_kv_str(struct buf *b, int first, const char *key, const char *val);
int jsonw_kv_int(struct buf *b, int first, const char *key, long long val);
int jsonw_kv_bool(struct buf *b, int first, const char *key, int val);
/* "key": raw (already JSON) text. */
int jsonw_kv_raw(struct buf *b, int first, const char *key, const char *raw);
int jsonw_raw(struct buf *b, const char *s);

#endif
