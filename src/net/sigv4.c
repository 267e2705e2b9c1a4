/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "sigv4.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#define SIGV4_QUERY_MAX 256 /* query parameters of one request */
#define SIGV4_SEGMENTS_MAX 256 /* path segments normalised */

static const char hexd[] = "0123456789ABCDEF";

static bool unreserved(uint8_t c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode p into out ('+' stays '+'; a '%' not followed by two hex digits stays). */
static void pct_decode(struct buf *out, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int h, l;
		if (p[i] == '%' && i + 2 < n && (h = hexval(p[i + 1])) >= 0 &&
		    (l = hexval(p[i + 2])) >= 0) {
			buf_put_u8(out, (uint8_t)(h << 4 | l));
			i += 2;
		} else {
			buf_put_u8(out, p[i]);
		}
	}
}

/* AWS's UriEncode: unreserved characters stay, '/' stays when keep_slash, the rest %XX. */
static void uri_encode(struct buf *out, const uint8_t *p, size_t n, bool keep_slash)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (unreserved(c) || (keep_slash && c == '/')) {
			buf_put_u8(out, c);
		} else {
			char e[3] = { '%', hexd[c >> 4], hexd[c & 15] };
			buf_append(out, e, 3);
		}
	}
}

/* ---- parsing the signature -------------------------------------------------------------- */

static bool amz_date_valid(const char *d)
{
	if (strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
		return false;
	for (int i = 0; i < 15; i++)
		if (i != 8 && !isdigit((unsigned char)d[i]))
			return false;
	return true;
}

static bool signature_valid(const uint8_t *s, size_t n)
{
	if (n != SIGV4_SIG_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	return true;
}

/* Lower-case header names (tchar) joined by single ';'. */
static bool signed_headers_valid(const uint8_t *s, size_t n)
{
	if (n == 0 || n > SIGV4_SIGNED_HEADERS_MAX || s[0] == ';' || s[n - 1] == ';')
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (c == ';') {
			if (s[i - 1] == ';')
				return false;
		} else if (!(islower(c) || isdigit(c) || strchr("!#$%&'*+-.^_`|~", c)) || !c) {
			return false;
		}
	}
	return true;
}

/* A scope part (region, service): 1..SIGV4_SCOPE_PART_MAX of [a-z0-9-]. */
static bool copy_part(char *dst, const uint8_t *p, size_t n)
{
	if (n == 0 || n > SIGV4_SCOPE_PART_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!islower(p[i]) && !isdigit(p[i]) && p[i] != '-')
			return false;
	memcpy(dst, p, n);
	dst[n] = 0;
	return true;
}

int sigv4_parse_credential(const uint8_t *c, size_t n, struct sigv4_auth *a)
{
	const uint8_t *part[5];
	size_t len[5];
	unsigned k = 0;
	if (n == 0) /* an empty value may come as no buffer at all: no pointer arithmetic on it */
		return -EINVAL;
	const uint8_t *q = c, *end = c + n;
	while (k < 5) {
		const uint8_t *sl = memchr(q, '/', (size_t)(end - q));
		part[k] = q;
		len[k] = (size_t)((sl ? sl : end) - q);
		k++;
		if (!sl)
			break;
		q = sl + 1;
	}
	if (k != 5 || part[4] + len[4] != end || len[4] != 12 ||
	    memcmp(part[4], "aws4_request", 12))
		return -EINVAL;
	if (len[0] == 0 || len[0] > SIGV4_KEY_ID_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len[0]; i++)
		if (!isalnum(part[0][i]) && part[0][i] != '_' && part[0][i] != '-')
			return -EINVAL;
	memcpy(a->key_id, part[0], len[0]);
	a->key_id[len[0]] = 0;
	if (len[1] != 8)
		return -EINVAL;
	for (size_t i = 0; i < 8; i++)
		if (!isdigit(part[1][i]))
			return -EINVAL;
	memcpy(a->date, part[1], 8);
	a->date[8] = 0;
	if (!copy_part(a->region, part[2], len[2]) || !copy_part(a->service, part[3], len[3]))
		return -EINVAL;
	return 0;
}

static void trim(const uint8_t **p, size_t *n)
{
	while (*n && ((*p)[0] == ' ' || (*p)[0] == '\t'))
		(*p)++, (*n)--;
	while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

int sigv4_parse_authorization(const uint8_t *v, size_t n, struct sigv4_auth *a)
{
	memset(a, 0, sizeof(*a));
	trim(&v, &n);
	size_t sl = 0;
	while (sl < n && v[sl] != ' ')
		sl++;
	if (sl != sizeof(SIGV4_ALGORITHM) - 1 || memcmp(v, SIGV4_ALGORITHM, sl))
		return sl > 5 && !strncasecmp((const char *)v, "AWS4-", 5) ? -ENOTSUP : -ENOENT;
	const uint8_t *q = v + sl, *end = v + n;
	bool have_cred = false, have_sh = false, have_sig = false;
	while (q < end) {
		const uint8_t *comma = memchr(q, ',', (size_t)(end - q));
		const uint8_t *item = q;
		size_t il = (size_t)((comma ? comma : end) - q);
		q = comma ? comma + 1 : end;
		trim(&item, &il);
		const uint8_t *eq = memchr(item, '=', il);
		if (!eq)
			return -EINVAL;
		size_t kl = (size_t)(eq - item), vl = il - kl - 1;
		const uint8_t *val = eq + 1;
		if (kl == 10 && !memcmp(item, "Credential", 10) && !have_cred) {
			if (sigv4_parse_credential(val, vl, a) < 0)
				return -EINVAL;
			have_cred = true;
		} else if (kl == 13 && !memcmp(item, "SignedHeaders", 13) && !have_sh) {
			if (!signed_headers_valid(val, vl))
				return -EINVAL;
			memcpy(a->signed_headers, val, vl);
			a->signed_headers[vl] = 0;
			have_sh = true;
		} else if (kl == 9 && !memcmp(item, "Signature", 9) && !have_sig) {
			if (!signature_valid(val, vl))
				return -EINVAL;
			memcpy(a->signature, val, vl);
			a->signature[vl] = 0;
			have_sig = true;
		} else {
			return -EINVAL;
		}
	}
	return have_cred && have_sh && have_sig ? 0 : -EINVAL;
}

/* The query of a target (after '?'), or an empty one. */
static const uint8_t *query_of(const uint8_t *t, size_t n, size_t *qn)
{
	const uint8_t *qm = memchr(t, '?', n);
	*qn = qm ? (size_t)(t + n - qm - 1) : 0;
	return qm ? qm + 1 : t + n;
}

int sigv4_parse_query(const uint8_t *target, size_t n, struct sigv4_auth *a)
{
	memset(a, 0, sizeof(*a));
	size_t qn;
	const uint8_t *q = query_of(target, n, &qn), *end = q + qn;
	enum { ALG, CRED, DATE, SH, SIG, NPARAM };
	static const char *const names[NPARAM] = { "X-Amz-Algorithm", "X-Amz-Credential",
						   "X-Amz-Date", "X-Amz-SignedHeaders",
						   "X-Amz-Signature" };
	struct buf val[NPARAM] = { 0 };
	bool seen[NPARAM] = { 0 };
	int r = 0;
	while (q < end && r == 0) {
		const uint8_t *amp = memchr(q, '&', (size_t)(end - q));
		const uint8_t *item = q;
		size_t il = (size_t)((amp ? amp : end) - q);
		q = amp ? amp + 1 : end;
		const uint8_t *eq = memchr(item, '=', il);
		size_t kl = eq ? (size_t)(eq - item) : il;
		for (int i = 0; i < NPARAM; i++) {
			if (strlen(names[i]) != kl || memcmp(item, names[i], kl))
				continue;
			if (seen[i] || !eq || il - kl - 1 > 2 * SIGV4_SIGNED_HEADERS_MAX) {
				r = -EINVAL;
				break;
			}
			seen[i] = true;
			pct_decode(&val[i], eq + 1, il - kl - 1);
		}
	}
	if (r == 0 && !seen[ALG] && !seen[SIG])
		r = -ENOENT;
	if (r == 0 && seen[ALG]) {
		const uint8_t *alg = buf_head(&val[ALG]);
		size_t al = buf_used(&val[ALG]);
		if (al != sizeof(SIGV4_ALGORITHM) - 1 || memcmp(alg, SIGV4_ALGORITHM, al))
			r = al > 5 && !strncasecmp((const char *)alg, "AWS4-", 5) ? -ENOTSUP
										  : -EINVAL;
	}
	for (int i = 0; r == 0 && i < NPARAM; i++)
		if (!seen[i] || val[i].bad)
			r = -EINVAL;
	if (r == 0 && sigv4_parse_credential(buf_head(&val[CRED]), buf_used(&val[CRED]), a) < 0)
		r = -EINVAL;
	if (r == 0 && (!signed_headers_valid(buf_head(&val[SH]), buf_used(&val[SH])) ||
		       !signature_valid(buf_head(&val[SIG]), buf_used(&val[SIG])) ||
		       buf_used(&val[DATE]) != 16))
		r = -EINVAL;
	if (r == 0) {
		memcpy(a->signed_headers, buf_head(&val[SH]), buf_used(&val[SH]));
		a->signed_headers[buf_used(&val[SH])] = 0;
		memcpy(a->signature, buf_head(&val[SIG]), SIGV4_SIG_LEN);
		a->signature[SIGV4_SIG_LEN] = 0;
		memcpy(a->amz_date, buf_head(&val[DATE]), 16);
		a->amz_date[16] = 0;
		if (!amz_date_valid(a->amz_date))
			r = -EINVAL;
	}
	for (int i = 0; i < NPARAM; i++)
		buf_fini(&val[i]);
	a->presigned = r == 0;
	return r;
}

/* ---- the canonical request -------------------------------------------------------------- */

static bool service_is_s3(const char *service)
{
	return !strncmp(service, "s3", 2);
}

/*
 * The path of every service but S3: dot segments and empty segments removed (a trailing '/'
 * kept), then each byte encoded once more (the path on the wire is already encoded once).
 */
static int canonical_path_normalised(const uint8_t *p, size_t n, struct buf *out)
{
	const uint8_t *seg[SIGV4_SEGMENTS_MAX];
	size_t len[SIGV4_SEGMENTS_MAX];
	unsigned k = 0;
	const uint8_t *q = p, *end = p + n;
	while (q < end) {
		const uint8_t *sl = memchr(q, '/', (size_t)(end - q));
		size_t l = (size_t)((sl ? sl : end) - q);
		if (l == 2 && q[0] == '.' && q[1] == '.') {
			if (k)
				k--;
		} else if (l && !(l == 1 && q[0] == '.')) {
			if (k >= SIGV4_SEGMENTS_MAX)
				return -EINVAL;
			seg[k] = q, len[k] = l, k++;
		}
		q = sl ? sl + 1 : end;
	}
	for (unsigned i = 0; i < k; i++) {
		buf_put_u8(out, '/');
		uri_encode(out, seg[i], len[i], false);
	}
	if (!k || (n && p[n - 1] == '/'))
		buf_put_u8(out, '/');
	return 0;
}

/* S3's path: decoded and encoded once, '/' kept, never normalised (keys may hold "//", ".."). */
static void canonical_path_s3(const uint8_t *p, size_t n, struct buf *out)
{
	struct buf dec = { 0 };
	pct_decode(&dec, p, n);
	if (!buf_used(&dec))
		buf_put_u8(out, '/');
	else
		uri_encode(out, buf_head(&dec), buf_used(&dec), true);
	buf_fini(&dec);
}

struct qparam {
	size_t off, klen, vlen; /* in the buffer of encoded parameters: key, then value */
};

static int qparam_cmp(const void *x, const void *y, void *base)
{
	const struct qparam *a = x, *b = y;
	const uint8_t *qsort_base = base;
	size_t m = a->klen < b->klen ? a->klen : b->klen;
	int c = memcmp(qsort_base + a->off, qsort_base + b->off, m);
	if (c || a->klen != b->klen)
		return c ? c : a->klen < b->klen ? -1 : 1;
	m = a->vlen < b->vlen ? a->vlen : b->vlen;
	c = memcmp(qsort_base + a->off + a->klen, qsort_base + b->off + b->klen, m);
	if (c || a->vlen == b->vlen)
		return c;
	return a->vlen < b->vlen ? -1 : 1;
}

/* Parameters decoded and encoded again strictly, sorted by key then value, '&'-joined. */
static int canonical_query(const uint8_t *q, size_t qn, bool presigned, struct buf *out)
{
	struct qparam *ps = calloc(SIGV4_QUERY_MAX, sizeof(*ps));
	struct buf enc = { 0 }, dec = { 0 };
	unsigned k = 0;
	int r = ps ? 0 : -ENOMEM;
	const uint8_t *end = q + qn;
	while (r == 0 && q < end) {
		const uint8_t *amp = memchr(q, '&', (size_t)(end - q));
		const uint8_t *item = q;
		size_t il = (size_t)((amp ? amp : end) - q);
		q = amp ? amp + 1 : end;
		if (!il)
			continue;
		const uint8_t *eq = memchr(item, '=', il);
		size_t kl = eq ? (size_t)(eq - item) : il;
		if (presigned && kl == 15 && !memcmp(item, "X-Amz-Signature", 15))
			continue;
		if (k >= SIGV4_QUERY_MAX) {
			r = -EINVAL;
			break;
		}
		struct qparam *p = &ps[k++];
		p->off = buf_used(&enc);
		buf_consume(&dec, buf_used(&dec));
		pct_decode(&dec, item, kl);
		uri_encode(&enc, buf_head(&dec), buf_used(&dec), false);
		p->klen = buf_used(&enc) - p->off;
		buf_consume(&dec, buf_used(&dec));
		if (eq)
			pct_decode(&dec, eq + 1, il - kl - 1);
		uri_encode(&enc, buf_head(&dec), buf_used(&dec), false);
		p->vlen = buf_used(&enc) - p->off - p->klen;
	}
	if (r == 0 && (enc.bad || dec.bad))
		r = -ENOMEM;
	if (r == 0) {
		/* Parameters may all be empty ("=&="): then the buffer has no bytes at all. */
		uint8_t *base = buf_used(&enc) ? buf_head(&enc) : (uint8_t *)"";
		qsort_r(ps, k, sizeof(*ps), qparam_cmp, base);
		for (unsigned i = 0; i < k; i++) {
			if (i)
				buf_put_u8(out, '&');
			buf_append(out, base + ps[i].off, ps[i].klen);
			buf_put_u8(out, '=');
			buf_append(out, base + ps[i].off + ps[i].klen, ps[i].vlen);
		}
	}
	free(ps);
	buf_fini(&enc);
	buf_fini(&dec);
	return r;
}

/* A header value as AWS signs it: trimmed, runs of spaces and tabs made one space. */
static void put_header_value(struct buf *out, const uint8_t *v, size_t n)
{
	trim(&v, &n);
	bool space = false;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == ' ' || v[i] == '\t') {
			space = true;
			continue;
		}
		if (space)
			buf_put_u8(out, ' ');
		space = false;
		buf_put_u8(out, v[i]);
	}
}

/* "name:value[,value...]\n" for each signed header, in SignedHeaders' order. */
static void canonical_headers(const struct sigv4_req *r, const char *signed_headers,
			      struct buf *out)
{
	const char *h = signed_headers;
	while (*h) {
		size_t l = strcspn(h, ";");
		buf_append(out, h, l);
		buf_put_u8(out, ':');
		bool first = true;
		for (unsigned i = 0; i < r->nfields; i++) {
			const struct sigv4_field *f = &r->fields[i];
			if (f->nlen != l || strncasecmp((const char *)f->name, h, l))
				continue;
			if (!first)
				buf_put_u8(out, ',');
			first = false;
			put_header_value(out, f->value, f->vlen);
		}
		buf_put_u8(out, '\n');
		h += l;
		if (*h == ';')
			h++;
	}
}

int sigv4_canonical_request(const struct sigv4_req *r, const struct sigv4_auth *a,
			    const char *payload_hash, struct buf *out)
{
	if (!signed_headers_valid((const uint8_t *)a->signed_headers, strlen(a->signed_headers)))
		return -EINVAL;
	size_t start = buf_used(out), qn;
	const uint8_t *q = query_of(r->target, r->tlen, &qn);
	const uint8_t *qm = memchr(r->target, '?', r->tlen);
	size_t pn = qm ? (size_t)(qm - r->target) : r->tlen;
	buf_append(out, r->method, strlen(r->method));
	buf_put_u8(out, '\n');
	int e = 0;
	if (service_is_s3(a->service))
		canonical_path_s3(r->target, pn, out);
	else
		e = canonical_path_normalised(r->target, pn, out);
	buf_put_u8(out, '\n');
	if (e == 0)
		e = canonical_query(q, qn, a->presigned, out);
	buf_put_u8(out, '\n');
	canonical_headers(r, a->signed_headers, out);
	buf_put_u8(out, '\n');
	buf_append(out, a->signed_headers, strlen(a->signed_headers));
	buf_put_u8(out, '\n');
	buf_append(out, payload_hash, strlen(payload_hash));
	if (e == 0 && out->bad)
		e = -ENOMEM;
	if (e < 0)
		out->len = out->off + start;
	return e;
}

/* ---- signing ---------------------------------------------------------------------------- */

static void to_hex(const uint8_t *p, size_t n, char *out)
{
	static const char lh[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = lh[p[i] >> 4];
		out[2 * i + 1] = lh[p[i] & 15];
	}
	out[2 * n] = 0;
}

void sigv4_hash_hex(const uint8_t *p, size_t n, char out[SIGV4_HASH_LEN + 1])
{
	uint8_t md[SHA256_DIGEST_LENGTH];
	SHA256(p, n, md);
	to_hex(md, sizeof(md), out);
}

static int hmac(const uint8_t *key, size_t kn, const void *msg, size_t n, uint8_t out[32])
{
	unsigned len = 32;
	return HMAC(EVP_sha256(), key, (int)kn, msg, n, out, &len) ? 0 : -ENOMEM;
}

int sigv4_signing_key(const uint8_t *key, size_t kn, const char *date, const char *region,
		      const char *service, uint8_t out[32])
{
	uint8_t *k0 = malloc(kn + 4);
	if (!k0)
		return -ENOMEM;
	memcpy(k0, "AWS4", 4);
	memcpy(k0 + 4, key, kn);
	uint8_t a[32], b[32];
	int r = hmac(k0, kn + 4, date, strlen(date), a);
	if (r == 0)
		r = hmac(a, 32, region, strlen(region), b);
	if (r == 0)
		r = hmac(b, 32, service, strlen(service), a);
	if (r == 0)
		r = hmac(a, 32, "aws4_request", 12, out);
	explicit_bzero(k0, kn + 4);
	explicit_bzero(a, sizeof(a));
	explicit_bzero(b, sizeof(b));
	free(k0);
	return r;
}

int sigv4_sign(const struct sigv4_auth *a, const uint8_t *key, size_t kn, const uint8_t *creq,
	       size_t n, char sig[SIGV4_SIG_LEN + 1])
{
	char hash[SIGV4_HASH_LEN + 1];
	char sts[sizeof(SIGV4_ALGORITHM) + 17 + 9 + 2 * SIGV4_SCOPE_PART_MAX + 16 + SIGV4_HASH_LEN +
		 8];
	sigv4_hash_hex(creq, n, hash);
	int sl = snprintf(sts, sizeof(sts), "%s\n%s\n%s/%s/%s/aws4_request\n%s", SIGV4_ALGORITHM,
			  a->amz_date, a->date, a->region, a->service, hash);
	uint8_t k[32], md[32];
	int r = sigv4_signing_key(key, kn, a->date, a->region, a->service, k);
	if (r == 0)
		r = hmac(k, sizeof(k), sts, (size_t)sl, md);
	if (r == 0)
		to_hex(md, sizeof(md), sig);
	explicit_bzero(k, sizeof(k));
	return r;
}

int sigv4_chunk_signature(const struct sigv4_auth *a, const uint8_t k[32], const char *prev,
			  const uint8_t *data, size_t n, char sig[SIGV4_SIG_LEN + 1])
{
	char hash[SIGV4_HASH_LEN + 1], empty[SIGV4_HASH_LEN + 1];
	char sts[32 + 17 + 9 + 2 * SIGV4_SCOPE_PART_MAX + 16 + 3 * SIGV4_HASH_LEN + 8];
	sigv4_hash_hex(data ? data : (const uint8_t *)"", n, hash);
	sigv4_hash_hex((const uint8_t *)"", 0, empty);
	int sl = snprintf(sts, sizeof(sts),
			  "AWS4-HMAC-SHA256-PAYLOAD\n%s\n%s/%s/%s/aws4_request\n%s\n%s\n%s",
			  a->amz_date, a->date, a->region, a->service, prev, empty, hash);
	uint8_t md[32];
	int r = hmac(k, 32, sts, (size_t)sl, md);
	if (r == 0)
		to_hex(md, sizeof(md), sig);
	return r;
}

bool sigv4_sig_equal(const char *a, const char *b)
{
	return strlen(a) == SIGV4_SIG_LEN && strlen(b) == SIGV4_SIG_LEN &&
	       CRYPTO_memcmp(a, b, SIGV4_SIG_LEN) == 0;
}
