/* SPDX-License-Identifier: MIT */
#include "arch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

const struct arch_info arch_table[ARCH_END] = {
	[ARCH_X86_64] = { .oci = "amd64",
			  .qemu = "qemu-system-x86_64",
			  .qemu_env = "MATCHLOCK_QEMU",
			  .qemu_package = "qemu-system-x86",
			  .kernel = "vmlinux",
			  .kernel_env = "MATCHLOCK_KERNEL",
			  .initrd = "initramfs.cpio",
			  .initrd_env = "MATCHLOCK_INITRAMFS",
			  .make_target = "all" },
	[ARCH_ARM64] = { .oci = "arm64",
			 .qemu = "qemu-system-aarch64",
			 .qemu_env = "MATCHLOCK_QEMU_ARM64",
			 .qemu_package = "qemu-system-arm",
			 .kernel = "arm64/Image",
			 .kernel_env = "MATCHLOCK_KERNEL_ARM64",
			 .initrd = "arm64/initramfs.cpio",
			 .initrd_env = "MATCHLOCK_INITRAMFS_ARM64",
			 .make_target = "guest-arm64" },
};
STATIC_ASSERT_TABLE(arch_table, ARCH_END);

enum guest_arch arch_host(void)
{
#if defined(__aarch64__)
	return ARCH_ARM64;
#else
	return ARCH_X86_64;
#endif
}

int arch_parse(const char *platform, enum guest_arch *out, char *err, size_t errn)
{
	static const struct {
		const char *name;
		enum guest_arch arch;
	} names[] = {
		{ "amd64", ARCH_X86_64 },   { "x86_64", ARCH_X86_64 }, { "arm64", ARCH_ARM64 },
		{ "arm64/v8", ARCH_ARM64 }, { "aarch64", ARCH_ARM64 },
	};
	const char *p = platform;
	if (!strncmp(p, "linux/", 6))
		p += 6;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (!strcmp(p, names[i].name)) {
			*out = names[i].arch;
			return 0;
		}
	}
	snprintf(err, errn, "platform '%.100s': expected linux/amd64 or linux/arm64", platform);
	return -EINVAL;
}

const char *arch_platform(enum guest_arch a)
{
	return a == ARCH_ARM64 ? "linux/arm64" : "linux/amd64";
}
