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
#include "policy.h"

#define SECRETS_MAX 32 /* secrets per sandbox */
#define SECRET_MAX_HOSTS 16 /* host globs per secret */
#define SECRET_NAME_MAX 128
#define SECRET_VALUE_MAX 8192
#define SECRET_PREFIX "SANDBOX_SECRET_"
#define SECRET_PLACEHOLDER_LEN (sizeof(SECRET_PREFIX) - 1 + 32)

struct secret {
	char name[SECRET_NAME_MAX + 1];
	char placeholder[SECRET_PLACEHOLDER_LEN + 1];
	uint8_t *value; /* wiped before it is freed */
	size_t vlen;
	unsigned nhosts;
	char hosts[SECRET_MAX_HOSTS][POLICY_RULE_MAX + 1]; /* rules, as --allow-host takes them */
};

struct secrets {
	unsigned n;
	struct secret s[SECRETS_MAX];
	size_t max_vlen; /* the longest value: how much a response scrubber holds back */
};

/*
 * Add a secret: name (an environment variable name), value (not NUL-terminated; no NUL, CR or
 * LF, 1..SECRET_VALUE_MAX bytes), hosts as "h1,h2". A fresh placeholder is drawn from
 * getrandom(). Returns 0, -EINVAL (with why in err), -EEXIST (the name again) or -ENOSPC.
 */
int secrets_add(struct secrets *ss, const char *name, const uint8_t *value, size_t vlen,
		const char *hosts, char *err, size_t errn);
/*
 * Parse a --secret spec, NAME[=VALUE]@HOST[,HOST...] (VALUE from getenv(NAME) when omitted), or
 * with from_file a --secret-file spec, NAME=PATH@HOST[,...]; then secrets_add. The value is
 * never echoed in err.
 */
int secrets_parse_flag(struct secrets *ss, const char *spec, bool from_file, char *err, size_t errn);
/* Wipe and free every value; ss is empty afterwards. NULL is fine. */
void secrets_clear(struct secrets *ss);
/* Add every secret's hosts to p's allow-list (secret hosts are allowed automatically). */
int secrets_allow_hosts(const struct secrets *ss, struct policy *p);
/* Whether host (lower case) is one the secret may be sent to. */
bool secret_host_ok(const struct secret *s, const char *host);
/* The first secret whose placeholder occurs in p[0..n), or NULL. */
const struct secret *secrets_find_placeholder(const struct secrets *ss, const uint8_t *p, size_t n);

/*
 * Rewrite a request head for host: every placeholder of a secret scoped to host becomes its
 * value (in the target, percent-encoded where needed; in header values; inside the base64 of
 * `Authorization: Basic`). head is the complete head (request line to CRLFCRLF); the result is
 * appended to out. Returns the number of substitutions, or -EPERM with *leak set to the secret
 * whose placeholder is headed to a host it is not scoped to (nothing is appended then), or
 * -EPROTO/-ENOMEM. With strip_encoding, Accept-Encoding is replaced by identity so responses
 * can be scrubbed.
 */
int secrets_rewrite_request(const struct secrets *ss, const char *host, const uint8_t *head,
			    size_t n, bool strip_encoding, struct buf *out,
			    const struct secret **leak);

/*
 * Streaming scrubber for responses: every real value is replaced by its placeholder, even when
 * a value is split across reads. Bytes that could be the start of a value are held back (at
 * most max_vlen - 1) until the next feed decides them.
 */
struct scrub {
	struct buf hold;
};
/* Feed n bytes; decided bytes are appended to out. final: flush what is held back. */
int scrub_feed(const struct secrets *ss, struct scrub *sc, const uint8_t *p, size_t n, bool final,
	       struct buf *out);
/* Replace values in one complete piece (a header block). */
int scrub_all(const struct secrets *ss, const uint8_t *p, size_t n, struct buf *out);
void scrub_fini(struct scrub *sc);

/* explicit_bzero, then free. */
void secret_wipe_free(void *p, size_t n);
/* Wipe a buffer's bytes (all of its capacity) and free it. */
void buf_wipe(struct buf *b);

#endif
