/* SPDX-License-Identifier: MIT */
/*
 * AWS SigV4 re-signing in the HTTP/1 proxy. The guest holds placeholders for the access key
 * id, the secret access key and the session token (secrets.h, SECRET_AWS_*) and its SDK signs
 * as usual. For a request to one of the credential's hosts whose signature (Authorization, or
 * a presigned URL's X-Amz-* query) names the placeholder key id:
 *   1. the guest's signature is checked with the placeholder secret key over the request as
 *      the guest sent it: a request signed with any other key is refused (403, secret_leak);
 *   2. the head is rewritten as every head is (secrets_rewrite_request): the key id and the
 *      token become the real ones wherever they stand;
 *   3. the rewritten head is signed with the real secret key, and the new signature is written
 *      over the guest's (same length, in place).
 * The payload hash is the request's x-amz-content-sha256 (S3), UNSIGNED-PAYLOAD for a
 * presigned S3 URL, else the SHA-256 of the body: such a body is held whole (proxy.c,
 * RQF_HELD, at most FLOW_HELD_BODY_MAX) and the checks run once it has ended. A signed body is
 * never changed (a placeholder in it is refused). aws-chunked bodies whose chunks are not
 * signed (STREAMING-UNSIGNED-PAYLOAD-TRAILER, what newer SDKs send for S3 uploads) pass as
 * they are. Not covered, refused with a reason: signed chunks (STREAMING-AWS4-HMAC-SHA256-*:
 * each chunk's signature chains from the head's, so every chunk would need signing again),
 * SigV4a, a signature without X-Amz-Date.
 */
#define _GNU_SOURCE
#include "flow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secrets.h"
#include "sigv4.h"

struct sigv4_flow {
	struct sigv4_auth guest; /* the guest's signature */
	struct buf creq; /* the guest's canonical request up to its payload hash */
	char payload[SIGV4_HASH_LEN + 1]; /* "" until the body is hashed */
};

/* A head's fields as sigv4.h takes them. */
static void fields_of(const uint8_t *head, const struct http_msg *m, struct sigv4_field *fs)
{
	for (unsigned i = 0; i < m->nfields; i++)
		fs[i] = (struct sigv4_field){ head + m->field[i].name_off, m->field[i].name_len,
					      head + m->field[i].value_off, m->field[i].value_len };
}

static const struct http_field *field_named(const uint8_t *head, const struct http_msg *m,
					    const char *name)
{
	for (unsigned i = 0; i < m->nfields; i++)
		if (http_field_is(head, &m->field[i], name))
			return &m->field[i];
	return NULL;
}

/*
 * The signature of head (parsed into m) into a: 0, -ENOENT (not SigV4), -ENOTSUP, -EINVAL;
 * -EBADMSG: a header signature without X-Amz-Date.
 */
static int auth_of(const uint8_t *head, const struct http_msg *m, struct sigv4_auth *a)
{
	const struct http_field *az = field_named(head, m, "authorization");
	if (az) {
		int r = sigv4_parse_authorization(head + az->value_off, az->value_len, a);
		if (r != -ENOENT)
			return r;
	}
	return sigv4_parse_query(head + m->target_off, m->target_len, a);
}

static int auth_date(const uint8_t *head, const struct http_msg *m, struct sigv4_auth *a)
{
	if (a->presigned)
		return 0;
	const struct http_field *d = field_named(head, m, "x-amz-date");
	if (!d || d->value_len != 16)
		return -EBADMSG;
	memcpy(a->amz_date, head + d->value_off, 16);
	a->amz_date[16] = 0;
	return 0;
}

bool sigv4_placeholder_signed(const struct flow *f, const uint8_t *target, size_t tl,
			      const uint8_t *authz, size_t al)
{
	const struct secret *id = secrets_aws(f->m->ss, SECRET_AWS_KEY_ID);
	struct sigv4_auth a;
	if (!id || !secret_host_ok(id, f->name))
		return false;
	if (authz && sigv4_parse_authorization(authz, al, &a) == 0 &&
	    !strcmp(a.key_id, id->placeholder))
		return true;
	return target && sigv4_parse_query(target, tl, &a) == 0 &&
	       !strcmp(a.key_id, id->placeholder);
}

void sigv4_flow_end(struct flow *f)
{
	if (!f->sv)
		return;
	buf_wipe(&f->sv->creq);
	free(f->sv);
	f->sv = NULL;
}

bool sigv4_needs_body(const struct flow *f)
{
	return f->sv && !f->sv->payload[0];
}

int sigv4_begin(struct flow *f, const uint8_t *head, const struct http_msg *m, char *reason,
		size_t rn)
{
	const struct secrets *ss = f->m->ss;
	const struct secret *id = secrets_aws(ss, SECRET_AWS_KEY_ID);
	sigv4_flow_end(f);
	if (!id || !secret_host_ok(id, f->name) ||
	    !memmem(head, m->head_len, id->placeholder, SECRET_PLACEHOLDER_LEN))
		return 0;
	struct sigv4_auth a;
	int r = auth_of(head, m, &a);
	if (r == 0)
		r = auth_date(head, m, &a);
	if (r == -ENOENT)
		return 0; /* the key id travels, but nothing is signed: substituted as a value */
	if (r == 0 && strcmp(a.key_id, id->placeholder))
		return 0; /* signed with some other key id: not the sandbox's credential */
	if (r < 0) {
		snprintf(reason, rn,
			 "matchlock: request to %s refused: %s (the proxy re-signs AWS "
			 "AWS4-HMAC-SHA256 requests only)",
			 f->name,
			 r == -ENOTSUP	 ? "it is signed with SigV4a or another AWS4 algorithm"
			 : r == -EBADMSG ? "its SigV4 signature has no X-Amz-Date header"
					 : "its SigV4 signature (Authorization or X-Amz-* query) "
					   "is malformed");
		return r == -ENOTSUP ? 501 : 400;
	}
	const struct http_field *ph = field_named(head, m, "x-amz-content-sha256");
	char payload[SIGV4_HASH_LEN + 1] = "";
	if (ph) {
		snprintf(payload, sizeof(payload), "%.*s", (int)ph->value_len,
			 (const char *)head + ph->value_off);
		/* Unsigned chunks (a trailing checksum, unsigned): only the head is signed. */
		bool unsigned_chunks = !strcmp(payload, SIGV4_STREAMING_UNSIGNED);
		if (ph->value_len > SIGV4_HASH_LEN ||
		    (!strncmp(payload, "STREAMING-", 10) && !unsigned_chunks)) {
			snprintf(
			    reason, rn,
			    "matchlock: request to %s refused: chunked SigV4 payload "
			    "signatures (x-amz-content-sha256: %.40s) are not re-signed by the "
			    "proxy; have the SDK send the payload hash, UNSIGNED-PAYLOAD or "
			    "%s",
			    f->name, payload, SIGV4_STREAMING_UNSIGNED);
			return 501;
		}
	} else if (a.presigned && !strncmp(a.service, "s3", 2)) {
		snprintf(payload, sizeof(payload), "%s", SIGV4_UNSIGNED_PAYLOAD);
	} else if (m->framing == HTTP_BODY_NONE) {
		sigv4_hash_hex((const uint8_t *)"", 0, payload);
	} else if (m->framing != HTTP_BODY_LENGTH || m->length > FLOW_HELD_BODY_MAX) {
		snprintf(reason, rn,
			 "matchlock: request to %s refused: its SigV4 signature covers the "
			 "SHA-256 of a body %s; send x-amz-content-sha256 or a body of at most "
			 "%u MiB with a Content-Length",
			 f->name,
			 m->framing == HTTP_BODY_LENGTH ? "too long to hold" : "of unknown length",
			 FLOW_HELD_BODY_MAX >> 20);
		return 413;
	}
	struct sigv4_field *fs = calloc(HTTP_MAX_HEADERS, sizeof(*fs));
	struct sigv4_flow *sv = calloc(1, sizeof(*sv));
	if (!fs || !sv) {
		free(fs);
		free(sv);
		snprintf(reason, rn, "matchlock: request to %s failed: out of memory", f->name);
		return 503;
	}
	fields_of(head, m, fs);
	struct sigv4_req rq = { m->method, head + m->target_off, m->target_len, fs, m->nfields };
	r = sigv4_canonical_request(&rq, &a, "", &sv->creq);
	free(fs);
	if (r < 0) {
		buf_wipe(&sv->creq);
		free(sv);
		snprintf(reason, rn, "matchlock: request to %s refused: %s", f->name,
			 r == -ENOMEM ? "out of memory"
				      : "its SigV4 request cannot be put in canonical form");
		return r == -ENOMEM ? 503 : 400;
	}
	sv->guest = a;
	snprintf(sv->payload, sizeof(sv->payload), "%s", payload);
	f->sv = sv;
	return 0;
}

/* Overwrite the 64 hex digits after key in p[0..n) with sig. */
static bool put_signature(uint8_t *p, size_t n, const char *key, const char *sig)
{
	size_t kl = strlen(key);
	const uint8_t *at = memmem(p, n, key, kl);
	if (!at || (size_t)(p + n - at) < kl + SIGV4_SIG_LEN)
		return false;
	memcpy(p + (at - p) + kl, sig, SIGV4_SIG_LEN);
	return true;
}

int sigv4_finish(struct flow *f, struct buf *to, size_t start, const uint8_t *body, size_t bn,
		 char *reason, size_t rn)
{
	struct sigv4_flow *sv = f->sv;
	const struct secrets *ss = f->m->ss;
	const struct secret *key = secrets_aws(ss, SECRET_AWS_SECRET_KEY);
	if (!sv->payload[0])
		sigv4_hash_hex(body, bn, sv->payload);
	/* 1. The guest signed with the placeholder secret key. */
	char sig[SIGV4_SIG_LEN + 1];
	size_t cut = buf_used(&sv->creq);
	buf_append(&sv->creq, sv->payload, strlen(sv->payload));
	int r = sv->creq.bad ? -ENOMEM
			     : sigv4_sign(&sv->guest, (const uint8_t *)key->placeholder,
					  SECRET_PLACEHOLDER_LEN, buf_head(&sv->creq),
					  buf_used(&sv->creq), sig);
	sv->creq.len = sv->creq.off + cut;
	if (r == 0 && !sigv4_sig_equal(sig, sv->guest.signature)) {
		snprintf(reason, rn,
			 "matchlock: request to %s blocked: its AWS SigV4 signature was not made "
			 "with the sandbox's placeholder secret key ($%s); the proxy signs only "
			 "requests the guest signed with it (secret_leak)",
			 f->name, key->name);
		return 403;
	}
	/* 2. The rewritten head (real key id and token) signed with the real key. */
	struct http_msg m;
	const char *why;
	struct sigv4_field *fs = calloc(HTTP_MAX_HEADERS, sizeof(*fs));
	struct buf creq = { 0 };
	uint8_t *h = buf_head(to) + start;
	if (r == 0 && !fs)
		r = -ENOMEM;
	if (r == 0 && http_parse_request(h, buf_used(to) - start, &m, &why) < 0)
		r = -EPROTO;
	if (r == 0) {
		fields_of(h, &m, fs);
		struct sigv4_req rq = { m.method, h + m.target_off, m.target_len, fs, m.nfields };
		r = sigv4_canonical_request(&rq, &sv->guest, sv->payload, &creq);
	}
	if (r == 0)
		r = sigv4_sign(&sv->guest, key->value, key->vlen, buf_head(&creq), buf_used(&creq),
			       sig);
	if (r == 0) {
		const struct http_field *az = field_named(h, &m, "authorization");
		bool ok =
		    sv->guest.presigned
			? put_signature(h + m.target_off, m.target_len, "X-Amz-Signature=", sig)
			: az && put_signature(h + az->value_off, az->value_len, "Signature=", sig);
		r = ok ? 0 : -EPROTO;
	}
	explicit_bzero(sig, sizeof(sig));
	buf_wipe(&creq);
	free(fs);
	if (r < 0) {
		snprintf(reason, rn, "matchlock: request to %s failed: %s", f->name,
			 r == -ENOMEM ? "out of memory"
				      : "its SigV4 head could not be signed again");
		return r == -ENOMEM ? 503 : 400;
	}
	return 0;
}
