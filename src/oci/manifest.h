/* SPDX-License-Identifier: MIT */
/*
 * Parsing what a registry or a tarball says about an image: manifests (Docker v2 schema 2 and
 * OCI), manifest lists / OCI indexes with platform choice, and image configs. Every input is
 * hostile: sizes are bounded before parsing, every field is type- and range-checked, and
 * anything unexpected is an error naming the field.
 */
#ifndef MATCHLOCK_OCI_MANIFEST_H
#define MATCHLOCK_OCI_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "ref.h"

#define OCI_MAX_MANIFEST_BYTES (4u << 20) /* manifests and indexes */
#define OCI_MAX_CONFIG_BYTES (8u << 20) /* image configs */
#define OCI_MAX_LAYERS 128
#define OCI_MAX_INDEX_ENTRIES 256
#define OCI_MAX_BLOB_BYTES (16ull << 30) /* one layer, compressed */
#define OCI_MAX_ARGS 1024 /* Entrypoint, Cmd, Env entries each */
#define OCI_MAX_STRING 65536 /* one argument or env entry */

enum oci_kind { OCI_KIND_MANIFEST, OCI_KIND_INDEX };

enum oci_compression { OCI_COMP_NONE, OCI_COMP_GZIP, OCI_COMP_ZSTD };

struct oci_descriptor {
	char media_type[128];
	char digest[OCI_DIGEST_LEN + 1];
	uint64_t size;
	char os[32], arch[32], variant[32]; /* index entries only */
};

struct oci_manifest {
	enum oci_kind kind;
	struct oci_descriptor config; /* OCI_KIND_MANIFEST */
	struct oci_descriptor *entries; /* layers (manifest) or manifests (index); malloc'd */
	size_t n;
};

/* Image config fields matchlock honours. Arrays are NULL-terminated, everything malloc'd. */
struct oci_image_config {
	char **entrypoint, **cmd, **env;
	char *user, *workdir;
	long long created; /* seconds since the epoch, 0 if unknown */
	char arch[32]; /* "architecture" ("amd64", "arm64"), "" if the config does not say */
};

/*
 * Parse a manifest or index of len bytes. content_type (may be NULL) is the HTTP Content-Type;
 * the document's own mediaType wins when present. Returns 0 or -EINVAL/-ENOTSUP with a one-line
 * reason in err. Free with oci_manifest_fini().
 */
int oci_manifest_parse(const void *data, size_t len, const char *content_type,
		       struct oci_manifest *m, char *err, size_t errn);
void oci_manifest_fini(struct oci_manifest *m);
/* Index entry for os/arch (variant ignored when NULL), or -ENOENT with the platforms offered in
 * err. */
int oci_index_choose(const struct oci_manifest *idx, const char *os, const char *arch, char *err,
		     size_t errn);
/* The compression of a layer media type; -ENOTSUP for foreign or unknown layers. */
int oci_layer_compression(const char *media_type);

int oci_config_parse(const void *data, size_t len, struct oci_image_config *c, char *err,
		     size_t errn);
void oci_config_fini(struct oci_image_config *c);

/*
 * Docker's rules for the command: entrypoint_override (may be NULL; "" clears it) replaces
 * Entrypoint and drops Cmd; args (NULL-terminated, may be empty) replace Cmd. Returns a malloc'd
 * NULL-terminated vector of borrowed strings (free only the vector), or NULL with errno set.
 */
char **oci_config_argv(const struct oci_image_config *c, const char *entrypoint_override,
		       char *const *args);

/* The platform a sandbox runs unless told otherwise: the host's (src/host/arch.h). */
#define OCI_OS "linux"
#if defined(__aarch64__)
#define OCI_ARCH "arm64"
#else
#define OCI_ARCH "amd64"
#endif

#endif
