/* SPDX-License-Identifier: MIT */
/*
 * A client for the OCI distribution API (Docker Registry v2) over libcurl: manifests and blobs,
 * the bearer-token flow from a 401's WWW-Authenticate (anonymous, or with Docker credentials),
 * Basic auth, HTTPS with the system CAs (plain HTTP only for loopback or listed registries).
 * Every body is size-bounded while it streams, and every blob is hashed as it arrives and
 * rejected unless it matches its digest and size.
 */
#ifndef MATCHLOCK_OCI_REGISTRY_H
#define MATCHLOCK_OCI_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "manifest.h"
#include "ref.h"

#define OCI_MAX_TOKEN_RESPONSE (64u << 10)
#define OCI_MAX_TOKEN 8192

struct oci_registry {
	struct oci_ref ref;
	char base[320]; /* "https://host[:port]" */
	char auth[OCI_MAX_TOKEN + 32]; /* the Authorization header, once we have one */
	bool progress; /* draw download progress on stderr (a terminal) */
	void *curl;
};

/* insecure_list: comma-separated registries allowed over plain HTTP (may be NULL). */
int oci_registry_init(struct oci_registry *reg, const struct oci_ref *ref,
		      const char *insecure_list, char *err, size_t errn);
void oci_registry_fini(struct oci_registry *reg);

/*
 * Fetch the manifest for reference (a tag or a digest) into a malloc'd buffer; its computed
 * digest goes to digest, which must equal reference when reference is a digest.
 */
int oci_registry_get_manifest(struct oci_registry *reg, const char *reference, char **data,
			      size_t *len, char *ctype, size_t ctn, char digest[OCI_DIGEST_LEN + 1],
			      char *err, size_t errn);
/* Stream blob d into fd, checking size and digest. -EBADMSG on a mismatch. */
int oci_registry_get_blob(struct oci_registry *reg, const struct oci_descriptor *d, int fd,
			  char *err, size_t errn);

#endif
