/* SPDX-License-Identifier: MIT */
/* Pull, prepare (unpack → ext4, cached per digest), list, rm, gc; see oci.h. */
#define _GNU_SOURCE
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "ext4.h"
#include "registry.h"
#include "store.h"
#include "unpack.h"

/* Fetch one blob into the store unless it is there already; nothing is stored on a mismatch. */
static int fetch_blob(struct oci_store *st, struct oci_registry *reg,
		      const struct oci_descriptor *d, char *err, size_t errn)
{
	char tmp[4200];
	if (oci_store_has_blob(st, d->digest))
		return 0;
	int fd = oci_store_tmp_open(st, tmp, sizeof(tmp));
	if (fd < 0) {
		snprintf(err, errn, "cannot create a temp file in the image store: %s",
			 strerror(-fd));
		return fd;
	}
	int r = oci_registry_get_blob(reg, d, fd, err, errn);
	if (r == 0 && fsync(fd) < 0) {
		r = -errno;
		snprintf(err, errn, "writing blob %s: %s", d->digest, strerror(errno));
	}
	close(fd);
	if (r == 0 && (r = oci_store_blob_commit(st, tmp, d->digest)) < 0)
		snprintf(err, errn, "storing blob %s: %s", d->digest, strerror(-r));
	if (r < 0)
		unlink(tmp);
	return r;
}

static uint64_t image_size(const struct oci_manifest *m)
{
	uint64_t n = m->config.size;
	for (size_t i = 0; i < m->n; i++)
		n += m->entries[i].size;
	return n;
}

static int pull_locked(struct oci_store *st, const struct oci_ref *ref, const char *insecure,
		       const char *arch, char digest[OCI_DIGEST_LEN + 1], char *err, size_t errn)
{
	struct oci_registry reg;
	struct oci_manifest m = { 0 };
	struct oci_image_config cfg = { 0 };
	char *data = NULL, *cdata = NULL, ctype[128], name[600];
	size_t len, clen;
	int r;

	if ((r = oci_registry_init(&reg, ref, insecure, err, errn)) < 0)
		return r;
	r = oci_registry_get_manifest(&reg, ref->digest[0] ? ref->digest : ref->tag, &data, &len,
				      ctype, sizeof(ctype), digest, err, errn);
	if (r < 0)
		goto out;
	/* An index points at one manifest per platform; at most one level of indirection. */
	for (int depth = 0;; depth++) {
		char why[400];
		if ((r = oci_manifest_parse(data, len, ctype, &m, why, sizeof(why))) < 0) {
			snprintf(err, errn, "%s/%s: bad manifest from the registry: %s",
				 ref->registry, ref->repo, why);
			goto out;
		}
		if (m.kind == OCI_KIND_MANIFEST)
			break;
		int i = oci_index_choose(&m, OCI_OS, arch, why, sizeof(why));
		if (i < 0 || depth > 0) {
			snprintf(err, errn, "%s/%s: %s", ref->registry, ref->repo,
				 i < 0 ? why : "nested image indexes are not supported");
			r = -ENOENT;
			goto out;
		}
		char want[OCI_DIGEST_LEN + 1];
		strcpy(want, m.entries[i].digest);
		oci_manifest_fini(&m);
		free(data);
		data = NULL;
		if ((r = oci_registry_get_manifest(&reg, want, &data, &len, ctype, sizeof(ctype),
						   digest, err, errn)) < 0)
			goto out;
	}
	for (size_t i = 0; i < m.n; i++) {
		if (oci_layer_compression(m.entries[i].media_type) < 0) {
			snprintf(err, errn, "%s/%s: layer %zu has unsupported media type '%s'",
				 ref->registry, ref->repo, i, m.entries[i].media_type);
			r = -ENOTSUP;
			goto out;
		}
	}
	if ((r = fetch_blob(st, &reg, &m.config, err, errn)) < 0)
		goto out;
	if ((r = oci_store_blob_read(st, m.config.digest, OCI_MAX_CONFIG_BYTES, &cdata, &clen)) <
	    0) {
		snprintf(err, errn, "reading config %s from the store: %s", m.config.digest,
			 strerror(-r));
		goto out;
	}
	if ((r = oci_config_parse(cdata, clen, &cfg, err, errn)) < 0)
		goto out;
	if (cfg.arch[0] && strcmp(cfg.arch, arch)) {
		snprintf(err, errn, "%s/%s is a linux/%.32s image, not linux/%s (--platform)",
			 ref->registry, ref->repo, cfg.arch, arch);
		r = -ENOEXEC;
		goto out;
	}
	for (size_t i = 0; i < m.n; i++)
		if ((r = fetch_blob(st, &reg, &m.entries[i], err, errn)) < 0)
			goto out;
	char got[OCI_DIGEST_LEN + 1];
	if ((r = oci_store_blob_put(st, data, len, got)) < 0) {
		snprintf(err, errn, "storing the manifest: %s", strerror(-r));
		goto out;
	}
	oci_ref_name(ref, name, sizeof(name));
	struct oci_store_image img = { .name = name,
				       .digest = digest,
				       .source = "registry",
				       .size = image_size(&m),
				       .created = cfg.created ? cfg.created : time(NULL) };
	if ((r = oci_store_tag(st, &img, &m)) < 0)
		snprintf(err, errn, "recording %s in the image index failed", name);
out:
	oci_registry_fini(&reg);
	oci_manifest_fini(&m);
	oci_config_fini(&cfg);
	free(data);
	free(cdata);
	return r;
}

int oci_pull(const char *s, const char *insecure, const char *arch, char digest[72], char *err,
	     size_t errn)
{
	struct oci_ref ref;
	struct oci_store st;
	int r = oci_ref_parse(s, &ref, err, errn);
	if (r < 0)
		return r;
	if (!insecure)
		insecure = getenv("MATCHLOCK_INSECURE_REGISTRY");
	if ((r = oci_store_open(&st, false, err, errn)) < 0)
		return r;
	r = pull_locked(&st, &ref, insecure, arch, digest, err, errn);
	oci_store_close(&st);
	return r;
}

/* Write every layer straight into the ext4 file; the manifest digest seeds its UUID. */
static int build_disk(struct oci_store *st, const struct oci_manifest *m, const char *digest,
		      const char *disk, char *err, size_t errn)
{
	struct oci_ext4_layer *layers = calloc(m->n ? m->n : 1, sizeof(*layers));
	char(*paths)[4200] = calloc(m->n ? m->n : 1, sizeof(*paths));
	char(*whats)[128] = calloc(m->n ? m->n : 1, sizeof(*whats));
	int r = -ENOMEM;
	if (!layers || !paths || !whats) {
		snprintf(err, errn, "building the root disk: out of memory");
		goto out;
	}
	for (size_t i = 0; i < m->n; i++) {
		snprintf(whats[i], sizeof(whats[i]), "layer %zu (%.19s…)", i, m->entries[i].digest);
		oci_store_blob_path(st, m->entries[i].digest, paths[i], sizeof(paths[i]));
		layers[i] = (struct oci_ext4_layer){ paths[i], whats[i] };
	}
	r = oci_ext4_from_layers(layers, m->n, true, digest, disk, err, errn);
out:
	free(layers);
	free(paths);
	free(whats);
	return r;
}

/*
 * local_only: -EAGAIN instead of pulling or building (the caller does that in a worker). A tag
 * names one platform's image, the last one pulled (as in Docker): a local image of another
 * architecture than arch is pulled again for arch when it came from a registry, else refused.
 */
static int image_prepare(const char *s, const char *arch, bool local_only, char *disk, size_t n,
			 struct oci_image_config *cfg, char *err, size_t errn)
{
	struct oci_ref ref;
	struct oci_store st;
	struct oci_manifest m = { 0 };
	char name[600], digest[OCI_DIGEST_LEN + 1], *data = NULL, *cdata = NULL, why[400];
	size_t len, clen;
	memset(cfg, 0, sizeof(*cfg));
	int r = oci_ref_parse(s, &ref, err, errn);
	if (r < 0)
		return r;
	oci_ref_name(&ref, name, sizeof(name));
	if ((r = oci_store_open(&st, false, err, errn)) < 0)
		return r;
	/* A local tag (imported, or pulled before) wins: no network for images we have. */
	char source[OCI_SOURCE_MAX] = "";
	r = oci_store_lookup(&st, name, digest, source);
	if (r == -ENOENT && ref.digest[0] && !ref.tag[0] && oci_store_has_blob(&st, ref.digest)) {
		strcpy(digest, ref.digest);
		r = 0;
	}
	bool pulled = false;
again:
	if (r == -ENOENT) {
		if (!strcmp(name, "docker.io/" OCI_DEFAULT_IMAGE ":latest")) {
			snprintf(err, errn,
				 "the default image is not built yet: run 'make default-image' "
				 "(or pass --image REF or --rootfs DIR)");
			goto out;
		}
		if (local_only) {
			r = -EAGAIN;
			goto out;
		}
		r = pull_locked(&st, &ref, getenv("MATCHLOCK_INSECURE_REGISTRY"), arch, digest, err,
				errn);
		pulled = true;
	} else if (r < 0) {
		snprintf(err, errn, "reading the image index: %s", strerror(-r));
	}
	if (r < 0)
		goto out;
	if ((r = oci_store_blob_read(&st, digest, OCI_MAX_MANIFEST_BYTES, &data, &len)) < 0 ||
	    (r = oci_manifest_parse(data, len, NULL, &m, why, sizeof(why))) < 0 ||
	    m.kind != OCI_KIND_MANIFEST ||
	    (r = oci_store_blob_read(&st, m.config.digest, OCI_MAX_CONFIG_BYTES, &cdata, &clen)) <
		0) {
		snprintf(err, errn,
			 "image %s is damaged in the store (%s): run 'matchlock image rm %s' "
			 "and pull it again",
			 name, r < 0 ? strerror(-r) : "not a manifest", s);
		r = r < 0 ? r : -EBADMSG;
		goto out;
	}
	if ((r = oci_config_parse(cdata, clen, cfg, err, errn)) < 0)
		goto out;
	if (cfg->arch[0] && strcmp(cfg->arch, arch)) {
		bool registry = !ref.digest[0] && !strcmp(source, "registry");
		if (registry && !local_only && !pulled) {
			oci_config_fini(cfg);
			oci_manifest_fini(&m);
			free(data);
			free(cdata);
			data = cdata = NULL;
			r = -ENOENT;
			goto again;
		}
		if (registry && local_only) {
			r = -EAGAIN;
			goto out;
		}
		snprintf(err, errn, "image %s is linux/%.32s, the sandbox is linux/%s (--platform)",
			 name, cfg->arch, arch);
		r = -ENOEXEC;
		goto out;
	}
	if ((r = oci_store_disk_path(&st, digest, disk, n)) < 0) {
		snprintf(err, errn, "image store path too long");
		goto out;
	}
	if (access(disk, R_OK) == 0)
		goto out; /* built before: no unpacking */
	r = local_only ? -EAGAIN : build_disk(&st, &m, digest, disk, err, errn);
out:
	if (r < 0)
		oci_config_fini(cfg);
	oci_manifest_fini(&m);
	free(data);
	free(cdata);
	oci_store_close(&st);
	return r;
}

int oci_image_prepare(const char *ref, const char *arch, char *disk, size_t n,
		      struct oci_image_config *cfg, char *err, size_t errn)
{
	return image_prepare(ref, arch, false, disk, n, cfg, err, errn);
}

int oci_image_open(const char *ref, const char *arch, char *disk, size_t n,
		   struct oci_image_config *cfg, char *err, size_t errn)
{
	return image_prepare(ref, arch, true, disk, n, cfg, err, errn);
}

static void list_one(const struct oci_store_image *img, void *arg)
{
	FILE *out = arg;
	char when[32] = "-";
	time_t t = (time_t)img->created;
	struct tm tm;
	if (t > 0 && gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
	fprintf(out, "%-50s %-9s %9.1fMB  %s\n", img->name, img->source, (double)img->size / 1e6,
		when);
}

int oci_image_list(FILE *out, char *err, size_t errn)
{
	struct oci_store st;
	int r = oci_store_open(&st, false, err, errn);
	if (r < 0)
		return r;
	fprintf(out, "%-50s %-9s %11s  %s\n", "TAG", "SOURCE", "SIZE", "CREATED");
	if ((r = oci_store_list(&st, list_one, out)) < 0)
		snprintf(err, errn, "reading the image index failed");
	oci_store_close(&st);
	return r;
}

void oci_sweep_writer(pid_t pid)
{
	oci_store_sweep_writer(pid);
}

int oci_image_gc(uint64_t *freed, unsigned *nblobs, char *err, size_t errn)
{
	struct oci_store st;
	int r = oci_store_open(&st, true, err, errn);
	if (r < 0)
		return r;
	if ((r = oci_store_gc(&st, freed, nblobs)) < 0)
		snprintf(err, errn, "collecting unused blobs: %s", strerror(-r));
	oci_store_close(&st);
	return r;
}

int oci_image_rm(const char *s, uint64_t *freed, unsigned *nblobs, char *err, size_t errn)
{
	struct oci_ref ref;
	struct oci_store st;
	char name[600];
	int r;
	if (oci_digest_valid(s)) {
		snprintf(name, sizeof(name), "%s", s);
	} else {
		if ((r = oci_ref_parse(s, &ref, err, errn)) < 0)
			return r;
		oci_ref_name(&ref, name, sizeof(name));
	}
	if ((r = oci_store_open(&st, true, err, errn)) < 0)
		return r;
	r = oci_store_untag(&st, name);
	if (r == -ENOENT)
		snprintf(err, errn, "no image %s in the store (see 'matchlock image ls')", name);
	else if (r < 0)
		snprintf(err, errn, "removing %s from the image index failed", name);
	else if ((r = oci_store_gc(&st, freed, nblobs)) < 0)
		snprintf(err, errn, "collecting unused blobs: %s", strerror(-r));
	oci_store_close(&st);
	return r;
}
