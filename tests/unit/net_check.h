/* SPDX-License-Identifier: MIT */
/* Minimal test harness for the network unit tests: CHECK(cond), and a closing summary line. */
#ifndef MATCHLOCK_NET_CHECK_H
#define MATCHLOCK_NET_CHECK_H

#include <stdio.h>

static int check_pass, check_fail;
#define CHECK(c)                                                                         \
	do {                                                                             \
		if (c) {                                                                 \
			check_pass++;                                                    \
		} else {                                                                 \
			check_fail++;                                                    \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);     \
		}                                                                        \
	} while (0)
#define CHECK_DONE()                                                                     \
	(printf("%d passed, %d failed\n", check_pass, check_fail), check_fail ? 1 : 0)

#endif
