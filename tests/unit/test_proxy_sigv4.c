/* SPDX-License-Identifier: MIT */
/*
 * SigV4 re-signing in the HTTP/1 proxy (src/net/proxy_sigv4.c), driven in memory: the guest's
 * request, signed with the placeholder secret key, leaves with the real key id and session
 * token and a signature that verifies with the real secret key (header-signed S3 with
 * x-amz-content-sha256, presigned URL, a form POST whose payload hash is the body's, aws-chunked
 * bodies with unsigned chunks and with signed chunks, each chunk signed again); a request signed
 * with any other key (head or chunk), one that carries the secret key's placeholder, and signed
 * chunks with trailers are refused and nothing leaves.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "net/flow.h"
#include "net/secrets.h"
#include "net/sigv4.h"

#define REAL_ID "AKIDREALEXAMPLE1"
#define REAL_KEY "real/secret+key"
#define REAL_TOKEN "real-token/with+chars="
#define EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define NOSIG "0000000000000000000000000000000000000000000000000000000000000000"

static struct secrets ss;
static struct mitm m;
static const char *ph_id, *ph_key, *ph_token;
static unsigned leaks;

static void on_event(void *opaque, const struct net_event *e)
{
	(void)opaque;
	leaks += e->kind == NET_EV_SECRET_LEAK;
}

static struct flow *flow_make(const char *host)
{
	struct flow *f = calloc(1, sizeof(*f));
	f->m = &m;
	snprintf(f->name, sizeof(f->name), "%s", host);
	f->port = 443;
	f->fd = -1;
	f->u_hs = true;
	f->ev = on_event;
	return f;
}

static void test_flow_free(struct flow *f)
{
	proxy_fini(f);
	buf_fini(&f->req_in);
	buf_fini(&f->req_out);
	buf_fini(&f->g_plain);
	buf_fini(&f->final);
	scrub_fini(&f->scrub);
	free(f);
}

/*
 * The signature of the head at p (its Authorization or X-Amz-Signature ignored) under key,
 * with payload hash payload (NULL: the body after the head).
 */
static bool sign_head(const uint8_t *p, size_t n, const char *key, const char *payload,
		      char sig[SIGV4_SIG_LEN + 1], struct sigv4_auth *a)
{
	struct http_msg hm;
	const char *why;
	long hl = http_head_len(p, n, HTTP_MAX_HEAD);
	if (hl <= 0 || http_parse_request(p, (size_t)hl, &hm, &why) < 0)
		return false;
	struct sigv4_field fs[HTTP_MAX_HEADERS];
	memset(a, 0, sizeof(*a));
	for (unsigned i = 0; i < hm.nfields; i++) {
		const struct http_field *f = &hm.field[i];
		fs[i] = (struct sigv4_field){ p + f->name_off, f->name_len, p + f->value_off,
					      f->value_len };
		if (http_field_is(p, f, "authorization") &&
		    sigv4_parse_authorization(p + f->value_off, f->value_len, a) < 0)
			return false;
	}
	struct sigv4_auth q;
	if (sigv4_parse_query(p + hm.target_off, hm.target_len, &q) == 0)
		*a = q;
	for (unsigned i = 0; i < hm.nfields; i++)
		if (http_field_is(p, &hm.field[i], "x-amz-date"))
			memcpy(a->amz_date, p + hm.field[i].value_off, 16);
	char body_hash[SIGV4_HASH_LEN + 1];
	if (!payload) {
		sigv4_hash_hex(p + hl, n - (size_t)hl, body_hash);
		payload = body_hash;
	}
	struct sigv4_req rq = { hm.method, p + hm.target_off, hm.target_len, fs, hm.nfields };
	struct buf creq = { 0 };
	bool ok = sigv4_canonical_request(&rq, a, payload, &creq) == 0 &&
		  sigv4_sign(a, (const uint8_t *)key, strlen(key), buf_head(&creq), buf_used(&creq),
			     sig) == 0;
	buf_fini(&creq);
	return ok;
}

/* Replace the first NOSIG in text (a request) with its signature under key. */
static char *signed_request(const char *fmt, const char *key, const char *payload)
{
	char *t;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	if (asprintf(&t, fmt, ph_id, ph_token) < 0)
		return NULL;
#pragma GCC diagnostic pop
	char sig[SIGV4_SIG_LEN + 1];
	struct sigv4_auth a;
	char *at = strstr(t, NOSIG);
	if (!at || !sign_head((const uint8_t *)t, strlen(t), key, payload, sig, &a)) {
		free(t);
		return NULL;
	}
	memcpy(at, sig, SIGV4_SIG_LEN);
	return t;
}

/* Run text through a flow toward host: what went upstream (NULL: refused, status in *st). */
static char *through(const char *host, const char *text, int *st)
{
	struct flow *f = flow_make(host);
	buf_append(&f->req_in, text, strlen(text));
	proxy_requests_run(f);
	char *up = NULL;
	*st = 0;
	if (buf_used(&f->final))
		sscanf((const char *)buf_head(&f->final), "HTTP/1.1 %d", st);
	else if (buf_used(&f->req_out))
		up = strndup((const char *)buf_head(&f->req_out), buf_used(&f->req_out));
	test_flow_free(f);
	return up;
}

/* up (a request as it left) is signed with the real key and carries no placeholder. */
static bool verifies_real(const char *up, const char *payload)
{
	char sig[SIGV4_SIG_LEN + 1];
	struct sigv4_auth a;
	if (!CHECK(up && sign_head((const uint8_t *)up, strlen(up), REAL_KEY, payload, sig, &a)))
		return false;
	return CHECK(!strcmp(a.key_id, REAL_ID)) && CHECK(sigv4_sig_equal(sig, a.signature)) &&
	       CHECK(!strstr(up, SECRET_PREFIX));
}

#define S3_GET                                                                                 \
	"GET /bucket/some%%20key?list-type=2&prefix=a%%2Fb HTTP/1.1\r\n"                       \
	"Host: bucket.s3.amazonaws.com\r\nx-amz-date: 20261201T120000Z\r\n"                    \
	"x-amz-content-sha256: " EMPTY_HASH "\r\nX-Amz-Security-Token: %2$s\r\n"               \
	"Authorization: AWS4-HMAC-SHA256 Credential=%1$s/20261201/us-east-1/s3/aws4_request, " \
	"SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "            \
	"Signature=" NOSIG "\r\n\r\n"

static void test_header_signed(void)
{
	int st;
	char *req = signed_request(S3_GET, ph_key, EMPTY_HASH);
	char *up = through("bucket.s3.amazonaws.com", req, &st);
	if (verifies_real(up, EMPTY_HASH))
		CHECK(strstr(up, "X-Amz-Security-Token: " REAL_TOKEN "\r\n") != NULL);
	free(up);
	free(req);

	/* Signed with another key: refused as a leak, nothing leaves. */
	unsigned before = leaks;
	req = signed_request(S3_GET, "some-other-secret-key", EMPTY_HASH);
	up = through("bucket.s3.amazonaws.com", req, &st);
	CHECK(up == NULL);
	CHECK_EQ_INT(st, 403);
	CHECK_EQ_INT(leaks, before + 1);
	free(up);
	free(req);

	/* Toward a host the credential is not for: the key id's placeholder is a leak. */
	req = signed_request(S3_GET, ph_key, EMPTY_HASH);
	up = through("evil.test", req, &st);
	CHECK(up == NULL && st == 403);
	free(up);
	free(req);
}

static void test_presigned(void)
{
	int st;
	char *req = signed_request(
	    "GET /bucket/key.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%1$s%%2F20261201"
	    "%%2Fus-east-1%%2Fs3%%2Faws4_request&X-Amz-Date=20261201T120000Z&X-Amz-Expires=300&"
	    "X-Amz-SignedHeaders=host&X-Amz-Security-Token=%2$s&X-Amz-Signature=" NOSIG
	    " HTTP/1.1\r\nHost: s3.amazonaws.com\r\n\r\n",
	    ph_key, SIGV4_UNSIGNED_PAYLOAD);
	char *up = through("s3.amazonaws.com", req, &st);
	if (verifies_real(up, SIGV4_UNSIGNED_PAYLOAD))
		CHECK(strstr(up, "X-Amz-Security-Token=real-token%2Fwith%2Bchars%3D&") != NULL);
	free(up);
	free(req);
}

static void test_body_hash(void)
{
	int st;
	const char *fmt =
	    "POST / HTTP/1.1\r\nHost: sts.amazonaws.com\r\nX-Amz-Date: 20261201T120000Z\r\n"
	    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 43\r\n"
	    "X-Amz-Security-Token: %2$s\r\n"
	    "Authorization: AWS4-HMAC-SHA256 Credential=%1$s/20261201/us-east-1/sts/aws4_request, "
	    "SignedHeaders=content-length;content-type;host;x-amz-date;x-amz-security-token, "
	    "Signature=" NOSIG "\r\n\r\nAction=GetCallerIdentity&Version=2011-06-15";
	char *req = signed_request(fmt, ph_key, NULL);
	char *up = through("sts.amazonaws.com", req, &st);
	if (verifies_real(up, NULL))
		CHECK(strstr(up, "\r\n\r\nAction=GetCallerIdentity&Version=2011-06-15") != NULL);
	free(up);
	free(req);
	req = signed_request(fmt, "forged", NULL);
	up = through("sts.amazonaws.com", req, &st);
	CHECK(up == NULL && st == 403);
	free(up);
	free(req);
}

static void test_unsigned_chunks(void)
{
	int st;
	char *req = signed_request(
	    "PUT /b/k HTTP/1.1\r\nHost: s3.amazonaws.com\r\nx-amz-date: 20261201T120000Z\r\n"
	    "x-amz-content-sha256: " SIGV4_STREAMING_UNSIGNED
	    "\r\nContent-Encoding: aws-chunked\r\n"
	    "Transfer-Encoding: chunked\r\nx-amz-trailer: x-amz-checksum-crc32\r\n"
	    "X-Amz-Security-Token: %2$s\r\n"
	    "Authorization: AWS4-HMAC-SHA256 Credential=%1$s/20261201/us-east-1/s3/aws4_request, "
	    "SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;"
	    "x-amz-security-token;x-amz-trailer, Signature=" NOSIG "\r\n\r\n"
	    "27\r\n2\r\nhi\r\n0\r\nx-amz-checksum-crc32:abc=\r\n\r\n\r\n0\r\n\r\n",
	    ph_key, SIGV4_STREAMING_UNSIGNED);
	char *up = through("s3.amazonaws.com", req, &st);
	if (verifies_real(up, SIGV4_STREAMING_UNSIGNED))
		CHECK(strstr(up, "2\r\nhi\r\n0\r\nx-amz-checksum-crc32:abc=\r\n") != NULL);
	free(up);
	free(req);
}

/*
 * An aws-chunked PUT whose chunks ("hello world" then "!" then the final one) are signed in a
 * chain from the head's signature with key; its head signed with head_key.
 */
static char *chunked_put(const char *head_key, const char *key, const char *first)
{
	const char *const data[] = { first, "!", "" };
	char body[600] = "";
	for (int i = 0; i < 3; i++) /* signatures left as zeros: only the length counts here */
		snprintf(body + strlen(body), sizeof(body) - strlen(body),
			 "%zx;chunk-signature=" NOSIG "\r\n%s\r\n", strlen(data[i]), data[i]);
	char fmt[1500];
	snprintf(fmt, sizeof(fmt),
		 "PUT /b/k HTTP/1.1\r\nHost: s3.amazonaws.com\r\nx-amz-date: 20261201T120000Z\r\n"
		 "x-amz-content-sha256: " SIGV4_STREAMING_SIGNED "\r\n"
		 "Content-Encoding: aws-chunked\r\nx-amz-decoded-content-length: %zu\r\n"
		 "Content-Length: %zu\r\nX-Amz-Security-Token: %%2$s\r\n"
		 "Authorization: AWS4-HMAC-SHA256 Credential=%%1$s/20261201/us-east-1/s3/"
		 "aws4_request, SignedHeaders=content-encoding;content-length;host;"
		 "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length, "
		 "Signature=" NOSIG "\r\n\r\n",
		 strlen(first) + 1, strlen(body));
	char *head = signed_request(fmt, head_key, SIGV4_STREAMING_SIGNED);
	if (!head)
		return NULL;
	struct sigv4_auth a;
	char prev[SIGV4_SIG_LEN + 1];
	uint8_t k[32];
	const char *sig = strstr(head, "Signature=") + 10;
	memcpy(prev, sig, SIGV4_SIG_LEN);
	prev[SIGV4_SIG_LEN] = 0;
	a = (struct sigv4_auth){ .date = "20261201",
				 .region = "us-east-1",
				 .service = "s3",
				 .amz_date = "20261201T120000Z" };
	sigv4_signing_key((const uint8_t *)key, strlen(key), a.date, a.region, a.service, k);
	char *out;
	size_t hl = strlen(head);
	out = malloc(hl + strlen(body) + 1);
	memcpy(out, head, hl + 1);
	for (int i = 0; i < 3; i++) {
		char cs[SIGV4_SIG_LEN + 1];
		sigv4_chunk_signature(&a, k, prev, (const uint8_t *)data[i], strlen(data[i]), cs);
		sprintf(out + strlen(out), "%zx;chunk-signature=%s\r\n%s\r\n", strlen(data[i]), cs,
			data[i]);
		memcpy(prev, cs, sizeof(prev));
	}
	free(head);
	return out;
}

/* The chunks of up (after its head) verify in a chain from its head's signature under key. */
static bool chunks_verify(const char *up, const char *key)
{
	const char *h = strstr(up, "Signature="), *b = strstr(up, "\r\n\r\n");
	if (!h || !b)
		return false;
	struct sigv4_auth a = { .date = "20261201",
				.region = "us-east-1",
				.service = "s3",
				.amz_date = "20261201T120000Z" };
	uint8_t k[32];
	char prev[SIGV4_SIG_LEN + 1];
	memcpy(prev, h + 10, SIGV4_SIG_LEN);
	prev[SIGV4_SIG_LEN] = 0;
	sigv4_signing_key((const uint8_t *)key, strlen(key), a.date, a.region, a.service, k);
	const char *p = b + 4;
	for (int i = 0; i < 3; i++) {
		size_t size = strtoul(p, NULL, 16);
		const char *cs = strstr(p, "chunk-signature=");
		if (!cs)
			return false;
		cs += 16;
		const char *data = cs + SIGV4_SIG_LEN + 2;
		char want[SIGV4_SIG_LEN + 1];
		sigv4_chunk_signature(&a, k, prev, (const uint8_t *)data, size, want);
		if (strncmp(want, cs, SIGV4_SIG_LEN))
			return false;
		memcpy(prev, want, sizeof(prev));
		p = data + size + 2;
	}
	return *p == 0;
}

static void test_signed_chunks(void)
{
	int st;
	char *req = chunked_put(ph_key, ph_key, "hello world");
	char *up = through("s3.amazonaws.com", req, &st);
	if (verifies_real(up, SIGV4_STREAMING_SIGNED)) {
		CHECK(chunks_verify(up, REAL_KEY));
		/* The body kept its length. */
		CHECK_EQ_INT(strlen(strstr(up, "\r\n\r\n")), strlen(strstr(req, "\r\n\r\n")));
	}
	free(up);
	free(req);
	/* The head signed with the placeholder, the chunks with another key: refused. */
	unsigned before = leaks;
	req = chunked_put(ph_key, "another-key", "hello world");
	up = through("s3.amazonaws.com", req, &st);
	CHECK(!up || !strstr(up, "hello world"));
	CHECK_EQ_INT(leaks, before + 1);
	free(up);
	free(req);
	/* A signed chunk cannot change: a placeholder in it is refused (415), not replaced. */
	char first[100];
	snprintf(first, sizeof(first), "id=%s", ph_id);
	req = chunked_put(ph_key, ph_key, first);
	up = through("s3.amazonaws.com", req, &st);
	CHECK(!up || !strstr(up, "id="));
	CHECK_EQ_INT(st, 415);
	free(up);
	free(req);
}

static void test_refusals(void)
{
	int st;
	/* The secret key's placeholder never leaves, even toward the credential's hosts. */
	char *req;
	CHECK(asprintf(&req, "GET / HTTP/1.1\r\nHost: s3.amazonaws.com\r\nX-Leak: %s\r\n\r\n",
		       ph_key) > 0);
	unsigned before = leaks;
	char *up = through("s3.amazonaws.com", req, &st);
	CHECK(up == NULL && st == 403 && leaks == before + 1);
	free(up);
	free(req);
	/* Signed chunks with signed trailers are refused with 501. */
	req = signed_request(
	    "PUT /b/k HTTP/1.1\r\nHost: s3.amazonaws.com\r\nx-amz-date: 20261201T120000Z\r\n"
	    "x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER\r\n"
	    "Content-Encoding: aws-chunked\r\nContent-Length: 0\r\nX-Amz-Security-Token: %2$s\r\n"
	    "Authorization: AWS4-HMAC-SHA256 Credential=%1$s/20261201/us-east-1/s3/aws4_request, "
	    "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" NOSIG "\r\n\r\n",
	    ph_key, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER");
	up = through("s3.amazonaws.com", req, &st);
	CHECK(up == NULL && st == 501);
	free(up);
	free(req);
	/* A request signed with some other key id is not the sandbox's: it passes untouched. */
	req = strdup("GET / HTTP/1.1\r\nHost: s3.amazonaws.com\r\nx-amz-date: 20261201T120000Z\r\n"
		     "Authorization: AWS4-HMAC-SHA256 Credential=AKIDOTHER/20261201/us-east-1/s3/"
		     "aws4_request, SignedHeaders=host, Signature=" NOSIG "\r\n\r\n");
	up = through("s3.amazonaws.com", req, &st);
	CHECK(up && strstr(up, "Signature=" NOSIG));
	free(up);
	free(req);
}

static void test_flag(void)
{
	char err[300];
	struct secrets s2 = { 0 };
	char path[] = "/tmp/ml-aws-credsXXXXXX";
	int fd = mkstemp(path);
	const char *text = "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = "
			   "d\n\n[profile work]\r\naws_access_key_id=AKIDWORK\r\n"
			   "aws_secret_access_key = w/key\r\naws_session_token = tok\r\n";
	CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	char spec[200];
	snprintf(spec, sizeof(spec), "aws:work=%s@*.amazonaws.com", path);
	if (CHECK_EQ_INT(secrets_parse_flag(&s2, spec, true, err, sizeof(err)), 0)) {
		CHECK_EQ_INT(s2.n, 3);
		const struct secret *id = secrets_aws(&s2, SECRET_AWS_KEY_ID);
		const struct secret *k = secrets_aws(&s2, SECRET_AWS_SECRET_KEY);
		CHECK(id && id->vlen == 8 && !memcmp(id->value, "AKIDWORK", 8));
		CHECK(k && k->vlen == 5 && !memcmp(k->value, "w/key", 5) &&
		      !strcmp(k->name, "AWS_SECRET_ACCESS_KEY"));
		CHECK(!secret_host_ok(k, "s3.amazonaws.com"));
		CHECK(secret_host_ok(id, "s3.amazonaws.com"));
	}
	CHECK_EQ_INT(secrets_parse_flag(&s2, spec, true, err, sizeof(err)), -EEXIST);
	secrets_clear(&s2);
	snprintf(spec, sizeof(spec), "aws=%s@*.amazonaws.com", path);
	if (CHECK_EQ_INT(secrets_parse_flag(&s2, spec, true, err, sizeof(err)), 0))
		CHECK_EQ_INT(s2.n, 2); /* default has no token */
	secrets_clear(&s2);
	snprintf(spec, sizeof(spec), "aws:nosuch=%s@*.amazonaws.com", path);
	CHECK_EQ_INT(secrets_parse_flag(&s2, spec, true, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "profile nosuch") != NULL);
	unlink(path);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	CHECK_EQ_INT(secrets_parse_flag(&s2, "aws@s3.amazonaws.com", false, err, sizeof(err)),
		     -EINVAL);
	setenv("AWS_SECRET_ACCESS_KEY", "envkey", 1);
	CHECK_EQ_INT(secrets_parse_flag(&s2, "aws@s3.amazonaws.com", false, err, sizeof(err)), 0);
	CHECK_EQ_INT(s2.n, 2);
	secrets_clear(&s2);
	/* aws is no plain secret's name. */
	CHECK_EQ_INT(secrets_parse_flag(&s2, "aws=v@s3.amazonaws.com", false, err, sizeof(err)),
		     -EINVAL);
	CHECK(strstr(err, "--secret aws@HOST") != NULL);
	/* A key id that cannot stand in Credential= is refused. */
	CHECK_EQ_INT(secrets_add_aws(&s2, (const uint8_t *)"AK/ID", 5, (const uint8_t *)"k", 1,
				     NULL, 0, "x.test", err, sizeof(err)),
		     -EINVAL);
	CHECK_EQ_INT(s2.n, 0);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	char err[300];
	if (secrets_add_aws(&ss, (const uint8_t *)REAL_ID, strlen(REAL_ID),
			    (const uint8_t *)REAL_KEY, strlen(REAL_KEY),
			    (const uint8_t *)REAL_TOKEN, strlen(REAL_TOKEN), "*.amazonaws.com", err,
			    sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	m.ss = &ss;
	ph_id = secrets_aws(&ss, SECRET_AWS_KEY_ID)->placeholder;
	ph_key = secrets_aws(&ss, SECRET_AWS_SECRET_KEY)->placeholder;
	ph_token = secrets_aws(&ss, SECRET_AWS_TOKEN)->placeholder;
	CHECK_RUN(test_header_signed);
	CHECK_RUN(test_presigned);
	CHECK_RUN(test_body_hash);
	CHECK_RUN(test_unsigned_chunks);
	CHECK_RUN(test_signed_chunks);
	CHECK_RUN(test_refusals);
	CHECK_RUN(test_flag);
	secrets_clear(&ss);
	return check_summary();
}
