/* SPDX-License-Identifier: MIT */
/*
 * What every new sandbox needs before it boots, shared by `run` and `rpc`: the accelerator, the
 * guest kernel and initramfs, the root disk, an ID and its state directory, and the boot
 * time-out (with KVM's fallback to TCG when a /dev/kvm that looks fine never boots a guest).
 */
#ifndef MATCHLOCK_LAUNCH_H
#define MATCHLOCK_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>

#include "accel.h"
#include "common/loop.h"
#include "sandbox.h"

struct launch {
	char id[16];
	char dir[4200];
	char kernel[4200], initrd[4200], disk[4200];
	enum guest_arch arch;
	enum accel accel;
	char accel_want[8];
	unsigned boot_timeout_s;
	bool snapshots; /* start from (and save) templates; launch_prepare turns it on */
	char template_path[4200];
	/* The boot in progress (launch_boot). */
	struct sandbox_config *sc;
	struct loop *loop;
	struct sandbox *booting;
	sandbox_booted_fn booted;
	void *booted_opaque;
};

/*
 * Everything but the directory, for a guest of architecture arch: rootfs is a directory or a
 * tarball, or NULL when the caller fills L->disk itself afterwards (an OCI image).
 */
int launch_prepare(struct launch *L, const char *rootfs, enum guest_arch arch,
		   const char *accel_want, char *err, size_t errn);
/* Pick an ID and create its state directory (0700). */
int launch_make_dir(struct launch *L, char *err, size_t errn);
/*
 * Fill the VM part of a sandbox_config from L. Call after setting sc's cpus and memory: they
 * are part of the template's identity.
 */
void launch_config(struct launch *L, struct sandbox_config *sc);
/*
 * sandbox_boot with the fallbacks: a template that cannot be restored is dropped and the guest
 * boots cold; "auto" that chose a KVM which never answered retries once under TCG. Returns 0 and
 * booted() follows as for sandbox_boot (sc and L must live until then), or -errno with err.
 */
int launch_boot(struct launch *L, struct sandbox_config *sc, struct loop *l,
		sandbox_booted_fn booted, void *opaque, char *err, size_t errn);
/* Abandon the boot in progress; booted() follows with -ECANCELED. */
void launch_cancel(struct launch *L, const char *why);

#endif
