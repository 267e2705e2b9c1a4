/* SPDX-License-Identifier: MIT */
/*
 * matchlock diagnose: can this host run sandboxes, and if not, what to do. Each check has a
 * status and a fix hint; the exit status is non-zero when a required check fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "accel.h"
#include "arch.h"
#include "common/child.h"
#include "cli.h"
#include "common/util.h"
#include "common/paths.h"
#include "vmm.h"

struct check {
	const char *name;
	bool ok;
	bool required;
	char detail[4300]; /* a path (check_file: up to 4200 bytes) and a few words */
	const char *fix;
	char fix_buf[160];
};

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void check_qemu(struct check *c, enum guest_arch arch)
{
	const char *q = vmm_qemu_binary(arch);
	char *const argv[] = { (char *)q, "--version", NULL };
	char line[256];
	if (child_run(argv, false, line, sizeof(line)) < 0)
		line[0] = 0;
	line[strcspn(line, "\n")] = 0;
	c->ok = strstr(line, "QEMU emulator") != NULL;
	snprintf(c->detail, sizeof(c->detail), "%s", c->ok ? line : "not found");
	snprintf(c->fix_buf, sizeof(c->fix_buf), "apt-get install %s (or set %s)",
		 arch_table[arch].qemu_package, arch_table[arch].qemu_env);
	c->fix = c->fix_buf;
}

static void check_file(struct check *c, const char *env, const char *name, const char *target)
{
	char path[4200];
	c->ok = paths_find_guest_file(env, name, path, sizeof(path)) == 0;
	snprintf(c->detail, sizeof(c->detail), "%s", c->ok ? path : "not found next to the binary");
	snprintf(c->fix_buf, sizeof(c->fix_buf), "run 'make %s', or set %s", target, env);
	c->fix = c->fix_buf;
}

static void check_disk(struct check *c)
{
	char dir[4096];
	struct statvfs sv;
	paths_cache_dir(dir, sizeof(dir));
	mkdir_p(dir, 0700);
	if (statvfs(dir, &sv) < 0) {
		c->ok = false;
		snprintf(c->detail, sizeof(c->detail), "%s: %s", dir, strerror(errno));
		return;
	}
	unsigned long long free_mb = (unsigned long long)sv.f_bavail * sv.f_frsize >> 20;
	c->ok = free_mb >= 1024;
	snprintf(c->detail, sizeof(c->detail), "%llu MB free in %s", free_mb, dir);
}

int cmd_diagnose(int argc, char **argv)
{
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			puts("usage: matchlock diagnose [--json]\n\nCheck that this host can run "
			     "sandboxes; exits non-zero when it cannot.");
			return 0;
		} else {
			fprintf(stderr, "matchlock: diagnose: unknown flag %s\n", argv[i]);
			return EXIT_MATCHLOCK;
		}
	}
	/*
	 * The host's own guest architecture is required; the other one (emulated) is reported
	 * for --platform, never required.
	 */
	enum guest_arch host = arch_host(), other = host == ARCH_X86_64 ? ARCH_ARM64 : ARCH_X86_64;
	struct check checks[] = {
		{ .name = "qemu", .required = true },
		{ .name = "kernel", .required = true },
		{ .name = "initramfs", .required = true },
		{ .name = "accelerator",
		  .required = true,
		  .fix =
		      "TCG always works; for KVM enable hardware virtualisation (VT-x, AMD-V, or "
		      "an arm64 kernel at EL2) and give access to /dev/kvm" },
		{ .name = "disk",
		  .required = false,
		  .fix = "free some space in the cache directory (or set MATCHLOCK_HOME)" },
		{ .name = other == ARCH_ARM64 ? "qemu-arm64" : "qemu-amd64" },
		{ .name = other == ARCH_ARM64 ? "kernel-arm64" : "kernel-amd64" },
		{ .name = other == ARCH_ARM64 ? "initrd-arm64" : "initrd-amd64" },
	};
	const struct arch_info *ah = &arch_table[host], *ao = &arch_table[other];
	check_qemu(&checks[0], host);
	check_file(&checks[1], ah->kernel_env, ah->kernel, ah->make_target);
	check_file(&checks[2], ah->initrd_env, ah->initrd, ah->make_target);
	enum accel a;
	checks[3].ok =
	    accel_choose("auto", host, &a, checks[3].detail, sizeof(checks[3].detail)) == 0;
	check_disk(&checks[4]);
	check_qemu(&checks[5], other);
	check_file(&checks[6], ao->kernel_env, ao->kernel, ao->make_target);
	check_file(&checks[7], ao->initrd_env, ao->initrd, ao->make_target);
	for (int i = 5; i < 8; i++) {
		char d[sizeof(checks[i].detail)];
		snprintf(d, sizeof(d), "%s: %s", arch_platform(other), checks[i].detail);
		memcpy(checks[i].detail, d, sizeof(d));
	}

	bool fatal = false;
	if (json)
		printf("{\"checks\":[");
	for (size_t i = 0; i < ARRAY_SIZE(checks); i++) {
		struct check *c = &checks[i];
		fatal |= c->required && !c->ok;
		if (json) {
			printf("%s{\"name\":", i ? "," : "");
			json_str(c->name);
			printf(",\"ok\":%s,\"required\":%s,\"detail\":", c->ok ? "true" : "false",
			       c->required ? "true" : "false");
			json_str(c->detail);
			printf(",\"fix\":");
			json_str(c->ok ? "" : c->fix);
			printf("}");
		} else {
			printf("%-13s %-4s %s\n", c->name,
			       c->ok	     ? "ok"
			       : c->required ? "FAIL"
					     : "warn",
			       c->detail);
			if (!c->ok)
				printf("%-13s      fix: %s\n", "", c->fix);
		}
	}
	if (json)
		printf("],\"ok\":%s}\n", fatal ? "false" : "true");
	else
		printf("%s\n", fatal ? "This host cannot run sandboxes yet."
				     : "This host can run sandboxes.");
	return fatal ? 1 : 0;
}
