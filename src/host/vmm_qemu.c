/* SPDX-License-Identifier: MIT */
/*
 * QEMU microvm (x86_64) or virt (arm64): no PCI, no ACPI, virtio over MMIO (microvm's from the
 * kernel command line, virt's from its device tree). The command line is built here and nowhere
 * else. Devices: the UART console (8250 or PL011) (a socket the supervisor reads into
 * the sandbox log), one virtio-serial port named "matchlock.link" (the mux), the root disk
 * read-only, the sandbox's writable disk and its volumes (virtio-blk, found by serial in the
 * guest: msg.h), and virtio-rng so the guest has entropy at once. There is no NIC.
 */
#define _GNU_SOURCE
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdnoreturn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "common/child.h"
#include "jail.h"
#include "common/log.h"
#include "proto/msg.h"

#define CHILD_LINK_FD 3
#define CHILD_CONSOLE_FD 4
#define CHILD_QMP_FD 5
#define CHILD_INCOMING_FD VMM_INCOMING_FD
#define CHILD_FS_FD 7
#define CHILD_RAM_FD 8
#define CHILD_KERNEL_FD 9
#define CHILD_INITRD_FD 10
#define CHILD_NDISKS (2 + VMM_MAX_VOLUMES)
#define CHILD_NFILES (2 + 2 * CHILD_NDISKS) /* kernel, initramfs, two fds a disk at most */
#define CHILD_LAST_FD (CHILD_KERNEL_FD + CHILD_NFILES - 1)
_Static_assert(CHILD_NFILES <= JAIL_MAX_RO_FDS, "the jail takes every file QEMU reads");

/*
 * Kernel command line: quiet console, reset on panic, reset = exit (with -no-reboot). Under TCG
 * the x86 local APIC timer has no TSC-deadline mode and calibrating it costs ~200 ms of boot, so
 * the guest uses the PIT for clock events there instead. Under TCG a cold x86 boot also gets
 * tsc_early_khz (tcg_tsc_khz); it is left out of this string, so a snapshot's identity does not
 * change with the measurement. arm64 has the architected timer at a rate the machine states, and
 * resets through PSCI.
 */
static const char *const kernel_cmdline[ARCH_END][2] = {
	[ARCH_X86_64] = { "console=ttyS0 quiet panic=-1 reboot=t 8250.nr_uarts=1 "
			  "tsc=reliable no_timer_check",
			  "console=ttyS0 quiet panic=-1 reboot=t 8250.nr_uarts=1 "
			  "tsc=reliable no_timer_check noapictimer" },
	[ARCH_ARM64] = { "console=ttyAMA0 quiet panic=-1", "console=ttyAMA0 quiet panic=-1" },
};

const char *vmm_cmdline(enum guest_arch arch, enum accel accel)
{
	return kernel_cmdline[arch][accel == ACCEL_TCG];
}

#if defined(__x86_64__)
/* One (TSC, CLOCK_MONOTONIC_RAW ns) pair, the tightest of a few tries; false if none was tight. */
static bool tsc_sample(uint64_t *tsc, uint64_t *ns)
{
	uint64_t best = UINT64_MAX;
	for (int i = 0; i < 32; i++) {
		struct timespec ts;
		uint64_t a = __rdtsc();
		clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
		uint64_t b = __rdtsc();
		if (b - a < best) {
			best = b - a;
			*tsc = a + (b - a) / 2;
			*ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		}
	}
	return best < 20000; /* no preemption inside the pair */
}
#endif

/*
 * The rate of the guest's TSC under TCG, in kHz, measured once; 0 if unknown (the guest then
 * calibrates it itself). QEMU's TCG TSC is the host's, read with rdtsc, so the host's rate is the
 * guest's. The guest must not calibrate it: it times the TSC against the PIT, which fails when
 * the host is busy (the vCPU thread is preempted mid-measurement), and microvm has no HPET or
 * ACPI PM timer to fall back on, so the kernel drops the TSC and keeps time in 4 ms jiffies for
 * the sandbox's life and any template saved from it. Clock-derived values then collide: glibc
 * takes DNS query IDs from CLOCK_MONOTONIC, so an A and an AAAA query sent together share an ID
 * and resolvers that match by ID (busybox nslookup) drop the second answer and wait out their
 * timeout. Costs ~5 ms, once per process, on a cold boot only.
 */
static unsigned tcg_tsc_khz(void)
{
#if defined(__x86_64__)
	static unsigned khz;
	static bool done;
	if (done)
		return khz;
	done = true;
	uint64_t t0, n0, t1, n1;
	if (!tsc_sample(&t0, &n0))
		return 0;
	nanosleep(&(struct timespec){ .tv_nsec = 5000000 }, NULL);
	if (!tsc_sample(&t1, &n1) || n1 <= n0 || t1 <= t0)
		return 0;
	uint64_t k = (t1 - t0) * 1000000u / (n1 - n0);
	/* A constant-rate TSC between 100 MHz and 20 GHz, or we do not trust the measurement. */
	if (k >= 100000 && k <= 20000000)
		khz = (unsigned)k;
	return khz;
#else
	return 0; /* QEMU's TCG TSC on other hosts is not the host's TSC: let the guest calibrate */
#endif
}

const char *vmm_qemu_binary(enum guest_arch arch)
{
	const char *q = getenv(arch_table[arch].qemu_env);
	return q && *q ? q : arch_table[arch].qemu;
}

/*
 * QEMU's absolute path, looked up in PATH here: the jail binds it in when it lives outside /usr,
 * and execs it by that path. Returns 0 or -errno with err.
 */
static int qemu_resolve(enum guest_arch arch, char out[PATH_MAX], char *err, size_t errn)
{
	const char *q = vmm_qemu_binary(arch);
	const char *path = getenv("PATH");
	char cand[PATH_MAX];
	bool found = false;
	if (strchr(q, '/')) {
		found = snprintf(cand, sizeof(cand), "%s", q) < (int)sizeof(cand) &&
			access(cand, X_OK) == 0;
	} else {
		for (const char *p = path && *path ? path : "/usr/bin:/bin"; *p && !found;) {
			size_t k = strcspn(p, ":");
			found = k && p[0] == '/' &&
				snprintf(cand, sizeof(cand), "%.*s/%s", (int)k, p, q) <
				    (int)sizeof(cand) &&
				access(cand, X_OK) == 0;
			p += k + (p[k] == ':');
		}
	}
	/* Canonical: the jail binds it at this path unless it is under /usr (/bin -> usr/bin). */
	if (found && realpath(cand, out))
		return 0;
	int e = found ? errno : ENOENT;
	snprintf(err, errn, "cannot run %s: %s (apt-get install %s, or set %s)", q, strerror(e),
		 arch_table[arch].qemu_package, arch_table[arch].qemu_env);
	return -e;
}

/*
 * The machine, with its RAM backend when there is one. virt: GICv3 (any number of vCPUs; the
 * host's own under KVM).
 */
static const char *const machine[ARCH_END][2] = {
	[ARCH_X86_64] = { "microvm,acpi=off", "microvm,acpi=off,memory-backend=ram" },
	[ARCH_ARM64] = { "virt,gic-version=3", "virt,gic-version=3,memory-backend=ram" },
};

/*
 * The CPU QEMU emulates under TCG. arm64: a Cortex-A72 rather than "max", whose pointer
 * authentication is expensive to emulate; a snapshot's CPU must not change with QEMU's idea of
 * "max" either.
 */
static const char *const tcg_cpu[ARCH_END] = { [ARCH_X86_64] = "max", [ARCH_ARM64] = "cortex-a72" };

/*
 * QEMU's command line, and the strings it points into. Every file comes as a descriptor
 * (QEMU's jail has no path to any of them): the disks as fd sets (-add-fd, /dev/fdset/N; QEMU
 * dups the one of the access mode it wants instead of opening anything), the kernel and the
 * initramfs as /proc/self/fd/N.
 */
struct qemu_args {
	char exe[PATH_MAX];
	char mem[32], smp[32], drive[200], cmdline[512], ram[128], kernel[32], initrd[32];
	char addfd[2 * CHILD_NDISKS][48];
	unsigned naddfd;
	/* The writable disk and the volumes: a -drive and a -device each. */
	char blk_drive[1 + VMM_MAX_VOLUMES][300], blk_dev[1 + VMM_MAX_VOLUMES][100];
	const char *argv[72 + 8 * (1 + VMM_MAX_VOLUMES)];
	/* The descriptors, opened by vmm_spawn: kernel, initramfs, then the disks in order. */
	int fds[CHILD_NFILES];
	unsigned nfds;
	int ro_fds[CHILD_NFILES]; /* those opened read-only: the jail's read-only views */
	unsigned nro;
};

/*
 * One writable or volume disk: raw; trims from the guest give the space back to the host file
 * (discard=unmap); an I/O error (the host's file system full) is the guest's EIO, never a VM
 * paused for good (QEMU's default werror=enospc); a disposable disk (the sandbox's own) ignores
 * the guest's flushes, which buy nothing for a file removed with the sandbox.
 */
/*
 * Open one file for QEMU: it becomes the child's fd CHILD_KERNEL_FD + its index. One QEMU opens
 * again by path (reopen) must be readable by QEMU's identity (jail_readable_fd).
 */
static int qemu_file(struct qemu_args *a, const char *path, int flags, bool reopen, char *err,
		     size_t errn)
{
	int fd = open(path, flags | O_CLOEXEC);
	int e = fd < 0 ? errno : 0;
	if (fd >= 0 && reopen && (fd = jail_readable_fd(fd)) < 0)
		e = -fd;
	if (e) {
		snprintf(err, errn, "%s: %s", path, strerror(e));
		return -e;
	}
	a->fds[a->nfds] = fd;
	if ((flags & O_ACCMODE) == O_RDONLY)
		a->ro_fds[a->nro++] = fd;
	return CHILD_KERNEL_FD + (int)a->nfds++;
}

/*
 * A disk as fd set N (1 for the root disk, 2 on for the rest), opened for QEMU: read-only, and
 * read-write too when it is writable (QEMU probes a writable disk read-only first). QEMU's own
 * image locks are off (file.locking=off): they cannot be taken again through dup'd fds after a
 * snapshot's migration releases them, and which QEMU writes which disk is ours to decide
 * (disk.c: a writable disk belongs to one sandbox; the root disk is read-only).
 */
static int qemu_disk(struct qemu_args *a, unsigned set, const char *path, bool ro, char *err,
		     size_t errn)
{
	const int modes[] = { O_RDONLY, O_RDWR };
	for (unsigned i = 0; i < (ro ? 1u : 2u); i++) {
		int fd = qemu_file(a, path, modes[i], false, err, errn);
		if (fd < 0)
			return fd;
		snprintf(a->addfd[a->naddfd], sizeof(a->addfd[0]), "fd=%d,set=%u", fd, set);
		a->naddfd++;
	}
	return 0;
}

static int blk_arg(struct qemu_args *a, unsigned k, const char *id, const char *serial,
		   const char *path, bool ro, bool disposable, char *err, size_t errn)
{
	int r = qemu_disk(a, 2 + k, path, ro, err, errn);
	if (r < 0)
		return r;
	snprintf(a->blk_drive[k], sizeof(a->blk_drive[k]),
		 "if=none,id=%s,file=/dev/fdset/%u,file.locking=off,format=raw,discard=unmap,"
		 "werror=report,rerror=report%s%s",
		 id, 2 + k, ro ? ",readonly=on" : "", disposable ? ",cache.no-flush=on" : "");
	snprintf(a->blk_dev[k], sizeof(a->blk_dev[k]), "virtio-blk-device,drive=%s,serial=%s", id,
		 serial);
	return 0;
}

static void qemu_args_fini(struct qemu_args *a)
{
	for (unsigned i = 0; i < a->nfds; i++)
		close(a->fds[i]);
	a->nfds = a->nro = 0;
}

static int qemu_args(const struct vmm_config *c, struct qemu_args *a, char *err, size_t errn)
{
	a->naddfd = a->nfds = a->nro = 0;
	int r = qemu_resolve(c->arch, a->exe, err, errn);
	if (r < 0)
		return r;
	snprintf(a->mem, sizeof(a->mem), "%u", c->memory_mb);
	snprintf(a->smp, sizeof(a->smp), "%u", c->cpus);
	int kfd = qemu_file(a, c->kernel, O_RDONLY, true, err, errn);
	int ifd = kfd < 0 ? kfd : qemu_file(a, c->initrd, O_RDONLY, true, err, errn);
	if (kfd < 0 || ifd < 0 || (r = qemu_disk(a, 1, c->disk, true, err, errn)) < 0)
		goto fail;
	snprintf(a->kernel, sizeof(a->kernel), "/proc/self/fd/%d", kfd);
	snprintf(a->initrd, sizeof(a->initrd), "/proc/self/fd/%d", ifd);
	snprintf(a->drive, sizeof(a->drive),
		 "if=none,id=root,file=/dev/fdset/1,file.locking=off,"
		 "format=raw,readonly=on");
	unsigned nblk = 0;
	if (c->scratch && (r = blk_arg(a, nblk++, "disk", MSG_DISK_SERIAL, c->scratch, false, true,
				       err, errn)) < 0)
		goto fail;
	for (unsigned i = 0; i < c->nvolumes && i < VMM_MAX_VOLUMES; i++) {
		char id[16], serial[32];
		snprintf(id, sizeof(id), "vol%u", i);
		snprintf(serial, sizeof(serial), MSG_VOLUME_SERIAL "%u", i);
		if ((r = blk_arg(a, nblk++, id, serial, c->volumes[i].path, c->volumes[i].ro, false,
				 err, errn)) < 0)
			goto fail;
	}
	int k = snprintf(a->cmdline, sizeof(a->cmdline), "%s", vmm_cmdline(c->arch, c->accel));
	/* A restored guest booted long ago: its TSC rate came with the snapshot. */
	bool tsc = c->arch == ARCH_X86_64 && c->accel == ACCEL_TCG && c->incoming_fd < 0;
	unsigned tsc_khz = tsc ? tcg_tsc_khz() : 0;
	if (tsc_khz)
		snprintf(a->cmdline + k, sizeof(a->cmdline) - (size_t)k, " tsc_early_khz=%u",
			 tsc_khz);
	else if (tsc)
		debug("vmm: host TSC rate unknown; the guest calibrates its own TSC");

	int n = 0;
	a->argv[n++] = a->exe;
	for (unsigned i = 0; i < a->naddfd; i++) {
		a->argv[n++] = "-add-fd";
		a->argv[n++] = a->addfd[i];
	}
	a->argv[n++] = "-M";
	a->argv[n++] = machine[c->arch][c->ram_fd >= 0];
	if (c->ram_fd >= 0) {
		/*
		 * QEMU opens the file itself; through /proc it gets our descriptor's file, whatever
		 * its path (commas included). It opens it read-write (QEMU 7.2 does so even to map
		 * a file privately), which is why it is always a file of this sandbox's own.
		 */
		snprintf(a->ram, sizeof(a->ram),
			 "memory-backend-file,id=ram,size=%uM,mem-path=/proc/self/fd/%d,share=on",
			 c->memory_mb, CHILD_RAM_FD);
		a->argv[n++] = "-object";
		a->argv[n++] = a->ram;
	}
	a->argv[n++] = "-accel";
	a->argv[n++] = c->accel == ACCEL_KVM ? "kvm" : "tcg";
	a->argv[n++] = "-cpu";
	a->argv[n++] = c->accel == ACCEL_KVM ? "host" : tcg_cpu[c->arch];
	a->argv[n++] = "-m";
	a->argv[n++] = a->mem;
	a->argv[n++] = "-smp";
	a->argv[n++] = a->smp;
	a->argv[n++] = "-nodefaults";
	a->argv[n++] = "-no-user-config";
	a->argv[n++] = "-display";
	a->argv[n++] = "none";
	a->argv[n++] = "-no-reboot";
	a->argv[n++] = "-kernel";
	a->argv[n++] = a->kernel;
	a->argv[n++] = "-initrd";
	a->argv[n++] = a->initrd;
	a->argv[n++] = "-append";
	a->argv[n++] = a->cmdline;
	a->argv[n++] = "-chardev";
	a->argv[n++] = "socket,id=con,fd="
		       "4";
	a->argv[n++] = "-serial";
	a->argv[n++] = "chardev:con";
	a->argv[n++] = "-device";
	a->argv[n++] = "virtio-serial-device,max_ports=3";
	a->argv[n++] = "-chardev";
	a->argv[n++] = "socket,id=link,fd="
		       "3";
	a->argv[n++] = "-device";
	a->argv[n++] = "virtserialport,chardev=link,name=matchlock.link";
	/*
	 * The file service's own port: the guest's FUSE relay must never wait behind the agent,
	 * which may itself be blocked on a file in a host folder (sandbox_fs.c).
	 */
	a->argv[n++] = "-chardev";
	a->argv[n++] = "socket,id=fs,fd=7";
	a->argv[n++] = "-device";
	a->argv[n++] = "virtserialport,chardev=fs,name=matchlock.fs";
	a->argv[n++] = "-drive";
	a->argv[n++] = a->drive;
	a->argv[n++] = "-device";
	a->argv[n++] = "virtio-blk-device,drive=root,serial=" MSG_ROOT_SERIAL;
	for (unsigned i = 0; i < nblk; i++) {
		a->argv[n++] = "-drive";
		a->argv[n++] = a->blk_drive[i];
		a->argv[n++] = "-device";
		a->argv[n++] = a->blk_dev[i];
	}
	a->argv[n++] = "-device";
	a->argv[n++] = "virtio-rng-device";
	a->argv[n++] = "-chardev";
	a->argv[n++] = "socket,id=qmp,fd=5";
	a->argv[n++] = "-mon";
	a->argv[n++] = "chardev=qmp,mode=control";
	if (c->incoming_fd >= 0) {
		/*
		 * Restore a snapshot: QEMU waits for migrate-incoming, which comes after the
		 * migration capabilities the snapshot was saved with (snapshot.c).
		 */
		a->argv[n++] = "-incoming";
		a->argv[n++] = "defer";
	}
	a->argv[n++] = "-sandbox";
	a->argv[n++] = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";
	a->argv[n] = NULL;
	_Static_assert(VMM_MAX_VOLUMES == MSG_MAX_VOLUMES, "a volume per T_VOLUME");
	_Static_assert(CHILD_LINK_FD == 3 && CHILD_CONSOLE_FD == 4 && CHILD_QMP_FD == 5 &&
			   CHILD_INCOMING_FD == 6 && CHILD_FS_FD == 7,
		       "fd numbers in argv");
	_Static_assert(CHILD_RAM_FD + 1 == CHILD_KERNEL_FD, "the files follow the RAM");
	return 0;
fail:
	qemu_args_fini(a);
	return r;
}

struct qemu_child {
	const struct vmm_config *c;
	const struct qemu_args *a;
	char *const *env;
};

/*
 * In the child, inside the jail (jail.c): QEMU's fds at the numbers its command line names,
 * then QEMU. errfd (close-on-exec) takes a failure's reason to the parent.
 */
static void qemu_exec(void *arg, int errfd)
{
	const struct qemu_child *q = arg;
	const struct vmm_config *c = q->c;
	const struct qemu_args *a = q->a;
	/* Our own session: a terminal's Ctrl-C is the supervisor's to handle. */
	setsid();
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Every fd out of the way first (above all targets): the targets may be taken by sources.
	 */
	const int high = CHILD_LAST_FD + 1;
	int err = fcntl(errfd, F_DUPFD_CLOEXEC, high);
	int link = fcntl(c->link_fd, F_DUPFD_CLOEXEC, high);
	int con = fcntl(c->console_fd, F_DUPFD_CLOEXEC, high);
	int qmp = fcntl(c->qmp_fd, F_DUPFD_CLOEXEC, high);
	int inc = c->incoming_fd >= 0 ? fcntl(c->incoming_fd, F_DUPFD_CLOEXEC, high) : -1;
	int ram = c->ram_fd >= 0 ? fcntl(c->ram_fd, F_DUPFD_CLOEXEC, high) : -1;
	int errout = fcntl(c->stderr_fd, F_DUPFD_CLOEXEC, high);
	int fs = fcntl(c->fs_fd, F_DUPFD_CLOEXEC, high);
	int files[CHILD_NFILES];
	for (unsigned i = 0; i < a->nfds; i++)
		files[i] = fcntl(a->fds[i], F_DUPFD_CLOEXEC, high);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (err < 0 || link < 0 || con < 0 || qmp < 0 || errout < 0 || null < 0 || fs < 0 ||
	    dup2(null, 0) < 0 || dup2(errout, 1) < 0 || dup2(errout, 2) < 0 ||
	    dup2(link, CHILD_LINK_FD) < 0 || dup2(con, CHILD_CONSOLE_FD) < 0 ||
	    dup2(qmp, CHILD_QMP_FD) < 0 || (inc >= 0 && dup2(inc, CHILD_INCOMING_FD) < 0) ||
	    dup2(fs, CHILD_FS_FD) < 0 || (ram >= 0 && dup2(ram, CHILD_RAM_FD) < 0)) {
		dprintf(err >= 0 ? err : errfd, "setting up QEMU's descriptors: %s",
			strerror(errno));
		_exit(127);
	}
	/* Without a snapshot fd 6 (and without a RAM file fd 8) is /dev/null, never chance. */
	if ((inc < 0 && dup2(0, CHILD_INCOMING_FD) < 0) || (ram < 0 && dup2(0, CHILD_RAM_FD) < 0))
		_exit(127);
	for (unsigned i = 0; i < a->nfds; i++) {
		if (files[i] < 0 || dup2(files[i], CHILD_KERNEL_FD + (int)i) < 0) {
			dprintf(err, "setting up QEMU's descriptors: %s", strerror(errno));
			_exit(127);
		}
	}
	syscall(SYS_close_range, CHILD_KERNEL_FD + a->nfds, err - 1, 0);
	syscall(SYS_close_range, err + 1, ~0u, 0);
	execve(a->exe, (char *const *)a->argv, q->env);
	dprintf(err, "cannot run %s: %s (apt-get install %s, or set %s)", a->exe, strerror(errno),
		arch_table[c->arch].qemu_package, arch_table[c->arch].qemu_env);
	_exit(127);
}

int vmm_spawn(const struct vmm_config *c, pid_t *pid, int *pidfd, char *err, size_t errn)
{
	struct qemu_args a;
	int r = qemu_args(c, &a, err, errn);
	if (r < 0)
		return r;
	const char **argv = a.argv;
	if (getenv("MATCHLOCK_DEBUG")) {
		char line[2048] = "";
		for (int i = 0; argv[i]; i++) {
			strncat(line, argv[i], sizeof(line) - strlen(line) - 2);
			strncat(line, " ", sizeof(line) - strlen(line) - 1);
		}
		debug("vmm: %s", line);
	}
	if (c->ram_fd >= 0 && (r = jail_share_file(c->ram_fd)) < 0) {
		qemu_args_fini(&a);
		snprintf(err, errn, "giving QEMU's identity the guest's RAM file: %s",
			 strerror(-r));
		return r;
	}
	/* QEMU gets an explicit environment, never ours: a secret may be in ours (child.h). */
	struct qemu_child q = { .c = c, .a = &a, .env = child_env() };
	struct jail_config jc = { .exe = a.exe,
				  .kvm = c->accel == ACCEL_KVM,
				  .memory_mb = c->memory_mb,
				  .cpus = c->cpus,
				  .name = c->name,
				  .ro_fds = a.ro_fds,
				  .nro_fds = a.nro };
	pid_t p = jail_spawn(&jc, qemu_exec, &q, err, errn);
	qemu_args_fini(&a);
	if (p < 0)
		return p;
	int fd = (int)syscall(SYS_pidfd_open, p, 0);
	if (fd < 0) {
		int e = errno;
		kill(p, SIGKILL);
		snprintf(err, errn, "pidfd_open: %s (Linux 5.3 or later is needed)", strerror(e));
		return -e;
	}
	*pid = p;
	*pidfd = fd;
	return 0;
}

void vmm_reaped(const struct vmm_config *c)
{
	jail_cgroup_remove(c->name);
}
