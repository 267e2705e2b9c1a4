/* SPDX-License-Identifier: MIT */
/* Manifest, index and config parsing with jansson; see manifest.h. */
#define _GNU_SOURCE
#include "manifest.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"

static const struct {
	const char *type;
	enum oci_compression comp;
} layer_types[] = {
	{ "application/vnd.oci.image.layer.v1.tar", OCI_COMP_NONE },
	{ "application/vnd.oci.image.layer.v1.tar+gzip", OCI_COMP_GZIP },
	{ "application/vnd.oci.image.layer.v1.tar+zstd", OCI_COMP_ZSTD },
	{ "application/vnd.oci.image.layer.nondistributable.v1.tar", OCI_COMP_NONE },
	{ "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", OCI_COMP_GZIP },
	{ "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", OCI_COMP_ZSTD },
	{ "application/vnd.docker.image.rootfs.diff.tar", OCI_COMP_NONE },
	{ "application/vnd.docker.image.rootfs.diff.tar.gzip", OCI_COMP_GZIP },
	{ "application/vnd.docker.image.rootfs.diff.tar.zstd", OCI_COMP_ZSTD },
};

int oci_layer_compression(const char *media_type)
{
	for (size_t i = 0; i < sizeof(layer_types) / sizeof(layer_types[0]); i++)
		if (!strcmp(media_type, layer_types[i].type))
			return layer_types[i].comp;
	return -ENOTSUP;
}

/* Copy an optional string field of at most n-1 bytes; -EINVAL if present but not a fitting string.
 */
static int get_str(json_t *o, const char *key, char *out, size_t n, bool required)
{
	json_t *v = json_object_get(o, key);
	out[0] = 0;
	if (!v)
		return required ? -EINVAL : 0;
	if (!json_is_string(v) || json_string_length(v) >= n ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return -EINVAL;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int parse_descriptor(json_t *o, struct oci_descriptor *d, const char *what, char *err,
			    size_t errn)
{
	if (!json_is_object(o)) {
		snprintf(err, errn, "%s is not an object", what);
		return -EINVAL;
	}
	json_t *size = json_object_get(o, "size");
	if (get_str(o, "mediaType", d->media_type, sizeof(d->media_type), false) < 0 ||
	    get_str(o, "digest", d->digest, sizeof(d->digest), true) < 0 ||
	    !oci_digest_valid(d->digest)) {
		snprintf(err, errn,
			 "%s: missing or invalid mediaType/digest (only sha256 digests are "
			 "supported)",
			 what);
		return -EINVAL;
	}
	if (!json_is_integer(size) || json_integer_value(size) < 0 ||
	    (uint64_t)json_integer_value(size) > OCI_MAX_BLOB_BYTES) {
		snprintf(err, errn, "%s: size missing, negative or above %llu bytes", what,
			 (unsigned long long)OCI_MAX_BLOB_BYTES);
		return -EINVAL;
	}
	d->size = (uint64_t)json_integer_value(size);
	json_t *p = json_object_get(o, "platform");
	if (p && (!json_is_object(p) || get_str(p, "os", d->os, sizeof(d->os), false) < 0 ||
		  get_str(p, "architecture", d->arch, sizeof(d->arch), false) < 0 ||
		  get_str(p, "variant", d->variant, sizeof(d->variant), false) < 0)) {
		snprintf(err, errn, "%s: invalid platform", what);
		return -EINVAL;
	}
	return 0;
}

static json_t *load(const void *data, size_t len, size_t max, const char *what, char *err,
		    size_t errn)
{
	if (len > max) {
		snprintf(err, errn, "%s is %zu bytes, more than the %zu allowed", what, len, max);
		return NULL;
	}
	json_error_t je;
	json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		snprintf(err, errn, "%s is not valid JSON: %s (byte %d)", what, je.text,
			 je.position);
		return NULL;
	}
	if (!json_is_object(root)) {
		snprintf(err, errn, "%s is not a JSON object", what);
		json_decref(root);
		return NULL;
	}
	return root;
}

int oci_manifest_parse(const void *data, size_t len, const char *content_type,
		       struct oci_manifest *m, char *err, size_t errn)
{
	char mt[128] = "";
	int r = -EINVAL;
	memset(m, 0, sizeof(*m));
	json_t *root = load(data, len, OCI_MAX_MANIFEST_BYTES, "the manifest", err, errn);
	if (!root)
		return -EINVAL;
	if (get_str(root, "mediaType", mt, sizeof(mt), false) < 0) {
		snprintf(err, errn, "the manifest's mediaType is not a string");
		goto out;
	}
	if (!mt[0] && content_type) {
		size_t n = strcspn(content_type, "; ");
		snprintf(mt, sizeof(mt), "%.*s", (int)(n < sizeof(mt) ? n : sizeof(mt) - 1),
			 content_type);
	}
	json_t *sv = json_object_get(root, "schemaVersion");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
		snprintf(err, errn, "unsupported manifest schemaVersion (only 2 is supported)");
		r = -ENOTSUP;
		goto out;
	}
	json_t *list;
	const char *what;
	size_t max;
	if (!strcmp(mt, MT_DOCKER_LIST) || !strcmp(mt, MT_OCI_INDEX) ||
	    (!mt[0] && json_object_get(root, "manifests"))) {
		m->kind = OCI_KIND_INDEX;
		list = json_object_get(root, "manifests");
		what = "index entry";
		max = OCI_MAX_INDEX_ENTRIES;
	} else if (!strcmp(mt, MT_DOCKER_MANIFEST) || !strcmp(mt, MT_OCI_MANIFEST) || !mt[0]) {
		m->kind = OCI_KIND_MANIFEST;
		list = json_object_get(root, "layers");
		what = "layer";
		max = OCI_MAX_LAYERS;
		if (parse_descriptor(json_object_get(root, "config"), &m->config,
				     "the manifest's config", err, errn) < 0)
			goto out;
	} else {
		snprintf(err, errn, "unsupported manifest media type '%s'", mt);
		r = -ENOTSUP;
		goto out;
	}
	if (!json_is_array(list)) {
		snprintf(err, errn, "the manifest has no %s list", what);
		goto out;
	}
	m->n = json_array_size(list);
	if (m->n > max || (m->kind == OCI_KIND_MANIFEST && m->n == 0)) {
		snprintf(err, errn, "the manifest has %zu %ss (1 to %zu supported)", m->n, what,
			 max);
		m->n = 0;
		goto out;
	}
	m->entries = calloc(m->n ? m->n : 1, sizeof(*m->entries));
	if (!m->entries) {
		r = -ENOMEM;
		snprintf(err, errn, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < m->n; i++) {
		char w[64];
		snprintf(w, sizeof(w), "%s %zu", what, i);
		if (parse_descriptor(json_array_get(list, i), &m->entries[i], w, err, errn) < 0)
			goto out;
	}
	r = 0;
out:
	json_decref(root);
	if (r < 0)
		oci_manifest_fini(m);
	return r;
}

void oci_manifest_fini(struct oci_manifest *m)
{
	free(m->entries);
	m->entries = NULL;
	m->n = 0;
}

int oci_index_choose(const struct oci_manifest *idx, const char *os, const char *arch, char *err,
		     size_t errn)
{
	char offered[256] = "";
	size_t used = 0;
	for (size_t i = 0; i < idx->n; i++) {
		const struct oci_descriptor *d = &idx->entries[i];
		if (!strcmp(d->os, os) && !strcmp(d->arch, arch))
			return (int)i;
		/* Attestation manifests carry os "unknown": not worth listing. */
		if (d->os[0] && strcmp(d->os, "unknown") && used < sizeof(offered) - 1) {
			int k = snprintf(offered + used, sizeof(offered) - used, "%s%s/%s",
					 used ? ", " : "", d->os, d->arch);
			used = k > 0 ? used + (size_t)k : used;
			if (used >= sizeof(offered))
				used = sizeof(offered) - 1;
		}
	}
	snprintf(err, errn, "the image has no %s/%s variant (it offers: %s)", os, arch,
		 *offered ? offered : "none");
	return -ENOENT;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* A JSON array of strings (or null/absent) into a NULL-terminated vector. */
static int get_strv(json_t *o, const char *key, char ***out, char *err, size_t errn)
{
	json_t *a = json_object_get(o, key);
	*out = NULL;
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a) || json_array_size(a) > OCI_MAX_ARGS) {
		snprintf(err, errn, "image config: %s must be a list of at most %d strings", key,
			 OCI_MAX_ARGS);
		return -EINVAL;
	}
	size_t n = json_array_size(a);
	char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(a, i);
		if (!json_is_string(s) || json_string_length(s) > OCI_MAX_STRING ||
		    strlen(json_string_value(s)) != json_string_length(s) ||
		    !(v[i] = strdup(json_string_value(s)))) {
			snprintf(err, errn,
				 "image config: %s[%zu] is not a string of at most %d bytes "
				 "without NUL",
				 key, i, OCI_MAX_STRING);
			strv_free(v);
			return -EINVAL;
		}
	}
	*out = v;
	return 0;
}

/* RFC 3339 "2024-01-02T03:04:05.123Z" (fraction and offset tolerated); 0 when unparseable. */
static long long parse_time(const char *s)
{
	struct tm tm = { 0 };
	const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!e)
		return 0;
	long long t = (long long)timegm(&tm);
	while (*e == '.' || (*e >= '0' && *e <= '9'))
		e++;
	if ((*e == '+' || *e == '-') && strlen(e) >= 6) {
		int sign = *e == '-' ? -1 : 1;
		t -= sign * (((e[1] - '0') * 10 + (e[2] - '0')) * 3600 +
			     ((e[4] - '0') * 10 + (e[5] - '0')) * 60);
	}
	return t > 0 ? t : 0;
}

int oci_config_parse(const void *data, size_t len, struct oci_image_config *c, char *err,
		     size_t errn)
{
	memset(c, 0, sizeof(*c));
	json_t *root = load(data, len, OCI_MAX_CONFIG_BYTES, "the image config", err, errn);
	if (!root)
		return -EINVAL;
	int r = -EINVAL;
	char created[64], tmp[4096];
	if (get_str(root, "created", created, sizeof(created), false) == 0 && created[0])
		c->created = parse_time(created);
	if (get_str(root, "architecture", c->arch, sizeof(c->arch), false) < 0) {
		snprintf(err, errn, "image config: architecture is not a string");
		goto out;
	}
	json_t *cfg = json_object_get(root, "config");
	if (cfg && !json_is_null(cfg)) {
		if (!json_is_object(cfg)) {
			snprintf(err, errn, "image config: 'config' is not an object");
			goto out;
		}
		if ((r = get_strv(cfg, "Entrypoint", &c->entrypoint, err, errn)) < 0 ||
		    (r = get_strv(cfg, "Cmd", &c->cmd, err, errn)) < 0 ||
		    (r = get_strv(cfg, "Env", &c->env, err, errn)) < 0)
			goto out;
		r = -EINVAL;
		for (size_t i = 0; c->env && c->env[i]; i++) {
			const char *eq = strchr(c->env[i], '=');
			if (!eq || eq == c->env[i]) {
				snprintf(err, errn, "image config: Env entry %zu is not KEY=VALUE",
					 i);
				goto out;
			}
		}
		if (get_str(cfg, "User", tmp, sizeof(tmp), false) < 0) {
			snprintf(err, errn, "image config: User is not a string");
			goto out;
		}
		if (tmp[0] && !(c->user = strdup(tmp)))
			goto out;
		if (get_str(cfg, "WorkingDir", tmp, sizeof(tmp), false) < 0 ||
		    (tmp[0] && tmp[0] != '/')) {
			snprintf(err, errn, "image config: WorkingDir is not an absolute path");
			goto out;
		}
		if (tmp[0] && !(c->workdir = strdup(tmp)))
			goto out;
	}
	r = 0;
out:
	json_decref(root);
	if (r < 0)
		oci_config_fini(c);
	return r;
}

void oci_config_fini(struct oci_image_config *c)
{
	strv_free(c->entrypoint);
	strv_free(c->cmd);
	strv_free(c->env);
	free(c->user);
	free(c->workdir);
	memset(c, 0, sizeof(*c));
}

char **oci_config_argv(const struct oci_image_config *c, const char *entrypoint_override,
		       char *const *args)
{
	size_t n = 0, i;
	char *const *ep = c->entrypoint, *const *cmd = c->cmd;
	char *one[2] = { (char *)entrypoint_override, NULL };
	if (entrypoint_override) {
		ep = *entrypoint_override ? one : NULL;
		cmd = NULL; /* Docker: a new entrypoint drops the image's Cmd */
	}
	if (args && args[0])
		cmd = args;
	for (i = 0; ep && ep[i]; i++)
		n++;
	for (i = 0; cmd && cmd[i]; i++)
		n++;
	char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return NULL;
	n = 0;
	for (i = 0; ep && ep[i]; i++)
		v[n++] = ep[i];
	for (i = 0; cmd && cmd[i]; i++)
		v[n++] = cmd[i];
	return v;
}
