/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "mitm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "common/util.h"
#include "http.h"

#define CA_DAYS 30
#define LEAF_DAYS 7

struct leaf {
	char name[POLICY_NAME_MAX + 1];
	X509 *cert;
	uint64_t used;
};

struct mitm {
	const struct secrets *ss;
	EVP_PKEY *ca_key, *leaf_key; /* freed by EVP_PKEY_free, which clears private keys */
	X509 *ca;
	char *ca_pem;
	SSL_CTX *guest_ctx, *up_ctx;
	struct leaf leaves[MITM_LEAF_CACHE];
	uint64_t tick;
};

/* ---- certificates ----------------------------------------------------------------------- */

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
	if (!x || !bn || !X509_set_version(x, 2) || !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) || !X509_set_pubkey(x, pub))
		goto fail;
	X509_NAME *n = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"matchlock", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0))
		goto fail;
	BN_free(bn);
	return x;
fail:
	BN_free(bn);
	X509_free(x);
	return NULL;
}

static int ca_make(struct mitm *m)
{
	m->ca_key = EVP_EC_gen("P-256");
	m->leaf_key = EVP_EC_gen("P-256");
	if (!m->ca_key || !m->leaf_key)
		return -EIO;
	char cn[64];
	unsigned char r[4];
	if (RAND_bytes(r, sizeof(r)) != 1)
		return -EIO;
	snprintf(cn, sizeof(cn), "matchlock sandbox CA %02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
	m->ca = cert_new(m->ca_key, cn, CA_DAYS);
	if (!m->ca || !X509_set_issuer_name(m->ca, X509_get_subject_name(m->ca)) ||
	    add_ext(m->ca, m->ca, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
	    add_ext(m->ca, m->ca, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    add_ext(m->ca, m->ca, NID_subject_key_identifier, "hash") < 0 ||
	    !X509_sign(m->ca, m->ca_key, EVP_sha256()))
		return -EIO;
	BIO *b = BIO_new(BIO_s_mem());
	if (!b || !PEM_write_bio_X509(b, m->ca)) {
		BIO_free(b);
		return -EIO;
	}
	char *p;
	long n = BIO_get_mem_data(b, &p);
	m->ca_pem = strndup(p, (size_t)n);
	BIO_free(b);
	return m->ca_pem ? 0 : -ENOMEM;
}

static X509 *leaf_make(struct mitm *m, const char *name)
{
	char san[POLICY_NAME_MAX + 8];
	snprintf(san, sizeof(san), "DNS:%s", name);
	X509 *x = cert_new(m->leaf_key, name, LEAF_DAYS);
	if (!x || !X509_set_issuer_name(x, X509_get_subject_name(m->ca)) ||
	    add_ext(x, m->ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, m->ca, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext(x, m->ca, NID_ext_key_usage, "serverAuth") < 0 ||
	    add_ext(x, m->ca, NID_subject_alt_name, san) < 0 ||
	    add_ext(x, m->ca, NID_authority_key_identifier, "keyid:always") < 0 ||
	    !X509_sign(x, m->ca_key, EVP_sha256())) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* The cached leaf for name (minted on a miss). Borrowed: valid until the next call. */
static X509 *leaf_get(struct mitm *m, const char *name)
{
	struct leaf *victim = &m->leaves[0];
	for (unsigned i = 0; i < MITM_LEAF_CACHE; i++) {
		struct leaf *l = &m->leaves[i];
		if (l->cert && !strcmp(l->name, name)) {
			l->used = ++m->tick;
			return l->cert;
		}
		if (!l->cert || (victim->cert && l->used < victim->used))
			victim = l;
	}
	X509 *x = leaf_make(m, name);
	if (!x)
		return NULL;
	X509_free(victim->cert); /* connections using it hold their own reference */
	victim->cert = x;
	victim->used = ++m->tick;
	snprintf(victim->name, sizeof(victim->name), "%s", name);
	return x;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl, (void)arg;
	static const unsigned char h1[] = "\x08http/1.1";
	unsigned char *o;
	if (SSL_select_next_proto(&o, outlen, h1, sizeof(h1) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK; /* h2 only: no ALPN, the client falls back or gives up */
	*out = o;
	return SSL_TLSEXT_ERR_OK;
}

static void ssl_err_text(char *out, size_t n)
{
	unsigned long e = ERR_peek_last_error();
	if (e)
		ERR_error_string_n(e, out, n);
	else
		snprintf(out, n, "unknown TLS error");
	ERR_clear_error();
}

struct mitm *mitm_new(const struct secrets *ss, char *const *upstream_ca, char *err, size_t errn)
{
	struct mitm *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errn, "out of memory");
		return NULL;
	}
	m->ss = ss;
	char e[256];
	if (ca_make(m) < 0) {
		ssl_err_text(e, sizeof(e));
		snprintf(err, errn, "creating the sandbox CA: %s", e);
		goto fail;
	}
	m->guest_ctx = SSL_CTX_new(TLS_server_method());
	m->up_ctx = SSL_CTX_new(TLS_client_method());
	if (!m->guest_ctx || !m->up_ctx) {
		snprintf(err, errn, "setting up TLS: out of memory");
		goto fail;
	}
	SSL_CTX_set_min_proto_version(m->guest_ctx, TLS1_2_VERSION);
	/*
	 * The guest's TLS never crosses a network (it ends here, over the VM link), so old clients
	 * such as busybox wget, which signs with SHA-1 only, are let in.
	 */
	SSL_CTX_set_security_level(m->guest_ctx, 0);
	SSL_CTX_set_alpn_select_cb(m->guest_ctx, alpn_select, NULL);
	SSL_CTX_set_mode(m->guest_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_min_proto_version(m->up_ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(m->up_ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(m->up_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_alpn_protos(m->up_ctx, (const unsigned char *)"\x08http/1.1", 9);
	if (SSL_CTX_set_default_verify_paths(m->up_ctx) != 1)
		ERR_clear_error(); /* no system store: only --upstream-ca then */
	for (unsigned i = 0; upstream_ca && upstream_ca[i]; i++) {
		if (SSL_CTX_load_verify_locations(m->up_ctx, upstream_ca[i], NULL) != 1) {
			ssl_err_text(e, sizeof(e));
			snprintf(err, errn, "--upstream-ca %s: cannot load it as PEM certificates (%s)",
				 upstream_ca[i], e);
			goto fail;
		}
	}
	return m;
fail:
	mitm_free(m);
	return NULL;
}

void mitm_free(struct mitm *m)
{
	if (!m)
		return;
	for (unsigned i = 0; i < MITM_LEAF_CACHE; i++)
		X509_free(m->leaves[i].cert);
	SSL_CTX_free(m->guest_ctx);
	SSL_CTX_free(m->up_ctx);
	X509_free(m->ca);
	EVP_PKEY_free(m->ca_key);
	EVP_PKEY_free(m->leaf_key);
	free(m->ca_pem);
	OPENSSL_cleanse(m, sizeof(*m));
	free(m);
}

const char *mitm_ca_pem(const struct mitm *m)
{
	return m->ca_pem;
}

const struct secrets *mitm_secrets(const struct mitm *m)
{
	return m->ss;
}

/* ---- flows ------------------------------------------------------------------------------ */

enum rq_state { RQ_HEAD, RQ_BODY, RQ_WAIT_UPGRADE, RQ_TUNNEL, RQ_STOPPED };
enum rs_state { RS_HEAD, RS_BODY, RS_TUNNEL };

struct pending {
	char method[16];
	char url[512];
	int minor;
	bool upgrade;
	uint64_t t0, up, down;
};

struct flow {
	struct mitm *m;
	char name[POLICY_NAME_MAX + 1];
	uint16_t port;
	flow_event_fn ev;
	void *opaque;

	SSL *g; /* the guest's side: we are the server, memory BIOs */
	BIO *g_in, *g_out; /* owned by g */
	SSL *u; /* upstream: we are the client, on fd */
	int fd;
	bool g_hs, u_hs; /* handshakes done */
	bool u_failed;
	char u_why[300]; /* why the upstream failed, for the log and events */
	char u_guest[300]; /* what the guest's 502 says */
	bool u_want_write; /* the last upstream TLS call needs the socket writable */
	bool g_eof, u_eof, u_shut, closing, failed, g_closed;

	struct buf req_in; /* guest plaintext not parsed yet */
	struct buf req_out; /* plaintext for upstream */
	struct buf resp_in; /* upstream plaintext not parsed yet */
	struct buf to_guest; /* ciphertext for the guest */
	struct buf g_plain; /* plaintext for the guest, encrypted in one go per round */
	struct buf final; /* the response that ends the connection (400/403/502), after the queue */

	enum rq_state rq;
	struct http_body rq_body;
	bool rq_chunked;
	enum rs_state rs;
	struct http_body rs_body;
	bool rs_chunked_out, rs_close_after;
	struct scrub scrub;
	struct http_msg rs_msg;

	struct pending q[FLOW_MAX_PIPELINE];
	unsigned qhead, qlen;
};

static void flow_event(struct flow *f, enum net_event_kind kind, bool allowed, const char *reason,
		       const struct net_request *rq)
{
	struct net_event e = { kind, allowed, f->name, NULL, f->port, reason, rq };
	if (f->ev)
		f->ev(f->opaque, &e);
}

struct flow *flow_new(struct mitm *m, const char *name, uint16_t port, flow_event_fn fn,
		      void *opaque)
{
	struct flow *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->m = m;
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->port = port;
	f->ev = fn;
	f->opaque = opaque;
	f->fd = -1;
	X509 *leaf = leaf_get(m, name);
	f->g = SSL_new(m->guest_ctx);
	f->g_in = BIO_new(BIO_s_mem());
	f->g_out = BIO_new(BIO_s_mem());
	if (!leaf || !f->g || !f->g_in || !f->g_out || SSL_use_certificate(f->g, leaf) != 1 ||
	    SSL_use_PrivateKey(f->g, m->leaf_key) != 1) {
		BIO_free(f->g_in);
		BIO_free(f->g_out);
		SSL_free(f->g);
		free(f);
		ERR_clear_error();
		errno = ENOMEM;
		return NULL;
	}
	BIO_set_mem_eof_return(f->g_in, -1); /* empty means "more later", not EOF */
	SSL_set_bio(f->g, f->g_in, f->g_out);
	SSL_set_accept_state(f->g);
	return f;
}

void flow_free(struct flow *f)
{
	if (!f)
		return;
	SSL_free(f->g);
	SSL_free(f->u);
	buf_wipe(&f->req_in);
	buf_wipe(&f->req_out);
	buf_wipe(&f->resp_in);
	buf_wipe(&f->to_guest);
	buf_wipe(&f->g_plain);
	buf_wipe(&f->final);
	scrub_fini(&f->scrub);
	OPENSSL_cleanse(f, sizeof(*f));
	free(f);
}

int flow_set_upstream(struct flow *f, int fd)
{
	f->fd = fd;
	f->u = SSL_new(f->m->up_ctx);
	if (!f->u || SSL_set_fd(f->u, fd) != 1 || SSL_set_tlsext_host_name(f->u, f->name) != 1 ||
	    SSL_set1_host(f->u, f->name) != 1) {
		ERR_clear_error();
		flow_upstream_failed(f, "cannot set up TLS towards the upstream", NULL);
		return -ENOMEM;
	}
	SSL_set_connect_state(f->u);
	return 0;
}

void flow_upstream_failed(struct flow *f, const char *why, const char *guest_why)
{
	if (f->u_failed)
		return;
	f->u_failed = true;
	snprintf(f->u_why, sizeof(f->u_why), "%s", why);
	snprintf(f->u_guest, sizeof(f->u_guest), "%s", guest_why ? guest_why : why);
	flow_event(f, NET_EV_CONNECT, false, why, NULL);
}

size_t flow_feed_guest(struct flow *f, const uint8_t *p, size_t n)
{
	if (BIO_ctrl_pending(f->g_in) >= FLOW_BUF_HIGH || buf_used(&f->req_in) >= FLOW_BUF_HIGH ||
	    buf_used(&f->req_out) >= FLOW_BUF_HIGH)
		return 0;
	if (n > FLOW_BUF_HIGH)
		n = FLOW_BUF_HIGH;
	int k = BIO_write(f->g_in, p, (int)n);
	return k > 0 ? (size_t)k : 0;
}

void flow_guest_eof(struct flow *f)
{
	f->g_eof = true;
}

struct buf *flow_to_guest(struct flow *f)
{
	return &f->to_guest;
}

bool flow_done(const struct flow *f)
{
	return f->g_closed;
}

bool flow_failed(const struct flow *f)
{
	return f->failed;
}

uint32_t flow_events(const struct flow *f)
{
	if (f->fd < 0 || !f->u || f->u_failed || f->closing)
		return f->fd >= 0 && !f->u_hs && !f->u ? EPOLLOUT : 0;
	uint32_t ev = 0;
	if (!f->u_eof && (!f->u_hs || buf_used(&f->to_guest) < FLOW_BUF_HIGH))
		ev |= EPOLLIN;
	if (f->u_want_write || (f->u_hs && buf_used(&f->req_out)))
		ev |= EPOLLOUT;
	return ev;
}

/* Move what the guest-side TLS produced into to_guest. */
static void drain_g_out(struct flow *f)
{
	char tmp[16384];
	int k;
	while ((k = BIO_read(f->g_out, tmp, sizeof(tmp))) > 0)
		buf_append(&f->to_guest, tmp, (size_t)k);
}

/* Encrypt the queued plaintext for the guest: few records, not one per piece. */
static void flush_g_plain(struct flow *f)
{
	while (buf_used(&f->g_plain) && f->g_hs) {
		size_t n = buf_used(&f->g_plain);
		int k = SSL_write(f->g, buf_head(&f->g_plain), n > (1u << 20) ? 1 << 20 : (int)n);
		if (k <= 0)
			break; /* memory BIO: cannot block; a failure ends the flow elsewhere */
		explicit_bzero(buf_head(&f->g_plain), (size_t)k);
		buf_consume(&f->g_plain, (size_t)k);
	}
	drain_g_out(f);
}

/* Plaintext to the guest (queued; flush_g_plain sends it). */
static void to_guest_plain(struct flow *f, const void *p, size_t n)
{
	if (n)
		buf_append(&f->g_plain, p, n);
}

/* End the connection towards the guest: close_notify, then EOF once drained. */
static void flow_close_guest(struct flow *f)
{
	if (f->g_closed)
		return;
	flush_g_plain(f);
	if (f->g_hs)
		SSL_shutdown(f->g);
	drain_g_out(f);
	f->closing = true;
	f->g_closed = true;
}

static struct pending *q_front(struct flow *f)
{
	return f->qlen ? &f->q[f->qhead] : NULL;
}

static void q_pop(struct flow *f)
{
	f->qhead = (f->qhead + 1) % FLOW_MAX_PIPELINE;
	f->qlen--;
}

static void request_event(struct flow *f, struct pending *p, int status, bool allowed,
			  const char *reason, enum net_event_kind kind, const char *secret)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	struct net_request rq = { p->method, p->url, status, p->up, p->down,
				  (now - p->t0) / 1000000u, secret };
	flow_event(f, kind, allowed, reason, &rq);
}

/*
 * Stop taking requests: the response in body goes out after the responses still owed
 * (pipelining keeps order), then the connection closes.
 */
static void flow_refuse(struct flow *f, int status, const char *reason)
{
	buf_fini(&f->final);
	http_build_error(&f->final, status, reason);
	f->rq = RQ_STOPPED;
	buf_fini(&f->req_in);
}

static void pending_fill(struct flow *f, struct pending *p, const uint8_t *head,
			 const struct http_msg *m)
{
	char t[400];
	http_target_redacted(head + m->target_off, m->target_len, t, sizeof(t));
	memset(p, 0, sizeof(*p));
	snprintf(p->method, sizeof(p->method), "%s", m->method);
	if (f->port == 443)
		snprintf(p->url, sizeof(p->url), "https://%s%s", f->name, t[0] == '/' ? t : "/");
	else
		snprintf(p->url, sizeof(p->url), "https://%s:%u%s", f->name, f->port, t[0] == '/' ? t : "/");
	p->minor = m->minor;
	p->upgrade = m->upgrade;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	p->t0 = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Parse and forward guest requests as far as the buffers allow. */
static void requests_run(struct flow *f)
{
	const struct secrets *ss = f->m->ss;
	for (;;) {
		if (buf_used(&f->req_out) >= FLOW_BUF_HIGH)
			return;
		if (f->rq == RQ_TUNNEL) {
			buf_append(&f->req_out, buf_head(&f->req_in), buf_used(&f->req_in));
			if (f->qlen)
				f->q[f->qhead].up += buf_used(&f->req_in);
			buf_consume(&f->req_in, buf_used(&f->req_in));
			return;
		}
		if (f->rq == RQ_STOPPED || f->rq == RQ_WAIT_UPGRADE)
			return;
		if (f->rq == RQ_BODY) {
			struct pending *p = &f->q[(f->qhead + f->qlen - 1) % FLOW_MAX_PIPELINE];
			size_t used, off, dl;
			int r = http_body_step(&f->rq_body, buf_head(&f->req_in), buf_used(&f->req_in),
					       f->g_eof, &used, &off, &dl);
			if (r < 0) {
				flow_refuse(f, 400, "matchlock: malformed request body framing");
				return;
			}
			if (dl) {
				char sz[24];
				int k = snprintf(sz, sizeof(sz), "%zx\r\n", dl);
				if (f->rq_chunked)
					buf_append(&f->req_out, sz, (size_t)k);
				buf_append(&f->req_out, buf_head(&f->req_in) + off, dl);
				if (f->rq_chunked)
					buf_append(&f->req_out, "\r\n", 2);
				p->up += dl;
			}
			buf_consume(&f->req_in, used);
			if (r == 1) {
				if (f->rq_chunked)
					buf_append(&f->req_out, "0\r\n\r\n", 5);
				f->rq = p->upgrade ? RQ_WAIT_UPGRADE : RQ_HEAD;
				continue;
			}
			if (!used)
				return;
			continue;
		}
		/* RQ_HEAD */
		if (!buf_used(&f->req_in))
			return;
		if (f->qlen >= FLOW_MAX_PIPELINE)
			return;
		long hl = http_head_len(buf_head(&f->req_in), buf_used(&f->req_in), HTTP_MAX_HEAD);
		if (hl == 0 && !f->g_eof)
			return;
		struct http_msg m;
		const char *why = "an incomplete request head";
		char reason[600];
		if (hl <= 0 || http_parse_request(buf_head(&f->req_in), (size_t)hl, &m, &why) < 0) {
			if (hl < 0)
				why = "a request head larger than 16 KiB";
			snprintf(reason, sizeof(reason), "matchlock: bad request to %s: %s", f->name, why);
			flow_event(f, NET_EV_HTTP, false, reason, NULL);
			flow_refuse(f, 400, reason);
			return;
		}
		const uint8_t *head = buf_head(&f->req_in);
		struct pending *p = &f->q[(f->qhead + f->qlen) % FLOW_MAX_PIPELINE];
		pending_fill(f, p, head, &m);
		if (strcmp(m.host, f->name)) {
			snprintf(reason, sizeof(reason), "matchlock: request to %s blocked: Host %s does not "
				 "match the TLS server name %s", f->name, m.host, f->name);
			request_event(f, p, 403, false, reason, NET_EV_REQUEST, NULL);
			flow_refuse(f, 403, reason);
			return;
		}
		if (f->u_failed) {
			snprintf(reason, sizeof(reason), "matchlock: request to %s failed: %s", f->name, f->u_why);
			request_event(f, p, 502, false, reason, NET_EV_REQUEST, NULL);
			snprintf(reason, sizeof(reason), "matchlock: request to %s failed: %s", f->name,
				 f->u_guest);
			flow_refuse(f, 502, reason);
			return;
		}
		const struct secret *leak = NULL;
		size_t before = buf_used(&f->req_out);
		int r = ss && ss->n ? secrets_rewrite_request(ss, f->name, head, &m, true,
								&f->req_out, &leak, &f->scrub)
				    : buf_append(&f->req_out, head, (size_t)hl);
		if (r == -EPERM) {
			char hosts[300] = "";
			for (unsigned i = 0, k = 0; i < leak->nhosts && k < sizeof(hosts) - 1; i++)
				k += (unsigned)snprintf(hosts + k, sizeof(hosts) - k, "%s%s", i ? "," : "",
							leak->hosts[i]);
			snprintf(reason, sizeof(reason), "matchlock: request to %s blocked: it carries the "
				 "placeholder of secret %s, which may only be sent to %s (secret_leak)",
				 f->name, leak->name, hosts);
			request_event(f, p, 403, false, reason, NET_EV_SECRET_LEAK, leak->name);
			request_event(f, p, 403, false, reason, NET_EV_REQUEST, leak->name);
			flow_refuse(f, 403, reason);
			return;
		}
		if (r < 0) {
			f->req_out.len = f->req_out.off + before;
			flow_refuse(f, 400, "matchlock: malformed request head");
			return;
		}
		f->qlen++;
		buf_consume(&f->req_in, (size_t)hl);
		f->rq_chunked = m.framing == HTTP_BODY_CHUNKED;
		http_body_init(&f->rq_body, m.framing, m.length);
		f->rq = RQ_BODY;
	}
}

static const char *const framing_headers[] = { "content-length", "transfer-encoding", NULL };

/* Send a response body piece to the guest: scrubbed, in the framing chosen for it. */
static void response_data(struct flow *f, const uint8_t *p, size_t n, bool final)
{
	struct buf out = { 0 };
	scrub_feed(f->m->ss, &f->scrub, p, n, final, &out);
	if (buf_used(&out)) {
		if (f->rs_chunked_out) {
			char sz[24];
			int k = snprintf(sz, sizeof(sz), "%zx\r\n", buf_used(&out));
			to_guest_plain(f, sz, (size_t)k);
		}
		to_guest_plain(f, buf_head(&out), buf_used(&out));
		if (f->rs_chunked_out)
			to_guest_plain(f, "\r\n", 2);
	}
	buf_wipe(&out);
}

static void response_done(struct flow *f)
{
	struct pending *p = q_front(f);
	response_data(f, NULL, 0, true);
	if (f->rs_chunked_out)
		to_guest_plain(f, "0\r\n\r\n", 5);
	if (p) {
		request_event(f, p, f->rs_msg.status, true, "rule matched", NET_EV_REQUEST, NULL);
		q_pop(f);
	}
	f->rs = RS_HEAD;
	if (f->rs_close_after)
		f->closing = true;
}

/* Parse and forward upstream responses. */
static void responses_run(struct flow *f)
{
	const struct secrets *ss = f->m->ss;
	while (buf_used(&f->to_guest) + buf_used(&f->g_plain) < FLOW_BUF_HIGH) {
		if (f->rs == RS_TUNNEL) {
			struct pending *p = q_front(f);
			if (p)
				p->down += buf_used(&f->resp_in);
			to_guest_plain(f, buf_head(&f->resp_in), buf_used(&f->resp_in));
			buf_consume(&f->resp_in, buf_used(&f->resp_in));
			return;
		}
		if (f->rs == RS_BODY) {
			size_t used, off, dl;
			int r = http_body_step(&f->rs_body, buf_head(&f->resp_in), buf_used(&f->resp_in),
					       f->u_eof, &used, &off, &dl);
			if (r < 0) {
				struct pending *p = q_front(f);
				if (p)
					request_event(f, p, f->rs_msg.status, true,
						      "the upstream response ended early or was malformed",
						      NET_EV_REQUEST, NULL);
				f->failed = true;
				return;
			}
			if (dl) {
				response_data(f, buf_head(&f->resp_in) + off, dl, false);
				if (q_front(f))
					q_front(f)->down += dl;
			}
			buf_consume(&f->resp_in, used);
			if (r == 1) {
				response_done(f);
				if (f->closing)
					return;
				continue;
			}
			if (!used)
				return;
			continue;
		}
		/* RS_HEAD */
		if (!buf_used(&f->resp_in))
			return;
		long hl = http_head_len(buf_head(&f->resp_in), buf_used(&f->resp_in), HTTP_MAX_RESPONSE_HEAD);
		if (hl == 0 && !f->u_eof)
			return;
		struct pending *p = q_front(f);
		const char *why = "an incomplete response head";
		struct http_msg *m = &f->rs_msg;
		if (hl <= 0 || !p ||
		    http_parse_response(buf_head(&f->resp_in), (size_t)hl, !strcmp(p->method, "HEAD"), m, &why) < 0) {
			char reason[300];
			snprintf(reason, sizeof(reason), "matchlock: bad response from %s: %s", f->name,
				 p ? why : "a response nobody asked for");
			if (p) {
				request_event(f, p, 502, false, reason, NET_EV_REQUEST, NULL);
				q_pop(f);
				buf_fini(&f->final);
				http_build_error(&f->final, 502, reason);
			}
			f->rq = RQ_STOPPED;
			buf_fini(&f->resp_in);
			f->closing = true;
			return;
		}
		struct buf head = { 0 }, scrubbed = { 0 };
		const uint8_t *h = buf_head(&f->resp_in);
		bool body = m->framing != HTTP_BODY_NONE;
		f->rs_chunked_out = false;
		f->rs_close_after = m->close || m->framing == HTTP_BODY_CLOSE;
		if (m->status == 101 && p->upgrade) {
			buf_append(&head, h, (size_t)hl);
		} else if (m->status >= 100 && m->status < 200) {
			buf_append(&head, h, (size_t)hl);
		} else if (body && ss && ss->n && p->minor == 1) {
			/* Scrubbing changes lengths: re-frame as chunked. */
			http_head_filter(h, m, framing_headers, "Transfer-Encoding: chunked\r\n", &head);
			f->rs_chunked_out = true;
		} else if (body && ss && ss->n) {
			static const char *const drop[] = { "content-length", "transfer-encoding", "connection", NULL };
			http_head_filter(h, m, drop, "Connection: close\r\n", &head);
			f->rs_close_after = true;
		} else if (m->framing == HTTP_BODY_CHUNKED) {
			f->rs_chunked_out = true; /* re-encoded chunk by chunk (trailers dropped) */
			buf_append(&head, h, (size_t)hl);
		} else {
			buf_append(&head, h, (size_t)hl);
		}
		scrub_all(ss, &f->scrub, buf_head(&head), buf_used(&head), &scrubbed);
		to_guest_plain(f, buf_head(&scrubbed), buf_used(&scrubbed));
		buf_wipe(&head);
		buf_wipe(&scrubbed);
		buf_consume(&f->resp_in, (size_t)hl);
		if (m->status == 101 && p->upgrade) {
			f->rs = RS_TUNNEL;
			f->rq = RQ_TUNNEL;
			request_event(f, p, 101, true, "upgraded to a WebSocket tunnel", NET_EV_REQUEST, NULL);
			continue;
		}
		if (m->status >= 100 && m->status < 200)
			continue; /* 100 Continue and friends: the real response follows */
		if (p->upgrade && f->rq == RQ_WAIT_UPGRADE)
			f->rq = RQ_HEAD;
		http_body_init(&f->rs_body, m->framing, m->length);
		f->rs = RS_BODY;
	}
}

static int ssl_error(SSL *s, int k)
{
	return SSL_get_error(s, k);
}

/* Upstream: handshake, write requests, read responses. */
static void upstream_run(struct flow *f)
{
	if (!f->u || f->u_failed)
		return;
	f->u_want_write = false;
	if (!f->u_hs) {
		int k = SSL_do_handshake(f->u);
		if (k != 1) {
			int e = ssl_error(f->u, k);
			if (e == SSL_ERROR_WANT_READ)
				return;
			if (e == SSL_ERROR_WANT_WRITE) {
				f->u_want_write = true;
				return;
			}
			char why[300], se[200];
			long v = SSL_get_verify_result(f->u);
			if (v != X509_V_OK)
				snprintf(why, sizeof(why), "the upstream %s is not trusted: %s (add its CA with "
					 "--upstream-ca)", f->name, X509_verify_cert_error_string(v));
			else {
				ssl_err_text(se, sizeof(se));
				snprintf(why, sizeof(why), "TLS handshake with the upstream %s failed: %s",
					 f->name, se);
			}
			ERR_clear_error();
			flow_upstream_failed(f, why, NULL);
			return;
		}
		f->u_hs = true;
	}
	while (buf_used(&f->req_out)) {
		size_t n = buf_used(&f->req_out);
		int k = SSL_write(f->u, buf_head(&f->req_out), n > 1 << 20 ? 1 << 20 : (int)n);
		if (k <= 0) {
			int e = ssl_error(f->u, k);
			if (e == SSL_ERROR_WANT_WRITE)
				f->u_want_write = true;
			else if (e != SSL_ERROR_WANT_READ) {
				ERR_clear_error();
				f->u_eof = true;
			}
			break;
		}
		explicit_bzero(buf_head(&f->req_out), (size_t)k); /* may hold a secret value */
		buf_consume(&f->req_out, (size_t)k);
	}
	if (f->g_eof && !buf_used(&f->req_out) && !buf_used(&f->req_in) && !f->u_shut) {
		SSL_shutdown(f->u);
		shutdown(f->fd, SHUT_WR);
		f->u_shut = true;
	}
	uint8_t tmp[16384];
	while (!f->u_eof && buf_used(&f->resp_in) < FLOW_BUF_HIGH &&
	       buf_used(&f->to_guest) < FLOW_BUF_HIGH) {
		int k = SSL_read(f->u, tmp, sizeof(tmp));
		if (k > 0) {
			buf_append(&f->resp_in, tmp, (size_t)k);
			responses_run(f);
			continue;
		}
		int e = ssl_error(f->u, k);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_WANT_WRITE) {
			f->u_want_write = true;
			break;
		}
		ERR_clear_error();
		f->u_eof = true; /* close_notify, a plain EOF or an error: no more bytes either way */
	}
	OPENSSL_cleanse(tmp, sizeof(tmp));
}

/* The guest side: handshake, then decrypt requests. */
static void guest_run(struct flow *f)
{
	if (!f->g_hs) {
		int k = SSL_do_handshake(f->g);
		drain_g_out(f);
		if (k != 1) {
			int e = ssl_error(f->g, k);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				char se[200], why[300];
				ssl_err_text(se, sizeof(se));
				snprintf(why, sizeof(why), "TLS handshake with the guest failed: %s", se);
				flow_event(f, NET_EV_HTTP, false, why, NULL);
				f->failed = true;
			} else if (f->g_eof) {
				f->failed = true;
			}
			return;
		}
		f->g_hs = true;
	}
	uint8_t tmp[16384];
	while (f->rq != RQ_STOPPED && buf_used(&f->req_in) < FLOW_BUF_HIGH &&
	       buf_used(&f->req_out) < FLOW_BUF_HIGH) {
		int k = SSL_read(f->g, tmp, sizeof(tmp));
		if (k > 0) {
			buf_append(&f->req_in, tmp, (size_t)k);
			requests_run(f);
			continue;
		}
		int e = ssl_error(f->g, k);
		if (e == SSL_ERROR_ZERO_RETURN)
			f->g_eof = true; /* close_notify */
		else if (e != SSL_ERROR_WANT_READ) {
			ERR_clear_error();
			f->g_eof = true;
		}
		break;
	}
	OPENSSL_cleanse(tmp, sizeof(tmp));
	drain_g_out(f);
}

void flow_run(struct flow *f)
{
	if (f->failed || f->g_closed)
		return;
	for (int round = 0; round < 8; round++) {
		size_t a = buf_used(&f->to_guest), b = buf_used(&f->req_out), c = buf_used(&f->resp_in);
		size_t d = buf_used(&f->req_in);
		guest_run(f);
		if (f->failed)
			return;
		requests_run(f);
		upstream_run(f);
		responses_run(f);
		if (f->failed)
			return;
		flush_g_plain(f);
		bool progress = a != buf_used(&f->to_guest) || b != buf_used(&f->req_out) ||
				c != buf_used(&f->resp_in) || d != buf_used(&f->req_in);
		if (!progress)
			break;
	}
	/* Requests refused or the upstream gone: answer in order once nothing is owed. */
	if (f->rq == RQ_STOPPED && (!f->qlen || f->u_failed || f->u_eof) && f->rs != RS_TUNNEL) {
		if (buf_used(&f->final))
			to_guest_plain(f, buf_head(&f->final), buf_used(&f->final));
		buf_fini(&f->final);
		flow_close_guest(f);
		return;
	}
	if (f->u_failed && f->g_hs && f->qlen == 0 && f->rq == RQ_HEAD && f->g_eof)
		flow_close_guest(f);
	bool up_done = f->u_eof && !buf_used(&f->resp_in) && f->rs != RS_BODY;
	if (f->rs == RS_BODY && f->u_eof) {
		responses_run(f);
		up_done = f->rs != RS_BODY;
	}
	if (f->closing || up_done || (f->g_eof && f->u_shut && f->u_eof) ||
	    (f->rs == RS_TUNNEL && f->u_eof))
		flow_close_guest(f);
	else if (f->g_eof && !f->g_hs)
		f->failed = true;
}
