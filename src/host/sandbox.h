/* SPDX-License-Identifier: MIT */
/*
 * The supervisor side of one sandbox: owns the VMM child, the link (mux) and the console log, on
 * an event loop the caller provides (so the caller can serve its own fds: a terminal, a control
 * socket, JSON-RPC on stdio). sandbox_boot() reports when the agent is ready; any number of
 * processes then run through sandbox_exec_start(); sandbox_stop() powers the VM off. Boot and
 * stop end with callbacks from the loop: nothing here runs the loop itself.
 */
#ifndef MATCHLOCK_SANDBOX_H
#define MATCHLOCK_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "accel.h"
#include "common/loop.h"
#include "net/egress.h"
#include "net/policy.h"
#include "net/secrets.h"
#include "proto/exec_req.h"

struct sandbox;
struct sandbox_exec;

/* How the guest sees a host folder (the spelling is the CLI's and the RPC's). */
enum sandbox_mount_mode {
	MOUNT_OVERLAY, /* the default: copy-on-write in the guest, the host folder unchanged */
	MOUNT_RW, /* writes go through to the host folder */
	MOUNT_RO, /* writes fail with EROFS */
	MOUNT_MODE_END
};
extern const char *const sandbox_mount_mode_names[MOUNT_MODE_END]; /* "overlay", "rw", "ro" */
/* The mode named s, or -EINVAL. */
int sandbox_mount_mode_parse(const char *s);

#define SANDBOX_MAX_MOUNTS 16 /* host folders per sandbox */

struct sandbox_mount {
	const char *host; /* an absolute path to a directory */
	const char *guest; /* absolute and normalised */
	enum sandbox_mount_mode mode;
};

#define SANDBOX_MAX_VOLUMES 8 /* named volumes per sandbox (a virtio-blk device each) */

/* A named volume attached to the sandbox (disk.h); the caller holds its lock. */
struct sandbox_volume {
	const char *name;
	const char *path; /* its disk file */
	const char *guest; /* absolute and normalised */
	long long size_mb;
	bool ro;
};

/* A file operation a hook rule blocked, or an "after" rule reports (fs/fhooks.h). */
struct sandbox_file_event {
	const char *op, *path, *path2; /* guest paths; path2: a rename's target, else NULL */
	const char *rule;
	bool blocked;
	const char *reason; /* blocked: why */
	int result; /* 0 or -errno: what the guest got */
};

struct hooks;
struct fhooks;

struct sandbox_config {
	const char *id;
	const char *state_dir; /* per-sandbox directory (0700) holding the log */
	const char *kernel, *initrd, *disk;
	enum guest_arch arch;
	enum accel accel;
	unsigned cpus, memory_mb;
	unsigned cpu_milli; /* a CPU quota in thousandths when --cpus is fractional, else 0 */
	const char *hostname;
	unsigned boot_timeout_ms;
	/*
	 * A snapshot of this machine booted and idle: restored if it exists, else written by this
	 * boot for the next ones. NULL: always boot cold.
	 */
	const char *template_path;
	/*
	 * Egress policy (the caller's; it may change while the sandbox runs, e.g. allow-list
	 * add/delete). NULL: an empty allow-list, nothing is reachable.
	 */
	struct policy *policy;
	net_event_fn net_event; /* every network decision, may be NULL */
	void *net_opaque;
	/*
	 * Secrets (the caller's, may be NULL; must outlive the sandbox): every exec's environment
	 * gets NAME=placeholder, and the TLS proxy swaps placeholders for values in flight. The
	 * caller also adds their hosts to the policy (secrets_allow_hosts).
	 */
	const struct secrets *secrets;
	/* Extra CA files (PEM) the proxy trusts upstream, NULL-terminated; may be NULL. */
	char *const *upstream_ca;
	/*
	 * Host folders (the caller's, checked by sandbox_spec_check; must outlive the sandbox):
	 * each is opened at boot and served to the guest by the file service (sandbox_fs.c).
	 */
	const struct sandbox_mount *mounts;
	unsigned nmounts;
	/*
	 * The writable disk (a fresh empty ext4 file, disk.h; the caller makes and removes it)
	 * that holds everything the guest writes, and its size. Required.
	 */
	const char *scratch;
	long long scratch_mb;
	const struct sandbox_volume *volumes; /* the caller's, mounted after the root */
	unsigned nvolumes;
	/*
	 * Hook rules (the caller's, may be NULL, may change while the sandbox runs; their asker
	 * carries callbacks): network rules go to the TLS proxy, file rules to the file service,
	 * whose events go to file_event (with net_opaque).
	 */
	struct hooks *hooks;
	struct fhooks *fhooks;
	void (*file_event)(const struct sandbox_file_event *ev, void *opaque);
};

struct vmm_config;
/* The machine part of a vmm_config (what a template's identity covers) from c. */
void sandbox_vmm_config(const struct sandbox_config *c, struct vmm_config *vc);

/* Phase timestamps (monotonic ns on the host; guest values are guest CLOCK_BOOTTIME). */
struct sandbox_times {
	uint64_t spawn, hello, ready, stopped;
	uint64_t guest_agent_start, guest_hello;
	bool restored; /* started from a template (no hello: the guest was already up) */
	uint64_t snapshot_ms; /* time spent saving a template, if this boot made one */
};

/*
 * Start booting. Returns the sandbox, or NULL with a one-line reason in err (nothing was
 * started). booted() follows once, from the loop: r == 0 with sb when the agent is ready; else
 * sb is NULL (the VM is gone, nothing is left running), why is a one-line reason and r is
 * -ETIMEDOUT (the guest never answered), -ECANCELED (sandbox_boot_cancel), -ESTALE (restoring
 * the template failed: the caller may delete it and boot cold), -EINVAL (the guest could not
 * apply its config: a host folder could not be mounted) or -EIO.
 */
typedef void (*sandbox_booted_fn)(struct sandbox *sb, int r, const char *why, void *opaque);
struct sandbox *sandbox_boot(const struct sandbox_config *c, struct loop *l,
			     sandbox_booted_fn booted, void *opaque, char *err, size_t errn);
/* Abandon a boot in progress; booted() follows with -ECANCELED and why. */
void sandbox_boot_cancel(struct sandbox *sb, const char *why);
/*
 * Power a booted sandbox off: the guest gets a bounded grace, then QEMU is killed. stopped()
 * (may be NULL) follows from the loop with the phase times; sb is gone then. A second call does
 * nothing.
 */
typedef void (*sandbox_stopped_fn)(const struct sandbox_times *t, void *opaque);
/* The guest's grace in sandbox_stop before QEMU is killed. */
#define SANDBOX_STOP_GRACE_MS 2000
void sandbox_stop(struct sandbox *sb, sandbox_stopped_fn stopped, void *opaque);
/* Kill and free at once, without grace (a process exiting); the times go to *times if given. */
void sandbox_kill(struct sandbox *sb, struct sandbox_times *times);
/* Non-NULL once the sandbox has failed (QEMU died, the guest broke the protocol): the reason. */
const char *sandbox_failure(const struct sandbox *sb);
const struct sandbox_config *sandbox_config(const struct sandbox *sb);
/* QEMU's process id (this process's child, or an adopted standby's). */
pid_t sandbox_vmm_pid(const struct sandbox *sb);
/* Append bytes to the sandbox's log (capped and rotated; log.h). */
void sandbox_log_write(struct sandbox *sb, const void *p, size_t n);

/*
 * A running VM without its supervisor: what one process hands another (a pool's standby to the
 * sandbox that claims it, pool.h). The fds are the supervisor's near ends of QEMU's sockets;
 * next_id and peer_last_id carry the link's stream numbering on (the guest refuses an id twice).
 */
struct sandbox_vm {
	pid_t qemu_pid;
	int link, con, qerr, qmp, pidfd, fs;
	uint32_t next_id, peer_last_id;
};
#define SANDBOX_VM_FDS 6

/*
 * Take the VM out of a ready, idle sandbox (no process, nothing queued on the link): its fds go
 * to vm and sb keeps none (a later sandbox_kill frees sb and leaves the VM running). -EBUSY when
 * it is not ready and idle.
 */
int sandbox_release_vm(struct sandbox *sb, struct sandbox_vm *vm);
/* QEMU's pidfd (readable once it exited), or -1. */
int sandbox_pidfd(const struct sandbox *sb);
/* Close a released VM's fds (it ends when its holder sees the lease close). */
void sandbox_vm_close(struct sandbox_vm *vm);
/*
 * Adopt a VM another process released (its fds are taken over, closed on failure too): the
 * identity of c is pushed as after a restore, and booted() follows as for sandbox_boot. The VM
 * is not our child: lease_fd (taken over) is held as long as sb lives; its holder kills QEMU
 * when it closes.
 */
struct sandbox *sandbox_adopt(const struct sandbox_config *c, struct loop *l, struct sandbox_vm *vm,
			      int lease_fd, sandbox_booted_fn booted, void *opaque, char *err,
			      size_t errn);

/* ---- processes ---- */

enum { EXEC_STDOUT = 1, EXEC_STDERR = 2 };

struct exec_ops {
	/*
	 * Output (chan EXEC_STDOUT or EXEC_STDERR). The callee owns delivery and must call
	 * sandbox_exec_consumed() once it has got rid of the bytes: that returns flow-control
	 * credit, so a slow consumer throttles only this process.
	 */
	void (*output)(struct sandbox_exec *x, int chan, const uint8_t *p, size_t n);
	/* Room to write stdin again after sandbox_exec_write() accepted less than offered. */
	void (*writable)(struct sandbox_exec *x);
	/*
	 * The end. status >= 0: shell-style (code, 128+signal, 124 timeout, 126/127 could not
	 * run, with err saying why); status < 0: the sandbox failed (err). x is freed afterwards.
	 */
	void (*done)(struct sandbox_exec *x, int status, const char *err);
};

struct sandbox_exec *sandbox_exec_start(struct sandbox *sb, const struct exec_request *req,
					const struct exec_ops *ops, void *opaque, char *err,
					size_t errn);
/*
 * File transfers ride the same machinery. op is SVC_FILE_WRITE (feed content with
 * sandbox_exec_write, finish with sandbox_exec_close_stdin), SVC_FILE_READ (content arrives on
 * output) or SVC_FILE_LIST (output carries records: u32 length + TLVs T_NAME, T_SIZE, T_MODE,
 * T_TIME_NS). Trees likewise (proto/tree.h): SVC_TREE_PACK (the tree stream arrives on output)
 * and SVC_TREE_UNPACK (feed the stream like a write). done() gets status 0, or -errno with err
 * saying why.
 */
struct file_request {
	uint16_t op; /* SVC_FILE_WRITE, SVC_FILE_READ, SVC_FILE_LIST, SVC_TREE_PACK/UNPACK */
	const char *path;
	uint32_t mode; /* write: permission bits */
	bool append; /* write: append instead of truncating */
	uint64_t offset, length; /* read: a window of the file (length 0 = to the end) */
	const char *name; /* tree unpack: the source's last name */
	uint32_t flags; /* trees: proto/tree.h flags */
	uint32_t share; /* tree pack with TREE_UPPER: the overlay mount's index */
};
struct sandbox_exec *sandbox_file_start(struct sandbox *sb, const struct file_request *fr,
					const struct exec_ops *ops, void *opaque, char *err,
					size_t errn);
/*
 * A connection to port on the guest's loopback (port forwarding): bytes written go to it,
 * output() carries what it sends back; done() gets 0, or -errno (e.g. -ECONNREFUSED).
 */
struct sandbox_exec *sandbox_port_start(struct sandbox *sb, uint16_t port,
					const struct exec_ops *ops, void *opaque, char *err,
					size_t errn);
void *sandbox_exec_opaque(struct sandbox_exec *x);
/* Queue stdin bytes; returns how many were accepted (limited by flow control). */
size_t sandbox_exec_write(struct sandbox_exec *x, const void *p, size_t n);
void sandbox_exec_close_stdin(struct sandbox_exec *x);
void sandbox_exec_consumed(struct sandbox_exec *x, size_t n);
void sandbox_exec_signal(struct sandbox_exec *x, int sig);
void sandbox_exec_resize(struct sandbox_exec *x, uint16_t rows, uint16_t cols);
/* SIGTERM now, SIGKILL after grace_ms. */
void sandbox_exec_cancel(struct sandbox_exec *x, unsigned grace_ms);

#endif
