/* SPDX-License-Identifier: MIT */
/*
 * A look at the first bytes a guest sends on a connection: is it a TLS ClientHello, and which
 * name does its SNI carry? Decides whether the egress engine intercepts the connection. Pure
 * code over guest bytes, read through struct rd only.
 */
#ifndef MATCHLOCK_TLSHELLO_H
#define MATCHLOCK_TLSHELLO_H

#include <stddef.h>
#include <stdint.h>

#define TLSHELLO_MAX (16u * 1024 + 5) /* the first record: all we ever wait for */

/*
 * Returns 1 for a ClientHello, with the SNI host name (lower case, "" if none) in sni; 0 if
 * more bytes are needed to tell; -ENOENT if the bytes are not TLS at all (relay them); -EPROTO
 * if they start like TLS but are not a well-formed ClientHello (refuse: never relay those
 * uninspected).
 */
int tlshello_sni(const uint8_t *p, size_t n, char *sni, size_t snin);

#endif
