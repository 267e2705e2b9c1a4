/* SPDX-License-Identifier: MIT */
/*
 * A sandbox's certificate authority: an ECDSA P-256 CA generated in memory (its key never
 * leaves this process; the guest trusts its certificate), and the leaf certificates it signs
 * per server name, cached (least recently used goes). All leaves share one key pair.
 */
#ifndef MATCHLOCK_TLS_CA_H
#define MATCHLOCK_TLS_CA_H

#include <stdint.h>

#include <openssl/types.h>

#include "policy.h"

#define TLS_CA_LEAF_CACHE 64 /* leaf certificates kept per sandbox */

struct tls_ca {
	EVP_PKEY *key, *leaf_key; /* freed by EVP_PKEY_free, which clears private keys */
	X509 *cert;
	char *pem; /* the CA certificate, PEM: public, sent to the guest */
	struct tls_ca_leaf {
		char name[POLICY_NAME_MAX + 1];
		X509 *cert;
		uint64_t used;
	} leaves[TLS_CA_LEAF_CACHE];
	uint64_t tick;
};

/* Generate the CA into a zeroed ca: 0, or -EIO/-ENOMEM (OpenSSL's error queue says why). */
int tls_ca_init(struct tls_ca *ca);
/* Frees and wipes everything; fine on a partly initialised ca. */
void tls_ca_fini(struct tls_ca *ca);
/* The cached leaf for name (minted on a miss). Borrowed: valid until the next call. */
X509 *tls_ca_leaf(struct tls_ca *ca, const char *name);

#endif
