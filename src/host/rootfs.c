/* SPDX-License-Identifier: MIT */
/*
 * The cache key of a directory is a SHA-256 over every entry's relative path, type, mode,
 * owner, size, symlink target, inode number and mtime/ctime in nanoseconds: any write to a file
 * changes its ctime, so a changed tree gets a new key without reading every byte. A tarball's
 * key is the SHA-256 of its bytes. Tarballs are unpacked with libarchive's secure flags (no
 * "..", no absolute paths, no writes through symlinks) into a private staging directory.
 */
#define _GNU_SOURCE
#include "rootfs.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/paths.h"
#include "common/util.h"
#include "oci/ext4.h"

static EVP_MD_CTX *walk_md;
static size_t walk_root_len;
static bool walk_stable; /* leave out inode numbers and ctimes (rootfs_prepare_flags) */

static int walk_hash(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	char rec[4096 + 512];
	char target[4096] = "";
	if (S_ISLNK(st->st_mode)) {
		ssize_t k = readlink(path, target, sizeof(target) - 1);
		target[k > 0 ? k : 0] = 0;
	}
	/*
	 * A stable key also leaves out the times of directories, symlinks and empty files: an
	 * engine makes its mount points (/etc/mtab, an empty /etc/hostname) in each container.
	 */
	bool loose = walk_stable && (S_ISDIR(st->st_mode) || S_ISLNK(st->st_mode) ||
				     (S_ISREG(st->st_mode) && !st->st_size));
	int n =
	    snprintf(rec, sizeof(rec), "%s\n%o %u %u %lld %llu %lld.%ld %lld.%ld %s\n",
		     path + walk_root_len, st->st_mode, st->st_uid, st->st_gid,
		     (long long)st->st_size, walk_stable ? 0ULL : (unsigned long long)st->st_ino,
		     loose ? 0LL : (long long)st->st_mtim.tv_sec, loose ? 0L : st->st_mtim.tv_nsec,
		     walk_stable ? 0LL : (long long)st->st_ctim.tv_sec,
		     walk_stable ? 0L : st->st_ctim.tv_nsec, target);
	if (n > 0)
		EVP_DigestUpdate(walk_md, rec, (size_t)n < sizeof(rec) ? (size_t)n : sizeof(rec));
	return 0;
}

static int hash_dir(const char *dir, char hex[65])
{
	unsigned char md[32];
	walk_md = EVP_MD_CTX_new();
	walk_root_len = strlen(dir);
	if (!walk_md || !EVP_DigestInit_ex(walk_md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(walk_md);
		return -ENOMEM;
	}
	if (walk_stable)
		EVP_DigestUpdate(walk_md, "dir-stable\n", 11);
	else
		EVP_DigestUpdate(walk_md, "dir\n", 4);
	int r = nftw(dir, walk_hash, 32, FTW_PHYS) < 0 ? -errno : 0;
	EVP_DigestFinal_ex(walk_md, md, NULL);
	EVP_MD_CTX_free(walk_md);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	return r;
}

static int hash_file(const char *path, char hex[65])
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	EVP_DigestUpdate(md, "tar\n", 4);
	static unsigned char chunk[1 << 16];
	ssize_t k;
	while ((k = read(fd, chunk, sizeof(chunk))) > 0)
		EVP_DigestUpdate(md, chunk, (size_t)k);
	int r = k < 0 ? -errno : 0;
	unsigned char out[32];
	EVP_DigestFinal_ex(md, out, NULL);
	EVP_MD_CTX_free(md);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", out[i]);
	return r;
}

static int untar(const char *tarball, const char *dir, char *err, size_t errn)
{
	struct archive *a = archive_read_new();
	struct archive *w = archive_write_disk_new();
	int r = 0, saved_cwd = -1;
	archive_read_support_filter_all(a);
	archive_read_support_format_tar(a);
	int flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
		    ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;
	if (geteuid() == 0)
		flags |= ARCHIVE_EXTRACT_OWNER;
	archive_write_disk_set_options(w, flags);
	if (archive_read_open_filename(a, tarball, 1 << 16) != ARCHIVE_OK) {
		snprintf(err, errn, "cannot read %s: %s", tarball, archive_error_string(a));
		r = -EINVAL;
		goto out;
	}
	/*
	 * Entries stay relative (so the secure flags can judge them) and land under the staging
	 * directory because we work from inside it.
	 */
	saved_cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (saved_cwd < 0 || chdir(dir) < 0) {
		snprintf(err, errn, "cannot enter %s: %s", dir, strerror(errno));
		r = -errno;
		goto out;
	}
	struct archive_entry *e;
	int k;
	while ((k = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		if (archive_write_header(w, e) != ARCHIVE_OK) {
			/* The secure flags refuse "..", absolute paths and symlinked parents. */
			snprintf(err, errn, "unpacking %s: refused entry: %s", tarball,
				 archive_error_string(w));
			r = -EINVAL;
			goto out;
		}
		const void *buf;
		size_t size;
		la_int64_t off;
		int d;
		while ((d = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK)
			archive_write_data_block(w, buf, size, off);
		if (d != ARCHIVE_EOF || archive_write_finish_entry(w) != ARCHIVE_OK) {
			snprintf(err, errn, "unpacking %s: %s", tarball,
				 archive_error_string(d != ARCHIVE_EOF ? a : w));
			r = -EINVAL;
			goto out;
		}
	}
	if (k != ARCHIVE_EOF) {
		snprintf(err, errn, "reading %s: %s", tarball, archive_error_string(a));
		r = -EINVAL;
	}
out:
	archive_read_free(a);
	archive_write_free(w);
	if (saved_cwd >= 0) {
		if (fchdir(saved_cwd) < 0 && r == 0)
			r = -errno;
		close(saved_cwd);
	}
	return r;
}

int rootfs_prepare(const char *src, char *out, size_t n, char *err, size_t errn)
{
	return rootfs_prepare_flags(src, 0, out, n, err, errn);
}

int rootfs_prepare_flags(const char *src, unsigned flags, char *out, size_t n, char *err,
			 size_t errn)
{
	walk_stable = flags & ROOTFS_KEY_STABLE;
	struct stat st;
	char key[65], cache[4096];
	int r;

	if (stat(src, &st) < 0) {
		r = -errno;
		snprintf(err, errn, "rootfs %s: %s", src, strerror(errno));
		return r;
	}
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
		snprintf(err, errn, "rootfs %s: not a directory or a tarball", src);
		return -EINVAL;
	}
	r = S_ISDIR(st.st_mode) ? hash_dir(src, key) : hash_file(src, key);
	if (r < 0) {
		snprintf(err, errn, "rootfs %s: %s", src, strerror(-r));
		return r;
	}
	if ((r = paths_cache_dir(cache, sizeof(cache))) < 0)
		return r;
	strncat(cache, "/rootfs", sizeof(cache) - strlen(cache) - 1);
	if ((r = mkdir_p(cache, 0700)) < 0) {
		snprintf(err, errn, "cannot create %s: %s", cache, strerror(-r));
		return r;
	}
	if (snprintf(out, n, "%s/%.32s.ext4", cache, key) >= (int)n)
		return -ENAMETOOLONG;
	if (access(out, R_OK) == 0)
		return 0;
	if (S_ISDIR(st.st_mode))
		return oci_ext4_build(src, out, err, errn);

	char stage[4200];
	snprintf(stage, sizeof(stage), "%s/.stage.XXXXXX", cache);
	if (!mkdtemp(stage)) {
		r = -errno;
		snprintf(err, errn, "mkdtemp in %s: %s", cache, strerror(errno));
		return r;
	}
	r = untar(src, stage, err, errn);
	if (r == 0)
		r = oci_ext4_build(stage, out, err, errn);
	rm_rf(stage);
	return r;
}
