/* SPDX-License-Identifier: MIT */
/*
 * KVM needs three things: a /dev/kvm we can open, the stable KVM API, and hardware
 * virtualisation (vmx or svm) visible to this kernel. Some hosts expose /dev/kvm without the
 * last one, e.g. a PVM hypervisor that runs only specially built guests and silently hangs a
 * normal kernel: those must get TCG, never a hang.
 */
#define _GNU_SOURCE
#include "accel.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

const char *const accel_names[ACCEL_END] = { "tcg", "kvm" };
STATIC_ASSERT_TABLE(accel_names, ACCEL_END);

/*
 * x86: vmx or svm in the CPU flags. Other architectures state it differently (an arm64 kernel
 * that offers /dev/kvm runs at EL2 already), so there the API check below is the test.
 */
static bool cpu_has_virt(void)
{
#if defined(__x86_64__)
	char *s = NULL;
	if (read_file_str("/proc/cpuinfo", 1 << 20, &s) < 0)
		return false;
	bool yes = false;
	for (char *line = strtok(s, "\n"); line && !yes; line = strtok(NULL, "\n")) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		for (char *w = strtok(strchr(line, ':'), " \t:"); w; w = strtok(NULL, " \t"))
			if (!strcmp(w, "vmx") || !strcmp(w, "svm"))
				yes = true;
		break;
	}
	free(s);
	return yes;
#else
	return true;
#endif
}

/* Returns true if KVM is usable for a guest of arch; otherwise explains why not. */
static bool kvm_usable(enum guest_arch arch, char *why, size_t n)
{
	if (arch != arch_host()) {
		snprintf(why, n, "a %s guest on a %s host", arch_platform(arch),
			 arch_platform(arch_host()));
		return false;
	}
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		struct stat st;
		struct group *g;
		/* The usual case for a normal user: /dev/kvm belongs to a group they are not in. */
		if ((errno == EACCES || errno == EPERM) && stat("/dev/kvm", &st) == 0 &&
		    (g = getgrgid(st.st_gid)))
			snprintf(
			    why, n,
			    "/dev/kvm: permission denied (join its group: usermod -aG %s $USER, "
			    "then log in again)",
			    g->gr_name);
		else
			snprintf(why, n, "/dev/kvm: %s", strerror(errno));
		return false;
	}
	int api = ioctl(fd, KVM_GET_API_VERSION, 0);
	close(fd);
	if (api != KVM_API_VERSION) {
		snprintf(why, n, "/dev/kvm speaks KVM API %d, not %d", api, KVM_API_VERSION);
		return false;
	}
	if (!cpu_has_virt()) {
		snprintf(why, n,
			 "/dev/kvm present but the CPU shows no vmx/svm (a PVM-only or "
			 "paravirtual hypervisor that cannot boot a normal kernel)");
		return false;
	}
	snprintf(why, n, "/dev/kvm usable and the CPU has hardware virtualisation");
	return true;
}

int accel_choose(const char *want, enum guest_arch arch, enum accel *out, char *why, size_t n)
{
	char kwhy[200];
	if (!want || !strcmp(want, "auto")) {
		bool kvm = kvm_usable(arch, kwhy, sizeof(kwhy));
		*out = kvm ? ACCEL_KVM : ACCEL_TCG;
		snprintf(why, n, "%s: using %s", kwhy, kvm ? "KVM" : "TCG (software emulation)");
		return 0;
	}
	if (!strcmp(want, "tcg")) {
		*out = ACCEL_TCG;
		snprintf(why, n, "TCG requested");
		return 0;
	}
	if (!strcmp(want, "kvm")) {
		if (!kvm_usable(arch, kwhy, sizeof(kwhy))) {
			snprintf(why, n, "KVM requested but not usable: %s", kwhy);
			return -ENODEV;
		}
		*out = ACCEL_KVM;
		snprintf(why, n, "KVM requested: %s", kwhy);
		return 0;
	}
	snprintf(why, n, "unknown accelerator '%s' (use auto, kvm or tcg)", want);
	return -EINVAL;
}
