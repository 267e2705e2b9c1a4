/* SPDX-License-Identifier: MIT */
/*
 * The supervisor's seccomp allow-list (jail.h). What is on it is what the event loop does once
 * a sandbox runs: the link, the console and QMP sockets, the egress engine (sockets to the
 * world, DNS on a resolver thread), the file service (openat2 under a share, every file
 * operation FUSE asks for), the control socket (fds passed both ways), the state database
 * (SQLite: pread/pwrite, fcntl locks, fsync, mmap of its -shm), the template's save (copy,
 * rename), QEMU's end (pidfd, kill, wait) and the sandbox's removal. What is not: starting a
 * program or a process (execve, fork; threads only), ptrace and process_vm_*, mounts and
 * namespaces, keys, BPF, perf, module and reboot calls, raw and packet sockets, and every call
 * glibc never makes for us.
 */
#define _GNU_SOURCE
#include "jail.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <ucontext.h>
#include <unistd.h>

#include "common/log.h"

static const char *const allowed[] = {
	/* descriptors and plain I/O */
	"read",
	"write",
	"readv",
	"writev",
	"pread64",
	"pwrite64",
	"preadv",
	"pwritev",
	"preadv2",
	"pwritev2",
	"lseek",
	"close",
	"close_range",
	"dup",
	"dup2",
	"dup3",
	"fcntl",
	"pipe",
	"pipe2",
	"splice",
	"tee",
	"sendfile",
	"copy_file_range",
	/* files: the state directory, the database, templates, the file service */
	"open",
	"openat",
	"openat2",
	"creat",
	"stat",
	"fstat",
	"lstat",
	"newfstatat",
	"statx",
	"statfs",
	"fstatfs",
	"access",
	"faccessat",
	"faccessat2",
	"readlink",
	"readlinkat",
	"getdents64",
	"mkdir",
	"mkdirat",
	"rmdir",
	"unlink",
	"unlinkat",
	"rename",
	"renameat",
	"renameat2",
	"link",
	"linkat",
	"symlink",
	"symlinkat",
	"chmod",
	"fchmod",
	"fchmodat",
	"fchmodat2",
	"chown",
	"fchown",
	"fchownat",
	"lchown",
	"utimensat",
	"truncate",
	"ftruncate",
	"fallocate",
	"fsync",
	"syncfs",
	"fadvise64",
	"fdatasync",
	"sync_file_range",
	"flock",
	"mknod",
	"mknodat",
	"getxattr",
	"lgetxattr",
	"fgetxattr",
	"setxattr",
	"lsetxattr",
	"fsetxattr",
	"listxattr",
	"llistxattr",
	"flistxattr",
	"removexattr",
	"lremovexattr",
	"fremovexattr",
	"getcwd",
	"chdir",
	"fchdir",
	"umask",
	"memfd_create",
	/* memory */
	"mmap",
	"munmap",
	"mremap",
	"mprotect",
	"brk",
	"madvise",
	"msync",
	"mincore",
	/* the loop */
	"epoll_create1",
	"epoll_ctl",
	"epoll_wait",
	"epoll_pwait",
	"epoll_pwait2",
	"poll",
	"ppoll",
	"select",
	"pselect6",
	"eventfd2",
	"timerfd_create",
	"timerfd_settime",
	"timerfd_gettime",
	"signalfd4",
	/* signals, QEMU's end */
	"rt_sigaction",
	"rt_sigprocmask",
	"rt_sigreturn",
	"rt_sigtimedwait",
	"sigaltstack",
	"kill",
	"tgkill",
	"tkill",
	"pidfd_send_signal",
	"pidfd_open",
	"wait4",
	"waitid",
	"restart_syscall",
	/* who and what we are, clocks, entropy */
	"exit",
	"exit_group",
	"getpid",
	"gettid",
	"getppid",
	"getuid",
	"geteuid",
	"getgid",
	"getegid",
	"getresuid",
	"getresgid",
	"getgroups",
	"getpgrp",
	"getpgid",
	"getsid",
	"getrlimit",
	"prlimit64",
	"getrusage",
	"times",
	"sched_yield",
	"sched_getaffinity",
	"uname",
	"sysinfo",
	"getcpu",
	"clock_gettime",
	"clock_getres",
	"clock_nanosleep",
	"nanosleep",
	"gettimeofday",
	"time",
	"getrandom",
	/* threads (the resolver's): futexes and their bookkeeping; clone is filtered below */
	"futex",
	"set_robust_list",
	"get_robust_list",
	"rseq",
	"set_tid_address",
	"munlock",
	/* sockets: the domains are filtered below */
	"socketpair",
	"connect",
	"bind",
	"listen",
	"accept",
	"accept4",
	"getsockname",
	"getpeername",
	"setsockopt",
	"getsockopt",
	"sendto",
	"recvfrom",
	"sendmsg",
	"recvmsg",
	"sendmmsg",
	"recvmmsg",
	"shutdown",
};

/* Terminal (exec -t), socket and file-clone requests; nothing else goes through ioctl. */
static const unsigned long ioctls[] = {
	TCGETS,	 TCSETS,  TCSETSW,  TCSETSF, TIOCGWINSZ, TIOCSWINSZ, TIOCGPGRP,	     FIONREAD,
	FIONBIO, FIOCLEX, FIONCLEX, FICLONE, TIOCOUTQ,	 FIOASYNC,   FS_IOC_GETFLAGS
};

static const int domains[] = { AF_UNIX, AF_INET, AF_INET6, AF_NETLINK };

static bool seccomp_log_only; /* MATCHLOCK_SECCOMP=log: report, fail the call with EPERM */
static int seccomp_log_fd = -1; /* the sandbox's log, for the line saying why we stop */

/*
 * A call outside the list: one line (in the sandbox's log too), then the process ends with
 * SIGSYS -- or, in log mode, the call fails with EPERM and we go on. Only async-signal-safe
 * calls here: the call that trapped may have been made holding malloc's lock.
 */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	char line[200];
	int n = snprintf(
	    line, sizeof(line),
	    "matchlock: supervisor: system call %d is not allowed by its seccomp filter%s\n",
	    si->si_syscall,
	    seccomp_log_only ? " (MATCHLOCK_SECCOMP=log: failing it with EPERM)"
			     : "; stopping (MATCHLOCK_SECCOMP=log reports instead)");
	if (n > 0) {
		ssize_t k = write(STDERR_FILENO, line, (size_t)n);
		if (seccomp_log_fd >= 0)
			k = write(seccomp_log_fd, line, (size_t)n);
		(void)k;
	}
#if defined(__x86_64__)
	if (seccomp_log_only) {
		((ucontext_t *)uc)->uc_mcontext.gregs[REG_RAX] = -EPERM;
		return;
	}
#else
	(void)uc;
#endif
	signal(sig, SIG_DFL);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, sig);
	sigprocmask(SIG_UNBLOCK, &s, NULL);
	raise(sig);
	_exit(128 + sig);
}

/* libseccomp returns -errno; a name this architecture lacks is skipped. */
static int allow(scmp_filter_ctx ctx, const char *name, unsigned n, const struct scmp_arg_cmp *a)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR)
		return 0;
	return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, n, a);
}

static int seal_rules(scmp_filter_ctx ctx)
{
	int r = 0;
	for (size_t i = 0; r == 0 && i < sizeof(allowed) / sizeof(allowed[0]); i++)
		r = allow(ctx, allowed[i], 0, NULL);
	for (size_t i = 0; r == 0 && i < sizeof(ioctls) / sizeof(ioctls[0]); i++) {
		struct scmp_arg_cmp a = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, ioctls[i]);
		r = allow(ctx, "ioctl", 1, &a);
	}
	for (size_t i = 0; r == 0 && i < sizeof(domains) / sizeof(domains[0]); i++) {
		struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)domains[i]);
		r = allow(ctx, "socket", 1, &a);
	}
	/* Threads, never processes: clone3's flags are out of a filter's reach, so glibc falls
	 * back to clone, whose flags are not. */
	if (r == 0) {
		struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD);
		r = allow(ctx, "clone", 1, &a);
	}
	if (r == 0 && seccomp_syscall_resolve_name("clone3") != __NR_SCMP_ERROR)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS),
				     seccomp_syscall_resolve_name("clone3"), 0);
	/* prctl: a thread's name only (glibc, OpenSSL); never dumpable again. */
	if (r == 0) {
		struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME);
		r = allow(ctx, "prctl", 1, &a);
	}
	return r;
}

/*
 * For a supervisor that still starts processes (`rpc`: VMs in their jail, image workers that
 * run mke2fs): what none of them, nor QEMU, ever calls. The jail's own calls (clone with
 * namespace flags, mount, pivot_root, sethostname, capset) stay allowed.
 */
static const char *const denied[] = {
	"ptrace",
	"process_vm_readv",
	"process_vm_writev",
	"kcmp",
	"bpf",
	"perf_event_open",
	"userfaultfd",
	"kexec_load",
	"kexec_file_load",
	"init_module",
	"finit_module",
	"delete_module",
	"keyctl",
	"add_key",
	"request_key",
	"reboot",
	"swapon",
	"swapoff",
	"acct",
	"settimeofday",
	"clock_settime",
	"clock_adjtime",
	"adjtimex",
	"open_by_handle_at",
	"name_to_handle_at",
	"iopl",
	"ioperm",
	"quotactl",
	"syslog",
	"uselib",
	"vhangup",
	"setns",
	"unshare",
	"fsopen",
	"fsmount",
	"fsconfig",
	"move_mount",
	"open_tree",
	"fspick",
	"mount_setattr",
	"lookup_dcookie",
	"fanotify_init",
	"move_pages",
	"migrate_pages",
};

static int deny_rules(scmp_filter_ctx ctx)
{
	int r = 0;
	for (size_t i = 0; r == 0 && i < sizeof(denied) / sizeof(denied[0]); i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);
		if (nr != __NR_SCMP_ERROR)
			r = seccomp_rule_add(ctx, SCMP_ACT_TRAP, nr, 0);
	}
	return r;
}

/* Load the allow-list, or the deny-list for a supervisor that spawns; 0 or -errno. */
static int seal(const char *dir, bool spawns)
{
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* main() did; this is the one that must hold */
	const char *mode = getenv("MATCHLOCK_SECCOMP");
	if (mode && !strcmp(mode, "off"))
		return 0;
	seccomp_log_only = mode && !strcmp(mode, "log");
	if (dir) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/log", dir);
		seccomp_log_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	}
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return -errno;
	scmp_filter_ctx ctx = seccomp_init(spawns ? SCMP_ACT_ALLOW : SCMP_ACT_TRAP);
	if (!ctx)
		return -ENOMEM;
	int r = spawns ? deny_rules(ctx) : seal_rules(ctx);
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	if (r == 0)
		debug("supervisor: seccomp %s loaded (%s)", spawns ? "deny-list" : "allow-list",
		      seccomp_log_only ? "log mode" : "a call outside it stops the supervisor");
	return r;
}

int jail_supervisor_seal(const char *dir)
{
	return seal(dir, false);
}

int jail_spawner_seal(void)
{
	return seal(NULL, true);
}

/*
 * What a supervisor started by root still needs of root's powers, by stage (jail.h): once its
 * disk is made, its files and the host folders it serves as root does (DAC and ownership),
 * QEMU's identity in the jail (writing the uid and gid maps), signalling a QEMU outside a user
 * namespace (MATCHLOCK_NO_JAIL) and port forwards below 1024. Once sealed it starts no process:
 * QEMU sits in a user namespace root owns, which lets root signal it without CAP_KILL.
 */
#define CAP_BIT(c) (1ull << (c))
#define CAPS_FILES                                                                       \
	(CAP_BIT(CAP_CHOWN) | CAP_BIT(CAP_DAC_OVERRIDE) | CAP_BIT(CAP_DAC_READ_SEARCH) | \
	 CAP_BIT(CAP_FOWNER) | CAP_BIT(CAP_FSETID))
static const uint64_t root_keeps[] = {
	[JAIL_CAPS_LAUNCH] = CAPS_FILES | CAP_BIT(CAP_KILL) | CAP_BIT(CAP_SETGID) |
			     CAP_BIT(CAP_SETUID) | CAP_BIT(CAP_NET_BIND_SERVICE),
	[JAIL_CAPS_SEALED_FOLDERS] = CAPS_FILES | CAP_BIT(CAP_NET_BIND_SERVICE),
	[JAIL_CAPS_SEALED] = CAP_BIT(CAP_NET_BIND_SERVICE),
};

/* Whether pid runs in a user namespace other than ours (root owns it then: we made it). */
static bool in_other_userns(pid_t pid)
{
	char path[64], theirs[64], ours[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	ssize_t a = readlink(path, theirs, sizeof(theirs) - 1);
	ssize_t b = readlink("/proc/self/ns/user", ours, sizeof(ours) - 1);
	return pid > 0 && a > 0 && b > 0 && (a != b || memcmp(theirs, ours, (size_t)a) != 0);
}

int jail_supervisor_drop_caps(enum jail_caps stage, pid_t vmm)
{
	if (geteuid() != 0)
		return 0;
	uint64_t keep = root_keeps[stage];
	if (stage != JAIL_CAPS_LAUNCH && !in_other_userns(vmm))
		keep |= CAP_BIT(CAP_KILL); /* no jail, or one without a user namespace */
	/*
	 * The bounding set limits what an exec could gain: emptied at launch, while the process
	 * still has CAP_SETPCAP (not kept); a sealed supervisor cannot exec, so later stages only
	 * lower the permitted and effective sets.
	 */
	for (int cap = 0; stage == JAIL_CAPS_LAUNCH && cap <= 63; cap++) {
		if (keep & CAP_BIT(cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL)
			break; /* past the kernel's last capability */
	}
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	d[0].effective = d[0].permitted = (uint32_t)keep;
	d[1].effective = d[1].permitted = (uint32_t)(keep >> 32);
	if (syscall(SYS_capset, &h, d) < 0)
		return -errno;
	debug("supervisor: root's capabilities reduced to %#llx", (unsigned long long)keep);
	return 0;
}
