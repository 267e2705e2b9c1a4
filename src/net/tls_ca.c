/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "tls_ca.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CA_DAYS 30
#define LEAF_DAYS 7

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ex)
		return -EINVAL;
	int ok = X509_add_ext(cert, ex, -1);
	X509_EXTENSION_free(ex);
	return ok ? 0 : -EINVAL;
}

/* A certificate skeleton: random serial, validity from an hour ago, subject CN=cn. */
static X509 *cert_new(EVP_PKEY *pub, const char *cn, int days)
{
	X509 *x = X509_new();
	BIGNUM *bn = BN_new();
	if (!x || !bn || !X509_set_version(x, 2) ||
	    !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) || !X509_set_pubkey(x, pub))
		goto fail;
	X509_NAME *n = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"matchlock",
					-1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
					0))
		goto fail;
	BN_free(bn);
	return x;
fail:
	BN_free(bn);
	X509_free(x);
	return NULL;
}

int tls_ca_init(struct tls_ca *ca)
{
	ca->key = EVP_EC_gen("P-256");
	ca->leaf_key = EVP_EC_gen("P-256");
	if (!ca->key || !ca->leaf_key)
		return -EIO;
	char cn[64];
	unsigned char r[4];
	if (RAND_bytes(r, sizeof(r)) != 1)
		return -EIO;
	snprintf(cn, sizeof(cn), "matchlock sandbox CA %02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
	ca->cert = cert_new(ca->key, cn, CA_DAYS);
	if (!ca->cert || !X509_set_issuer_name(ca->cert, X509_get_subject_name(ca->cert)) ||
	    add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
	    add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash") < 0 ||
	    !X509_sign(ca->cert, ca->key, EVP_sha256()))
		return -EIO;
	BIO *b = BIO_new(BIO_s_mem());
	if (!b || !PEM_write_bio_X509(b, ca->cert)) {
		BIO_free(b);
		return -EIO;
	}
	char *p;
	long n = BIO_get_mem_data(b, &p);
	ca->pem = strndup(p, (size_t)n);
	BIO_free(b);
	return ca->pem ? 0 : -ENOMEM;
}

static X509 *leaf_make(struct tls_ca *ca, const char *name)
{
	char san[POLICY_NAME_MAX + 8];
	snprintf(san, sizeof(san), "DNS:%s", name);
	X509 *x = cert_new(ca->leaf_key, name, LEAF_DAYS);
	if (!x || !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
	    add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext(x, ca->cert, NID_ext_key_usage, "serverAuth") < 0 ||
	    add_ext(x, ca->cert, NID_subject_alt_name, san) < 0 ||
	    add_ext(x, ca->cert, NID_authority_key_identifier, "keyid:always") < 0 ||
	    !X509_sign(x, ca->key, EVP_sha256())) {
		X509_free(x);
		return NULL;
	}
	return x;
}

X509 *tls_ca_leaf(struct tls_ca *ca, const char *name)
{
	struct tls_ca_leaf *victim = &ca->leaves[0];
	for (unsigned i = 0; i < TLS_CA_LEAF_CACHE; i++) {
		struct tls_ca_leaf *l = &ca->leaves[i];
		if (l->cert && !strcmp(l->name, name)) {
			l->used = ++ca->tick;
			return l->cert;
		}
		if (!l->cert || (victim->cert && l->used < victim->used))
			victim = l;
	}
	X509 *x = leaf_make(ca, name);
	if (!x)
		return NULL;
	X509_free(victim->cert); /* connections using it hold their own reference */
	victim->cert = x;
	victim->used = ++ca->tick;
	snprintf(victim->name, sizeof(victim->name), "%s", name);
	return x;
}

void tls_ca_fini(struct tls_ca *ca)
{
	for (unsigned i = 0; i < TLS_CA_LEAF_CACHE; i++)
		X509_free(ca->leaves[i].cert);
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	EVP_PKEY_free(ca->leaf_key);
	free(ca->pem);
	OPENSSL_cleanse(ca, sizeof(*ca));
}
