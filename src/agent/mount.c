/* SPDX-License-Identifier: MIT */
/*
 * The sandbox's root filesystem. The kernel starts us from a tiny initramfs; we mount the image
 * disk (read-only ext4 on /dev/vda) under an overlay whose upper layer lives in guest RAM, move
 * the overlay onto / and chroot into it, then mount the usual pseudo-filesystems. The image disk
 * is shared read-only by every sandbox of that image; writes land only in this guest's memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "common/log.h"
#include "common/util.h"

#define ROOT_DISK "/dev/vda"

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

int mount_root(void)
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
	if ((r = mnt(ROOT_DISK, "/lower", "ext4", MS_RDONLY | MS_NODEV, "noload")) < 0)
		return r;
	if ((r = mnt("tmpfs", "/rw", "tmpfs", MS_NODEV, "mode=0755")) < 0)
		return r;
	mkdir("/rw/upper", 0755);
	mkdir("/rw/work", 0755);
	if ((r = mnt("overlay", "/newroot", "overlay", 0,
		     "lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work")) < 0)
		return r;
	if (chdir("/newroot") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
	    chdir("/") < 0) {
		r = -errno;
		error("switching to the sandbox root: %s", strerror(errno));
		return r;
	}
	return 0;
}

int mount_setup_sandbox(void)
{
	static const struct {
		const char *src, *dst, *type;
		unsigned long flags;
		const char *data;
	} mounts[] = {
		{ "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
		{ "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
		{ "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755" },
		{ "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		  "newinstance,ptmxmode=0666,mode=0620,gid=5" },
		{ "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
		{ "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
		{ "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755" },
	};
	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" },
		{ "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" },
		{ "/proc/self/fd/2", "/dev/stderr" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(mounts); i++) {
		int r = mnt(mounts[i].src, mounts[i].dst, mounts[i].type, mounts[i].flags,
			    mounts[i].data);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < ARRAY_SIZE(links); i++)
		(void)!symlink(links[i][0], links[i][1]);
	return 0;
}
