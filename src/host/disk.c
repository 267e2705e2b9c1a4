/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/child.h"
#include "common/paths.h"
#include "common/sparse.h"
#include "common/util.h"

/*
 * mke2fs into path (a new file of size_mb, sparse). Lazy inode tables and journal: nothing is
 * zeroed, so the file holds a few MB whatever its size (the guest mounts with noinit_itable, so
 * its kernel does not zero them later either). The root directory belongs to the guest's root.
 * A sandbox's disk has no journal: it is thrown away with the sandbox, so surviving a crash
 * buys nothing, and without one it mounts faster at every start (and writes once, not twice).
 */
static int disk_format(const char *path, long long size_mb, const char *label, bool journal,
		       char *err, size_t errn)
{
	char size[32];
	snprintf(size, sizeof(size), "%lldM", size_mb);
	char *const mkfs[] = { "mke2fs",
			       "-q",
			       "-F",
			       "-t",
			       "ext4",
			       "-m",
			       "0",
			       "-O",
			       journal ? "has_journal" : "^has_journal",
			       "-E",
			       "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0",
			       "-L",
			       (char *)label,
			       (char *)path,
			       size,
			       NULL };
	char out[512];
	int status = child_run(mkfs, true, out, sizeof(out));
	if (status < 0) {
		snprintf(err, errn, "cannot run mke2fs: %s (apt-get install e2fsprogs)",
			 strerror(-status));
		return status;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		out[strcspn(out, "\n")] = 0;
		snprintf(err, errn, "formatting %s failed: %s", path, *out ? out : "mke2fs failed");
		return -EIO;
	}
	return 0;
}

/* Make a formatted file at dst through a temporary name, so dst is whole or absent. */
static int disk_format_at(const char *dst, long long size_mb, const char *label, bool replace,
			  bool journal, char *err, size_t errn)
{
	char tmp[4300];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", dst, getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size_mb << 20) < 0) {
		int e = errno;
		snprintf(err, errn, "cannot create %s: %s", tmp, strerror(e));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return -e;
	}
	close(fd);
	int r = disk_format(tmp, size_mb, label, journal, err, errn);
	if (r == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, replace ? 0 : RENAME_NOREPLACE) < 0) {
		r = -errno;
		if (r != -EEXIST)
			snprintf(err, errn, "rename %s: %s", tmp, strerror(errno));
	}
	if (r < 0)
		unlink(tmp);
	return r;
}

/* The cached empty ext4 of size_mb, made on first use. */
static int disk_template(long long size_mb, char *path, size_t n, char *err, size_t errn)
{
	char cache[4096], dir[4200];
	int r = paths_cache_dir(cache, sizeof(cache));
	if (r < 0) {
		snprintf(err, errn, "no cache directory: %s", strerror(-r));
		return r;
	}
	snprintf(dir, sizeof(dir), "%s/disks", cache);
	if (snprintf(path, n, "%s/ext4-nojournal-%lldM.img", dir, size_mb) >= (int)n)
		return -ENAMETOOLONG;
	struct stat st;
	if (stat(path, &st) == 0 && st.st_size == (off_t)size_mb << 20)
		return 0;
	if ((r = mkdir_p(dir, 0700)) < 0) {
		snprintf(err, errn, "cannot create %s: %s", dir, strerror(-r));
		return r;
	}
	/* A concurrent start may make the same one: both are identical, the last rename wins. */
	return disk_format_at(path, size_mb, "matchlock-disk", true, false, err, errn);
}

/* Copy src into the new file dst: a reflink where the file system has them, else sparsely. */
static int copy_sparse(int src, int dst, off_t size)
{
	if (ioctl(dst, FICLONE, src) == 0)
		return 0;
	return sparse_copy(src, dst, size);
}

/* Open src and create dst (which must not exist), then copy_sparse; -errno. */
static int copy_new(const char *from, const char *path)
{
	struct stat st;
	int src = open(from, O_RDONLY | O_CLOEXEC);
	int dst = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int r =
	    src < 0 || dst < 0 || fstat(src, &st) < 0 ? -errno : copy_sparse(src, dst, st.st_size);
	if (r < 0 && dst >= 0)
		unlink(path);
	if (src >= 0)
		close(src);
	if (dst >= 0)
		close(dst);
	return r;
}

int disk_copy(const char *src, const char *dst)
{
	char tmp[4300];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", dst, getpid());
	unlink(tmp);
	int r = copy_new(src, tmp);
	if (r == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

int disk_make(const char *dir, long long size_mb, const char *from, char *path, size_t n, char *err,
	      size_t errn)
{
	char tpl[4300];
	int r = from ? 0 : disk_template(size_mb, tpl, sizeof(tpl), err, errn);
	if (r < 0)
		return r;
	if (snprintf(path, n, "%s/" DISK_FILE, dir) >= (int)n)
		return -ENAMETOOLONG;
	r = copy_new(from ? from : tpl, path);
	if (r < 0)
		snprintf(err, errn, "cannot make the sandbox's disk %s: %s", path, strerror(-r));
	return r;
}

/* ---- named volumes ---- */

bool volume_name_ok(const char *name)
{
	size_t n = strlen(name);
	return n && n <= VOLUME_NAME_MAX && name[0] != '.' && name[0] != '-' &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
		   n;
}

static int volume_dir(char *out, size_t n)
{
	char cache[4096];
	int r = paths_cache_dir(cache, sizeof(cache));
	if (r < 0)
		return r;
	return snprintf(out, n, "%s/volumes", cache) >= (int)n ? -ENAMETOOLONG : 0;
}

int volume_path(const char *name, char *out, size_t n)
{
	char dir[4200];
	int r = volume_dir(dir, sizeof(dir));
	if (r < 0)
		return r;
	if (!volume_name_ok(name))
		return -EINVAL;
	return snprintf(out, n, "%s/%s.ext4", dir, name) >= (int)n ? -ENAMETOOLONG : 0;
}

int volume_create(const char *name, long long size_mb, char *err, size_t errn)
{
	char dir[4200], path[4400];
	int r = volume_dir(dir, sizeof(dir));
	if (r == 0 && (r = volume_path(name, path, sizeof(path))) < 0)
		r = -EINVAL;
	if (r < 0) {
		snprintf(err, errn, "volume %.80s: %s", name,
			 r == -EINVAL ? "use 1-64 letters, digits, '_', '.' or '-' (not first)"
				      : strerror(-r));
		return r;
	}
	if ((r = mkdir_p(dir, 0700)) < 0) {
		snprintf(err, errn, "cannot create %s: %s", dir, strerror(-r));
		return r;
	}
	r = disk_format_at(path, size_mb, "matchlock-volume", false, true, err, errn);
	if (r == -EEXIST)
		snprintf(err, errn, "volume %s already exists (matchlock volume rm %s)", name,
			 name);
	return r;
}

/* Open a volume's file; -ENOENT / -EINVAL with err. */
static int volume_open(const char *name, char *err, size_t errn)
{
	char path[4400];
	if (volume_path(name, path, sizeof(path)) < 0) {
		snprintf(err, errn, "volume %.80s: not a volume name", name);
		return -EINVAL;
	}
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT)
			snprintf(err, errn, "volume %s does not exist (matchlock volume create %s)",
				 name, name);
		else
			snprintf(err, errn, "volume %s: %s", name, strerror(e));
		return -e;
	}
	return fd;
}

int volume_lock(const char *name, bool rw, char *err, size_t errn)
{
	int fd = volume_open(name, err, errn);
	if (fd < 0)
		return fd;
	if (flock(fd, (rw ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK) {
			snprintf(err, errn, "volume %s is in use by a running sandbox%s", name,
				 rw ? "" : " that writes it");
			return -EBUSY;
		}
		snprintf(err, errn, "volume %s: lock: %s", name, strerror(e));
		return -e;
	}
	return fd;
}

int volume_remove(const char *name, char *err, size_t errn)
{
	char path[4400];
	int fd = volume_lock(name, true, err, errn);
	if (fd < 0)
		return fd;
	volume_path(name, path, sizeof(path));
	int r = unlink(path) < 0 ? -errno : 0;
	if (r < 0)
		snprintf(err, errn, "cannot remove %s: %s", path, strerror(-r));
	close(fd);
	return r;
}

int volume_list(int (*fn)(const char *name, long long size_mb, bool in_use, void *opaque),
		void *opaque)
{
	char dir[4200];
	int r = volume_dir(dir, sizeof(dir));
	if (r < 0)
		return r;
	struct dirent **names = NULL;
	int k = scandir(dir, &names, NULL, alphasort);
	if (k < 0)
		return errno == ENOENT ? 0 : -errno;
	for (int i = 0; i < k; i++) {
		char name[VOLUME_NAME_MAX + 8], err[300];
		size_t len = strlen(names[i]->d_name);
		struct stat st;
		if (len < 6 || len - 5 > VOLUME_NAME_MAX ||
		    strcmp(names[i]->d_name + len - 5, ".ext4") != 0)
			continue; /* not a volume, or one being made (.tmp.PID) */
		snprintf(name, sizeof(name), "%.*s", (int)(len - 5), names[i]->d_name);
		if (r < 0 || !volume_name_ok(name))
			continue;
		int fd = volume_open(name, err, sizeof(err));
		if (fd < 0 || fstat(fd, &st) < 0) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		bool in_use = flock(fd, LOCK_EX | LOCK_NB) < 0;
		close(fd);
		r = fn(name, (long long)(st.st_size >> 20), in_use, opaque);
	}
	for (int i = 0; i < k; i++)
		free(names[i]);
	free(names);
	return r < 0 ? r : 0;
}
