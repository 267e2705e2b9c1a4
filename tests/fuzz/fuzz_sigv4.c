/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer: AWS SigV4 (src/net/sigv4.c) and the proxy's re-signing (proxy_sigv4.c). The first
 * byte picks a mode:
 *   0  the Authorization and presigned-query parsers: what they accept is well formed (a
 *      64-digit lower-case hex signature, a key id, an 8-digit date, lower-case scope parts and
 *      signed headers, a valid X-Amz-Date when presigned);
 *   1  the canonical request of a request built from the input (target line, then "name:value"
 *      lines): deterministic, and its URI and query lines hold only AWS's unreserved
 *      characters, '/', '%XX', '=' and '&';
 *   2  the input as a request head (and body) through the HTTP/1 proxy toward an AWS host of a
 *      sandbox with an AWS credential whose placeholders are fixed (PH_ID, PH_KEY, PH_TOKEN):
 *      whatever happens, its placeholder never goes upstream in a request, nor the real secret
 *      key unless the input holds it.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/flow.h"
#include "net/http.h"
#include "net/secrets.h"
#include "net/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

#define PH_ID "SANDBOX_SECRET_000000000000000000000000000000a1"
#define PH_KEY "SANDBOX_SECRET_000000000000000000000000000000b2"
#define PH_TOKEN "SANDBOX_SECRET_000000000000000000000000000000c3"
#define REAL_KEY "REAL-secret/key+value"

static struct secrets ss;
static struct mitm m;

static void setup(void)
{
	if (ss.n)
		return;
	char err[200];
	if (secrets_add_aws(&ss, (const uint8_t *)"AKIDREAL", 8, (const uint8_t *)REAL_KEY,
			    strlen(REAL_KEY), (const uint8_t *)"real-token", 10, "*.amazonaws.com",
			    err, sizeof(err)) < 0)
		abort();
	memcpy(ss.s[0].placeholder, PH_ID, sizeof(PH_ID));
	memcpy(ss.s[1].placeholder, PH_KEY, sizeof(PH_KEY));
	memcpy(ss.s[2].placeholder, PH_TOKEN, sizeof(PH_TOKEN));
	m.ss = &ss;
}

static void check_auth(const struct sigv4_auth *a)
{
	if (strlen(a->signature) != SIGV4_SIG_LEN || !a->key_id[0] || strlen(a->date) != 8 ||
	    !a->region[0] || !a->service[0] || !a->signed_headers[0])
		abort();
	for (const char *s = a->signature; *s; s++)
		if (!isdigit((unsigned char)*s) && !(*s >= 'a' && *s <= 'f'))
			abort();
	for (const char *s = a->signed_headers; *s; s++)
		if (isupper((unsigned char)*s))
			abort();
	if (a->presigned && (strlen(a->amz_date) != 16 || a->amz_date[8] != 'T'))
		abort();
}

static void mode_parse(const uint8_t *p, size_t n)
{
	struct sigv4_auth a;
	if (sigv4_parse_authorization(p, n, &a) == 0)
		check_auth(&a);
	if (sigv4_parse_query(p, n, &a) == 0) {
		if (!a.presigned)
			abort();
		check_auth(&a);
	}
}

/* Whether line k (0-based) of the canonical request holds only bytes of allowed. */
static bool line_only(const uint8_t *c, size_t n, int k, const char *allowed)
{
	size_t i = 0;
	for (int l = 0; l < k; l++) {
		const uint8_t *nl = memchr(c + i, '\n', n - i);
		if (!nl)
			return false;
		i = (size_t)(nl - c) + 1;
	}
	for (; i < n && c[i] != '\n'; i++) {
		if (isalnum(c[i]) || strchr(allowed, c[i]))
			continue;
		return false;
	}
	return true;
}

static void mode_canonical(const uint8_t *p, size_t n)
{
	if (!n)
		return;
	bool s3 = p[0] & 1;
	p++, n--;
	const uint8_t *nl = memchr(p, '\n', n);
	size_t tl = nl ? (size_t)(nl - p) : n;
	struct sigv4_field fs[HTTP_MAX_HEADERS];
	unsigned nf = 0;
	const uint8_t *q = nl ? nl + 1 : p + n, *end = p + n;
	while (q < end && nf < HTTP_MAX_HEADERS) {
		const uint8_t *e = memchr(q, '\n', (size_t)(end - q));
		const uint8_t *le = e ? e : end;
		const uint8_t *colon = memchr(q, ':', (size_t)(le - q));
		if (colon)
			fs[nf++] = (struct sigv4_field){ q, (size_t)(colon - q), colon + 1,
							 (size_t)(le - colon - 1) };
		q = e ? e + 1 : end;
	}
	struct sigv4_auth a = { 0 };
	strcpy(a.service, s3 ? "s3" : "service");
	strcpy(a.signed_headers, "host;x-amz-date;x-a");
	struct sigv4_req rq = { "GET", p, tl, fs, nf };
	struct buf c1 = { 0 }, c2 = { 0 };
	int r1 = sigv4_canonical_request(&rq, &a, "UNSIGNED-PAYLOAD", &c1);
	int r2 = sigv4_canonical_request(&rq, &a, "UNSIGNED-PAYLOAD", &c2);
	if (r1 != r2 || (r1 == 0 && (buf_used(&c1) != buf_used(&c2) ||
				     memcmp(buf_head(&c1), buf_head(&c2), buf_used(&c1)))))
		abort();
	if (r1 == 0 && (!line_only(buf_head(&c1), buf_used(&c1), 1, "-._~/%") ||
			!line_only(buf_head(&c1), buf_used(&c1), 2, "-._~%=&")))
		abort();
	buf_fini(&c1);
	buf_fini(&c2);
}

static bool has_placeholder(const uint8_t *p, size_t n)
{
	return n && memmem(p, n, PH_KEY, strlen(PH_KEY));
}

/*
 * Whether the secret key's placeholder is inside one upstream request, its head or its body
 * (de-chunked), read as the upstream reads them. A guest may put its bytes on either side of
 * a message boundary (a body ending "SANDBOX_SECRET_…0b", the next request "2 /key HTTP/1.1"):
 * no request then carries the placeholder. What does not parse is checked as it is.
 */
static bool placeholder_in_a_request(const uint8_t *out, size_t on)
{
	struct http_walk w = { 0 };
	struct http_msg msg;
	struct buf body = { 0 };
	const char *why;
	bool found = false;
	size_t at = 0;
	while (!found && at < on) {
		size_t used = 0;
		int r = http_walk_step(&w, out + at, on - at, true, &used, &msg, &why);
		if (r < 0) {
			found = has_placeholder(out + at, on - at);
			break;
		}
		if (r == 1) {
			found = has_placeholder(out + at, used);
			http_walk_accept(&w, &msg);
		} else if (w.data_len) {
			buf_append(&body, out + at + w.data_off, w.data_len);
		}
		if (w.st == HTTP_WALK_HEAD || !used) {
			found = found || has_placeholder(buf_head(&body), buf_used(&body));
			buf_consume(&body, buf_used(&body));
		}
		if (!used)
			break;
		at += used;
	}
	found = found || has_placeholder(buf_head(&body), buf_used(&body));
	buf_fini(&body);
	return found;
}

static void mode_proxy(const uint8_t *p, size_t n)
{
	struct flow *f = calloc(1, sizeof(*f));
	if (!f)
		return;
	f->m = &m;
	strcpy(f->name, "bucket.s3.amazonaws.com");
	f->port = 443;
	f->fd = -1;
	f->u_hs = true;
	f->g_eof = true;
	buf_append(&f->req_in, p, n);
	proxy_requests_run(f);
	const uint8_t *out = buf_head(&f->req_out);
	size_t on = buf_used(&f->req_out);
	/* The real key goes upstream only if the guest wrote it itself; its placeholder never. */
	bool guest_knows = memmem(p, n, REAL_KEY, strlen(REAL_KEY)) != NULL;
	if (on && ((!guest_knows && memmem(out, on, REAL_KEY, strlen(REAL_KEY))) ||
		   placeholder_in_a_request(out, on)))
		abort();
	proxy_fini(f);
	buf_fini(&f->req_in);
	buf_fini(&f->req_out);
	buf_fini(&f->g_plain);
	buf_fini(&f->final);
	scrub_fini(&f->scrub);
	free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	setup();
	if (!n)
		return 0;
	switch (p[0] % 3) {
	case 0:
		mode_parse(p + 1, n - 1);
		break;
	case 1:
		mode_canonical(p + 1, n - 1);
		break;
	default:
		mode_proxy(p + 1, n - 1);
	}
	return 0;
}
