/* SPDX-License-Identifier: MIT */
/* Image reference parsing; see ref.h. Follows distribution/reference's grammar, slightly narrowed.
 */
#define _GNU_SOURCE
#include "ref.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

bool oci_digest_valid(const char *d)
{
	if (strncmp(d, "sha256:", 7) || strlen(d) != OCI_DIGEST_LEN)
		return false;
	return strspn(d + 7, "0123456789abcdef") == 64;
}

static bool is_alnum_lower(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One path component: [a-z0-9]+ separated by '.', '_', '__' or '-'+. */
static bool component_valid(const char *s, size_t n)
{
	if (n == 0 || !is_alnum_lower(s[0]) || !is_alnum_lower(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (is_alnum_lower(s[i]))
			continue;
		if (s[i] == '.' || s[i] == '-' || s[i] == '_') {
			if (s[i] == '.' && (s[i + 1] == '.' || s[i + 1] == '-' || s[i + 1] == '_'))
				return false;
			continue;
		}
		return false;
	}
	return true;
}

static bool host_valid(const char *s, size_t n)
{
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]",
			    s[i]))
			return false;
	return s[0] != '-' && s[0] != '.';
}

static bool tag_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 128 || s[0] == '.' || s[0] == '-')
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

int oci_ref_parse(const char *s, struct oci_ref *ref, char *err, size_t errn)
{
	char buf[OCI_REF_MAX + 1];
	size_t len = strnlen(s, OCI_REF_MAX + 1);
	memset(ref, 0, sizeof(*ref));
	if (len == 0 || len > OCI_REF_MAX) {
		snprintf(err, errn, "image reference '%.64s' is empty or longer than %d bytes", s,
			 OCI_REF_MAX);
		return -EINVAL;
	}
	memcpy(buf, s, len + 1);

	char *at = strchr(buf, '@');
	if (at) {
		*at = 0;
		if (!oci_digest_valid(at + 1)) {
			snprintf(err, errn,
				 "image reference %s: the digest must be sha256: and 64 "
				 "lowercase hex digits",
				 s);
			return -EINVAL;
		}
		memcpy(ref->digest, at + 1, OCI_DIGEST_LEN + 1);
	}
	char *slash = strrchr(buf, '/');
	char *colon = strrchr(slash ? slash : buf, ':');
	if (colon) {
		*colon = 0;
		if (!tag_valid(colon + 1)) {
			snprintf(err, errn, "image reference %s: invalid tag '%s'", s, colon + 1);
			return -EINVAL;
		}
		snprintf(ref->tag, sizeof(ref->tag), "%s", colon + 1);
	} else if (!at) {
		strcpy(ref->tag, "latest");
	}

	/* The first component names a registry if it looks like a host (has '.' or ':', or is
	 * localhost). */
	char *name = buf;
	char *first = strchr(buf, '/');
	if (first && (memchr(buf, '.', (size_t)(first - buf)) ||
		      memchr(buf, ':', (size_t)(first - buf)) || !strncmp(buf, "localhost/", 10))) {
		if (!host_valid(buf, (size_t)(first - buf))) {
			snprintf(err, errn, "image reference %s: invalid registry host", s);
			return -EINVAL;
		}
		memcpy(ref->registry, buf, (size_t)(first - buf));
		name = first + 1;
	} else {
		strcpy(ref->registry, "docker.io");
	}
	if (!strcmp(ref->registry, "index.docker.io") ||
	    !strcmp(ref->registry, "registry-1.docker.io"))
		strcpy(ref->registry, "docker.io");
	int k;
	if (!strcmp(ref->registry, "docker.io") && !strchr(name, '/'))
		k = snprintf(ref->repo, sizeof(ref->repo), "library/%s", name);
	else
		k = snprintf(ref->repo, sizeof(ref->repo), "%s", name);
	if (k < 0 || (size_t)k >= sizeof(ref->repo)) {
		snprintf(err, errn, "image reference %s: repository name too long", s);
		return -EINVAL;
	}
	/* Every path component must be valid: this also rules out "..", "" and upper case. */
	for (const char *p = ref->repo;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (!component_valid(p, n)) {
			snprintf(err, errn,
				 "image reference %s: invalid repository name (use lowercase "
				 "letters, digits and . _ - separated by /)",
				 s);
			return -EINVAL;
		}
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}

int oci_ref_name(const struct oci_ref *ref, char *out, size_t n)
{
	int k;
	if (ref->tag[0])
		k = snprintf(out, n, "%s/%s:%s", ref->registry, ref->repo, ref->tag);
	else
		k = snprintf(out, n, "%s/%s@%s", ref->registry, ref->repo, ref->digest);
	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

const char *oci_ref_api_host(const struct oci_ref *ref)
{
	return strcmp(ref->registry, "docker.io") ? ref->registry : "registry-1.docker.io";
}

/* Strip ":port" (and IPv6 brackets) from host into out. */
static void host_only(const char *reg, char *out, size_t n)
{
	if (reg[0] == '[') {
		const char *e = strchr(reg, ']');
		snprintf(out, n, "%.*s", e ? (int)(e - reg - 1) : 0, reg + 1);
		return;
	}
	const char *c = strchr(reg, ':');
	snprintf(out, n, "%.*s", c ? (int)(c - reg) : (int)strlen(reg), reg);
}

bool oci_registry_insecure(const char *registry, const char *extra_list)
{
	char host[256];
	host_only(registry, host, sizeof(host));
	if (!strcmp(host, "localhost") || !strcmp(host, "127.0.0.1") || !strcmp(host, "::1"))
		return true;
	if (!extra_list)
		return false;
	size_t rl = strlen(registry);
	for (const char *p = extra_list; *p;) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n && n == rl && !strncmp(p, registry, n))
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}
