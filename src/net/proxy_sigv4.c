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
 * they are. Signed chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, HTTP/1): each chunk's signature
 * chains from the head's; each chunk is held (at most SIGV4_CHUNK_MAX), its signature checked
 * in the guest's chain and replaced by one in ours (same length: the body keeps its length).
 * Not covered, refused with a reason: signed chunks with trailers (...-PAYLOAD-TRAILER) and
 * over HTTP/2, SigV4a, a signature without X-Amz-Date.
 */
#define _GNU_SOURCE
#include "flow.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "secrets.h"
#include "sigv4.h"

#define SIGV4_CHUNK_MAX (1u << 20) /* the longest signed chunk held to check and sign again */
#define SIGV4_CHUNK_LINE_MAX 256 /* "SIZE;chunk-signature=SIG\r\n" */

/* Where an aws-chunked body with signed chunks is. */
enum chunk_state { CH_LINE, CH_DATA, CH_CRLF, CH_DONE };

struct sigv4_flow {
	struct sigv4_auth guest; /* the guest's signature */
	struct buf creq; /* the guest's canonical request up to its payload hash */
	char payload[SIGV4_HASH_LEN + 1]; /* "" until the body is hashed */
	/* STREAMING-AWS4-HMAC-SHA256-PAYLOAD: each chunk is checked, then signed again. */
	bool chunks;
	enum chunk_state cs;
	uint8_t k_guest[32], k_real[32]; /* signing keys: placeholder, real */
	char prev_guest[SIGV4_SIG_LEN + 1], prev_real[SIGV4_SIG_LEN + 1]; /* the chains */
	size_t need; /* CH_DATA: data bytes still to come; CH_CRLF: bytes of "\r\n" */
	bool last; /* the chunk being collected is the final, empty one */
	struct buf line, data; /* the chunk being collected */
};

/* The value of the first field of rq called name (any case), or NULL. */
static const uint8_t *req_field(const struct sigv4_req *rq, const char *name, size_t *n)
{
	size_t l = strlen(name);
	for (unsigned i = 0; i < rq->nfields; i++)
		if (rq->fields[i].nlen == l &&
		    !strncasecmp((const char *)rq->fields[i].name, name, l)) {
			*n = rq->fields[i].vlen;
			return rq->fields[i].value;
		}
	*n = 0;
	return NULL;
}

/*
 * The signature of rq into a: 0, -ENOENT (not SigV4), -ENOTSUP, -EINVAL; -EBADMSG: a header
 * signature without X-Amz-Date.
 */
static int auth_of(const struct sigv4_req *rq, struct sigv4_auth *a)
{
	size_t n;
	const uint8_t *az = req_field(rq, "authorization", &n);
	if (az) {
		int r = sigv4_parse_authorization(az, n, a);
		if (r == 0) {
			const uint8_t *d = req_field(rq, "x-amz-date", &n);
			if (!d || n != 16)
				return -EBADMSG;
			memcpy(a->amz_date, d, 16);
			a->amz_date[16] = 0;
		}
		if (r != -ENOENT)
			return r;
	}
	return sigv4_parse_query(rq->target, rq->tlen, a);
}

void sigv4_state_free(struct sigv4_flow *sv)
{
	if (!sv)
		return;
	buf_wipe(&sv->creq);
	buf_fini(&sv->line);
	buf_fini(&sv->data);
	explicit_bzero(sv, sizeof(*sv));
	free(sv);
}

bool sigv4_signs_chunks(const struct sigv4_flow *sv)
{
	return sv && sv->chunks;
}

void sigv4_flow_end(struct flow *f)
{
	sigv4_state_free(f->sv);
	f->sv = NULL;
}

bool sigv4_needs_body(const struct flow *f)
{
	return f->sv && !f->sv->payload[0];
}

/* Whether any field value or the target of rq holds p. */
static bool req_holds(const struct sigv4_req *rq, const char *p)
{
	size_t n = strlen(p);
	if (memmem(rq->target, rq->tlen, p, n))
		return true;
	for (unsigned i = 0; i < rq->nfields; i++)
		if (memmem(rq->fields[i].value, rq->fields[i].vlen, p, n))
			return true;
	return false;
}

int sigv4_start(struct flow *f, const struct sigv4_req *rq, enum sigv4_body body,
		struct sigv4_flow **out, char *reason, size_t rn)
{
	const struct secrets *ss = f->m->ss;
	const struct secret *id = secrets_aws(ss, SECRET_AWS_KEY_ID);
	*out = NULL;
	if (!id || !secret_host_ok(id, f->name) || !req_holds(rq, id->placeholder))
		return 0;
	struct sigv4_auth a;
	int r = auth_of(rq, &a);
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
	size_t pn;
	const uint8_t *ph = req_field(rq, "x-amz-content-sha256", &pn);
	char payload[SIGV4_HASH_LEN + 1] = "";
	if (ph) {
		snprintf(payload, sizeof(payload), "%.*s", (int)pn, (const char *)ph);
		/* Unsigned chunks (a trailing checksum, unsigned): only the head is signed; signed
		   chunks without trailers are checked and signed again as they come. */
		bool known = !strcmp(payload, SIGV4_STREAMING_UNSIGNED) ||
			     !strcmp(payload, SIGV4_STREAMING_SIGNED);
		if (pn > SIGV4_HASH_LEN || (!strncmp(payload, "STREAMING-", 10) && !known)) {
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
	} else if (body == SIGV4_BODY_NONE) {
		sigv4_hash_hex((const uint8_t *)"", 0, payload);
	} else if (body != SIGV4_BODY_HOLDABLE) {
		snprintf(
		    reason, rn,
		    "matchlock: request to %s refused: its SigV4 signature covers the "
		    "SHA-256 of its body, which the proxy can hold for that only over HTTP/1.1 "
		    "with a Content-Length of at most %u MiB; send x-amz-content-sha256",
		    f->name, FLOW_HELD_BODY_MAX >> 20);
		return 413;
	}
	struct sigv4_flow *sv = calloc(1, sizeof(*sv));
	r = sv ? sigv4_canonical_request(rq, &a, "", &sv->creq) : -ENOMEM;
	if (r < 0) {
		sigv4_state_free(sv);
		snprintf(reason, rn, "matchlock: request to %s refused: %s", f->name,
			 r == -ENOMEM ? "out of memory"
				      : "its SigV4 request cannot be put in canonical form");
		return r == -ENOMEM ? 503 : 400;
	}
	sv->guest = a;
	snprintf(sv->payload, sizeof(sv->payload), "%s", payload);
	sv->chunks = !strcmp(payload, SIGV4_STREAMING_SIGNED);
	*out = sv;
	return 0;
}

int sigv4_resign(struct flow *f, struct sigv4_flow *sv, const struct sigv4_req *up,
		 const uint8_t *body, size_t bn, char sig[SIGV4_SIG_LEN + 1], char *reason,
		 size_t rn)
{
	const struct secret *key = secrets_aws(f->m->ss, SECRET_AWS_SECRET_KEY);
	if (!sv->payload[0])
		sigv4_hash_hex(body, bn, sv->payload);
	/* 1. The guest signed with the placeholder secret key. */
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
	/* 2. The rewritten request (real key id and token) signed with the real key. */
	struct buf creq = { 0 };
	if (r == 0)
		r = sigv4_canonical_request(up, &sv->guest, sv->payload, &creq);
	if (r == 0)
		r = sigv4_sign(&sv->guest, key->value, key->vlen, buf_head(&creq), buf_used(&creq),
			       sig);
	buf_wipe(&creq);
	/* Signed chunks chain from the head's signatures: the guest's, and the new one. */
	if (r == 0 && sv->chunks) {
		memcpy(sv->prev_guest, sv->guest.signature, sizeof(sv->prev_guest));
		memcpy(sv->prev_real, sig, sizeof(sv->prev_real));
		r = sigv4_signing_key((const uint8_t *)key->placeholder, SECRET_PLACEHOLDER_LEN,
				      sv->guest.date, sv->guest.region, sv->guest.service,
				      sv->k_guest);
		if (r == 0)
			r = sigv4_signing_key(key->value, key->vlen, sv->guest.date,
					      sv->guest.region, sv->guest.service, sv->k_real);
	}
	if (r < 0) {
		snprintf(reason, rn, "matchlock: request to %s failed: %s", f->name,
			 r == -ENOMEM ? "out of memory"
				      : "its SigV4 request could not be signed again");
		return r == -ENOMEM ? 503 : 400;
	}
	return 0;
}

bool sigv4_put_signature(const struct sigv4_flow *sv, uint8_t *target, size_t tl, uint8_t *authz,
			 size_t al, const char *sig)
{
	const char *key = sv->guest.presigned ? "X-Amz-Signature=" : "Signature=";
	uint8_t *p = sv->guest.presigned ? target : authz;
	size_t n = sv->guest.presigned ? tl : al, kl = strlen(key);
	uint8_t *at = p ? memmem(p, n, key, kl) : NULL;
	if (!at || (size_t)(p + n - at) < kl + SIGV4_SIG_LEN)
		return false;
	memcpy(at + kl, sig, SIGV4_SIG_LEN);
	return true;
}

/* ---- signed chunks ---------------------------------------------------------------------- */

/* "SIZE;chunk-signature=SIG\r\n" (line, CRLF included): the size, and where SIG starts. */
static int chunk_line(const uint8_t *p, size_t n, size_t *size, size_t *sig_at)
{
	static const char key[] = ";chunk-signature=";
	size_t i = 0, v = 0;
	for (; i < n && i < 8 && isxdigit(p[i]); i++)
		v = v * 16 + (size_t)(isdigit(p[i]) ? p[i] - '0' : (p[i] | 0x20) - 'a' + 10);
	if (!i || n != i + sizeof(key) - 1 + SIGV4_SIG_LEN + 2 ||
	    memcmp(p + i, key, sizeof(key) - 1) || p[n - 2] != '\r')
		return -EPROTO;
	*sig_at = i + sizeof(key) - 1;
	*size = v;
	return v > SIGV4_CHUNK_MAX ? -EMSGSIZE : 0;
}

/* A whole chunk collected: its signature checked in the guest's chain, replaced by ours. */
static int chunk_done(struct sigv4_flow *sv, struct buf *out)
{
	size_t size, at;
	uint8_t *l = buf_head(&sv->line);
	int r = chunk_line(l, buf_used(&sv->line), &size, &at);
	if (r < 0)
		return r;
	char want[SIGV4_SIG_LEN + 1], got[SIGV4_SIG_LEN + 1], real[SIGV4_SIG_LEN + 1];
	memcpy(got, l + at, SIGV4_SIG_LEN);
	got[SIGV4_SIG_LEN] = 0;
	r = sigv4_chunk_signature(&sv->guest, sv->k_guest, sv->prev_guest, buf_head(&sv->data),
				  buf_used(&sv->data), want);
	if (r == 0 && !sigv4_sig_equal(want, got))
		r = -EKEYREJECTED;
	if (r == 0)
		r = sigv4_chunk_signature(&sv->guest, sv->k_real, sv->prev_real,
					  buf_head(&sv->data), buf_used(&sv->data), real);
	if (r < 0)
		return r;
	memcpy(sv->prev_guest, got, sizeof(got));
	memcpy(sv->prev_real, real, sizeof(real));
	/* The same bytes but the signature: the body keeps its length (and Content-Length). */
	memcpy(l + at, real, SIGV4_SIG_LEN);
	buf_append(out, l, buf_used(&sv->line));
	if (buf_used(&sv->data))
		buf_append(out, buf_head(&sv->data), buf_used(&sv->data));
	buf_append(out, "\r\n", 2);
	buf_consume(&sv->line, buf_used(&sv->line));
	buf_consume(&sv->data, buf_used(&sv->data));
	return out->bad ? -ENOMEM : 0;
}

int sigv4_chunks_feed(struct flow *f, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	struct sigv4_flow *sv = f->sv;
	size_t i = 0;
	while (i < n) {
		if (sv->cs == CH_LINE) {
			const uint8_t *nl = memchr(p + i, '\n', n - i);
			size_t k = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
			if (buf_used(&sv->line) + k > SIGV4_CHUNK_LINE_MAX)
				return -EPROTO;
			buf_append(&sv->line, p + i, k);
			i += k;
			if (!nl)
				continue;
			size_t size, at;
			int r = chunk_line(buf_head(&sv->line), buf_used(&sv->line), &size, &at);
			if (r < 0)
				return r;
			sv->last = size == 0;
			sv->cs = size ? CH_DATA : CH_CRLF;
			sv->need = size ? size : 2;
		} else if (sv->cs == CH_DATA) {
			size_t k = n - i < sv->need ? n - i : sv->need;
			buf_append(&sv->data, p + i, k);
			i += k;
			sv->need -= k;
			if (!sv->need)
				sv->cs = CH_CRLF, sv->need = 2;
		} else if (sv->cs == CH_CRLF) {
			if (p[i] != (sv->need == 2 ? '\r' : '\n'))
				return -EPROTO;
			i++;
			if (--sv->need)
				continue;
			int r = chunk_done(sv, out);
			if (r < 0)
				return r;
			sv->cs = sv->last ? CH_DONE : CH_LINE;
		} else {
			return -EPROTO; /* bytes after the final chunk (trailers are not signed
					   here) */
		}
	}
	return final && sv->cs != CH_DONE ? -EPROTO : 0;
}

/* ---- HTTP/1 heads ------------------------------------------------------------------------ */

/* A head's fields and target as sigv4.h takes them (fs: HTTP_MAX_HEADERS entries). */
static void req_of_head(const uint8_t *head, const struct http_msg *m, struct sigv4_field *fs,
			struct sigv4_req *rq)
{
	for (unsigned i = 0; i < m->nfields; i++)
		fs[i] = (struct sigv4_field){ head + m->field[i].name_off, m->field[i].name_len,
					      head + m->field[i].value_off, m->field[i].value_len };
	*rq = (struct sigv4_req){ m->method, head + m->target_off, m->target_len, fs, m->nfields };
}

int sigv4_begin(struct flow *f, const uint8_t *head, const struct http_msg *m, char *reason,
		size_t rn)
{
	sigv4_flow_end(f);
	struct sigv4_field *fs = calloc(HTTP_MAX_HEADERS, sizeof(*fs));
	if (!fs) {
		snprintf(reason, rn, "matchlock: request to %s failed: out of memory", f->name);
		return 503;
	}
	struct sigv4_req rq;
	req_of_head(head, m, fs, &rq);
	enum sigv4_body body = m->framing == HTTP_BODY_NONE ? SIGV4_BODY_NONE
			       : m->framing == HTTP_BODY_LENGTH && m->length <= FLOW_HELD_BODY_MAX
				   ? SIGV4_BODY_HOLDABLE
				   : SIGV4_BODY_STREAMED;
	int r = sigv4_start(f, &rq, body, &f->sv, reason, rn);
	free(fs);
	return r;
}

int sigv4_finish(struct flow *f, struct buf *to, size_t start, const uint8_t *body, size_t bn,
		 char *reason, size_t rn)
{
	struct http_msg m;
	const char *why;
	uint8_t *h = buf_head(to) + start;
	struct sigv4_field *fs = calloc(HTTP_MAX_HEADERS, sizeof(*fs));
	char sig[SIGV4_SIG_LEN + 1];
	int status = 0;
	if (!fs || http_parse_request(h, buf_used(to) - start, &m, &why) < 0) {
		snprintf(reason, rn, "matchlock: request to %s failed: %s", f->name,
			 fs ? "its rewritten head does not parse" : "out of memory");
		status = fs ? 400 : 503;
	}
	struct sigv4_req rq;
	if (!status) {
		req_of_head(h, &m, fs, &rq);
		status = sigv4_resign(f, f->sv, &rq, body, bn, sig, reason, rn);
	}
	if (!status) {
		const struct http_field *az = NULL;
		for (unsigned i = 0; i < m.nfields && !az; i++)
			if (http_field_is(h, &m.field[i], "authorization"))
				az = &m.field[i];
		if (!sigv4_put_signature(f->sv, h + m.target_off, m.target_len,
					 az ? h + az->value_off : NULL, az ? az->value_len : 0,
					 sig)) {
			snprintf(reason, rn,
				 "matchlock: request to %s failed: its SigV4 signature could not "
				 "be replaced",
				 f->name);
			status = 400;
		}
	}
	explicit_bzero(sig, sizeof(sig));
	free(fs);
	return status;
}
