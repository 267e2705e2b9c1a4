/* SPDX-License-Identifier: MIT */
/*
 * The jail the VMM runs in, and the one the supervisor puts itself in.
 *
 * QEMU (jail_spawn): its own user namespace (as an unprivileged caller it keeps our uid, seen
 * as root inside with no capability left; as root it is mapped to an unprivileged identity,
 * JAIL_UID), its own mount namespace (a read-only tmpfs root holding /usr read-only, the
 * loader's cache, /dev/null, /dev/zero, /dev/urandom, /dev/random, /dev/kvm with KVM, its own
 * /proc, and nothing else: every disk, the kernel, the initramfs, the RAM file and every socket
 * arrive as file descriptors, those it only reads through read-only mounts), its own network (no
 * interface), PID, IPC, UTS and cgroup namespaces, rlimits, no_new_privs, and -- where cgroup v2
 * delegation allows -- a cgroup of its own with memory, pids and cpu limits. MATCHLOCK_NO_JAIL=1
 * turns it off (diagnose says so).
 *
 * The supervisor (jail_supervisor_seal): not dumpable, and a seccomp allow-list of what the
 * event loop does once a sandbox runs.
 */
#ifndef MATCHLOCK_JAIL_H
#define MATCHLOCK_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define JAIL_UID 65534 /* nobody: QEMU's identity when we are root */
#define JAIL_NPROC 512 /* QEMU's threads: vCPUs, the I/O thread pool (64), RCU, main */
#define JAIL_NOFILE 1024
#define JAIL_AS_EXTRA_MB 8192 /* address space beyond guest RAM: TCG's code buffer, stacks */
#define JAIL_MEM_EXTRA_MB 512 /* cgroup memory beyond guest RAM: QEMU itself, page cache */
#define JAIL_PIDS_MAX 512

struct jail_config {
	const char *exe; /* the VMM binary, an absolute path (bound in when outside /usr) */
	bool kvm; /* bind /dev/kvm, and as root map QEMU's group to /dev/kvm's */
	unsigned memory_mb, cpus; /* for the limits */
	const char *name; /* the sandbox ID: its cgroup is matchlock-NAME; NULL for none */
	/*
	 * Our descriptors of files QEMU only reads (kernel, initramfs, disks' read-only ends):
	 * in the jail each becomes the same file through a read-only bind mount, so a QEMU taken
	 * over by its guest cannot reopen it for writing (/proc/self/fd/N) -- a normal user's QEMU
	 * owns those files. A memfd (a private copy) stays as it is. At most JAIL_MAX_RO_FDS.
	 */
	const int *ro_fds;
	unsigned nro_fds;
};
#define JAIL_MAX_RO_FDS 24

/* The jail is on unless MATCHLOCK_NO_JAIL is set (to anything but 0). */
bool jail_enabled(void);
/*
 * Start a child in the jail and call run(arg, errfd) in it once the jail stands; run() must
 * exec or _exit, and may write a one-line reason to errfd (close-on-exec) first. Returns the
 * child's PID once it has exec'd, or -errno with err (the reason the child gave, if any).
 * Without user namespaces and as a normal user the child runs unjailed (warned once).
 */
pid_t jail_spawn(const struct jail_config *jc, void (*run)(void *arg, int errfd), void *arg,
		 char *err, size_t errn);
/*
 * Let the jailed VMM open fd's file again by /proc/self/fd/N (QEMU's RAM backend has no fd
 * option): as root, where QEMU is JAIL_UID, a regular file becomes JAIL_UID's (a template's
 * RAM lives in our 0700 cache, which nobody else can walk into). No-op otherwise.
 */
int jail_share_file(int fd);
/*
 * A file QEMU reopens read-only by /proc/self/fd/N (the kernel, the initramfs): as root, where
 * QEMU is JAIL_UID, one that only root may read (a umask of 077) is copied into a memfd, which
 * anyone holding it may open. Takes fd; returns it, the copy (fd closed), or -errno.
 */
int jail_readable_fd(int fd);
/* Remove the cgroup of the sandbox NAME (after its VMM has exited); no-op when it has none. */
void jail_cgroup_remove(const char *name);

/* For `matchlock diagnose`: what the jail can use on this host. */
struct jail_probe {
	bool enabled; /* MATCHLOCK_NO_JAIL unset */
	bool namespaces; /* a jailed child could be started here (user, mount, pid, net, ipc) */
	bool cgroup; /* cgroup v2 memory, pids and cpu are delegated to us */
	bool seccomp; /* the kernel filters system calls (seccomp filter mode) */
	char ns_detail[200], cgroup_detail[4200], seccomp_detail[120];
};
void jail_probe(struct jail_probe *p);

/*
 * The supervisor's own jail, once its sandbox runs, for a process that starts no process any
 * more (`run`, `run -d`): not dumpable (no ptrace, no /proc/PID/mem by our own uid; main() set
 * it already) and the seccomp allow-list (jail_seccomp.c). A call outside it writes a line to
 * stderr and to DIR/log and ends the process with SIGSYS; MATCHLOCK_SECCOMP=log fails the call
 * with EPERM instead, =off loads no filter. Returns 0 or -errno (nothing was loaded).
 */
int jail_supervisor_seal(const char *dir);
/*
 * A supervisor that still starts processes (`rpc`: VMs, image workers) cannot have the
 * allow-list; it gets a deny-list of what neither it, the jail's set-up, QEMU nor a worker ever
 * calls (ptrace, process_vm_*, BPF, perf, userfaultfd, keys, modules, kexec, setns, unshare, the
 * new mount API, handles, clocks, reboot...), with the same SIGSYS line and MATCHLOCK_SECCOMP.
 * Inherited by every child. Returns 0 or -errno.
 */
int jail_spawner_seal(void);
/*
 * Started by root: keep only the capabilities a supervisor still needs at STAGE (the table in
 * jail_seccomp.c); gone for good at launch: admin, ptrace, modules, raw sockets, mknod, file
 * capabilities and the rest; once sealed, also QEMU's identity and signals, and the file powers
 * unless it serves host folders. Not a change of identity: the supervisor serves root's files
 * and host folders as root. CAP_KILL stays unless VMM (QEMU's pid) runs in a user namespace
 * we made (root owns it, so signals reach it without the capability): with the jail off, or
 * on a host without user namespaces, it does not. No-op for a normal user. Returns 0 or -errno.
 */
enum jail_caps {
	JAIL_CAPS_LAUNCH, /* its disk is made, QEMU not started yet */
	JAIL_CAPS_SEALED_FOLDERS, /* about to be sealed, serving host folders */
	JAIL_CAPS_SEALED, /* about to be sealed, no host folder */
};
int jail_supervisor_drop_caps(enum jail_caps stage, pid_t vmm);

#endif
