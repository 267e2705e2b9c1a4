/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "ext4.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/child.h"

/* nftw() passes no context: the walk's totals live here (one walk at a time, no threads). */
static unsigned long long tree_bytes, tree_entries;

static int measure_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	tree_bytes += (unsigned long long)st->st_blocks * 512;
	tree_entries++;
	return 0;
}

int oci_ext4_build(const char *dir, const char *dst, char *err, size_t errn)
{
	tree_bytes = tree_entries = 0;
	if (nftw(dir, measure_entry, 32, FTW_PHYS) < 0) {
		int r = -errno;
		snprintf(err, errn, "cannot read %s: %s", dir, strerror(errno));
		return r;
	}
	/* ext4 metadata and per-file slack: generous, the file is sparse. */
	unsigned long long kib = tree_bytes / 1024 * 13 / 10 + tree_entries * 4 + 16384;
	unsigned long long inodes = tree_entries + tree_entries / 5 + 1024;
	char tmp[4200], size[32], ninodes[32];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", dst, getpid()) >= (int)sizeof(tmp)) {
		snprintf(err, errn, "building the root disk: path too long: %s", dst);
		return -ENAMETOOLONG;
	}
	snprintf(size, sizeof(size), "%lluk", kib);
	snprintf(ninodes, sizeof(ninodes), "%llu", inodes);

	char *const mkfs[] = { "mke2fs",
			       "-q",
			       "-F",
			       "-t",
			       "ext4",
			       "-O",
			       "^has_journal,^resize_inode",
			       "-m",
			       "0",
			       "-N",
			       ninodes,
			       "-L",
			       "matchlock-root",
			       "-d",
			       (char *)dir,
			       tmp,
			       size,
			       NULL };
	char out[512];
	int status = child_run(mkfs, true, out, sizeof(out));
	if (status < 0) {
		snprintf(err, errn, "cannot run mke2fs: %s", strerror(-status));
		return status;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *nl = strchr(out, '\n');
		if (nl)
			*nl = 0;
		snprintf(err, errn, "building the root disk from %s failed: %s%s", dir,
			 *out ? out : "mke2fs failed",
			 WIFEXITED(status) && WEXITSTATUS(status) == 127
			     ? " (apt-get install e2fsprogs)"
			     : "");
		unlink(tmp);
		return -EIO;
	}
	if (rename(tmp, dst) < 0) {
		int r = -errno;
		snprintf(err, errn, "rename %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return r;
	}
	return 0;
}
