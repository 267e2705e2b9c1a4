/* SPDX-License-Identifier: MIT */
/*
 * Guest architectures: x86_64 (QEMU microvm) and arm64 (QEMU virt). Everything that differs
 * between them on the host side is in the table behind this header: the QEMU binary, the
 * machine and CPU, the kernel's file and command line, the OCI platform name. The guest's
 * architecture defaults to the host's; another one runs under TCG (emulation).
 */
#ifndef MATCHLOCK_ARCH_H
#define MATCHLOCK_ARCH_H

#include <stdbool.h>
#include <stddef.h>

enum guest_arch { ARCH_X86_64, ARCH_ARM64, ARCH_END };

struct arch_info {
	const char *oci; /* the OCI/Go architecture name: "amd64", "arm64" */
	const char *qemu; /* the QEMU binary (or $qemu_env) */
	const char *qemu_env; /* the environment variable that overrides it */
	const char *qemu_package; /* the Debian package that has it */
	const char *kernel, *kernel_env; /* file next to the binary, and its override */
	const char *initrd, *initrd_env;
	const char *make_target; /* what builds kernel and initramfs: "all", "guest-arm64" */
};

extern const struct arch_info arch_table[ARCH_END];

/* The architecture this binary runs on (the default guest's). */
enum guest_arch arch_host(void);
/*
 * Parse a platform as Docker and Podman spell it: "linux/arm64", "linux/arm64/v8", "arm64",
 * "aarch64", "linux/amd64", "amd64", "x86_64". -EINVAL for anything else (err names what is
 * accepted).
 */
int arch_parse(const char *platform, enum guest_arch *out, char *err, size_t errn);
/* "linux/amd64" or "linux/arm64". */
const char *arch_platform(enum guest_arch a);

#endif
