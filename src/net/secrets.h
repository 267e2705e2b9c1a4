/* SPDX-License-Identifier: MIT */
/*
 * The secrets of one sandbox: each a NAME, a real value that lives only in the supervisor's
 * memory, the host globs it may be sent to, and a placeholder (SANDBOX_SECRET_ + 32 random hex)
 * that the guest sees instead. The TLS proxy swaps placeholders for values in requests to the
 * secret's hosts, refuses a placeholder headed anywhere else, and swaps values back for
 * placeholders in responses. Pure code (no loop, no OpenSSL): unit-tested and fuzzed.
 */
#ifndef MATCHLOCK_SECRETS_H
#define MATCHLOCK_SECRETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "http.h"
#include "policy.h"
#include "subst.h"

#define SECRETS_MAX 32 /* secrets per sandbox */
#define SECRET_MAX_HOSTS 16 /* host globs per secret */
#define SECRET_NAME_MAX 128
#define SECRET_VALUE_MAX 8192
#define SECRET_PREFIX "SANDBOX_SECRET_"
#define SECRET_PLACEHOLDER_LEN (sizeof(SECRET_PREFIX) - 1 + 32)
#define SECRET_MAX_FORMS 16 /* encodings of one value the response scrubber looks for */
#define SCRUB_MAX_RECORDED 8 /* encoded forms the proxy produced, remembered per connection */
#define SCRUB_FORM_MAX (16u * 1024) /* a longer produced form is not remembered */
/* The shortest base64 core of a value searched inside longer base64 (shorter ones are noise). */
#define SCRUB_MIN_CORE 8

/* Bytes a response may carry (an encoding of a value) and what the guest gets instead. */
struct scrub_form {
	uint8_t *p; /* wiped before it is freed */
	size_t n;
	uint8_t *rep; /* NULL: the placeholder of secret */
	size_t repn;
	unsigned secret; /* index in secrets.s */
	int next; /* secrets only: 1 + index of the next form with the same first byte, 0 ends */
};

/*
 * What a secret is. An AWS credential (--secret aws@HOSTS) is three secrets named after the
 * variables AWS SDKs read, so the guest's SDK signs with placeholders and the proxy signs again
 * (proxy_sigv4.c): the key id and the session token are substituted like plain values (in
 * Credential=, X-Amz-Credential, X-Amz-Security-Token); the secret key is never sent anywhere,
 * its placeholder in a request is always refused.
 */
enum secret_kind {
	SECRET_PLAIN,
	SECRET_AWS_KEY_ID, /* AWS_ACCESS_KEY_ID */
	SECRET_AWS_SECRET_KEY, /* AWS_SECRET_ACCESS_KEY: only signs */
	SECRET_AWS_TOKEN, /* AWS_SESSION_TOKEN */
};
#define SECRET_AWS_FILE_MAX (64u * 1024) /* an AWS credentials file (many profiles) */

struct secret {
	enum secret_kind kind;
	char name[SECRET_NAME_MAX + 1];
	char placeholder[SECRET_PLACEHOLDER_LEN + 1];
	uint8_t *value; /* wiped before it is freed */
	size_t vlen;
	unsigned nhosts;
	char hosts[SECRET_MAX_HOSTS][POLICY_RULE_MAX + 1]; /* rules, as --allow-host takes them */
	/*
	 * The value as a reflecting upstream may echo it: literal, percent-encoded (upper and
	 * lower hex), JSON-escaped, base64 and base64url (padded or not), and the aligned cores
	 * of base64/base64url for the three offsets a value can have inside longer base64.
	 */
	unsigned nforms;
	struct scrub_form forms[SECRET_MAX_FORMS];
};

struct secrets {
	unsigned n;
	struct secret s[SECRETS_MAX];
	size_t max_vlen; /* the longest value */
	size_t max_form; /* the longest form: how much a response scrubber holds back */
	int first[256]; /* 1 + (secret << 8 | form) of the first form starting with that byte */
};

/*
 * Add a secret: name (an environment variable name), value (not NUL-terminated; no NUL, CR or
 * LF, 1..SECRET_VALUE_MAX bytes), hosts as "h1,h2". A fresh placeholder is drawn from
 * getrandom(). Returns 0, -EINVAL (with why in err), -EEXIST (the name again) or -ENOSPC.
 */
int secrets_add(struct secrets *ss, const char *name, const uint8_t *value, size_t vlen,
		const char *hosts, char *err, size_t errn);
/*
 * Add an AWS credential (the access key id, the secret access key and, when tlen, the session
 * token) as the secrets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN for
 * hosts. Returns 0 or what secrets_add returns (nothing is added then).
 */
int secrets_add_aws(struct secrets *ss, const uint8_t *id, size_t idlen, const uint8_t *key,
		    size_t klen, const uint8_t *token, size_t tlen, const char *hosts, char *err,
		    size_t errn);
/* The sandbox's AWS secret of that kind, or NULL (a sandbox has at most one AWS credential). */
const struct secret *secrets_aws(const struct secrets *ss, enum secret_kind kind);
/*
 * Parse a --secret spec, NAME[=VALUE]@HOST[,HOST...] (VALUE from getenv(NAME) when omitted), or
 * with from_file a --secret-file spec, NAME=PATH@HOST[,...]; then secrets_add. "aws@HOSTS"
 * takes an AWS credential from $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY and
 * $AWS_SESSION_TOKEN (optional); --secret-file "aws[:PROFILE]=PATH@HOSTS" from an AWS
 * credentials file (PROFILE's section, default "default"; a file without sections is read
 * whole). The value is never echoed in err.
 */
int secrets_parse_flag(struct secrets *ss, const char *spec, bool from_file, char *err,
		       size_t errn);
/* Wipe and free every value; ss is empty afterwards. NULL is fine. */
void secrets_clear(struct secrets *ss);
/* Add every secret's hosts to p's allow-list (secret hosts are allowed automatically). */
int secrets_allow_hosts(const struct secrets *ss, struct policy *p);
/* Whether host (lower case) is one the secret may be sent to (never: an AWS secret key). */
bool secret_host_ok(const struct secret *s, const char *host);
/* The first secret whose placeholder occurs in p[0..n), or NULL. */
const struct secret *secrets_find_placeholder(const struct secrets *ss, const uint8_t *p, size_t n);
/*
 * Rewrite a request head for host: every placeholder of a secret scoped to host becomes its
 * value (in the target, percent-encoded where needed; in header values; inside the base64 of
 * `Authorization: Basic`). head is a request head parsed into m (http_parse_request); the
 * result is appended to out. Returns the number of substitutions, or -EPERM with *leak set to the
 * secret whose placeholder is headed to a host it is not scoped to (nothing is appended then), or
 * -EPROTO/-ENOMEM. With strip_encoding, Accept-Encoding is replaced by identity so responses
 * can be scrubbed. rec (may be NULL): the connection's scrubber, told each encoded form of a
 * value the rewrite produced (a Basic token) so a response echoing it gets the guest's form back.
 */
struct scrub;
int secrets_rewrite_request(const struct secrets *ss, const char *host, const uint8_t *head,
			    const struct http_msg *m, bool strip_encoding, struct buf *out,
			    const struct secret **leak, struct scrub *rec);

/* Whether some secret may be sent to host (only then can a request body change length). */
bool secrets_host_bound(const struct secrets *ss, const char *host);

/* How a value is written where its placeholder stood in a request body. */
enum secrets_body_enc {
	SECRETS_BODY_RAW, /* the value's bytes */
	SECRETS_BODY_FORM, /* application/x-www-form-urlencoded: percent-encoded */
	SECRETS_BODY_JSON, /* application/json (and +json): JSON string escapes */
};
/* The encoding for a request's Content-Type value (ct, n bytes; NULL: none). */
enum secrets_body_enc secrets_body_enc_for(const uint8_t *ct, size_t n);

/*
 * One request header field toward host, the unit every HTTP version rewrites (HTTP/1 heads
 * field by field, HTTP/2's HPACK-decoded fields): the value with every placeholder of a secret
 * scoped to host replaced (percent-encoded when url, for a request target), inside the base64
 * of `Authorization: Basic` too, is appended to out (the name is only checked: the caller
 * writes it; HTTP/2 names are lower case, a placeholder cannot be one). Returns the number of
 * substitutions,
 * -EPERM with *leak set when the name, the value or a Basic credential carries the placeholder
 * of a secret not scoped to host (nothing appended), or -ENOMEM. rec: as above.
 */
int secrets_rewrite_field(const struct secrets *ss, const char *host, const uint8_t *name,
			  size_t nlen, const uint8_t *value, size_t vlen, bool url, struct buf *out,
			  const struct secret **leak, struct scrub *rec);

/*
 * Streaming substitution in one request body toward host (the subst engine with the
 * placeholders as patterns): each placeholder of a secret scoped to host becomes its value, in
 * enc; a placeholder of any other secret refuses the body. Works for any split of the body;
 * holds back at most SECRET_PLACEHOLDER_LEN - 1 bytes. host and ss stay the caller's.
 */
struct secrets_body {
	const struct secrets *ss;
	const char *host;
	enum secrets_body_enc enc;
	bool inspect_only; /* the body cannot be rewritten (compressed): any placeholder refuses */
	unsigned nsub; /* placeholders replaced so far */
	const struct secret *leak; /* the refused placeholder's secret */
	struct subst st;
};
void secrets_body_init(struct secrets_body *b, const struct secrets *ss, const char *host,
		       enum secrets_body_enc enc, bool inspect_only);
/*
 * Feed n body bytes; the substituted body is appended to out (final: the body ends). Returns
 * 0; -EPERM when a placeholder of b->leak, a secret not scoped to host, is in the body;
 * -ENOTSUP when inspect_only and a placeholder of b->leak (scoped to host) is in it; -ENOMEM.
 * After a refusal out holds only the bytes before the placeholder.
 */
int secrets_body_feed(struct secrets_body *b, const uint8_t *p, size_t n, bool final,
		      struct buf *out);
void secrets_body_fini(struct secrets_body *b);

/*
 * Streaming scrubber for one connection's responses (the subst engine with the forms as
 * patterns): every form of a real value (see struct secret) and every form the proxy produced
 * on this connection is replaced, even when split across reads; the longest match wins. Bytes
 * that could start a form are held back (at most the longest form - 1: max_form, or
 * SCRUB_FORM_MAX for recorded ones) until decided.
 */
struct scrub {
	struct subst st;
	unsigned nrec;
	struct scrub_form rec[SCRUB_MAX_RECORDED];
};
/*
 * Remember that this connection sent p (an encoding of a secret value the proxy produced) so
 * that it is replaced by rep (what the guest sent) in responses. Bounded: beyond
 * SCRUB_MAX_RECORDED forms, or SCRUB_FORM_MAX bytes, a form is not kept (the value's own
 * forms still catch its core). Returns 0 or -ENOMEM/-ENOSPC.
 */
int scrub_record(struct scrub *sc, unsigned secret, const uint8_t *p, size_t n, const uint8_t *rep,
		 size_t repn);
/* Feed n bytes; decided bytes are appended to out. final: flush what is held back. */
int scrub_feed(const struct secrets *ss, struct scrub *sc, const uint8_t *p, size_t n, bool final,
	       struct buf *out);
/* Replace forms in one complete piece (a header block); sc (may be NULL) adds its records. */
int scrub_all(const struct secrets *ss, const struct scrub *sc, const uint8_t *p, size_t n,
	      struct buf *out);
void scrub_fini(struct scrub *sc);

/* explicit_bzero, then free. */
void secret_wipe_free(void *p, size_t n);
/* Wipe a buffer's bytes (all of its capacity) and free it. */
void buf_wipe(struct buf *b);

#endif
