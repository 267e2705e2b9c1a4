/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "launch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/log.h"
#include "common/util.h"
#include "control.h"
#include "common/paths.h"
#include "rootfs.h"
#include "snapshot.h"

int launch_prepare(struct launch *L, const char *rootfs, enum guest_arch arch,
		   const char *accel_want, char *err, size_t errn)
{
	char why[300];
	const struct arch_info *ai = &arch_table[arch];
	memset(L, 0, sizeof(*L));
	L->arch = arch;
	snprintf(L->accel_want, sizeof(L->accel_want), "%s", accel_want ? accel_want : "auto");
	if (accel_choose(L->accel_want, arch, &L->accel, why, sizeof(why)) < 0) {
		snprintf(err, errn, "%s", why);
		return -EINVAL;
	}
	debug("accelerator: %s", why);
	if (paths_find_guest_file(ai->kernel_env, ai->kernel, L->kernel, sizeof(L->kernel)) < 0 ||
	    paths_find_guest_file(ai->initrd_env, ai->initrd, L->initrd, sizeof(L->initrd)) < 0) {
		snprintf(err, errn,
			 "the %s guest kernel or initramfs is not found next to the binary "
			 "(run 'make %s', or set %s / %s)",
			 arch_platform(arch), ai->make_target, ai->kernel_env, ai->initrd_env);
		return -ENOENT;
	}
	int r = rootfs ? rootfs_prepare(rootfs, L->disk, sizeof(L->disk), err, errn) : 0;
	if (r < 0)
		return r;
	const char *bt = getenv("MATCHLOCK_BOOT_TIMEOUT");
	unsigned long t = L->accel == ACCEL_KVM ? 10 : 30;
	if (bt && cli_parse_uint(bt, 1, 3600, &t) < 0) {
		snprintf(err, errn, "MATCHLOCK_BOOT_TIMEOUT=%s: expected seconds", bt);
		return -EINVAL;
	}
	L->boot_timeout_s = (unsigned)t;
	const char *ns = getenv("MATCHLOCK_NO_SNAPSHOT");
	L->snapshots = !(ns && *ns && strcmp(ns, "0") != 0);
	return 0;
}

int launch_make_dir(struct launch *L, char *err, size_t errn)
{
	char id[12];
	cli_new_id(id);
	snprintf(L->id, sizeof(L->id), "%s", id);
	int r = control_dir(L->id, L->dir, sizeof(L->dir));
	if (r == 0)
		r = mkdir_p(L->dir, 0700);
	if (r < 0)
		snprintf(err, errn, "cannot create the sandbox directory %s: %s", L->dir,
			 strerror(-r));
	return r;
}

void launch_config(struct launch *L, struct sandbox_config *sc)
{
	sc->id = L->id;
	sc->state_dir = L->dir;
	sc->kernel = L->kernel;
	sc->initrd = L->initrd;
	sc->disk = L->disk;
	sc->arch = L->arch;
	sc->accel = L->accel;
	sc->boot_timeout_ms = L->boot_timeout_s * 1000;
	sc->template_path = NULL;
	if (L->snapshots) {
		struct vmm_config vc;
		sandbox_vmm_config(sc, &vc);
		if (snapshot_template_path(&vc, L->template_path, sizeof(L->template_path)) == 0)
			sc->template_path = L->template_path;
	}
}

static void launch_on_booted(struct sandbox *sb, int r, const char *why, void *opaque);

static int launch_try(struct launch *L, char *err, size_t errn)
{
	L->booting = sandbox_boot(L->sc, L->loop, launch_on_booted, L, err, errn);
	return L->booting ? 0 : -EIO;
}

static void launch_on_booted(struct sandbox *sb, int r, const char *why, void *opaque)
{
	struct launch *L = opaque;
	struct sandbox_config *sc = L->sc;
	char err[700] = "";
	L->booting = NULL;
	if (r == -ESTALE && sc->template_path) {
		/* A template from another QEMU, corrupt or truncated: drop it, boot cold, say so.
		 */
		warn("the saved snapshot could not be restored (%s); booting cold", why);
		snapshot_drop(sc->template_path);
		r = launch_try(L, err, sizeof(err));
		why = err;
		if (r == 0)
			return;
	} else if (r == -ETIMEDOUT && sc->accel == ACCEL_KVM && !strcmp(L->accel_want, "auto")) {
		/*
		 * Some hypervisors offer a /dev/kvm that looks usable but silently hangs a normal
		 * guest kernel. "auto" must never hang: fall back to TCG once, and say so.
		 */
		warn("KVM did not boot the guest within %u s; retrying with TCG (--accel tcg skips "
		     "this)",
		     L->boot_timeout_s);
		sc->accel = L->accel = ACCEL_TCG;
		sc->boot_timeout_ms = 30000;
		r = launch_try(L, err, sizeof(err));
		why = err;
		if (r == 0)
			return;
	}
	L->booted(sb, r, why, L->booted_opaque);
}

int launch_boot(struct launch *L, struct sandbox_config *sc, struct loop *l,
		sandbox_booted_fn booted, void *opaque, char *err, size_t errn)
{
	L->sc = sc;
	L->loop = l;
	L->booted = booted;
	L->booted_opaque = opaque;
	return launch_try(L, err, errn);
}

void launch_cancel(struct launch *L, const char *why)
{
	if (L->booting)
		sandbox_boot_cancel(L->booting, why);
}
