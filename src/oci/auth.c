/* SPDX-License-Identifier: MIT */
/* Challenge parsing and Docker credentials; see auth.h. */
#define _GNU_SOURCE
#include "auth.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/util.h"

static bool rd_peek_is(struct rd *r, char c)
{
	return rd_left(r) > 0 && r->p[r->off] == (uint8_t)c;
}

static void rd_skip_space(struct rd *r)
{
	while (rd_peek_is(r, ' ') || rd_peek_is(r, '\t'))
		rd_u8(r);
}

int oci_challenge_parse(const char *hdr, size_t len, struct oci_challenge *c)
{
	memset(c, 0, sizeof(*c));
	if (len > OCI_MAX_CHALLENGE)
		return -EINVAL;
	struct rd r = rd_make(hdr, len);
	rd_skip_space(&r);
	size_t start = r.off;
	while (rd_left(&r) && !rd_peek_is(&r, ' '))
		rd_u8(&r);
	size_t sl = r.off - start;
	if (sl == 6 && !strncasecmp(hdr + start, "bearer", 6))
		c->scheme = OCI_AUTH_BEARER;
	else if (sl == 5 && !strncasecmp(hdr + start, "basic", 5))
		c->scheme = OCI_AUTH_BASIC;
	else
		return -EINVAL;
	/* key=value or key="quoted value" pairs separated by commas. */
	while (rd_left(&r)) {
		rd_skip_space(&r);
		if (rd_peek_is(&r, ',')) {
			rd_u8(&r);
			continue;
		}
		if (!rd_left(&r))
			break;
		char key[32], val[1024];
		size_t kl = 0, vl = 0;
		while (rd_left(&r) && !rd_peek_is(&r, '=')) {
			uint8_t ch = rd_u8(&r);
			if (kl >= sizeof(key) - 1 || ch == ',' || ch == '"')
				return -EINVAL;
			key[kl++] = (char)ch;
		}
		key[kl] = 0;
		if (!rd_left(&r) || kl == 0)
			return -EINVAL;
		rd_u8(&r); /* '=' */
		if (rd_peek_is(&r, '"')) {
			rd_u8(&r);
			for (;;) {
				if (!rd_left(&r))
					return -EINVAL; /* unterminated */
				uint8_t ch = rd_u8(&r);
				if (ch == '"')
					break;
				if (ch == '\\') {
					if (!rd_left(&r))
						return -EINVAL;
					ch = rd_u8(&r);
				}
				if (vl >= sizeof(val) - 1 || ch < 0x20)
					return -EINVAL;
				val[vl++] = (char)ch;
			}
		} else {
			while (rd_left(&r) && !rd_peek_is(&r, ',') && !rd_peek_is(&r, ' ')) {
				uint8_t ch = rd_u8(&r);
				if (vl >= sizeof(val) - 1 || ch < 0x20)
					return -EINVAL;
				val[vl++] = (char)ch;
			}
		}
		val[vl] = 0;
		char *dst = NULL;
		size_t dn = 0;
		if (!strcasecmp(key, "realm"))
			dst = c->realm, dn = sizeof(c->realm);
		else if (!strcasecmp(key, "service"))
			dst = c->service, dn = sizeof(c->service);
		else if (!strcasecmp(key, "scope"))
			dst = c->scope, dn = sizeof(c->scope);
		if (dst) {
			if (vl >= dn)
				return -EINVAL;
			memcpy(dst, val, vl + 1);
		}
	}
	if (r.bad)
		return -EINVAL;
	/* A bearer realm is a URL we will fetch a token from: it must be http(s). */
	if (c->scheme == OCI_AUTH_BEARER && strncmp(c->realm, "https://", 8) &&
	    strncmp(c->realm, "http://", 7))
		return -EINVAL;
	return 0;
}

static int decode_auth(const char *b64, char *out, size_t n)
{
	size_t len = strlen(b64);
	if (len == 0 || len % 4 || len / 4 * 3 >= n)
		return -EINVAL;
	int k = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)b64, (int)len);
	if (k < 0)
		return -EINVAL;
	while (k > 0 && len > 0 && b64[len - 1] == '=') {
		k--;
		len--;
	}
	out[k] = 0;
	if (strlen(out) != (size_t)k || !strchr(out, ':'))
		return -EINVAL;
	return 0;
}

int oci_auth_lookup(const char *registry, char *userpass, size_t n)
{
	char path[4096];
	const char *dc = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
	if (dc && *dc)
		snprintf(path, sizeof(path), "%s/config.json", dc);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.docker/config.json", home);
	else
		return -ENOENT;
	char *text = NULL;
	if (read_file_str(path, OCI_MAX_DOCKER_CONFIG, &text) < 0)
		return -ENOENT;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	explicit_bzero(text, strlen(text));
	free(text);
	json_t *auths = json_object_get(root, "auths");
	int r = -ENOENT;
	if (!json_is_object(auths))
		goto out;
	/* Docker Hub's key is historical; other registries are keyed by host, maybe with a scheme.
	 */
	const char *docker_hub = "https://index.docker.io/v1/";
	const char *key;
	json_t *v;
	json_object_foreach(auths, key, v)
	{
		const char *k = key;
		if (!strncmp(k, "https://", 8))
			k += 8;
		else if (!strncmp(k, "http://", 7))
			k += 7;
		size_t kl = strcspn(k, "/");
		bool match = (!strcmp(registry, "docker.io") && !strcmp(key, docker_hub)) ||
			     (kl == strlen(registry) && !strncmp(k, registry, kl));
		if (!match || !json_is_object(v))
			continue;
		json_t *a = json_object_get(v, "auth"), *u = json_object_get(v, "username"),
		       *p = json_object_get(v, "password");
		if (json_is_string(a))
			r = decode_auth(json_string_value(a), userpass, n);
		else if (json_is_string(u) && json_is_string(p))
			r = snprintf(userpass, n, "%s:%s", json_string_value(u),
				     json_string_value(p)) < (int)n
				? 0
				: -EINVAL;
		break;
	}
out:
	json_decref(root);
	return r;
}
