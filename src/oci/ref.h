/* SPDX-License-Identifier: MIT */
/*
 * Image references: "alpine", "ghcr.io/o/r:tag", "localhost:5000/x@sha256:…", normalised the
 * way Docker does (no registry → docker.io, one-component Docker Hub names → library/…, no tag
 * → latest).
 */
#ifndef MATCHLOCK_OCI_REF_H
#define MATCHLOCK_OCI_REF_H

#include <stdbool.h>
#include <stddef.h>

#define OCI_REF_MAX 512 /* a whole reference, as typed */
#define OCI_DIGEST_LEN 71 /* "sha256:" + 64 hex */

struct oci_ref {
	char registry[256]; /* host[:port], as named ("docker.io" for Docker Hub) */
	char repo[256]; /* path inside the registry, e.g. "library/alpine" */
	char tag[129]; /* "latest" when neither tag nor digest is given; "" with a digest only */
	char digest[OCI_DIGEST_LEN + 1]; /* "" unless pinned with @sha256:… */
};

/* Parse and normalise s; -EINVAL with a reason in err for anything outside the grammar. */
int oci_ref_parse(const char *s, struct oci_ref *ref, char *err, size_t errn);
/* "registry/repo:tag" (or "@digest"): the name an image is stored under. */
int oci_ref_name(const struct oci_ref *ref, char *out, size_t n);
/* True for a well-formed "sha256:<64 lowercase hex>". */
bool oci_digest_valid(const char *d);
/* The host the API lives on: registry-1.docker.io for docker.io. */
const char *oci_ref_api_host(const struct oci_ref *ref);
/* Plain HTTP is allowed only for loopback and for the MATCHLOCK_INSECURE_REGISTRY list. */
bool oci_registry_insecure(const char *registry, const char *extra_list);

#endif
