/* SPDX-License-Identifier: MIT */
/*
 * Registry authentication inputs: the WWW-Authenticate challenge a registry answers 401 with,
 * and credentials from ~/.docker/config.json ("auths" entries with a base64 "auth" or
 * username/password). Both come from outside and are parsed with bounds.
 */
#ifndef MATCHLOCK_OCI_AUTH_H
#define MATCHLOCK_OCI_AUTH_H

#include <stddef.h>

#define OCI_MAX_CHALLENGE 4096 /* a WWW-Authenticate header */
#define OCI_MAX_DOCKER_CONFIG (1u << 20)

struct oci_challenge {
	enum { OCI_AUTH_NONE, OCI_AUTH_BASIC, OCI_AUTH_BEARER } scheme;
	char realm[1024], service[256], scope[512];
};

/* Parse `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`; -EINVAL if malformed. */
int oci_challenge_parse(const char *hdr, size_t len, struct oci_challenge *c);

/* "user:password" for registry from the Docker config, or -ENOENT. */
int oci_auth_lookup(const char *registry, char *userpass, size_t n);

#endif
