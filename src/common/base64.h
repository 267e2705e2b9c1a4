/* SPDX-License-Identifier: MIT */
/* Standard base64 (RFC 4648, with padding), as JSON-RPC carries binary data. */
#ifndef MATCHLOCK_BASE64_H
#define MATCHLOCK_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

int base64_encode(struct buf *out, const uint8_t *p, size_t n);
/* Decode; whitespace is not allowed. Returns 0 or -EINVAL for anything that is not base64. */
int base64_decode(struct buf *out, const char *s, size_t n);

#endif
