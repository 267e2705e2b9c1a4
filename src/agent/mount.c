/* SPDX-License-Identifier: MIT */
/*
 * The sandbox's root filesystem. The kernel starts us from a tiny initramfs. Before hello
 * (so a template holds it all) we mount /dev, /proc, /sys and the image disk (read-only ext4,
 * shared by every sandbox of that image; mount_early), then the sandbox's writable disk (ext4 on
 * a sparse host file, disk.h on the host) and an overlay of the image with its upper layer there;
 * we move the pseudo-filesystems into it, make it / and chroot into it (mount_root). Nothing is
 * in guest memory but what the kernel caches. A template saves the writable disk with the guest
 * (the host copies it while the guest is paused: snapshot.h), so every clone starts on its own
 * copy of that empty disk. Volumes are mounted at CONFIG: they are not part of a template.
 * Disks are found by their virtio serial (msg.h), not by probe order. The writable disk stays
 * visible at DISK_DIR, where overlay mounts keep their uppers too.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "common/log.h"
#include "common/util.h"
#include "proto/msg.h"

/* The initramfs's mount points (Makefile) and where the writable disk ends up. */
#define LOWER "/lower"
#define RW "/rw"
#define NEWROOT "/newroot"
#define DISK_DIR "/run/matchlock/disk"

/* The disk options: no background zeroing of inode tables (the file stays sparse). */
#define DISK_OPTS "noinit_itable"

static int mnt(const char *src, const char *dst, const char *type, unsigned long flags,
	       const char *data)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, flags, data) < 0) {
		int e = errno;
		error("mount %s on %s (%s): %s", src, dst, type, strerror(e));
		return -e;
	}
	return 0;
}

/* The block device whose virtio serial is serial: "/dev/vdX" in out, or -ENODEV. */
static int blk_find(const char *serial, char *out, size_t n)
{
	DIR *d = opendir("/sys/block");
	struct dirent *e;
	int r = -ENODEV;
	while (d && r < 0 && (e = readdir(d))) {
		char path[300], *s = NULL;
		if (strncmp(e->d_name, "vd", 2) != 0)
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/serial", e->d_name);
		if (read_file_str(path, 64, &s) < 0)
			continue;
		s[strcspn(s, "\n")] = 0;
		if (!strcmp(s, serial) && snprintf(out, n, "/dev/%s", e->d_name) < (int)n)
			r = 0;
		free(s);
	}
	if (d)
		closedir(d);
	return r;
}

int mount_early(void)
{
	int r;

	if ((r = mnt("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755")) < 0)
		return r;
	/* The kernel found no /dev/console in the initramfs: attach stdio to it now. */
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	if ((r = mnt("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) < 0 ||
	    (r = mnt("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) < 0)
		return r;
	char root[32];
	if (blk_find(MSG_ROOT_SERIAL, root, sizeof(root)) < 0) {
		error("the image disk (%s) is missing", MSG_ROOT_SERIAL);
		return -ENODEV;
	}
	return mnt(root, LOWER, "ext4", MS_RDONLY | MS_NODEV, "noload");
}

/* mnt(), saying what failed in err. */
static int mnt_say(const char *what, const char *src, const char *dst, const char *type,
		   unsigned long flags, const char *data, char *err, size_t errn)
{
	int r = mnt(src, dst, type, flags, data);
	if (r < 0)
		snprintf(err, errn, "%s: mounting %s on %s: %s", what, src, dst, strerror(-r));
	return r;
}

/* Move a mount into the new root (mount points made in the overlay when the image has none). */
static int move_in(const char *path, char *err, size_t errn)
{
	char dst[64];
	snprintf(dst, sizeof(dst), NEWROOT "%s", path);
	mkdir(dst, 0755);
	if (mount(path, dst, NULL, MS_MOVE, NULL) < 0) {
		snprintf(err, errn, "moving %s into the sandbox root: %s", path, strerror(errno));
		return -errno;
	}
	return 0;
}

int mount_root(char *err, size_t errn)
{
	static bool done;
	char disk[32];
	int r;
	if (done) {
		snprintf(err, errn, "the root file system: configured twice");
		return -EALREADY;
	}
	done = true;
	if (blk_find(MSG_DISK_SERIAL, disk, sizeof(disk)) < 0) {
		snprintf(err, errn, "the sandbox's writable disk (%s) is missing", MSG_DISK_SERIAL);
		return -ENODEV;
	}
	if ((r = mnt_say("the writable disk", disk, RW, "ext4", MS_NODEV, DISK_OPTS, err, errn)) <
	    0)
		return r;
	if (mkdir_p(RW "/root/upper", 0755) < 0 || mkdir_p(RW "/root/work", 0755) < 0) {
		r = -errno;
		snprintf(err, errn, "the writable disk: %s", strerror(errno));
		return r;
	}
	if ((r = mnt_say("the root", "overlay", NEWROOT, "overlay", 0,
			 "lowerdir=" LOWER ",upperdir=" RW "/root/upper,workdir=" RW "/root/work",
			 err, errn)) < 0)
		return r;
	if ((r = move_in("/dev", err, errn)) < 0 || (r = move_in("/proc", err, errn)) < 0 ||
	    (r = move_in("/sys", err, errn)) < 0)
		return r;
	if ((r = mnt_say("/run", "tmpfs", NEWROOT "/run", "tmpfs", MS_NOSUID | MS_NODEV,
			 "mode=0755", err, errn)) < 0)
		return r;
	if (mkdir_p(NEWROOT DISK_DIR, 0700) < 0 ||
	    mount(RW, NEWROOT DISK_DIR, NULL, MS_MOVE, NULL) < 0) {
		r = -errno;
		snprintf(err, errn, "moving the writable disk to %s: %s", DISK_DIR,
			 strerror(errno));
		return r;
	}
	if (chdir(NEWROOT) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
	    chdir("/") < 0) {
		r = -errno;
		snprintf(err, errn, "switching to the sandbox root: %s", strerror(errno));
		return r;
	}
	/* /tmp lives on the disk like the rest: a big build there must not fill memory. */
	mkdir("/tmp", 01777);
	chmod("/tmp", 01777);
	return mount_setup_sandbox(err, errn);
}

int mount_setup_sandbox(char *err, size_t errn)
{
	static const struct {
		const char *src, *dst, *type;
		unsigned long flags;
		const char *data;
	} mounts[] = {
		{ "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		  "newinstance,ptmxmode=0666,mode=0620,gid=5" },
		{ "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
	};
	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" },
		{ "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" },
		{ "/proc/self/fd/2", "/dev/stderr" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(mounts); i++) {
		int r = mnt_say("the sandbox", mounts[i].src, mounts[i].dst, mounts[i].type,
				mounts[i].flags, mounts[i].data, err, errn);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < ARRAY_SIZE(links); i++)
		(void)!symlink(links[i][0], links[i][1]);
	return 0;
}

/* ---- named volumes ---- */

struct volume {
	unsigned index;
	bool ro;
	char *guest;
};
static struct volume volumes[MSG_MAX_VOLUMES];
static unsigned nvolumes;

/* "INDEX MODE GUESTPATH" (msg.h), from the trusted host; still checked. */
int mount_volume_add(struct rd *v)
{
	char *s = NULL, *end, mode[4];
	int n = 0;
	if (nvolumes >= MSG_MAX_VOLUMES || msg_dup_str(v, MSG_MAX_STR, &s) < 0) {
		free(s);
		return -EINVAL;
	}
	unsigned long idx = strtoul(s, &end, 10);
	if (end == s || *end != ' ' || idx >= MSG_MAX_VOLUMES ||
	    sscanf(end + 1, "%3s %n", mode, &n) != 1 || end[1 + n] != '/' ||
	    (strcmp(mode, "ro") && strcmp(mode, "rw"))) {
		free(s);
		return -EINVAL;
	}
	struct volume *vol = &volumes[nvolumes];
	vol->index = (unsigned)idx;
	vol->ro = !strcmp(mode, "ro");
	vol->guest = strdup(end + 1 + n);
	free(s);
	if (!vol->guest)
		return -ENOMEM;
	nvolumes++;
	return 0;
}

int mount_volumes(char *err, size_t errn)
{
	for (unsigned i = 0; i < nvolumes; i++) {
		const struct volume *vol = &volumes[i];
		char serial[32], dev[32];
		unsigned long flags = MS_NOSUID | MS_NODEV | (vol->ro ? MS_RDONLY : 0);
		snprintf(serial, sizeof(serial), MSG_VOLUME_SERIAL "%u", vol->index);
		if (blk_find(serial, dev, sizeof(dev)) < 0) {
			snprintf(err, errn, "volume on %.300s: its disk is missing", vol->guest);
			return -ENODEV;
		}
		if (mkdir_p(vol->guest, 0755) < 0) {
			snprintf(err, errn, "volume on %.300s: creating the mount point: %s",
				 vol->guest, strerror(errno));
			return -errno;
		}
		/*
		 * A volume last written by a sandbox that was killed needs its journal replayed,
		 * which a read-only device cannot: read it as of its last checkpoint then.
		 */
		if (mount(dev, vol->guest, "ext4", flags, DISK_OPTS) < 0 &&
		    (!vol->ro || mount(dev, vol->guest, "ext4", flags, DISK_OPTS ",noload") < 0)) {
			snprintf(err, errn, "volume on %.300s: mount: %s", vol->guest,
				 strerror(errno));
			return -errno;
		}
	}
	return 0;
}

void mount_volumes_close(void)
{
	/*
	 * Everything written reaches the volume; then read-only, so the journal is clean and the
	 * next sandbox mounts it without a replay (the remount fails while a killed process still
	 * holds a file open for writing: the sync has been done anyway).
	 */
	for (unsigned i = 0; i < nvolumes; i++) {
		if (volumes[i].ro)
			continue;
		int fd = open(volumes[i].guest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			syncfs(fd);
			close(fd);
		}
		mount(NULL, volumes[i].guest, NULL, MS_REMOUNT | MS_RDONLY, NULL);
	}
}
