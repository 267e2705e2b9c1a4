/* SPDX-License-Identifier: MIT */
/* The supervisor's own jail: jail.h. */
#define _GNU_SOURCE
#include "jail.h"

#include <sys/prctl.h>

void jail_supervisor_nodump(void)
{
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int jail_supervisor_seal(void)
{
	jail_supervisor_nodump();
	return 0;
}
