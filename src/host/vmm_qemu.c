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
#include "common/log.h"
#include "proto/msg.h"

#define CHILD_LINK_FD 3
#define CHILD_CONSOLE_FD 4
#define CHILD_QMP_FD 5
#define CHILD_INCOMING_FD VMM_INCOMING_FD
#define CHILD_FS_FD 7
#define CHILD_RAM_FD 8

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

/* QEMU's command line, and the strings it points into. */
struct qemu_args {
	char mem[32], smp[32], drive[4200], cmdline[512], ram[128];
	/* The writable disk and the volumes: a -drive and a -device each. */
	char blk_drive[1 + VMM_MAX_VOLUMES][4300], blk_dev[1 + VMM_MAX_VOLUMES][100];
	const char *argv[64 + 4 * (1 + VMM_MAX_VOLUMES)];
};

/*
 * One writable or volume disk: raw; trims from the guest give the space back to the host file
 * (discard=unmap); an I/O error (the host's file system full) is the guest's EIO, never a VM
 * paused for good (QEMU's default werror=enospc); a disposable disk (the sandbox's own) ignores
 * the guest's flushes, which buy nothing for a file removed with the sandbox.
 */
static int blk_arg(struct qemu_args *a, unsigned k, const char *id, const char *serial,
		   const char *path, bool ro, bool disposable, char *err, size_t errn)
{
	if (strchr(path, ',')) {
		snprintf(err, errn, "disk path contains a comma: %s", path);
		return -EINVAL;
	}
	snprintf(a->blk_drive[k], sizeof(a->blk_drive[k]),
		 "if=none,id=%s,file=%s,format=raw,discard=unmap,werror=report,rerror=report%s%s",
		 id, path, ro ? ",readonly=on" : "", disposable ? ",cache.no-flush=on" : "");
	snprintf(a->blk_dev[k], sizeof(a->blk_dev[k]), "virtio-blk-device,drive=%s,serial=%s", id,
		 serial);
	return 0;
}

static int qemu_args(const struct vmm_config *c, struct qemu_args *a, char *err, size_t errn)
{
	snprintf(a->mem, sizeof(a->mem), "%u", c->memory_mb);
	snprintf(a->smp, sizeof(a->smp), "%u", c->cpus);
	/* A comma in a path would split QEMU's option list; QEMU escapes it as ",,". */
	if (strchr(c->disk, ',')) {
		snprintf(err, errn, "disk path contains a comma: %s", c->disk);
		return -EINVAL;
	}
	snprintf(a->drive, sizeof(a->drive), "if=none,id=root,file=%s,format=raw,readonly=on",
		 c->disk);
	unsigned nblk = 0;
	if (c->scratch &&
	    blk_arg(a, nblk++, "disk", MSG_DISK_SERIAL, c->scratch, false, true, err, errn) < 0)
		return -EINVAL;
	for (unsigned i = 0; i < c->nvolumes && i < VMM_MAX_VOLUMES; i++) {
		char id[16], serial[32];
		snprintf(id, sizeof(id), "vol%u", i);
		snprintf(serial, sizeof(serial), MSG_VOLUME_SERIAL "%u", i);
		if (blk_arg(a, nblk++, id, serial, c->volumes[i].path, c->volumes[i].ro, false, err,
			    errn) < 0)
			return -EINVAL;
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
	a->argv[n++] = vmm_qemu_binary(c->arch);
	a->argv[n++] = "-M";
	a->argv[n++] = machine[c->arch][c->ram_fd >= 0];
	if (c->ram_fd >= 0) {
		/*
		 * QEMU opens the file itself; through /proc it gets our descriptor's file, whatever
		 * its path (commas included). It opens it read-write even when it maps it private,
		 * and QEMU 7.2 would punch a discarded range out of the file itself: so no device
		 * here may discard guest RAM (virtio-balloon, virtio-mem).
		 */
		snprintf(a->ram, sizeof(a->ram),
			 "memory-backend-file,id=ram,size=%uM,mem-path=/proc/self/fd/%d,share=%s",
			 c->memory_mb, CHILD_RAM_FD, c->ram_shared ? "on" : "off");
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
	a->argv[n++] = c->kernel;
	a->argv[n++] = "-initrd";
	a->argv[n++] = c->initrd;
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

	return 0;
}

/* In the child: QEMU's fds at the numbers its command line names, then QEMU. */
static noreturn void qemu_exec(const struct vmm_config *c, const char *const *argv,
			       char *const *env, pid_t parent)
{
	/* Die with the supervisor, even if it is SIGKILLed. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	/* Our own session: a terminal's Ctrl-C is the supervisor's to handle. */
	setsid();
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Move every fd out of the way first: the targets may be taken by the sources. */
	int link = fcntl(c->link_fd, F_DUPFD_CLOEXEC, 10);
	int con = fcntl(c->console_fd, F_DUPFD_CLOEXEC, 10);
	int qmp = fcntl(c->qmp_fd, F_DUPFD_CLOEXEC, 10);
	int inc = c->incoming_fd >= 0 ? fcntl(c->incoming_fd, F_DUPFD_CLOEXEC, 10) : -1;
	int ram = c->ram_fd >= 0 ? fcntl(c->ram_fd, F_DUPFD_CLOEXEC, 10) : -1;
	int errfd = fcntl(c->stderr_fd, F_DUPFD_CLOEXEC, 10);
	int fs = fcntl(c->fs_fd, F_DUPFD_CLOEXEC, 10);
	int null = open("/dev/null", O_RDWR);
	if (link < 0 || con < 0 || qmp < 0 || errfd < 0 || null < 0 || dup2(null, 0) < 0 ||
	    dup2(errfd, 1) < 0 || dup2(errfd, 2) < 0 || dup2(link, CHILD_LINK_FD) < 0 ||
	    dup2(con, CHILD_CONSOLE_FD) < 0 || dup2(qmp, CHILD_QMP_FD) < 0 ||
	    (inc >= 0 && dup2(inc, CHILD_INCOMING_FD) < 0) || fs < 0 || dup2(fs, CHILD_FS_FD) < 0 ||
	    (ram >= 0 && dup2(ram, CHILD_RAM_FD) < 0))
		_exit(127);
	/* Without a snapshot fd 6 is /dev/null (fd 0), so the fds after it are never left to
	 * chance. */
	if (inc < 0 && dup2(0, CHILD_INCOMING_FD) < 0)
		_exit(127);
	syscall(SYS_close_range, ram >= 0 ? CHILD_RAM_FD + 1 : CHILD_FS_FD + 1, ~0u, 0);
	execvpe(argv[0], (char *const *)argv, env);
	dprintf(2, "cannot run %s: %s (apt-get install %s, or set %s)\n", argv[0], strerror(errno),
		arch_table[c->arch].qemu_package, arch_table[c->arch].qemu_env);
	_exit(127);
}

int vmm_spawn(const struct vmm_config *c, pid_t *pid, int *pidfd, char *err, size_t errn)
{
	struct qemu_args a;
	if (qemu_args(c, &a, err, errn) < 0)
		return -EINVAL;
	const char **argv = a.argv;
	if (getenv("MATCHLOCK_DEBUG")) {
		char line[2048] = "";
		for (int i = 0; argv[i]; i++) {
			strncat(line, argv[i], sizeof(line) - strlen(line) - 2);
			strncat(line, " ", sizeof(line) - strlen(line) - 1);
		}
		debug("vmm: %s", line);
	}

	/* QEMU gets an explicit environment, never ours: a secret may be in ours (child.h). */
	char *const *env = child_env();
	pid_t parent = getpid();
	pid_t p = fork();
	if (p < 0) {
		int e = errno;
		snprintf(err, errn, "fork: %s", strerror(e));
		return -e;
	}
	if (p == 0)
		qemu_exec(c, argv, env, parent);
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
