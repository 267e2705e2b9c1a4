/* SPDX-License-Identifier: MIT */
/*
 * The HTTP-aware part of the egress path (plain HTTP, port 80): find the Host a request names,
 * and write the 403 a denied request gets. Kept separate from the relay so a TLS-intercepting
 * proxy can hand decrypted requests to the same check later.
 */
#ifndef MATCHLOCK_HTTP_H
#define MATCHLOCK_HTTP_H

#include <stddef.h>

#include "common/buf.h"

#define HTTP_MAX_HEAD (16u * 1024) /* a request head longer than this is refused */

/*
 * Look at the start of a request. Returns 1 when the head is complete and names exactly one
 * host (Host header, and the authority of an absolute-form target if any, which must agree),
 * copied lower case without a port into host; 0 if more bytes are needed; -EPROTO if malformed
 * or too long.
 */
int http_request_host(const uint8_t *p, size_t n, char *host, size_t hostn);
/* Append a complete "403 Forbidden" response whose body is reason (one line). */
int http_build_403(struct buf *out, const char *reason);

#endif
