/* SPDX-License-Identifier: MIT */
/*
 * `image import TAG < tar`: a `docker save` archive (manifest.json naming a config and layer
 * tars) or an OCI image layout (index.json + blobs/sha256/…), either possibly compressed. The
 * archive streams once: every regular file goes to a temp file in the store while it is hashed;
 * afterwards the manifest decides which files are blobs of the image, only those are moved into
 * the blob store, and every temp file is gone when we return, success or not.
 *
 * The bounds of a pull apply while the archive streams, before anything is written: an entry's
 * size as its header declares it (and the bytes that follow, counted) is at most
 * OCI_MAX_MANIFEST_BYTES for manifest.json and index.json, OCI_MAX_CONFIG_BYTES for another
 * .json file (docker save's configs) and OCI_MAX_BLOB_BYTES for anything else; all files
 * together at most OCI_MAX_IMAGE_BYTES; at most OCI_MAX_LAYER_ENTRIES entries. Files no image
 * can use (docker save's legacy VERSION, json and repositories, oci-layout) are not written.
 *
 * A pull writes what it downloads, byte for byte; an import may be compressed, so a few MB in
 * could stage gigabytes. The staged bytes are also held to IMPORT_MAX_EXPANSION times what was
 * read from the archive, plus IMPORT_EXPANSION_SLACK: image tars compress a few times over, a
 * compression bomb thousands of times.
 */
#define _GNU_SOURCE
#include "oci.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "store.h"
#include "unpack.h"

#define IMPORT_MAX_EXPANSION 64
#define IMPORT_EXPANSION_SLACK (64ull << 20)

#define IMPORT_MAX_FILES 4096 /* regular files in one archive */
#define IMPORT_MAX_LINKS 4096 /* symlinks (old docker save shares layers this way) */

struct file {
	char *name; /* cleaned path inside the archive */
	char tmp[4200];
	char digest[OCI_DIGEST_LEN + 1];
	uint64_t size;
	bool used;
};

struct link {
	char *name, *target; /* target already resolved to an archive path */
};

struct import {
	struct oci_store st;
	struct file *files;
	size_t nfiles;
	struct link *links;
	size_t nlinks;
	uint64_t total; /* bytes of the files kept so far (OCI_MAX_IMAGE_BYTES, the expansion) */
};

static struct file *by_name(struct import *im, const char *name)
{
	char clean[OCI_MAX_PATH + 1];
	if (oci_tar_path_clean(name, clean, sizeof(clean)) != 0)
		return NULL;
	for (int hop = 0; hop < 8; hop++) {
		bool moved = false;
		for (size_t i = 0; i < im->nfiles; i++)
			if (!strcmp(im->files[i].name, clean))
				return &im->files[i];
		for (size_t i = 0; i < im->nlinks; i++)
			if (!strcmp(im->links[i].name, clean)) {
				snprintf(clean, sizeof(clean), "%s", im->links[i].target);
				moved = true;
				break;
			}
		if (!moved)
			break;
	}
	return NULL;
}

static struct file *by_digest(struct import *im, const char *digest)
{
	for (size_t i = 0; i < im->nfiles; i++)
		if (!strcmp(im->files[i].digest, digest))
			return &im->files[i];
	return NULL;
}

/* A size for an error message, in binary units: "17 GiB", "4 MiB". */
static void fmt_bytes(uint64_t n, char *out, size_t outn)
{
	if (n >= (1ull << 30))
		snprintf(out, outn, "%.4g GiB", (double)n / (1ull << 30));
	else if (n >= (1u << 20))
		snprintf(out, outn, "%.4g MiB", (double)n / (1u << 20));
	else
		snprintf(out, outn, "%llu bytes", (unsigned long long)n);
}

/* The most bytes the file at clean path may hold (see the top of the file); 0: not written. */
static uint64_t entry_limit(const char *clean)
{
	const char *base = strrchr(clean, '/');
	base = base ? base + 1 : clean;
	size_t len = strlen(base);
	bool top = base == clean;
	if (top && (!strcmp(clean, "manifest.json") || !strcmp(clean, "index.json")))
		return OCI_MAX_MANIFEST_BYTES;
	if ((top && (!strcmp(clean, "repositories") || !strcmp(clean, "oci-layout"))) ||
	    (!top && (!strcmp(base, "VERSION") || !strcmp(base, "json"))))
		return 0;
	if (strncmp(clean, "blobs/", 6) && len > 5 && !strcmp(base + len - 5, ".json"))
		return OCI_MAX_CONFIG_BYTES;
	return OCI_MAX_BLOB_BYTES;
}

/* A symlink's target, relative to the link's directory, as a clean archive path. */
static int resolve_link(const char *name, const char *target, char **out)
{
	char joined[2 * OCI_MAX_PATH + 2], clean[OCI_MAX_PATH + 1];
	const char *slash = strrchr(name, '/');
	if (target[0] == '/')
		return -EINVAL;
	snprintf(joined, sizeof(joined), "%.*s%s%s", slash ? (int)(slash - name) : 0, name,
		 slash ? "/" : "", target);
	/* Fold "dir/../x" ourselves: the cleaner refuses "..", as it must for layers. */
	char *parts[OCI_MAX_DEPTH];
	size_t np = 0;
	for (char *save, *t = strtok_r(joined, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
		if (!strcmp(t, "."))
			continue;
		if (!strcmp(t, "..")) {
			if (np == 0)
				return -EINVAL;
			np--;
			continue;
		}
		if (np == OCI_MAX_DEPTH)
			return -EINVAL;
		parts[np++] = t;
	}
	size_t len = 0;
	clean[0] = 0;
	for (size_t i = 0; i < np; i++) {
		int k = snprintf(clean + len, sizeof(clean) - len, "%s%s", i ? "/" : "", parts[i]);
		if (k < 0 || (size_t)k >= sizeof(clean) - len)
			return -EINVAL;
		len += (size_t)k;
	}
	*out = strdup(clean);
	return *out ? 0 : -ENOMEM;
}

/* A symlink entry: kept (name and target resolved inside the archive) for later lookups. */
static int import_link(struct import *im, struct archive_entry *e, const char *clean, char *err,
		       size_t errn)
{
	if (im->nlinks >= IMPORT_MAX_LINKS) {
		snprintf(err, errn, "import: more than %d symlinks", IMPORT_MAX_LINKS);
		return -E2BIG;
	}
	struct link *l = &im->links[im->nlinks];
	const char *t = archive_entry_symlink(e);
	if (!t || resolve_link(clean, t, &l->target) < 0) {
		snprintf(err, errn, "import: symlink %s points outside the archive", clean);
		return -EPERM;
	}
	if (!(l->name = strdup(clean))) {
		free(l->target);
		return -ENOMEM;
	}
	im->nlinks++;
	return 0;
}

/*
 * The entry's bytes into tfd, hashed and counted as they come (what follows a header is not
 * trusted to match it), within the entry's limit, the image's and the expansion bound.
 */
static int import_copy(struct import *im, struct archive *a, struct file *f, int tfd,
		       uint64_t limit, const char *clean, char *err, size_t errn)
{
	static char chunk[1 << 16];
	struct oci_hasher h;
	int r = oci_hasher_init(&h);
	if (r < 0)
		return r;
	la_ssize_t got;
	while ((got = archive_read_data(a, chunk, sizeof(chunk))) > 0) {
		oci_hasher_update(&h, chunk, (size_t)got);
		f->size += (uint64_t)got;
		im->total += (uint64_t)got;
		if (f->size > limit || im->total > OCI_MAX_IMAGE_BYTES)
			break;
		uint64_t raw = (uint64_t)archive_filter_bytes(a, -1);
		if (im->total > IMPORT_EXPANSION_SLACK + IMPORT_MAX_EXPANSION * raw) {
			snprintf(err, errn,
				 "import: the archive expands more than %d times over "
				 "(%llu MiB from %llu KiB read): refused as a compression bomb",
				 IMPORT_MAX_EXPANSION, (unsigned long long)(im->total >> 20),
				 (unsigned long long)(raw >> 10));
			oci_hasher_final(&h, f->digest);
			return -EFBIG;
		}
		if ((r = write_all(tfd, chunk, (size_t)got)) < 0)
			break;
	}
	oci_hasher_final(&h, f->digest);
	if (got < 0) {
		snprintf(err, errn, "import: the archive is truncated or corrupt: %s",
			 archive_error_string(a));
		return -EIO;
	}
	if (r < 0 || f->size > limit || im->total > OCI_MAX_IMAGE_BYTES) {
		snprintf(err, errn, "import: writing %s: %s", clean,
			 r < 0 ? strerror(-r) : "over the size limit for it");
		return r < 0 ? r : -EFBIG;
	}
	/* OCI layouts name blobs by digest: the name must be the truth. */
	if (!strncmp(clean, "blobs/sha256/", 13) && strcmp(clean + 13, f->digest + 7)) {
		snprintf(err, errn,
			 "import: %s does not match its digest (it hashes to %s): the archive is "
			 "corrupt",
			 clean, f->digest);
		return -EBADMSG;
	}
	return 0;
}

/* A regular file we may need (entry_limit() says which): refused by its declared size first. */
static int import_file(struct import *im, struct archive *a, struct archive_entry *e,
		       const char *clean, char *err, size_t errn)
{
	uint64_t limit = entry_limit(clean);
	int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
	char got_s[32], lim_s[32];
	if (limit == 0)
		return 0;
	if (declared < 0 || (uint64_t)declared > limit) {
		fmt_bytes((uint64_t)declared, got_s, sizeof(got_s));
		fmt_bytes(limit, lim_s, sizeof(lim_s));
		snprintf(err, errn, "import: %.200s is %s, over the limit of %s for it: refused",
			 clean, got_s, lim_s);
		return -EFBIG;
	}
	if ((uint64_t)declared > OCI_MAX_IMAGE_BYTES - im->total) {
		snprintf(err, errn, "import: the archive's files pass %llu GiB: refused",
			 (unsigned long long)(OCI_MAX_IMAGE_BYTES >> 30));
		return -EFBIG;
	}
	if (im->nfiles >= IMPORT_MAX_FILES) {
		snprintf(err, errn, "import: more than %d files in the archive", IMPORT_MAX_FILES);
		return -E2BIG;
	}
	struct file *f = &im->files[im->nfiles];
	memset(f, 0, sizeof(*f));
	if (!(f->name = strdup(clean)))
		return -ENOMEM;
	int tfd = oci_store_tmp_open(&im->st, f->tmp, sizeof(f->tmp));
	if (tfd < 0) {
		free(f->name);
		snprintf(err, errn, "import: cannot create a temp file: %s", strerror(-tfd));
		return tfd;
	}
	im->nfiles++;
	int r = import_copy(im, a, f, tfd, limit, clean, err, errn);
	close(tfd);
	return r;
}

static int read_entries(struct import *im, int fd, char *err, size_t errn)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	char clean[OCI_MAX_PATH + 1];
	int r = 0, k = ARCHIVE_EOF;
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	if (archive_read_open_fd(a, fd, 1 << 16) != ARCHIVE_OK) {
		snprintf(err, errn, "import: cannot read the archive: %s", archive_error_string(a));
		archive_read_free(a);
		return -EINVAL;
	}
	uint64_t entries = 0;
	while (r == 0 && (k = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		if (++entries > OCI_MAX_LAYER_ENTRIES) {
			snprintf(err, errn, "import: more than %u entries in the archive",
				 OCI_MAX_LAYER_ENTRIES);
			r = -E2BIG;
		} else if (!name || oci_tar_path_clean(name, clean, sizeof(clean)) < 0) {
			snprintf(err, errn, "import: refused archive entry '%.200s'",
				 name ? name : "");
			r = -EPERM;
		} else if (archive_entry_filetype(e) == AE_IFLNK) {
			r = import_link(im, e, clean, err, errn);
		} else if (archive_entry_filetype(e) == AE_IFREG) {
			r = import_file(im, a, e, clean, err, errn);
		}
	}
	if (r == 0 && k != ARCHIVE_EOF) {
		snprintf(err, errn, "import: the archive is truncated or corrupt: %s",
			 archive_error_string(a));
		r = -EIO;
	}
	archive_read_free(a);
	return r;
}

static char *slurp(struct file *f, size_t max, size_t *len)
{
	char *s = NULL;
	if (f->size > max || read_file_str(f->tmp, max, &s) < 0)
		return NULL;
	*len = (size_t)f->size;
	return s;
}

static const char *sniff_layer_type(struct file *f)
{
	unsigned char m[4] = { 0 };
	FILE *fp = fopen(f->tmp, "re");
	if (fp) {
		if (fread(m, 1, 4, fp) != 4)
			memset(m, 0, 4);
		fclose(fp);
	}
	if (m[0] == 0x1f && m[1] == 0x8b)
		return "application/vnd.oci.image.layer.v1.tar+gzip";
	if (m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
		return "application/vnd.oci.image.layer.v1.tar+zstd";
	return "application/vnd.oci.image.layer.v1.tar";
}

/* docker save: manifest.json → a synthesised OCI manifest (malloc'd JSON text). */
static int docker_manifest(struct import *im, struct file *mf, char **out, char *err, size_t errn)
{
	size_t len;
	char *text = slurp(mf, OCI_MAX_MANIFEST_BYTES, &len);
	json_t *root = text ? json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	free(text);
	json_t *first = json_array_get(root, 0);
	json_t *cfg = json_object_get(first, "Config"), *layers = json_object_get(first, "Layers");
	int r = -EINVAL;
	if (!json_is_string(cfg) || !json_is_array(layers) || json_array_size(layers) == 0 ||
	    json_array_size(layers) > OCI_MAX_LAYERS) {
		snprintf(err, errn,
			 "import: manifest.json is not a docker save manifest (need Config and "
			 "1 to %d Layers)",
			 OCI_MAX_LAYERS);
		goto out;
	}
	if (json_array_size(root) > 1)
		fprintf(stderr, "matchlock: the archive holds %zu images; importing the first\n",
			json_array_size(root));
	struct file *cf = by_name(im, json_string_value(cfg));
	if (!cf) {
		snprintf(err, errn,
			 "import: config %.200s named in manifest.json is not in the archive",
			 json_string_value(cfg));
		goto out;
	}
	json_t *m = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:[]}", "schemaVersion", 2,
			      "mediaType", "application/vnd.oci.image.manifest.v1+json", "config",
			      "mediaType", "application/vnd.oci.image.config.v1+json", "digest",
			      cf->digest, "size", (json_int_t)cf->size, "layers");
	json_t *ml = json_object_get(m, "layers");
	for (size_t i = 0; m && i < json_array_size(layers); i++) {
		json_t *l = json_array_get(layers, i);
		struct file *lf = json_is_string(l) ? by_name(im, json_string_value(l)) : NULL;
		if (!lf) {
			snprintf(err, errn,
				 "import: layer %zu named in manifest.json is not in the archive",
				 i);
			json_decref(m);
			goto out;
		}
		json_array_append_new(ml, json_pack("{s:s, s:s, s:I}", "mediaType",
						    sniff_layer_type(lf), "digest", lf->digest,
						    "size", (json_int_t)lf->size));
	}
	*out = m ? json_dumps(m, JSON_COMPACT) : NULL;
	json_decref(m);
	r = *out ? 0 : -ENOMEM;
out:
	json_decref(root);
	return r;
}

/* OCI layout: index.json → the linux/amd64 (or only) manifest's bytes (malloc'd). */
static int layout_manifest(struct import *im, struct file *idxf, char **out, size_t *olen,
			   char *err, size_t errn)
{
	size_t len;
	char *text = slurp(idxf, OCI_MAX_MANIFEST_BYTES, &len), why[400];
	struct file *cur = idxf;
	int r = -EINVAL;
	for (int depth = 0; text && depth < 3; depth++) {
		struct oci_manifest m;
		if ((r = oci_manifest_parse(text, len, NULL, &m, why, sizeof(why))) < 0) {
			snprintf(err, errn, "import: %s: %s", cur->name, why);
			break;
		}
		if (m.kind == OCI_KIND_MANIFEST) {
			oci_manifest_fini(&m);
			*out = text;
			*olen = len;
			return 0;
		}
		int i = m.n == 1 && !m.entries[0].os[0]
			    ? 0
			    : oci_index_choose(&m, OCI_OS, OCI_ARCH, why, sizeof(why));
		if (i < 0) {
			snprintf(err, errn, "import: %s", why);
			oci_manifest_fini(&m);
			r = i;
			break;
		}
		cur = by_digest(im, m.entries[i].digest);
		oci_manifest_fini(&m);
		free(text);
		text = NULL;
		if (!cur) {
			snprintf(err, errn,
				 "import: the manifest named in index.json is not in the archive");
			return -ENOENT;
		}
		text = slurp(cur, OCI_MAX_MANIFEST_BYTES, &len);
		r = -EINVAL;
	}
	if (r == -EINVAL && !*err)
		snprintf(err, errn, "import: cannot read the image index from the archive");
	free(text);
	return r < 0 ? r : -EINVAL;
}

static int finish(struct import *im, const char *tag, const char *mtext, size_t mlen,
		  char digest[72], char *err, size_t errn)
{
	struct oci_manifest m;
	struct oci_image_config cfg = { 0 };
	char why[400], name[600];
	struct oci_ref ref;
	int r = oci_manifest_parse(mtext, mlen, NULL, &m, why, sizeof(why));
	if (r < 0 || m.kind != OCI_KIND_MANIFEST) {
		snprintf(err, errn, "import: bad image manifest: %s", r < 0 ? why : "an index");
		if (r == 0)
			oci_manifest_fini(&m);
		return -EINVAL;
	}
	struct file *cf = by_digest(im, m.config.digest);
	size_t clen;
	char *ctext = cf ? slurp(cf, OCI_MAX_CONFIG_BYTES, &clen) : NULL;
	if (!ctext || (r = oci_config_parse(ctext, clen, &cfg, err, errn)) < 0) {
		if (!ctext)
			snprintf(err, errn, "import: the image config is missing from the archive");
		r = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < m.n; i++) {
		struct file *lf = by_digest(im, m.entries[i].digest);
		if (!lf || lf->size != m.entries[i].size ||
		    oci_layer_compression(m.entries[i].media_type) < 0) {
			snprintf(err, errn,
				 "import: layer %zu (%s) is missing, of the wrong size, or of an "
				 "unsupported type",
				 i, m.entries[i].digest);
			r = -EINVAL;
			goto out;
		}
		lf->used = true;
	}
	cf->used = true;
	for (size_t i = 0; i < im->nfiles; i++) {
		struct file *f = &im->files[i];
		if (!f->used || !f->tmp[0])
			continue;
		/* The same content may appear twice; the first commit consumes the temp file. */
		if (oci_store_has_blob(&im->st, f->digest))
			r = 0;
		else
			r = oci_store_blob_commit(&im->st, f->tmp, f->digest);
		if (r < 0) {
			snprintf(err, errn, "import: storing %s: %s", f->digest, strerror(-r));
			goto out;
		}
	}
	if ((r = oci_store_blob_put(&im->st, mtext, mlen, digest)) < 0) {
		snprintf(err, errn, "import: storing the manifest: %s", strerror(-r));
		goto out;
	}
	if ((r = oci_ref_parse(tag, &ref, err, errn)) < 0)
		goto out;
	oci_ref_name(&ref, name, sizeof(name));
	uint64_t size = m.config.size;
	for (size_t i = 0; i < m.n; i++)
		size += m.entries[i].size;
	struct oci_store_image img = { .name = name,
				       .digest = digest,
				       .source = "import",
				       .size = size,
				       .created = cfg.created ? cfg.created : time(NULL) };
	if ((r = oci_store_tag(&im->st, &img, &m)) < 0)
		snprintf(err, errn, "import: recording %s in the image index failed", name);
out:
	free(ctext);
	oci_config_fini(&cfg);
	oci_manifest_fini(&m);
	return r;
}

int oci_image_import(const char *tag, int fd, char digest[72], char *err, size_t errn)
{
	struct import im = { 0 };
	struct oci_ref ref;
	char *mtext = NULL;
	size_t mlen = 0;
	int r = oci_ref_parse(tag, &ref, err, errn);
	if (r < 0)
		return r;
	if (ref.digest[0]) {
		snprintf(err, errn, "import: give a tag (NAME[:TAG]), not a digest");
		return -EINVAL;
	}
	if ((r = oci_store_open(&im.st, false, err, errn)) < 0)
		return r;
	im.files = calloc(IMPORT_MAX_FILES, sizeof(*im.files));
	im.links = calloc(IMPORT_MAX_LINKS, sizeof(*im.links));
	if (!im.files || !im.links) {
		r = -ENOMEM;
		snprintf(err, errn, "out of memory");
		goto out;
	}
	if ((r = read_entries(&im, fd, err, errn)) < 0)
		goto out;
	struct file *mf = by_name(&im, "manifest.json"), *idx = by_name(&im, "index.json");
	if (mf) {
		r = docker_manifest(&im, mf, &mtext, err, errn);
		mlen = mtext ? strlen(mtext) : 0;
	} else if (idx) {
		r = layout_manifest(&im, idx, &mtext, &mlen, err, errn);
	} else {
		snprintf(err, errn,
			 "import: not a docker save archive or an OCI layout (no manifest.json "
			 "or index.json at the top)");
		r = -EINVAL;
	}
	if (r == 0)
		r = finish(&im, tag, mtext, mlen, digest, err, errn);
out:
	for (size_t i = 0; im.files && i < im.nfiles; i++) {
		unlink(im.files[i].tmp); /* committed ones were renamed away already */
		free(im.files[i].name);
	}
	for (size_t i = 0; im.links && i < im.nlinks; i++) {
		free(im.links[i].name);
		free(im.links[i].target);
	}
	free(im.files);
	free(im.links);
	free(mtext);
	oci_store_close(&im.st);
	return r;
}
