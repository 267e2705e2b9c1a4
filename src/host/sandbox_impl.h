/* SPDX-License-Identifier: MIT */
/* Private to sandbox.c and sandbox_exec.c. */
#ifndef MATCHLOCK_SANDBOX_IMPL_H
#define MATCHLOCK_SANDBOX_IMPL_H

#include <stdarg.h>
#include <sys/types.h>

#include "proto/mux.h"
#include "sandbox.h"
#include "snapshot.h"

#define CONSOLE_TAIL 4096
#define QEMU_ERR_MAX 1024

enum sb_state { SB_BOOTING, SB_LOADING, SB_CONFIGURING, SB_READY, SB_STOPPING, SB_FAILED };

struct sandbox_exec {
	struct sandbox *sb;
	struct mux_stream *s; /* NULL once the guest closed the stream */
	const struct exec_ops *ops;
	void *opaque;
	bool have_exit, have_error, timed_out, finished;
	bool is_file; /* a file transfer: done() gets 0 or -errno */
	int status;
	uint32_t err_errno, err_stage;
	char err_msg[256];
	char argv0[128];
	struct timer deadline; /* --timeout */
	struct timer kill_timer; /* SIGKILL after SIGTERM */
	struct timer give_up; /* the guest never reported the exit after SIGKILL */
	struct sandbox_exec *next;
};

struct sandbox {
	struct sandbox_config cfg;
	struct loop *loop;
	struct watch link_w, con_w, qerr_w, pid_w;
	struct watch qmp_w; /* QEMU's monitor: resuming a template, saving one; watched only
			       while resuming */
	pid_t qemu_pid;
	bool qemu_exited;
	bool adopted; /* QEMU is not our child (sandbox_adopt): no status when it exits */
	int lease_fd; /* adopted: held while we live (the holder kills QEMU at its close), or -1 */
	int qemu_status;
	struct mux mux;
	struct timer trim_timer; /* armed while the guest floods the link: trim memory after */
	uint64_t link_rx, link_rx_mark; /* bytes read from the link; at the last trim check */
	enum sb_state state;
	char fail[300];
	char con_tail[CONSOLE_TAIL];
	size_t con_len;
	char qerr[QEMU_ERR_MAX];
	size_t qerr_len;
	struct sandbox_exec *execs;
	struct egress *egress; /* guest-opened streams (even ids) and DNS */
	struct mitm *mitm; /* the sandbox CA and TLS interception; NULL with --no-network */
	struct sandbox_times t;
	bool config_refused; /* the guest answered CTL_CONFIG with CTL_ERROR (a mount failed) */
	struct sb_fs *fs; /* host folders: shares and their streams (sandbox_fs.c); may be NULL */
	struct log_file *log; /* <state_dir>/log: the console, QEMU's messages, ours */
	/* The boot in progress (until booted() is called; sandbox.c explains the states). */
	sandbox_booted_fn booted;
	void *booted_opaque;
	uint64_t deadline;
	struct timer boot_timer; /* the deadline, and how the end is reported */
	struct timer resume_timer; /* ask a QEMU still loading the template again */
	struct snapshot_resume resume;
	int ram_fd; /* the guest's RAM while a first boot may save it as the template, or -1 */
	int fail_errno; /* how the boot failed: EIO, ETIMEDOUT, ESTALE, ECANCELED, EINVAL */
	/* The stop in progress. */
	sandbox_stopped_fn stopped;
	void *stopped_opaque;
	uint64_t stop_by; /* SIGKILL after this */
	struct timer stop_timer;
};

void sb_fail(struct sandbox *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Queue a CTL frame whose payload (u16 type + TLVs) is in b. */
void sb_send_ctl(struct sandbox *sb, uint32_t stream, struct buf *b);
void sb_flush_link(struct sandbox *sb);
/*
 * Read what the guest wrote on a link's socket into its mux: at most 16 reads of 64 KiB per
 * call (the loop's other fds get their turn), none while the mux holds the guest's frames back
 * (mux_rx_paused). Counts the bytes into *bytes if given. Returns 0; 1 when QEMU closed its
 * end (stop watching); or mux_feed's -errno (the guest broke the protocol or flooded).
 */
int sb_link_read(struct sandbox *sb, int fd, struct mux *m, uint64_t *bytes);

/*
 * sandbox_fs.c: host folders, served on a link of their own. sbfs_open before the VM (shares
 * and the link: -errno with err), the VMM gets sbfs_vmm_fd, sbfs_start once it is spawned.
 */
int sbfs_open(struct sandbox *sb, char *err, size_t errn);
int sbfs_vmm_fd(const struct sandbox *sb);
void sbfs_start(struct sandbox *sb);
/* CTL_CONFIG's T_MOUNT entries. */
int sbfs_put_config(const struct sandbox *sb, struct buf *b);
void sbfs_free(struct sandbox *sb);
/* The file-service link's fd, taken out of sb (sandbox_release_vm), or -1. */
int sbfs_take_fd(struct sandbox *sb);
/* Serve the file service on fd (an adopted VM's) instead of the pair sbfs_open made. */
void sbfs_adopt(struct sandbox *sb, int fd);

/* sandbox_exec.c */
int exec_on_frame(struct sandbox *sb, struct mux_stream *s, const struct mux_frame *f);
/* The sandbox failed: finish every process with the reason. */
void exec_fail_all(struct sandbox *sb);

#endif
