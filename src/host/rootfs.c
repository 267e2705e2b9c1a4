/* SPDX-License-Identifier: MIT */
/*
 * The cache key of a directory is a SHA-256 over every entry's relative path, type, mode,
 * owner, size, symlink target, inode number and mtime/ctime in nanoseconds: any write to a file
 * changes its ctime, so a changed tree gets a new key without reading every byte. A tarball's
 * key is the SHA-256 of its bytes. A tarball is written straight into the disk by the image
 * layer writer (src/oci/ext4_layers.c), which refuses "..", absolute paths and writes through
 * symlinks as it does for image layers.
 */
#define _GNU_SOURCE
#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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
	int n = snprintf(rec, sizeof(rec), "%s\n%o %u %u %lld %llu %lld.%ld %lld.%ld %s\n",
			 path + walk_root_len, st->st_mode, st->st_uid, st->st_gid,
			 (long long)st->st_size, (unsigned long long)st->st_ino,
			 (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
			 (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec, target);
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

int rootfs_prepare(const char *src, char *out, size_t n, char *err, size_t errn)
{
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
	/* A tarball goes straight into the disk, judged like an image layer (no whiteouts). */
	struct oci_ext4_layer layer = { src, src };
	return oci_ext4_from_layers(&layer, 1, false, key, out, err, errn);
}
