/* SPDX-License-Identifier: MIT */
/*
 * AWS Signature Version 4 (AWS4-HMAC-SHA256), the pure part: parsing a request's signature
 * (the Authorization header, or the X-Amz-* query parameters of a presigned URL), the
 * canonical request with AWS's encoding rules, the string to sign, the signing key and the
 * signature. The proxy (proxy_sigv4.c) uses it to check that a guest signed with its
 * placeholder secret key and to sign the request again with the real one. No state, no I/O;
 * OpenSSL for HMAC-SHA256 and SHA-256. Unit-tested with AWS's published examples and fuzzed.
 */
#ifndef MATCHLOCK_SIGV4_H
#define MATCHLOCK_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SIGV4_KEY_ID_MAX 128 /* an access key id (AWS's are 16-128 characters) */
#define SIGV4_SCOPE_PART_MAX 64 /* a region or a service name */
#define SIGV4_SIGNED_HEADERS_MAX 2048 /* "host;x-amz-date;..." */
#define SIGV4_SIG_LEN 64 /* hex characters of a signature */
#define SIGV4_HASH_LEN 64 /* hex characters of a SHA-256 */
#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
/* aws-chunked body, chunks not signed, a trailing checksum (newer SDKs' S3 uploads) */
#define SIGV4_STREAMING_UNSIGNED "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
/* aws-chunked body, each chunk signed in a chain from the head's signature */
#define SIGV4_STREAMING_SIGNED "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

/* What a request says about its signature. */
struct sigv4_auth {
	bool presigned; /* in the query (X-Amz-Signature), else in Authorization */
	char key_id[SIGV4_KEY_ID_MAX + 1];
	char date[9]; /* YYYYMMDD of the credential scope */
	char region[SIGV4_SCOPE_PART_MAX + 1];
	char service[SIGV4_SCOPE_PART_MAX + 1];
	char signed_headers[SIGV4_SIGNED_HEADERS_MAX + 1]; /* lower-case names joined by ';' */
	char amz_date[17]; /* YYYYMMDDTHHMMSSZ: X-Amz-Date (query when presigned, else header) */
	char signature[SIGV4_SIG_LEN + 1]; /* lower-case hex */
};

/* One header field of the request as it is sent (name in any case, value untrimmed). */
struct sigv4_field {
	const uint8_t *name;
	size_t nlen;
	const uint8_t *value;
	size_t vlen;
};

/* The parts of a request the canonical request covers. */
struct sigv4_req {
	const char *method;
	const uint8_t *target; /* origin form: path, then '?' and the query */
	size_t tlen;
	const struct sigv4_field *fields;
	unsigned nfields;
};

/*
 * Parse an Authorization value "AWS4-HMAC-SHA256 Credential=ID/DATE/REGION/SERVICE/aws4_request,
 * SignedHeaders=a;b, Signature=HEX" into a (amz_date is left empty: it is a header). Returns 0,
 * -ENOENT when the value is not a SigV4 signature at all (another scheme), -ENOTSUP for another
 * AWS4 algorithm (SigV4a: AWS4-ECDSA-P256-SHA256), -EINVAL when it is malformed.
 */
int sigv4_parse_authorization(const uint8_t *v, size_t n, struct sigv4_auth *a);
/*
 * Parse a presigned URL's X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-SignedHeaders
 * and X-Amz-Signature from target's query. Returns 0, -ENOENT when there is no X-Amz-Algorithm
 * and no X-Amz-Signature (not presigned), -ENOTSUP or -EINVAL as above.
 */
int sigv4_parse_query(const uint8_t *target, size_t n, struct sigv4_auth *a);
/* Parse a credential "ID/DATE/REGION/SERVICE/aws4_request" into a. 0 or -EINVAL. */
int sigv4_parse_credential(const uint8_t *c, size_t n, struct sigv4_auth *a);

/*
 * The canonical request of r as a (its signed headers, its service's URI rules) describes it,
 * with payload_hash as its last line (hex SHA-256, UNSIGNED-PAYLOAD, ...), appended to out.
 * A presigned request's X-Amz-Signature is left out of the query. Returns 0, -EINVAL (a name
 * in SignedHeaders that is not a token) or -ENOMEM.
 */
int sigv4_canonical_request(const struct sigv4_req *r, const struct sigv4_auth *a,
			    const char *payload_hash, struct buf *out);
/* The signature (lower-case hex, NUL-terminated) of canonical request creq under secret key. */
int sigv4_sign(const struct sigv4_auth *a, const uint8_t *key, size_t kn, const uint8_t *creq,
	       size_t n, char sig[SIGV4_SIG_LEN + 1]);
/* The signing key: HMAC chain "AWS4"+key, date, region, service, "aws4_request". */
int sigv4_signing_key(const uint8_t *key, size_t kn, const char *date, const char *region,
		      const char *service, uint8_t out[32]);
/*
 * The signature of one chunk of an aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD): the
 * chain's previous signature (the head's for the first chunk) and the chunk's data, under the
 * signing key k (sigv4_signing_key).
 */
int sigv4_chunk_signature(const struct sigv4_auth *a, const uint8_t k[32], const char *prev,
			  const uint8_t *data, size_t n, char sig[SIGV4_SIG_LEN + 1]);
/* Lower-case hex SHA-256 of p[0..n), NUL-terminated. */
void sigv4_hash_hex(const uint8_t *p, size_t n, char out[SIGV4_HASH_LEN + 1]);
/* Whether two signatures are equal, in time that does not depend on where they differ. */
bool sigv4_sig_equal(const char *a, const char *b);

#endif
