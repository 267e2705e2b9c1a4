/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "common/paths.h"
#include "common/sparse.h"
#include "disk.h"
#include "qmp.h"
#include "vmm.h"

/*
 * Bump when what goes into a template changes. 2: TCG guests boot with tsc_early_khz; a template
 * saved before may keep time in 4 ms jiffies (vmm_qemu.c, tcg_tsc_khz). 3: a third virtio-serial
 * port (matchlock.fs): an older template no longer matches the device set. 4: the guest's RAM
 * first, then a stream saved with x-ignore-shared (snapshot.h). 5: the writable disk and volumes
 * (virtio-blk devices with serials; their sizes in the identity); the root's upper is on the
 * writable disk, saved with the template (snapshot_scratch_path).
 */
#define SNAPSHOT_FORMAT 5
#define QMP_TIMEOUT_MS 5000
#define MIGRATE_TIMEOUT_MS 30000

/* Identity of a file for the key: its real path, size and modification time. */
static void file_id(EVP_MD_CTX *md, const char *path)
{
	char real[PATH_MAX], rec[PATH_MAX + 64];
	struct stat st;
	if (!realpath(path, real) || stat(real, &st) < 0) {
		EVP_DigestUpdate(md, path, strlen(path));
		return;
	}
	int n = snprintf(rec, sizeof(rec), "%s %lld %lld.%ld\n", real, (long long)st.st_size,
			 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	EVP_DigestUpdate(md, rec, (size_t)n);
}

/* The QEMU binary as PATH finds it (or as its variable names it). */
static void qemu_id(EVP_MD_CTX *md, enum guest_arch arch)
{
	const char *q = vmm_qemu_binary(arch);
	if (strchr(q, '/')) {
		file_id(md, q);
		return;
	}
	const char *path = getenv("PATH");
	char buf[PATH_MAX];
	for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
		size_t k = strcspn(p, ":");
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)k, p, q);
		if (access(buf, X_OK) == 0) {
			file_id(md, buf);
			return;
		}
		p += k + (p[k] == ':');
	}
}

int snapshot_template_path(const struct vmm_config *vc, char *out, size_t n)
{
	char cache[4096], desc[512], hex[65];
	unsigned char h[32];
	int r = paths_cache_dir(cache, sizeof(cache));
	if (r < 0)
		return r;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	int k = snprintf(desc, sizeof(desc), "format %d arch %s accel %d cpus %u mem %u\n%s\n",
			 SNAPSHOT_FORMAT, arch_table[vc->arch].oci, vc->accel, vc->cpus,
			 vc->memory_mb, vmm_cmdline(vc->arch, vc->accel));
	EVP_DigestUpdate(md, desc, (size_t)k);
	/*
	 * The block devices beyond the root: their number, sizes and read-only flags. The guest
	 * probed each at boot, so a restore needs the same ones (with different files: a sandbox's
	 * disk is a copy of the template's, and volumes are mounted only after the restore).
	 */
	k = snprintf(desc, sizeof(desc), "scratch %lld volumes %u\n",
		     vc->scratch ? vc->scratch_mb : -1, vc->nvolumes);
	EVP_DigestUpdate(md, desc, (size_t)k);
	for (unsigned i = 0; i < vc->nvolumes; i++) {
		k = snprintf(desc, sizeof(desc), "volume %lld %d\n", vc->volumes[i].size_mb,
			     vc->volumes[i].ro);
		EVP_DigestUpdate(md, desc, (size_t)k);
	}
	qemu_id(md, vc->arch);
	file_id(md, vc->kernel);
	file_id(md, vc->initrd);
	file_id(md, vc->disk);
	EVP_DigestFinal_ex(md, h, NULL);
	EVP_MD_CTX_free(md);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", h[i]);
	if (snprintf(out, n, "%s/templates/%.32s.snap", cache, hex) >= (int)n)
		return -ENAMETOOLONG;
	/* The disk path goes next to it, so gc can tell when the template is orphaned. */
	return 0;
}

/*
 * The guest's RAM is a shared file while a template is made (the supervisor copies it), a
 * private mapping of the template when one is restored: the stream leaves it out on both sides.
 */
static json_t *migrate_caps(void)
{
	return json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "x-ignore-shared",
			 "state", 1);
}

static int wait_migration(int qmp, char *err, size_t errn)
{
	uint64_t deadline = now_ns() + MIGRATE_TIMEOUT_MS * 1000000ull;
	while (now_ns() < deadline) {
		json_t *ret = NULL;
		if (qmp_call(qmp, "query-migrate", NULL, &ret, QMP_TIMEOUT_MS, err, errn) < 0)
			return -EIO;
		const char *st = json_string_value(json_object_get(ret, "status"));
		bool done = st && !strcmp(st, "completed");
		bool failed = st && (!strcmp(st, "failed") || !strcmp(st, "cancelled"));
		if (failed)
			snprintf(err, errn, "migration %s: %s", st,
				 json_string_value(json_object_get(ret, "error-desc"))
				     ?: "no reason given");
		json_decref(ret);
		if (done)
			return 0;
		if (failed)
			return -EIO;
		usleep(2000);
	}
	snprintf(err, errn, "saving the snapshot took too long");
	return -ETIMEDOUT;
}

int snapshot_save(int qmp, const char *path, int ram_fd, unsigned memory_mb, const char *scratch,
		  char *err, size_t errn)
{
	char dir[4200], tmp[4300];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	int r = mkdir_p(dir, 0700);
	if (r < 0) {
		snprintf(err, errn, "%s: %s", dir, strerror(-r));
		return r;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errn, "%s: %s", tmp, strerror(errno));
		return -errno;
	}
	off_t ram_size = (off_t)memory_mb << 20;
	json_t *bw = json_pack("{s:I}", "max-bandwidth", (json_int_t)1 << 40);
	json_t *caps = migrate_caps();
	r = qmp_handshake(qmp, QMP_TIMEOUT_MS, err, errn);
	if (r == 0)
		r = qmp_call(qmp, "stop", NULL, NULL, QMP_TIMEOUT_MS, err, errn);
	bool stopped = r == 0;
	if (r == 0 && (r = sparse_copy(ram_fd, fd, ram_size)) < 0)
		snprintf(err, errn, "copying the guest's memory to %s: %s", tmp, strerror(-r));
	/* The stream follows the RAM; QEMU writes at the descriptor's offset. */
	if (r == 0 && lseek(fd, ram_size, SEEK_SET) < 0) {
		r = -errno;
		snprintf(err, errn, "%s: %s", tmp, strerror(errno));
	}
	if (r == 0)
		r = qmp_call(qmp, "migrate-set-capabilities", caps, NULL, QMP_TIMEOUT_MS, err,
			     errn);
	if (r == 0)
		r = qmp_call(qmp, "migrate-set-parameters", bw, NULL, QMP_TIMEOUT_MS, err, errn);
	if (r == 0)
		r = qmp_send_fd(qmp, "snapshot", fd, QMP_TIMEOUT_MS, err, errn);
	json_decref(bw);
	json_decref(caps);
	if (r == 0) {
		json_t *args = json_pack("{s:s}", "uri", "fd:snapshot");
		r = qmp_call(qmp, "migrate", args, NULL, QMP_TIMEOUT_MS, err, errn);
		json_decref(args);
	}
	if (r == 0)
		r = wait_migration(qmp, err, errn);
	/*
	 * The guest's disk as its memory knows it: QEMU drained and flushed its block devices when
	 * it stopped the guest, and the guest stays stopped until the copy is made.
	 */
	char side[4400];
	if (r == 0 && scratch && (r = snapshot_scratch_path(path, side, sizeof(side))) == 0 &&
	    (r = disk_copy(scratch, side)) < 0)
		snprintf(err, errn, "copying the writable disk to %s: %s", side,
			 r == -EEXIST ? "another start saved this template first" : strerror(-r));
	/* Renamed only once on disk: a crash must not leave a template of zeros. */
	if (r == 0 && fsync(fd) < 0) {
		r = -errno;
		snprintf(err, errn, "%s: %s", tmp, strerror(errno));
	}
	close(fd);
	if (r == 0 && rename(tmp, path) < 0) {
		snprintf(err, errn, "rename %s: %s", tmp, strerror(errno));
		r = -errno;
	}
	if (r < 0) {
		unlink(tmp);
		/* Ours, copied before the failure (another start's would have made us fail). */
		if (scratch && r != -EEXIST &&
		    snapshot_scratch_path(path, side, sizeof(side)) == 0 && access(path, F_OK) < 0)
			unlink(side);
	}
	/* Whatever happened, the guest goes on. */
	char cerr[200];
	if (stopped && qmp_call(qmp, "cont", NULL, NULL, QMP_TIMEOUT_MS, cerr, sizeof(cerr)) < 0) {
		snprintf(err, errn, "%s", cerr);
		return -EIO;
	}
	return r;
}

/* One QMP answer: 1 with *ret (the "return" value, or the greeting), else -EIO with err. */
static int resume_answer(json_t *msg, json_t **ret, char *err, size_t errn)
{
	json_t *e = json_object_get(msg, "error");
	if (e) {
		snprintf(err, errn, "QEMU: %s",
			 json_string_value(json_object_get(e, "desc")) ?: "error");
		return -EIO;
	}
	*ret = json_object_get(msg, "return") ?: json_object_get(msg, "QMP");
	if (!*ret) {
		snprintf(err, errn, "QMP: unexpected message");
		return -EIO;
	}
	return 1;
}

int snapshot_resume_step(struct snapshot_resume *rs, int qmp, char *err, size_t errn)
{
	json_t *msg = NULL, *ret = NULL;
	err[0] = 0;
	int r;
	while ((r = qmp_rx_take(qmp, &rs->rx, &msg, err, errn)) == 1) {
		r = resume_answer(msg, &ret, err, errn);
		const char *st = json_string_value(json_object_get(ret, "status"));
		if (r < 0) {
			/* an error answer */
		} else if (rs->step == RS_GREETING) {
			rs->step = RS_CAPS;
			r = qmp_send(qmp, "qmp_capabilities", NULL);
		} else if (rs->step == RS_CAPS) {
			rs->step = RS_MIGRATE_CAPS;
			json_t *caps = migrate_caps();
			r = qmp_send(qmp, "migrate-set-capabilities", caps);
			json_decref(caps);
		} else if (rs->step == RS_MIGRATE_CAPS) {
			rs->step = RS_INCOMING;
			json_t *uri = json_pack("{s:s}", "uri", VMM_INCOMING_URI);
			r = qmp_send(qmp, "migrate-incoming", uri);
			json_decref(uri);
		} else if (rs->step == RS_INCOMING) {
			rs->step = RS_STATUS;
			r = qmp_send(qmp, "query-status", NULL);
		} else if (rs->step == RS_CONT || (st && !strcmp(st, "running"))) {
			r = 1;
		} else if (st && (!strcmp(st, "paused") || !strcmp(st, "postmigrate"))) {
			rs->step = RS_CONT;
			r = qmp_send(qmp, "cont", NULL);
		} else if (st && (!strcmp(st, "internal-error") || !strcmp(st, "shutdown") ||
				  !strcmp(st, "guest-panicked"))) {
			snprintf(err, errn, "QEMU is in state %s", st);
			r = -EIO;
		} else {
			r = SNAPSHOT_ASK_AGAIN; /* inmigrate: still loading */
		}
		json_decref(msg);
		if (r == -EIO && !*err)
			snprintf(err, errn, "QMP: cannot write to QEMU");
		if (r != 0)
			return r;
	}
	return r;
}

int snapshot_resume_ask(struct snapshot_resume *rs, int qmp)
{
	rs->step = RS_STATUS;
	return qmp_send(qmp, "query-status", NULL);
}

void snapshot_resume_fini(struct snapshot_resume *rs)
{
	qmp_rx_fini(&rs->rx);
}

int snapshot_open(const char *path, unsigned memory_mb, int *fd, char *err, size_t errn)
{
	off_t ram_size = (off_t)memory_mb << 20;
	struct stat st;
	*fd = -1;
	int t = open(path, O_RDONLY | O_CLOEXEC);
	if (t < 0)
		return -errno;
	/*
	 * Shorter than its RAM, QEMU would refuse it, or grow an empty one. A stream is at least
	 * QEMU's header and a device.
	 */
	if (fstat(t, &st) < 0) {
		int e = errno;
		close(t);
		return -e;
	}
	if (st.st_size < ram_size + 64 || st.st_size > ram_size + SNAPSHOT_MAX_STREAM) {
		snprintf(err, errn, "%s is %s", path,
			 st.st_size < ram_size + 64 ? "truncated" : "too large for its machine");
		close(t);
		return -ESTALE;
	}
	/*
	 * QEMU gets a copy of its own, never the template: QEMU 7.2 opens a RAM file read-write
	 * even to map it privately, so a QEMU taken over by its guest could change what every
	 * later sandbox starts from, and the pages its running siblings map from the page cache.
	 * Only the template's data pages are copied (holes stay holes).
	 */
	int m = memfd_create("matchlock-template", MFD_CLOEXEC);
	int r = m < 0 ? -errno : sparse_copy(t, m, st.st_size);
	close(t);
	if (r == 0 && lseek(m, ram_size, SEEK_SET) != ram_size)
		r = -errno;
	if (r < 0) {
		snprintf(err, errn, "copying %s: %s", path, strerror(-r));
		if (m >= 0)
			close(m);
		return r == -ENOMEM || r == -ENOSPC ? r : -ESTALE;
	}
	*fd = m;
	return 0;
}

int snapshot_scratch_path(const char *path, char *out, size_t n)
{
	return snprintf(out, n, "%s.scratch", path) >= (int)n ? -ENAMETOOLONG : 0;
}

bool snapshot_usable(const char *path)
{
	char side[4400];
	return access(path, R_OK) == 0 && snapshot_scratch_path(path, side, sizeof(side)) == 0 &&
	       access(side, R_OK) == 0;
}

void snapshot_drop(const char *path)
{
	char meta[4400];
	snprintf(meta, sizeof(meta), "%s.disk", path);
	unlink(path);
	unlink(meta);
	if (snapshot_scratch_path(path, meta, sizeof(meta)) == 0)
		unlink(meta);
}

int snapshot_note_disk(const char *path, const char *disk)
{
	char meta[4400];
	snprintf(meta, sizeof(meta), "%s.disk", path);
	int fd = open(meta, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = write_all(fd, disk, strlen(disk));
	close(fd);
	return r;
}

int snapshot_gc(void)
{
	char cache[4096], dir[4200];
	paths_cache_dir(cache, sizeof(cache));
	snprintf(dir, sizeof(dir), "%s/templates", cache);
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int removed = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char p[4500], side[4600];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		const char *tmp = strstr(e->d_name, ".snap.tmp.");
		const char *stmp = strstr(e->d_name, ".snap.scratch.tmp.");
		size_t len = strlen(e->d_name);
		if (tmp || stmp) {
			/* A save that died half-way: its writer is gone. */
			int pid = tmp ? atoi(tmp + 10) : atoi(stmp + 18);
			if (pid > 0 && kill(pid, 0) < 0 && unlink(p) == 0)
				removed++;
		} else if (len > 13 && !strcmp(e->d_name + len - 13, ".snap.scratch")) {
			/* A writable disk whose template is gone. */
			snprintf(side, sizeof(side), "%.*s", (int)(strlen(p) - 8), p);
			if (access(side, F_OK) < 0)
				unlink(p);
		} else if (len > 5 && !strcmp(e->d_name + len - 5, ".snap")) {
			/* A template whose root disk is gone (image removed) is useless. */
			char *disk = NULL;
			snprintf(side, sizeof(side), "%s.disk", p);
			bool keep =
			    read_file_str(side, 4096, &disk) >= 0 && access(disk, F_OK) == 0;
			free(disk);
			if (!keep) {
				bool was = access(p, F_OK) == 0;
				snapshot_drop(p);
				removed += was;
			}
		}
	}
	closedir(d);
	return removed;
}
