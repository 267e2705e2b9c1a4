/* SPDX-License-Identifier: MIT */
/*
 * AWS Signature Version 4 (src/net/sigv4.c) against the examples AWS publishes: the SigV4 test
 * suite (get-vanilla, post-vanilla, query order, dot segments, UTF-8 paths: service "service",
 * key AKIDEXAMPLE), the signing-key derivation example, the IAM ListUsers example and the S3
 * examples (GET with Range, PUT with a '$' in the key, a presigned GET). Each request's own
 * Authorization (or presigned query) is parsed and its signature computed again from the
 * canonical request; then the parsers' refusals.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "net/sigv4.h"

#define SUITE_KEY "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define S3_KEY "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define F(n, v)                                                                  \
	{                                                                        \
		(const uint8_t *)(n), strlen(n), (const uint8_t *)(v), strlen(v) \
	}

/*
 * The signature of a request given its fields (the Authorization field among them, or a
 * presigned target); the parsed auth lands in *a, and the canonical request in creq.
 */
static bool signs_as(const char *method, const char *target, const struct sigv4_field *fs,
		     unsigned nf, const char *key, const char *payload, struct sigv4_auth *a,
		     struct buf *creq)
{
	int r = sigv4_parse_query((const uint8_t *)target, strlen(target), a);
	if (r == -ENOENT) {
		r = -EINVAL;
		for (unsigned i = 0; i < nf; i++)
			if (fs[i].nlen == 13 && !memcmp(fs[i].name, "Authorization", 13))
				r = sigv4_parse_authorization(fs[i].value, fs[i].vlen, a);
		for (unsigned i = 0; i < nf; i++)
			if (fs[i].nlen == 10 &&
			    !strncasecmp((const char *)fs[i].name, "x-amz-date", 10))
				snprintf(a->amz_date, sizeof(a->amz_date), "%.*s", (int)fs[i].vlen,
					 (const char *)fs[i].value);
	}
	if (!CHECK_EQ_INT(r, 0))
		return false;
	struct sigv4_req rq = { method, (const uint8_t *)target, strlen(target), fs, nf };
	if (!CHECK_EQ_INT(sigv4_canonical_request(&rq, a, payload, creq), 0))
		return false;
	char sig[SIGV4_SIG_LEN + 1];
	if (!CHECK_EQ_INT(sigv4_sign(a, (const uint8_t *)key, strlen(key), buf_head(creq),
				     buf_used(creq), sig),
			  0))
		return false;
	if (!CHECK_EQ_MEM(sig, SIGV4_SIG_LEN, a->signature, SIGV4_SIG_LEN)) {
		fprintf(stderr, "canonical request:\n%.*s\n", (int)buf_used(creq),
			(const char *)buf_head(creq));
		return false;
	}
	return CHECK(sigv4_sig_equal(sig, a->signature));
}

static void suite_case(const char *method, const char *target, const char *signature)
{
	char authz[300];
	snprintf(authz, sizeof(authz),
		 "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
		 "SignedHeaders=host;x-amz-date, Signature=%s",
		 signature);
	struct sigv4_field fs[] = { F("Host", "example.amazonaws.com"),
				    F("X-Amz-Date", "20150830T123600Z"),
				    F("Authorization", authz) };
	struct sigv4_auth a;
	struct buf creq = { 0 };
	signs_as(method, target, fs, 3, SUITE_KEY, EMPTY_HASH, &a, &creq);
	buf_fini(&creq);
}

static void test_suite(void)
{
	suite_case("GET", "/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	suite_case("POST", "/", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
	suite_case("GET", "/./example",
		   "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5");
	suite_case("GET", "/?Param2=value2&Param1=value1",
		   "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

/* The canonical requests the suite lists for paths and queries that need AWS's rules. */
static void creq_case(const char *target, const char *service, const char *want_path_query)
{
	struct sigv4_auth a = { 0 };
	snprintf(a.service, sizeof(a.service), "%s", service);
	snprintf(a.signed_headers, sizeof(a.signed_headers), "host");
	struct sigv4_field fs[] = { F("Host", "example.amazonaws.com") };
	struct sigv4_req rq = { "GET", (const uint8_t *)target, strlen(target), fs, 1 };
	struct buf out = { 0 };
	CHECK_EQ_INT(sigv4_canonical_request(&rq, &a, EMPTY_HASH, &out), 0);
	char want[400];
	int n =
	    snprintf(want, sizeof(want), "GET\n%s\nhost:example.amazonaws.com\n\nhost\n" EMPTY_HASH,
		     want_path_query);
	CHECK_EQ_MEM(buf_head(&out), buf_used(&out), want, (size_t)n);
	buf_fini(&out);
}

static void test_canonical_paths(void)
{
	creq_case("/\xe1\x88\xb4", "service", "/%E1%88%B4\n");
	creq_case("/example space/", "service", "/example%20space/\n");
	creq_case("//", "service", "/\n");
	creq_case("/example/..", "service", "/\n");
	creq_case("/example/../..", "service", "/\n");
	creq_case("/example//path/./", "service", "/example/path/\n");
	creq_case("/a%2Fb", "service", "/a%252Fb\n"); /* encoded twice outside S3 */
	creq_case("/?Param1", "service", "/\nParam1=");
	creq_case("/?Param1=value2&Param1=Value1", "service", "/\nParam1=Value1&Param1=value2");
	creq_case("/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~"
		  "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
		  "service",
		  "/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~"
		  "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
	creq_case("/?a=b%2fc&x=1+2", "service", "/\na=b%2Fc&x=1%2B2");
	/* S3 keys: encoded once, never normalised. */
	creq_case("/bucket//a/../b%7e", "s3", "/bucket//a/../b~\n");
	creq_case("/test$file.text", "s3", "/test%24file.text\n");
}

static void test_signing_key(void)
{
	uint8_t k[32];
	CHECK_EQ_INT(sigv4_signing_key((const uint8_t *)SUITE_KEY, strlen(SUITE_KEY), "20120215",
				       "us-east-1", "iam", k),
		     0);
	static const uint8_t want[32] = { 0xf4, 0x78, 0x0e, 0x2d, 0x9f, 0x65, 0xfa, 0x89,
					  0x5f, 0x9c, 0x67, 0xb3, 0x2c, 0xe1, 0xba, 0xf0,
					  0xb0, 0xd8, 0xa4, 0x35, 0x05, 0xa0, 0x00, 0xa1,
					  0xa9, 0xe0, 0x90, 0xd4, 0x14, 0xdb, 0x40, 0x4d };
	CHECK_EQ_MEM(k, 32, want, 32);
}

static void test_iam_list_users(void)
{
	struct sigv4_field fs[] = {
		F("Host", "iam.amazonaws.com"),
		F("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
		F("X-Amz-Date", "20150830T123600Z"),
		F("Authorization",
		  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
		  "SignedHeaders=content-type;host;x-amz-date, "
		  "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"),
	};
	struct sigv4_auth a;
	struct buf creq = { 0 };
	signs_as("GET", "/?Action=ListUsers&Version=2010-05-08", fs, 4, SUITE_KEY, EMPTY_HASH, &a,
		 &creq);
	buf_fini(&creq);
}

static void test_s3_examples(void)
{
	struct sigv4_auth a;
	struct buf creq = { 0 };
	struct sigv4_field get[] = {
		F("Host", "examplebucket.s3.amazonaws.com"),
		F("Range", "bytes=0-9"),
		F("x-amz-content-sha256", EMPTY_HASH),
		F("x-amz-date", "20130524T000000Z"),
		F("Authorization",
		  "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
		  "aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
		  "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
	};
	signs_as("GET", "/test.txt", get, 5, S3_KEY, EMPTY_HASH, &a, &creq);
	buf_fini(&creq);

	char body_hash[SIGV4_HASH_LEN + 1];
	sigv4_hash_hex((const uint8_t *)"Welcome to Amazon S3.", 21, body_hash);
	CHECK_EQ_MEM(body_hash, SIGV4_HASH_LEN,
		     "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
		     SIGV4_HASH_LEN);
	struct sigv4_field put[] = {
		F("Host", "examplebucket.s3.amazonaws.com"),
		F("Date", "Fri, 24 May 2013 00:00:00 GMT"),
		F("x-amz-date", "20130524T000000Z"),
		F("x-amz-storage-class", "REDUCED_REDUNDANCY"),
		F("x-amz-content-sha256", body_hash),
		F("Authorization",
		  "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
		  "aws4_request,SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
		  "x-amz-storage-class,"
		  "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
	};
	signs_as("PUT", "/test$file.text", put, 6, S3_KEY, body_hash, &a, &creq);
	buf_fini(&creq);

	struct sigv4_field host[] = { F("Host", "examplebucket.s3.amazonaws.com") };
	const char *presigned =
	    "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%"
	    "2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires="
	    "86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
	    "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
	if (signs_as("GET", presigned, host, 1, S3_KEY, SIGV4_UNSIGNED_PAYLOAD, &a, &creq)) {
		CHECK(a.presigned);
		CHECK(!strcmp(a.key_id, "AKIAIOSFODNN7EXAMPLE"));
	}
	buf_fini(&creq);
}

/*
 * AWS's streaming example (PUT of 66560 bytes of 'a' in 64 KiB chunks): the seed signature
 * (the head's), then each chunk's, chained from it.
 */
static void test_chunk_signatures(void)
{
	struct sigv4_auth a = { .date = "20130524",
				.region = "us-east-1",
				.service = "s3",
				.amz_date = "20130524T000000Z" };
	uint8_t k[32];
	CHECK_EQ_INT(sigv4_signing_key((const uint8_t *)S3_KEY, strlen(S3_KEY), a.date, a.region,
				       a.service, k),
		     0);
	struct sigv4_field put[] = {
		F("Host", "s3.amazonaws.com"),
		F("x-amz-date", "20130524T000000Z"),
		F("x-amz-storage-class", "REDUCED_REDUNDANCY"),
		F("x-amz-content-sha256", SIGV4_STREAMING_SIGNED),
		F("Content-Encoding", "aws-chunked"),
		F("x-amz-decoded-content-length", "66560"),
		F("Content-Length", "66824"),
		F("Authorization",
		  "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
		  "aws4_request,SignedHeaders=content-encoding;content-length;host;"
		  "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
		  "x-amz-storage-class,"
		  "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"),
	};
	struct sigv4_auth seed;
	struct buf creq = { 0 };
	signs_as("PUT", "/examplebucket/chunkObject.txt", put, 8, S3_KEY, SIGV4_STREAMING_SIGNED,
		 &seed, &creq);
	buf_fini(&creq);
	size_t n = 66560;
	uint8_t *data = malloc(n);
	memset(data, 'a', n);
	char s1[SIGV4_SIG_LEN + 1], s2[SIGV4_SIG_LEN + 1], s3[SIGV4_SIG_LEN + 1];
	sigv4_chunk_signature(&a, k,
			      "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
			      data, 65536, s1);
	sigv4_chunk_signature(&a, k, s1, data, n - 65536, s2);
	sigv4_chunk_signature(&a, k, s2, NULL, 0, s3);
	CHECK_EQ_MEM(s1, 64, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
		     64);
	CHECK_EQ_MEM(s2, 64, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
		     64);
	CHECK_EQ_MEM(s3, 64, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
		     64);
	free(data);
}

static void test_parse_refusals(void)
{
	struct sigv4_auth a;
#define AUTH(s) sigv4_parse_authorization((const uint8_t *)(s), strlen(s), &a)
#define SIG64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	CHECK_EQ_INT(AUTH("Bearer abc"), -ENOENT);
	CHECK_EQ_INT(AUTH("AWS4-ECDSA-P256-SHA256 Credential=x"), -ENOTSUP);
	CHECK_EQ_INT(AUTH("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/s3/aws4_request, "
			  "SignedHeaders=host, Signature=" SIG64),
		     0);
	CHECK(!strcmp(a.key_id, "AK") && !strcmp(a.region, "us-east-1") &&
	      !strcmp(a.service, "s3") && !strcmp(a.signed_headers, "host"));
	/* Each part is checked: a short date, a 4-part scope, an upper-case or doubled ';', a
	   short or upper-case signature, a parameter twice, an unknown one, one missing. */
	CHECK_EQ_INT(AUTH("AWS4-HMAC-SHA256 Credential=AK/2015083/us-east-1/s3/aws4_request, "
			  "SignedHeaders=host, Signature=" SIG64),
		     -EINVAL);
	CHECK_EQ_INT(AUTH("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/aws4_request, "
			  "SignedHeaders=host, Signature=" SIG64),
		     -EINVAL);
	CHECK_EQ_INT(AUTH("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/s3/aws4_request, "
			  "SignedHeaders=Host, Signature=" SIG64),
		     -EINVAL);
	CHECK_EQ_INT(AUTH("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/s3/aws4_request, "
			  "SignedHeaders=host;;x, Signature=" SIG64),
		     -EINVAL);
	CHECK_EQ_INT(AUTH("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/s3/aws4_request, "
			  "SignedHeaders=host, Signature=0123"),
		     -EINVAL);
	CHECK_EQ_INT(AUTH("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/s3/aws4_request, "
			  "SignedHeaders=host, Signature=" SIG64 ", Signature=" SIG64),
		     -EINVAL);
	CHECK_EQ_INT(AUTH("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/s3/aws4_request, "
			  "SignedHeaders=host, Signature=" SIG64 ", Extra=1"),
		     -EINVAL);
	CHECK_EQ_INT(AUTH("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/s3/aws4_request, "
			  "Signature=" SIG64),
		     -EINVAL);
#define QUERY(s) sigv4_parse_query((const uint8_t *)(s), strlen(s), &a)
	CHECK_EQ_INT(QUERY("/x?a=b"), -ENOENT);
	CHECK_EQ_INT(QUERY("/x"), -ENOENT);
	CHECK_EQ_INT(QUERY("/x?X-Amz-Signature=" SIG64), -EINVAL);
	CHECK_EQ_INT(QUERY("/x?X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256"), -ENOTSUP);
	CHECK_EQ_INT(QUERY("/x?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20130524%2F"
			   "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000&"
			   "X-Amz-SignedHeaders=host&X-Amz-Signature=" SIG64),
		     -EINVAL);
#undef AUTH
#undef QUERY
#undef SIG64
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_suite);
	CHECK_RUN(test_canonical_paths);
	CHECK_RUN(test_signing_key);
	CHECK_RUN(test_iam_list_users);
	CHECK_RUN(test_s3_examples);
	CHECK_RUN(test_chunk_signatures);
	CHECK_RUN(test_parse_refusals);
	return check_summary();
}
