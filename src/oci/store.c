/* SPDX-License-Identifier: MIT */
/* The local image store; see store.h. */
#define _GNU_SOURCE
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "common/paths.h"

int oci_hasher_init(struct oci_hasher *h)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(c);
		return -ENOMEM;
	}
	h->ctx = c;
	return 0;
}

void oci_hasher_update(struct oci_hasher *h, const void *p, size_t n)
{
	EVP_DigestUpdate(h->ctx, p, n);
}

void oci_hasher_final(struct oci_hasher *h, char out[OCI_DIGEST_LEN + 1])
{
	unsigned char md[32];
	EVP_DigestFinal_ex(h->ctx, md, NULL);
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
	strcpy(out, "sha256:");
	for (int i = 0; i < 32; i++)
		sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA foreign_keys=ON;"
    "CREATE TABLE IF NOT EXISTS images(name TEXT PRIMARY KEY, digest TEXT NOT NULL,"
    " source TEXT NOT NULL, size INTEGER NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS manifest_blobs(manifest TEXT NOT NULL, blob TEXT NOT NULL,"
    " PRIMARY KEY(manifest, blob));";

int oci_store_open(struct oci_store *s, bool exclusive, char *err, size_t errn)
{
	char p[4200];
	int r;
	memset(s, 0, sizeof(*s));
	s->lockfd = -1;
	if ((r = paths_cache_dir(s->root, sizeof(s->root) - 64)) < 0) {
		snprintf(err, errn, "image store: cache directory path too long");
		return r;
	}
	strcat(s->root, "/oci");
	static const char *const subdirs[] = { "blobs/sha256", "disks", "tmp" };
	for (size_t i = 0; i < ARRAY_SIZE(subdirs); i++) {
		snprintf(p, sizeof(p), "%s/%s", s->root, subdirs[i]);
		if ((r = mkdir_p(p, 0700)) < 0) {
			snprintf(err, errn, "cannot create the image store %s: %s", p,
				 strerror(-r));
			return r;
		}
	}
	snprintf(p, sizeof(p), "%s/lock", s->root);
	s->lockfd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lockfd < 0 || flock(s->lockfd, exclusive ? LOCK_EX : LOCK_SH) < 0) {
		r = -errno;
		snprintf(err, errn, "cannot lock the image store %s: %s", p, strerror(errno));
		oci_store_close(s);
		return r;
	}
	snprintf(p, sizeof(p), "%s/index.db", s->root);
	if (sqlite3_open_v2(p, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(s->db, 10000) != SQLITE_OK ||
	    sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errn, "cannot open the image index %s: %s (remove it and pull again)",
			 p, s->db ? sqlite3_errmsg(s->db) : "out of memory");
		oci_store_close(s);
		return -EIO;
	}
	return 0;
}

void oci_store_close(struct oci_store *s)
{
	if (s->db)
		sqlite3_close(s->db);
	s->db = NULL;
	if (s->lockfd >= 0)
		close(s->lockfd);
	s->lockfd = -1;
}

int oci_store_blob_path(const struct oci_store *s, const char *digest, char *out, size_t n)
{
	if (!oci_digest_valid(digest))
		return -EINVAL;
	int k = snprintf(out, n, "%s/blobs/sha256/%s", s->root, digest + 7);
	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

int oci_store_disk_path(const struct oci_store *s, const char *digest, char *out, size_t n)
{
	if (!oci_digest_valid(digest))
		return -EINVAL;
	int k = snprintf(out, n, "%s/disks/%s.ext4", s->root, digest + 7);
	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

bool oci_store_has_blob(const struct oci_store *s, const char *digest)
{
	char p[4200];
	return oci_store_blob_path(s, digest, p, sizeof(p)) == 0 && access(p, R_OK) == 0;
}

int oci_store_tmp_open(const struct oci_store *s, char *path, size_t n)
{
	/* The writer's pid in the name: oci_store_sweep_writer() finds what a killed one left. */
	if (snprintf(path, n, "%s/tmp/blob.tmp.%d.XXXXXX", s->root, (int)getpid()) >= (int)n)
		return -ENAMETOOLONG;
	int fd = mkostemp(path, O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int oci_store_blob_commit(const struct oci_store *s, const char *tmp, const char *digest)
{
	char p[4200];
	int r = oci_store_blob_path(s, digest, p, sizeof(p));
	if (r < 0)
		return r;
	if (chmod(tmp, 0444) < 0 || rename(tmp, p) < 0) {
		r = -errno;
		unlink(tmp);
		return r;
	}
	return 0;
}

int oci_store_blob_put(const struct oci_store *s, const void *p, size_t n,
		       char digest[OCI_DIGEST_LEN + 1])
{
	char tmp[4200];
	struct oci_hasher h;
	int r = oci_hasher_init(&h);
	if (r < 0)
		return r;
	oci_hasher_update(&h, p, n);
	oci_hasher_final(&h, digest);
	if (oci_store_has_blob(s, digest))
		return 0;
	int fd = oci_store_tmp_open(s, tmp, sizeof(tmp));
	if (fd < 0)
		return fd;
	r = write_all(fd, p, n);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	return oci_store_blob_commit(s, tmp, digest);
}

int oci_store_blob_read(const struct oci_store *s, const char *digest, size_t max, char **out,
			size_t *len)
{
	char p[4200], got[OCI_DIGEST_LEN + 1];
	int r = oci_store_blob_path(s, digest, p, sizeof(p));
	if (r < 0)
		return r;
	if ((r = read_file_str(p, max, out)) < 0)
		return r;
	struct stat st;
	if (stat(p, &st) < 0 || (uint64_t)st.st_size > max) {
		free(*out);
		return -EFBIG;
	}
	*len = (size_t)st.st_size;
	struct oci_hasher h;
	if ((r = oci_hasher_init(&h)) < 0) {
		free(*out);
		return r;
	}
	oci_hasher_update(&h, *out, *len);
	oci_hasher_final(&h, got);
	if (strcmp(got, digest)) {
		free(*out);
		return -EBADMSG; /* the store was tampered with or the disk corrupted it */
	}
	return 0;
}

static int exec_sql(struct oci_store *s, const char *sql)
{
	return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

static int step_done(sqlite3_stmt *st)
{
	int k = sqlite3_step(st);
	sqlite3_finalize(st);
	return k == SQLITE_DONE ? 0 : -EIO;
}

static int add_ref(struct oci_store *s, const char *manifest, const char *blob)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO manifest_blobs VALUES(?,?)", -1, &st,
			       NULL))
		return -EIO;
	sqlite3_bind_text(st, 1, manifest, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, blob, -1, SQLITE_STATIC);
	return step_done(st);
}

int oci_store_tag(struct oci_store *s, const struct oci_store_image *img,
		  const struct oci_manifest *m)
{
	sqlite3_stmt *st;
	int r;
	if (exec_sql(s, "BEGIN IMMEDIATE") < 0)
		return -EIO;
	if ((r = add_ref(s, img->digest, img->digest)) < 0 ||
	    (r = add_ref(s, img->digest, m->config.digest)) < 0)
		goto fail;
	for (size_t i = 0; i < m->n; i++)
		if ((r = add_ref(s, img->digest, m->entries[i].digest)) < 0)
			goto fail;
	r = -EIO;
	if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO images VALUES(?,?,?,?,?)", -1, &st,
			       NULL))
		goto fail;
	sqlite3_bind_text(st, 1, img->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, img->digest, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, img->source, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)img->size);
	sqlite3_bind_int64(st, 5, img->created);
	if ((r = step_done(st)) < 0 || (r = exec_sql(s, "COMMIT")) < 0)
		goto fail;
	return 0;
fail:
	exec_sql(s, "ROLLBACK");
	return r;
}

int oci_store_lookup(struct oci_store *s, const char *name, char digest[OCI_DIGEST_LEN + 1],
		     char source[OCI_SOURCE_MAX])
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT digest, source FROM images WHERE name=?", -1, &st,
			       NULL))
		return -EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int r = -ENOENT;
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *d = (const char *)sqlite3_column_text(st, 0);
		const char *src = (const char *)sqlite3_column_text(st, 1);
		if (d && oci_digest_valid(d)) {
			strcpy(digest, d);
			snprintf(source, OCI_SOURCE_MAX, "%s", src ? src : "");
			r = 0;
		} else {
			r = -EIO;
		}
	}
	sqlite3_finalize(st);
	return r;
}

int oci_store_list(struct oci_store *s, void (*fn)(const struct oci_store_image *img, void *arg),
		   void *arg)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(
		s->db, "SELECT name, digest, source, size, created FROM images ORDER BY name", -1,
		&st, NULL))
		return -EIO;
	int k;
	while ((k = sqlite3_step(st)) == SQLITE_ROW) {
		struct oci_store_image img = {
			.name = (const char *)sqlite3_column_text(st, 0),
			.digest = (const char *)sqlite3_column_text(st, 1),
			.source = (const char *)sqlite3_column_text(st, 2),
			.size = (uint64_t)sqlite3_column_int64(st, 3),
			.created = sqlite3_column_int64(st, 4),
		};
		if (img.name && img.digest && img.source)
			fn(&img, arg);
	}
	sqlite3_finalize(st);
	return k == SQLITE_DONE ? 0 : -EIO;
}

int oci_store_untag(struct oci_store *s, const char *name_or_digest)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "DELETE FROM images WHERE name=?1 OR digest=?1", -1, &st,
			       NULL))
		return -EIO;
	sqlite3_bind_text(st, 1, name_or_digest, -1, SQLITE_STATIC);
	int r = step_done(st);
	if (r == 0 && sqlite3_changes(s->db) == 0)
		r = -ENOENT;
	return r;
}

static bool referenced(struct oci_store *s, const char *sql, const char *digest)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL))
		return true; /* when in doubt, keep */
	sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
	int k = sqlite3_step(st);
	sqlite3_finalize(st);
	return k != SQLITE_DONE;
}

/* Remove the entries of dir that fn says are unreferenced; adds their sizes to *freed. */
static int sweep(struct oci_store *s, const char *sub, const char *suffix, const char *sql,
		 uint64_t *freed, unsigned *count)
{
	char dir[4200], p[4500], digest[OCI_DIGEST_LEN + 16];
	snprintf(dir, sizeof(dir), "%s/%s", s->root, sub);
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *de;
	size_t sl = strlen(suffix);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		size_t nl = strlen(de->d_name);
		bool keep = false;
		if (sql && nl == 64 + sl && !strcmp(de->d_name + 64, suffix)) {
			snprintf(digest, sizeof(digest), "sha256:%.64s", de->d_name);
			keep = oci_digest_valid(digest) && referenced(s, sql, digest);
		}
		if (keep)
			continue;
		struct stat st;
		if (lstat(p, &st) == 0 && (S_ISDIR(st.st_mode) ? rm_rf(p) : unlink(p)) == 0) {
			*freed += (uint64_t)st.st_blocks * 512;
			if (count)
				(*count)++;
		}
	}
	closedir(d);
	return 0;
}

int oci_store_gc(struct oci_store *s, uint64_t *freed, unsigned *nblobs)
{
	*freed = 0;
	*nblobs = 0;
	if (exec_sql(
		s, "DELETE FROM manifest_blobs WHERE manifest NOT IN (SELECT digest FROM images)") <
	    0)
		return -EIO;
	int r = sweep(s, "blobs/sha256", "", "SELECT 1 FROM manifest_blobs WHERE blob=?", freed,
		      nblobs);
	if (r == 0)
		r = sweep(s, "disks", ".ext4", "SELECT 1 FROM images WHERE digest=?", freed, NULL);
	/* Under the exclusive lock no pull is running: everything in tmp/ is a leftover. */
	if (r == 0)
		r = sweep(s, "tmp", "", NULL, freed, NULL);
	return r;
}

/* Does name carry the writer's mark: ".tmp.PID" at its end or followed by a '.'? */
static bool written_by(const char *name, const char *mark)
{
	const char *m = strstr(name, mark);
	return m && (m[strlen(mark)] == 0 || m[strlen(mark)] == '.');
}

void oci_store_sweep_writer(pid_t pid)
{
	char root[4200], dir[4300], p[4600], mark[32], stage[32];
	if (paths_cache_dir(root, sizeof(root) - 64) < 0)
		return;
	snprintf(mark, sizeof(mark), ".tmp.%d", (int)pid);
	snprintf(stage, sizeof(stage), ".stage.%d", (int)pid);
	static const char *const subs[] = { "oci/tmp", "oci/disks" };
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++) {
		snprintf(dir, sizeof(dir), "%s/%s", root, subs[i]);
		DIR *d = opendir(dir);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (!written_by(de->d_name, mark) && !written_by(de->d_name, stage))
				continue;
			snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
			struct stat st;
			if (lstat(p, &st) == 0)
				(void)(S_ISDIR(st.st_mode) ? rm_rf(p) : unlink(p));
		}
		closedir(d);
	}
}
