/* SPDX-License-Identifier: MIT */
/*
 * Templates: a booted, idle guest saved once (QEMU migration to a file) so later sandboxes of the
 * same machine start by restoring it instead of booting. A template is keyed by everything that
 * must match for a restore to be valid: the QEMU binary, the kernel and initramfs, the root disk
 * (content-addressed), memory, vCPUs, accelerator and the kernel command line. It never holds
 * anything of a particular sandbox: the snapshot is taken before the sandbox's identity
 * (hostname, entropy, clock, secrets) is pushed to the guest.
 *
 * One file: the guest's RAM (memory_mb MiB, sparse: zero pages are holes), then QEMU's
 * migration stream of everything else, saved with x-ignore-shared so it leaves the RAM out. A
 * restore copies the template's data pages into memory of the sandbox's own, which QEMU maps
 * as the guest's RAM (vmm.h, ram_fd): its time grows with what the idle guest had written
 * (~22 MB), not with the guest's memory size, and no QEMU ever holds the template itself.
 */
#ifndef MATCHLOCK_SNAPSHOT_H
#define MATCHLOCK_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>

#include "qmp.h"
#include "vmm.h"

/* Where the template for this machine lives (it may not exist yet). */
int snapshot_template_path(const struct vmm_config *vc, char *out, size_t n);
/*
 * Pause the guest, save it to path (through a temporary file, renamed when complete) and resume
 * it. Its RAM is ram_fd, a file QEMU maps shared (vmm.h). Runs QMP over qmp_fd; bounded in
 * time. Returns 0 or -errno with a reason in err. scratch (may be NULL): the guest's writable
 * disk, copied while the guest is paused to snapshot_scratch_path(path) -- before path appears,
 * so a template never exists without the disk its memory belongs with; -EEXIST when another
 * start is saving the same template.
 */
int snapshot_save(int qmp_fd, const char *path, int ram_fd, unsigned memory_mb, const char *scratch,
		  char *err, size_t errn);
/* Where a template's writable disk is kept (next to it); -ENAMETOOLONG. */
int snapshot_scratch_path(const char *path, char *out, size_t n);
/*
 * The template at path is usable: it and its writable disk exist. A start that finds only the
 * template drops it (snapshot_drop) and boots cold.
 */
bool snapshot_usable(const char *path);
/* The migration stream after a template's RAM is QEMU's device state: a few hundred KB. */
#define SNAPSHOT_MAX_STREAM (64 << 20)
/*
 * A restore's copy of the template at path, private to one QEMU (a memfd holding the
 * template's data pages; ~15 ms for the 22 MB of a 512 MB guest): *fd is both the guest's RAM
 * and, at its offset, the stream. Returns 0; -ENOENT if there is none; -ENOMEM/-ENOSPC when
 * memory is short; -ESTALE with err if it cannot be one (then snapshot_drop it).
 */
int snapshot_open(const char *path, unsigned memory_mb, int *fd, char *err, size_t errn);
/* Remove a template that could not be restored, with its writable disk. */
void snapshot_drop(const char *path);
/*
 * A QEMU started with -incoming waits for the migration capabilities and migrate-incoming, loads
 * the snapshot, then sits paused; resuming it is a short QMP conversation that must not block
 * the caller's loop: QEMU answers its monitor only once the load is done, and under load that
 * takes seconds. Start with a zeroed struct, call snapshot_resume_step() whenever the monitor
 * (set non-blocking) is readable. It returns 1 when the guest runs; 0 to wait for readability
 * again; SNAPSHOT_ASK_AGAIN when QEMU is still loading (call snapshot_resume_ask() after a
 * moment, then wait for readability); or -EIO with a reason in err (a corrupt or foreign
 * snapshot makes QEMU exit: a closed monitor).
 */
#define SNAPSHOT_ASK_AGAIN 2
struct snapshot_resume {
	enum { RS_GREETING, RS_CAPS, RS_MIGRATE_CAPS, RS_INCOMING, RS_STATUS, RS_CONT } step;
	struct qmp_rx rx;
};
int snapshot_resume_step(struct snapshot_resume *rs, int qmp_fd, char *err, size_t errn);
int snapshot_resume_ask(struct snapshot_resume *rs, int qmp_fd);
void snapshot_resume_fini(struct snapshot_resume *rs);
/* Remember which root disk a template belongs to (for snapshot_gc). */
int snapshot_note_disk(const char *path, const char *disk);
/* Remove templates whose root disk no longer exists; returns how many were removed. */
int snapshot_gc(void);

#endif
