/* SPDX-License-Identifier: MIT */
/*
 * The VMM behind one interface: QEMU (vmm_qemu.c), its microvm machine for x86_64 guests and
 * virt for arm64 ones. The supervisor hands it connected sockets for the console and the link,
 * and descriptors of the kernel, initramfs and disks; the VMM child runs in a jail with no path
 * to anything else (jail.h), cannot spawn processes (QEMU's seccomp sandbox), and is killed by
 * the kernel if the supervisor dies (parent-death signal).
 */
#ifndef MATCHLOCK_VMM_H
#define MATCHLOCK_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "accel.h"
#include "arch.h"

#define VMM_MAX_VOLUMES 8 /* = MSG_MAX_VOLUMES */

struct vmm_config {
	enum guest_arch arch;
	enum accel accel;
	unsigned cpus;
	unsigned memory_mb;
	const char *kernel;
	const char *initrd;
	const char *disk; /* read-only root disk image */
	const char *scratch; /* the sandbox's writable disk (disk.h), or NULL */
	long long scratch_mb; /* its size: part of a template's identity */
	/* Named volumes, in order (serial MSG_VOLUME_SERIAL INDEX); sizes are identity too. */
	struct vmm_volume {
		const char *path;
		long long size_mb;
		bool ro;
	} volumes[VMM_MAX_VOLUMES];
	unsigned nvolumes;
	int link_fd; /* our peer's end of the link socketpair */
	int console_fd; /* our peer's end of the console socketpair */
	int stderr_fd; /* where QEMU's own messages go */
	int qmp_fd; /* our peer's end of the QMP (monitor) socketpair */
	int incoming_fd; /* a snapshot to restore from, positioned at its migration stream, or -1
			    for a cold boot; QEMU waits for migrate-incoming VMM_INCOMING_URI */
	int fs_fd; /* our peer's end of the file-service link (host folders, sandbox_fs.c) */
	/*
	 * Guest RAM as a file of this sandbox's own (its first memory_mb MiB; a memfd), mapped
	 * shared: the guest writes into it. A template being made (the supervisor copies its RAM
	 * out), or a restored one (a copy of the template's). -1 for anonymous memory.
	 */
	int ram_fd;
	const char *name; /* the sandbox ID: names its cgroup (jail.h); NULL for none */
};

/* Where a QEMU with an incoming_fd reads the snapshot's migration stream from: its fd 6. */
#define VMM_INCOMING_FD 6
#define VMM_STR_(x) #x
#define VMM_STR(x) VMM_STR_(x)
#define VMM_INCOMING_URI "fd:" VMM_STR(VMM_INCOMING_FD)

/* The QEMU binary for a guest architecture: a name to find in PATH, or what its variable says. */
const char *vmm_qemu_binary(enum guest_arch arch);
/* The guest kernel's command line (part of a snapshot's identity). */
const char *vmm_cmdline(enum guest_arch arch, enum accel accel);
/* Start the VMM. Returns 0 with *pid and *pidfd set, or -errno with a reason in err. */
int vmm_spawn(const struct vmm_config *c, pid_t *pid, int *pidfd, char *err, size_t errn);
/* The VMM started from c has exited and been reaped: release what its jail holds. */
void vmm_reaped(const struct vmm_config *c);

#endif
