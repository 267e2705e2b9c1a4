/* SPDX-License-Identifier: MIT */
/*
 * Resource limits inside the guest. Fractional --cpus becomes whole vCPUs (QEMU -smp, rounded
 * up) plus a CFS quota on a cgroup that every process we start joins, so "--cpus 0.5" really
 * gives half a CPU. The agent itself stays in the root cgroup: it must never be throttled.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "common/log.h"

#define CG_ROOT "/sys/fs/cgroup"
#define CG_SANDBOX CG_ROOT "/sandbox"

static int cg_ready;

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, s, strlen(s));
	int r = n < 0 ? -errno : 0;
	close(fd);
	return r;
}

int cgroup_set_cpu_quota(uint32_t milli_cpus)
{
	char v[64];
	int r;
	if (!cg_ready) {
		mkdir(CG_ROOT, 0755);
		if (mount("cgroup2", CG_ROOT, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) <
			0 &&
		    errno != EBUSY) {
			warn("cgroup2 mount: %s", strerror(errno));
			return -errno;
		}
		if ((r = write_str(CG_ROOT "/cgroup.subtree_control", "+cpu +pids")) < 0)
			warn("cgroup controllers: %s", strerror(-r));
		if (mkdir(CG_SANDBOX, 0755) < 0 && errno != EEXIST)
			return -errno;
		cg_ready = 1;
	}
	/* cpu.max: "<quota> <period>" in microseconds per period. */
	snprintf(v, sizeof(v), "%u 100000", milli_cpus * 100);
	if ((r = write_str(CG_SANDBOX "/cpu.max", v)) < 0)
		warn("cpu.max %s: %s", v, strerror(-r));
	return r;
}

void cgroup_enter_sandbox(void)
{
	if (cg_ready)
		write_str(CG_SANDBOX "/cgroup.procs", "0");
}
