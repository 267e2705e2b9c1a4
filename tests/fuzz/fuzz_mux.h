/* SPDX-License-Identifier: MIT */
/*
 * Input format of fuzz_mux. make_seeds.py reads these definitions, so its seeds match the harness:
 *
 *   u8  opts   FUZZ_MUX_* bits below: which side is under test and how its owner behaves
 *   u8  chunk  0 = feed the rest in one call; n = feed pieces of 1..n bytes (sizes from a
 *              generator seeded with n, so 1 means one byte at a time)
 *   ... bytes sent by the peer
 *
 * With FUZZ_MUX_OPEN2, the mux under test first opens two exec streams of its own (ids 1 and 3 on
 * the host side, 2 and 4 on the guest side), so peer frames on our streams are reachable.
 */
#ifndef MATCHLOCK_FUZZ_MUX_H
#define MATCHLOCK_FUZZ_MUX_H

#define FUZZ_MUX_GUEST 0x01 /* the mux under test is the guest side (else the host) */
#define FUZZ_MUX_CLOSE_NOW 0x02 /* answer the peer's CLOSE from the callback (else later) */
#define FUZZ_MUX_ECHO 0x04 /* send each DATA payload back on MUX_CHAN_OUT */
#define FUZZ_MUX_LAZY 0x08 /* consume DATA after each feed (else in the callback) */
#define FUZZ_MUX_REFUSE 0x10 /* close each peer OPEN at once with ECONNREFUSED */
#define FUZZ_MUX_OPEN2 0x20 /* open two streams of our own before reading */
#define FUZZ_MUX_STALL 0x40 /* never consume DATA (a stuck reader): the window runs out */
#define FUZZ_MUX_HANGUP 0x80 /* on the peer's EOF, send EOF and CLOSE back */

#define FUZZ_MUX_HDR 2 /* opts + chunk */
#define FUZZ_MUX_NOPEN 2 /* streams opened with FUZZ_MUX_OPEN2 */

#endif
