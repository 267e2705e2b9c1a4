/* SPDX-License-Identifier: MIT */
/* Registry client; see registry.h. */
#define _GNU_SOURCE
#include "registry.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth.h"
#include "common/util.h"
#include "store.h"

#define ACCEPT_MANIFESTS                                              \
	"Accept: application/vnd.oci.image.index.v1+json, "           \
	"application/vnd.docker.distribution.manifest.list.v2+json, " \
	"application/vnd.oci.image.manifest.v1+json, "                \
	"application/vnd.docker.distribution.manifest.v2+json"

struct sink {
	CURL *curl;
	char *mem; /* memory sink when fd < 0 */
	size_t len, cap, max;
	int fd;
	int werr;
	bool over;
	struct oci_hasher h;
	char challenge[OCI_MAX_CHALLENGE + 1];
	char ctype[128];
	/* progress */
	bool progress;
	const char *label;
	uint64_t last_ns;
};

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t len = size * n;
	if (len >= 5 && !strncmp(p, "HTTP/", 5)) { /* a new response (after a redirect) */
		s->challenge[0] = s->ctype[0] = 0;
		return len;
	}
	size_t vl = len;
	while (vl && (p[vl - 1] == '\r' || p[vl - 1] == '\n'))
		vl--;
	static const char wa[] = "www-authenticate:", ct[] = "content-type:";
	if (vl > sizeof(wa) - 1 && !strncasecmp(p, wa, sizeof(wa) - 1) && !s->challenge[0]) {
		size_t k = vl - (sizeof(wa) - 1);
		if (k <= OCI_MAX_CHALLENGE) {
			memcpy(s->challenge, p + sizeof(wa) - 1, k);
			s->challenge[k] = 0;
		}
	} else if (vl > sizeof(ct) - 1 && !strncasecmp(p, ct, sizeof(ct) - 1)) {
		const char *v = p + sizeof(ct) - 1;
		size_t k = vl - (sizeof(ct) - 1);
		while (k && *v == ' ')
			v++, k--;
		snprintf(s->ctype, sizeof(s->ctype), "%.*s",
			 (int)(k < sizeof(s->ctype) ? k : sizeof(s->ctype) - 1), v);
	}
	return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t len = size * n;
	long code = 0;
	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 300)
		return len; /* error bodies are not content; the status says enough */
	if (len > s->max - s->len) {
		s->over = true;
		return 0; /* aborts the transfer */
	}
	if (s->h.ctx)
		oci_hasher_update(&s->h, p, len);
	if (s->fd >= 0) {
		int r = write_all(s->fd, p, len);
		if (r < 0) {
			s->werr = -r;
			return 0;
		}
		s->len += len;
		return len;
	}
	if (s->len + len + 1 > s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 16384;
		while (nc < s->len + len + 1)
			nc *= 2;
		char *m = realloc(s->mem, nc);
		if (!m)
			return 0;
		s->mem = m;
		s->cap = nc;
	}
	memcpy(s->mem + s->len, p, len);
	s->len += len;
	s->mem[s->len] = 0;
	return len;
}

static int on_progress(void *arg, curl_off_t total, curl_off_t now, curl_off_t ut, curl_off_t un)
{
	(void)ut;
	(void)un;
	struct sink *s = arg;
	uint64_t t = now_ns();
	if (!s->progress || t - s->last_ns < 200000000ull)
		return 0;
	s->last_ns = t;
	fprintf(stderr, "\r%s: %.1f / %.1f MB ", s->label, (double)now / 1e6, (double)total / 1e6);
	return 0;
}

/* One GET. Returns the HTTP status (>= 0) or -errno with a reason in err. */
static int get(struct oci_registry *reg, const char *url, const char *accept, bool with_auth,
	       const char *basic, struct sink *s, char *err, size_t errn)
{
	CURL *c = reg->curl;
	struct curl_slist *h = NULL, *h2;
	char authhdr[sizeof(reg->auth) + 32];
	curl_easy_reset(c);
	s->curl = c;
	const char *protos = strncmp(reg->base, "http://", 7) ? "https" : "http,https";
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, protos);
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, protos);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "matchlock");
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, s);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, s->progress ? 0L : 1L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
	if (accept && (h2 = curl_slist_append(h, accept)))
		h = h2;
	/* libcurl drops custom Authorization headers when a redirect changes host
	 * (CVE-2018-1000007). */
	if (with_auth && reg->auth[0]) {
		snprintf(authhdr, sizeof(authhdr), "Authorization: %s", reg->auth);
		if ((h2 = curl_slist_append(h, authhdr)))
			h = h2;
	}
	if (basic) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERPWD, basic);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	CURLcode cr = curl_easy_perform(c);
	curl_slist_free_all(h);
	if (basic)
		curl_easy_setopt(c, CURLOPT_USERPWD, NULL);
	if (s->progress)
		fprintf(stderr, "\r\033[K");
	if (s->over) {
		snprintf(err, errn, "%s sent more than the %zu bytes allowed", reg->ref.registry,
			 s->max);
		return -EFBIG;
	}
	if (s->werr) {
		snprintf(err, errn, "writing to the image store: %s", strerror(s->werr));
		return -s->werr;
	}
	if (cr != CURLE_OK) {
		snprintf(err, errn,
			 "cannot reach registry %s: %s (check the name, the network, or "
			 "--insecure-registry for a plain-HTTP registry)",
			 reg->ref.registry, curl_easy_strerror(cr));
		return -EHOSTUNREACH;
	}
	long code = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	return (int)code;
}

/* Exchange a bearer challenge for a token (anonymous, or with Docker credentials). */
static int fetch_token(struct oci_registry *reg, const struct oci_challenge *ch, char *err,
		       size_t errn)
{
	char url[2048], scope[600], creds[1024];
	const char *sc = ch->scope;
	if (!*sc) {
		snprintf(scope, sizeof(scope), "repository:%s:pull", reg->ref.repo);
		sc = scope;
	}
	char *es = curl_easy_escape(reg->curl, ch->service, 0),
	     *esc = curl_easy_escape(reg->curl, sc, 0);
	int k = snprintf(url, sizeof(url), "%s%sservice=%s&scope=%s", ch->realm,
			 strchr(ch->realm, '?') ? "&" : "?", es ? es : "", esc ? esc : "");
	curl_free(es);
	curl_free(esc);
	if (k < 0 || (size_t)k >= sizeof(url)) {
		snprintf(err, errn, "registry %s: token URL too long", reg->ref.registry);
		return -EINVAL;
	}
	bool have = oci_auth_lookup(reg->ref.registry, creds, sizeof(creds)) == 0;
	struct sink s = { .fd = -1, .max = OCI_MAX_TOKEN_RESPONSE };
	/* The token service may be elsewhere: only https unless the registry itself is plain HTTP.
	 */
	int code = get(reg, url, NULL, false, have ? creds : NULL, &s, err, errn);
	explicit_bzero(creds, sizeof(creds));
	int r;
	if (code < 0) {
		r = code;
		goto out;
	}
	if (code != 200) {
		snprintf(err, errn,
			 "registry %s: the token service refused access to %s (HTTP %d; %s)",
			 reg->ref.registry, reg->ref.repo, code,
			 have ? "check your credentials in ~/.docker/config.json"
			      : "log in with 'docker login', or check the name");
		r = -EACCES;
		goto out;
	}
	json_t *j = json_loadb(s.mem ? s.mem : "", s.len, 0, NULL);
	json_t *t = json_object_get(j, "token");
	if (!json_is_string(t))
		t = json_object_get(j, "access_token");
	r = -EINVAL;
	if (json_is_string(t) && json_string_length(t) > 0 &&
	    json_string_length(t) < OCI_MAX_TOKEN &&
	    strspn(json_string_value(t),
		   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=") ==
		json_string_length(t)) {
		snprintf(reg->auth, sizeof(reg->auth), "Bearer %s", json_string_value(t));
		r = 0;
	} else {
		snprintf(err, errn,
			 "registry %s: the token service answered without a usable token",
			 reg->ref.registry);
	}
	json_decref(j);
out:
	if (s.mem)
		explicit_bzero(s.mem, s.len);
	free(s.mem);
	return r;
}

/* GET with at most one round of authentication after a 401. */
static int get_authed(struct oci_registry *reg, const char *url, const char *accept, struct sink *s,
		      char *err, size_t errn)
{
	int code = get(reg, url, accept, true, NULL, s, err, errn);
	if (code != 401)
		return code;
	struct oci_challenge ch;
	if (oci_challenge_parse(s->challenge, strlen(s->challenge), &ch) < 0) {
		snprintf(err, errn,
			 "registry %s wants authentication with an unsupported or malformed "
			 "challenge",
			 reg->ref.registry);
		return -EACCES;
	}
	int r;
	if (ch.scheme == OCI_AUTH_BEARER) {
		if ((r = fetch_token(reg, &ch, err, errn)) < 0)
			return r;
	} else {
		char creds[1024];
		if (oci_auth_lookup(reg->ref.registry, creds, sizeof(creds)) < 0) {
			snprintf(err, errn,
				 "registry %s needs a login: run 'docker login %s' (matchlock "
				 "reads ~/.docker/config.json)",
				 reg->ref.registry, reg->ref.registry);
			return -EACCES;
		}
		size_t cl = strlen(creds), ol;
		char b64[1400];
		ol = (size_t)EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)creds, (int)cl);
		b64[ol] = 0;
		snprintf(reg->auth, sizeof(reg->auth), "Basic %s", b64);
		explicit_bzero(creds, sizeof(creds));
		explicit_bzero(b64, sizeof(b64));
	}
	/* Start the body again from scratch. */
	if (s->fd >= 0 && (ftruncate(s->fd, 0) < 0 || lseek(s->fd, 0, SEEK_SET) < 0))
		return -errno;
	s->len = 0;
	if (s->h.ctx) {
		char dummy[OCI_DIGEST_LEN + 1];
		oci_hasher_final(&s->h, dummy);
		if (oci_hasher_init(&s->h) < 0)
			return -ENOMEM;
	}
	code = get(reg, url, accept, true, NULL, s, err, errn);
	if (code == 401 || code == 403) {
		snprintf(err, errn,
			 "registry %s refused access to %s (HTTP %d): log in with 'docker "
			 "login', or check the name",
			 reg->ref.registry, reg->ref.repo, code);
		return -EACCES;
	}
	return code;
}

int oci_registry_init(struct oci_registry *reg, const struct oci_ref *ref,
		      const char *insecure_list, char *err, size_t errn)
{
	memset(reg, 0, sizeof(*reg));
	reg->ref = *ref;
	static bool global_done;
	if (!global_done) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		global_done = true;
	}
	bool plain = oci_registry_insecure(ref->registry, insecure_list);
	snprintf(reg->base, sizeof(reg->base), "%s://%s", plain ? "http" : "https",
		 oci_ref_api_host(ref));
	reg->progress = isatty(STDERR_FILENO);
	reg->curl = curl_easy_init();
	if (!reg->curl) {
		snprintf(err, errn, "cannot initialise libcurl");
		return -ENOMEM;
	}
	return 0;
}

void oci_registry_fini(struct oci_registry *reg)
{
	if (reg->curl)
		curl_easy_cleanup(reg->curl);
	reg->curl = NULL;
	explicit_bzero(reg->auth, sizeof(reg->auth));
}

int oci_registry_get_manifest(struct oci_registry *reg, const char *reference, char **data,
			      size_t *len, char *ctype, size_t ctn, char digest[OCI_DIGEST_LEN + 1],
			      char *err, size_t errn)
{
	char url[1024];
	snprintf(url, sizeof(url), "%s/v2/%s/manifests/%s", reg->base, reg->ref.repo, reference);
	struct sink s = { .fd = -1, .max = OCI_MAX_MANIFEST_BYTES };
	int r = oci_hasher_init(&s.h);
	if (r < 0)
		return r;
	int code = get_authed(reg, url, ACCEPT_MANIFESTS, &s, err, errn);
	oci_hasher_final(&s.h, digest);
	if (code < 0) {
		r = code;
		goto fail;
	}
	if (code == 404) {
		snprintf(err, errn,
			 "image %s/%s:%s not found in the registry (check the name and tag)",
			 reg->ref.registry, reg->ref.repo, reference);
		r = -ENOENT;
		goto fail;
	}
	if (code != 200) {
		snprintf(err, errn, "registry %s answered HTTP %d for the manifest of %s",
			 reg->ref.registry, code, reg->ref.repo);
		r = -EPROTO;
		goto fail;
	}
	if (oci_digest_valid(reference) && strcmp(reference, digest)) {
		snprintf(err, errn, "registry %s sent a manifest that does not match digest %s",
			 reg->ref.registry, reference);
		r = -EBADMSG;
		goto fail;
	}
	if (!s.mem) { /* an empty body */
		snprintf(err, errn, "registry %s sent an empty manifest", reg->ref.registry);
		r = -EPROTO;
		goto fail;
	}
	snprintf(ctype, ctn, "%s", s.ctype);
	*data = s.mem;
	*len = s.len;
	return 0;
fail:
	free(s.mem);
	return r;
}

int oci_registry_get_blob(struct oci_registry *reg, const struct oci_descriptor *d, int fd,
			  char *err, size_t errn)
{
	char url[1024], got[OCI_DIGEST_LEN + 1];
	snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", reg->base, reg->ref.repo, d->digest);
	struct sink s = {
		.fd = fd, .max = d->size, .progress = reg->progress, .label = d->digest + 7
	};
	int r = oci_hasher_init(&s.h);
	if (r < 0)
		return r;
	int code = get_authed(reg, url, NULL, &s, err, errn);
	oci_hasher_final(&s.h, got);
	if (code < 0) {
		if (code == -EFBIG)
			snprintf(err, errn,
				 "blob %s is larger than its manifest says (%llu bytes): rejected",
				 d->digest, (unsigned long long)d->size);
		return code;
	}
	if (code != 200) {
		snprintf(err, errn, "registry %s answered HTTP %d for blob %s", reg->ref.registry,
			 code, d->digest);
		return code == 404 ? -ENOENT : -EPROTO;
	}
	if (s.len != d->size || strcmp(got, d->digest)) {
		snprintf(err, errn,
			 "blob %s from %s does not match its digest or size (got %s, %zu "
			 "bytes): rejected, nothing stored",
			 d->digest, reg->ref.registry, got, s.len);
		return -EBADMSG;
	}
	return 0;
}
