/* SPDX-License-Identifier: MIT */
/*
 * The local image store under <cache>/oci: content-addressed blobs (blobs/sha256/<hex>, written
 * to tmp/ and renamed into place only after their digest checked out), one read-only ext4 per
 * image digest (disks/<hex>.ext4), and metadata in SQLite (index.db, WAL): tags → manifest
 * digest, and which blobs each manifest references. A flock on the store serialises gc/rm
 * (exclusive) against pulls, imports and runs (shared), so gc never removes a blob in flight.
 */
#ifndef MATCHLOCK_OCI_STORE_H
#define MATCHLOCK_OCI_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <stdint.h>

#include "manifest.h"

struct sqlite3;

struct oci_store {
	char root[4096];
	struct sqlite3 *db;
	int lockfd;
};

/* Streaming SHA-256 for digest checks. */
struct oci_hasher {
	void *ctx;
};
int oci_hasher_init(struct oci_hasher *h);
void oci_hasher_update(struct oci_hasher *h, const void *p, size_t n);
/* Writes "sha256:<hex>" and frees the context. */
void oci_hasher_final(struct oci_hasher *h, char out[OCI_DIGEST_LEN + 1]);

int oci_store_open(struct oci_store *s, bool exclusive, char *err, size_t errn);
void oci_store_close(struct oci_store *s);

int oci_store_blob_path(const struct oci_store *s, const char *digest, char *out, size_t n);
int oci_store_disk_path(const struct oci_store *s, const char *digest, char *out, size_t n);
bool oci_store_has_blob(const struct oci_store *s, const char *digest);
/* A new private temp file in the store (same filesystem as the blobs); returns the fd. */
int oci_store_tmp_open(const struct oci_store *s, char *path, size_t n);
/*
 * Remove what process pid left half-written (it was killed while pulling, unpacking or
 * building): its temp files and staging directories, its unfinished disks. No lock needed:
 * only pid wrote them, and it is gone.
 */
void oci_store_sweep_writer(pid_t pid);
/* Move a verified temp file into the blob store as digest (or drop it if already there). */
int oci_store_blob_commit(const struct oci_store *s, const char *tmp, const char *digest);
/* Store bytes as a blob; its digest goes to digest. */
int oci_store_blob_put(const struct oci_store *s, const void *p, size_t n,
		       char digest[OCI_DIGEST_LEN + 1]);
/* Read a stored blob of at most max bytes and re-check its digest; malloc'd, NUL-terminated. */
int oci_store_blob_read(const struct oci_store *s, const char *digest, size_t max, char **out,
			size_t *len);

struct oci_store_image {
	const char *name, *digest, *source;
	uint64_t size;
	long long created;
};

/*
 * Record name → manifest digest (replacing an older tag) with the blobs the manifest references
 * (config and layers), in one transaction.
 */
int oci_store_tag(struct oci_store *s, const struct oci_store_image *img,
		  const struct oci_manifest *m);
/* The manifest digest stored under name and where it came from ("registry"...), or -ENOENT. */
#define OCI_SOURCE_MAX 16
int oci_store_lookup(struct oci_store *s, const char *name, char digest[OCI_DIGEST_LEN + 1],
		     char source[OCI_SOURCE_MAX]);
/* Call fn for every tag, sorted by name. */
int oci_store_list(struct oci_store *s, void (*fn)(const struct oci_store_image *img, void *arg),
		   void *arg);
/* Remove a tag (name, or any tag of a manifest digest); -ENOENT if nothing matched. */
int oci_store_untag(struct oci_store *s, const char *name_or_digest);
/* Drop manifests no tag refers to, blobs and disks nothing refers to, and stale temp files. */
int oci_store_gc(struct oci_store *s, uint64_t *freed, unsigned *nblobs);

#endif
