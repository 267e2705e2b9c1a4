/* SPDX-License-Identifier: MIT */
/*
 * The TLS plumbing of the intercepting proxy: the two contexts (the guest's side, served with
 * the sandbox CA's leaves; the upstream side, verified against the system store and
 * --upstream-ca), and the pumping of both ends of a flow. The guest's TLS runs over memory BIOs
 * (the egress engine feeds ciphertext in and takes ciphertext out); the upstream's over a
 * non-blocking socket. flow_run alternates the two ends with proxy.c's HTTP until nothing
 * moves. Nothing blocks; no threads.
 */
#define _GNU_SOURCE
#include "flow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "proxy_hooks.h"

/*
 * The guest's ClientHello: note which of h2 and http/1.1 it offers, then hold its handshake
 * (the callback is called again) until the upstream's handshake is done or failed, so that
 * alpn_select can give it the protocol the upstream chose when it offers it.
 */
static int client_hello(SSL *ssl, int *alert, void *arg)
{
	(void)alert, (void)arg;
	struct flow *f = SSL_get_app_data(ssl);
	const unsigned char *p;
	size_t n;
	if (!f->hello_seen) {
		f->hello_seen = true;
		if (SSL_client_hello_get0_ext(
			ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p, &n) == 1) {
			struct rd r = rd_make(p, n);
			struct rd list = rd_sub(&r, rd_be16(&r));
			while (rd_left(&list)) {
				uint8_t k = rd_u8(&list);
				const uint8_t *name = rd_bytes(&list, k);
				if (name && k == 2 && !memcmp(name, "h2", 2))
					f->g_offers_h2 = true;
				if (name && k == 8 && !memcmp(name, "http/1.1", 8))
					f->g_offers_h1 = true;
			}
		}
		/* Hook callbacks hold one HTTP/1.1 request at a time (proxy_hooks.h). */
		if (f->g_offers_h1 && proxy_hooks_want_h1(f))
			f->g_offers_h2 = false;
	}
	return f->u_hs || f->u_failed ? SSL_CLIENT_HELLO_SUCCESS : SSL_CLIENT_HELLO_RETRY;
}

/*
 * ALPN on the guest's side, independent of the upstream's: the guest gets what the upstream
 * chose when it offers that (nothing to translate: the guest sees what it would see directly),
 * else the other of h2 and http/1.1 it offers, and proxy_h2.c (h2 guest, HTTP/1.1 upstream) or
 * proxy_up2.c (the reverse) translates. An upstream that failed: http/1.1 when the guest offers
 * it (a 502 in HTTP/1), h2 when it offers only that (a 502 on each stream).
 */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)arg;
	struct flow *f = SSL_get_app_data(ssl);
	const unsigned char *up = NULL;
	unsigned int upn = 0;
	if (f->u_hs)
		SSL_get0_alpn_selected(f->u, &up, &upn);
	bool u_h2 = f->u_hs && upn == 2 && !memcmp(up, "h2", 2);
	bool h2 = u_h2 ? f->g_offers_h2 : !f->g_offers_h1 && f->g_offers_h2;
	const unsigned char *want =
	    h2 ? (const unsigned char *)"\x02h2" : (const unsigned char *)"\x08http/1.1";
	unsigned char *o;
	if (SSL_select_next_proto(&o, outlen, want, want[0] + 1u, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK; /* the client's default (HTTP/1.1) */
	*out = o;
	return SSL_TLSEXT_ERR_OK;
}

/*
 * The upstream is offered both versions, the guest's preferred first (so the two ends speak
 * the same one when the server honours the client's order); a guest that offered no ALPN gets
 * http/1.1 only: such clients (WebSocket libraries among them) speak nothing else, and an
 * upgrade needs HTTP/1.1 end to end.
 */
static void upstream_alpn(struct flow *f)
{
	if (f->g_offers_h2)
		SSL_set_alpn_protos(f->u, (const unsigned char *)"\x02h2\x08http/1.1", 12);
	else if (f->g_offers_h1)
		SSL_set_alpn_protos(f->u, (const unsigned char *)"\x08http/1.1\x02h2", 12);
	else
		SSL_set_alpn_protos(f->u, (const unsigned char *)"\x08http/1.1", 9);
}

#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

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
	if (tls_ca_init(&m->ca) < 0) {
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
	/*
	 * AES-128-GCM first, on both sides (as browsers order them): every body byte is decrypted
	 * and encrypted once more here than on a direct connection, and AES-128 does it in about
	 * 30% less time than AES-256. The guest's side picks (the link never leaves the machine);
	 * toward the upstream it is our first offer, and the server decides.
	 */
	SSL_CTX_set_ciphersuites(m->guest_ctx, TLS13_SUITES);
	SSL_CTX_set_options(m->guest_ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_ciphersuites(m->up_ctx, TLS13_SUITES);
	SSL_CTX_set_client_hello_cb(m->guest_ctx, client_hello, NULL);
	SSL_CTX_set_alpn_select_cb(m->guest_ctx, alpn_select, NULL);
	SSL_CTX_set_mode(m->guest_ctx,
			 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_min_proto_version(m->up_ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(m->up_ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(m->up_ctx,
			 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* The system's CAs come at the first upstream TLS connection (mitm_system_store). */
	for (unsigned i = 0; upstream_ca && upstream_ca[i]; i++) {
		if (SSL_CTX_load_verify_locations(m->up_ctx, upstream_ca[i], NULL) != 1) {
			ssl_err_text(e, sizeof(e));
			snprintf(err, errn,
				 "--upstream-ca %s: cannot load it as PEM certificates (%s)",
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
	SSL_CTX_free(m->guest_ctx);
	SSL_CTX_free(m->up_ctx);
	tls_ca_fini(&m->ca);
	OPENSSL_cleanse(m, sizeof(*m));
	free(m);
}

const char *mitm_ca_pem(const struct mitm *m)
{
	return m->ca.pem;
}

const struct secrets *mitm_secrets(const struct mitm *m)
{
	return m->ss;
}

void flow_event(struct flow *f, enum net_event_kind kind, bool allowed, const char *reason,
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
	X509 *leaf = tls_ca_leaf(&m->ca, name);
	f->g = SSL_new(m->guest_ctx);
	f->g_in = BIO_new(BIO_s_mem());
	f->g_out = BIO_new(BIO_s_mem());
	if (!leaf || !f->g || !f->g_in || !f->g_out || SSL_use_certificate(f->g, leaf) != 1 ||
	    SSL_use_PrivateKey(f->g, m->ca.leaf_key) != 1) {
		BIO_free(f->g_in);
		BIO_free(f->g_out);
		SSL_free(f->g);
		free(f);
		ERR_clear_error();
		errno = ENOMEM;
		return NULL;
	}
	BIO_set_mem_eof_return(f->g_in, -1); /* empty means "more later", not EOF */
	SSL_set_app_data(f->g, f);
	SSL_set_bio(f->g, f->g_in, f->g_out);
	SSL_set_accept_state(f->g);
	return f;
}

void flow_free(struct flow *f)
{
	if (!f)
		return;
	proxy_fini(f);
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

/*
 * Parsing the system's CA bundle takes ~90 ms here, which every sandbox start would pay whether or
 * not it ever speaks TLS: done once, when the first upstream connection needs it.
 */
static void mitm_system_store(struct mitm *m)
{
	if (m->system_store)
		return;
	m->system_store = true;
	if (SSL_CTX_set_default_verify_paths(m->up_ctx) != 1)
		ERR_clear_error(); /* no system store: only --upstream-ca then */
}

int flow_set_upstream(struct flow *f, int fd)
{
	f->fd = fd;
	mitm_system_store(f->m);
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

void tls_upstream_reset(struct flow *f)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 }; /* close() sends a reset */
	if (f->fd >= 0)
		setsockopt(f->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	buf_wipe(&f->req_out);
	f->u_reset = true;
}

uint32_t flow_events(const struct flow *f)
{
	if (f->fd < 0 || !f->u || f->u_failed || f->u_reset || f->closing)
		return f->fd >= 0 && !f->u_hs && !f->u ? EPOLLOUT : 0;
	uint32_t ev = 0;
	if (!f->u_eof && (!f->u_hs || buf_used(&f->to_guest) < FLOW_BUF_HIGH))
		ev |= EPOLLIN;
	if (f->u_want_write || (f->u_hs && buf_used(&f->req_out)) ||
	    (f->up2 && buf_used(up2_wire(f))))
		ev |= EPOLLOUT;
	return ev;
}

/* Move what the guest-side TLS produced into to_guest (read straight into it: no copy). */
static void drain_g_out(struct flow *f)
{
	size_t n;
	while ((n = BIO_ctrl_pending(f->g_out)) > 0) {
		n = n < (1u << 20) ? n : 1u << 20;
		uint8_t *dst = buf_reserve(&f->to_guest, n);
		int k = dst ? BIO_read(f->g_out, dst, (int)n) : 0;
		if (k <= 0)
			break;
		f->to_guest.len += (size_t)k;
	}
}

#define TLS_READ_STEP 16384 /* one TLS record's plaintext at most */

/*
 * One SSL_read of s straight into the free space of b (no bounce buffer to copy from and
 * wipe). Returns SSL_read's result; -1 with SSL_ERROR_SYSCALL semantics when out of memory.
 */
static int ssl_read_into(SSL *s, struct buf *b)
{
	uint8_t *dst = buf_reserve(b, TLS_READ_STEP);
	if (!dst)
		return -1;
	int k = SSL_read(s, dst, TLS_READ_STEP);
	if (k > 0)
		b->len += (size_t)k;
	return k;
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

void tls_guest_write(struct flow *f, const void *p, size_t n)
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

static int ssl_error(SSL *s, int k)
{
	return SSL_get_error(s, k);
}

/* The upstream handshake, verified; true once done. */
static bool upstream_handshake(struct flow *f)
{
	if (f->u_hs)
		return true;
	if (!f->hello_seen)
		return false; /* the guest's ALPN offer decides the upstream's */
	if (SSL_in_before(f->u))
		upstream_alpn(f);
	int k = SSL_do_handshake(f->u);
	if (k == 1) {
		const unsigned char *a;
		unsigned int an;
		SSL_get0_alpn_selected(f->u, &a, &an);
		f->u_h2 = an == 2 && !memcmp(a, "h2", 2);
		f->u_hs = true;
		return true;
	}
	int e = ssl_error(f->u, k);
	if (e == SSL_ERROR_WANT_READ)
		return false;
	if (e == SSL_ERROR_WANT_WRITE) {
		f->u_want_write = true;
		return false;
	}
	char why[600], se[200];
	long v = SSL_get_verify_result(f->u);
	if (v != X509_V_OK) {
		snprintf(why, sizeof(why),
			 "the upstream %s is not trusted: %s (add its CA with "
			 "--upstream-ca)",
			 f->name, X509_verify_cert_error_string(v));
	} else {
		ssl_err_text(se, sizeof(se));
		snprintf(why, sizeof(why), "TLS handshake with the upstream %s failed: %s", f->name,
			 se);
	}
	ERR_clear_error();
	flow_upstream_failed(f, why, NULL);
	return false;
}

/* Encrypt the requests for the upstream; half-close once the guest has said everything. */
static void upstream_write(struct flow *f)
{
	struct buf *out = &f->req_out;
	if (f->up2) {
		up2_push(f); /* proxy.c's requests become h2 frames */
		out = up2_wire(f);
	}
	while (buf_used(out)) {
		size_t n = buf_used(out);
		int k = SSL_write(f->u, buf_head(out), n > 1 << 20 ? 1 << 20 : (int)n);
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
		explicit_bzero(buf_head(out), (size_t)k); /* may hold a secret value */
		buf_consume(out, (size_t)k);
	}
	if (f->g_eof && !buf_used(&f->req_out) && !buf_used(&f->req_in) && !f->u_shut &&
	    (!f->up2 || (!buf_used(out) && up2_idle(f)))) {
		SSL_shutdown(f->u);
		shutdown(f->fd, SHUT_WR);
		f->u_shut = true;
	}
}

/* Decrypt responses while the guest's side has room, handing them to the proxy. */
static void upstream_read(struct flow *f)
{
	struct buf raw = { 0 }; /* an h2 upstream's frames for proxy_up2.c (not resp_in) */
	while (!f->u_eof && buf_used(&f->resp_in) < FLOW_BUF_HIGH &&
	       buf_used(&f->to_guest) < FLOW_BUF_HIGH) {
		int k = ssl_read_into(f->u, f->up2 ? &raw : &f->resp_in);
		if (k > 0) {
			if (f->up2) {
				up2_recv(f, buf_head(&raw), buf_used(&raw));
				buf_wipe(&raw);
			}
			proxy_responses_run(f);
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
		f->u_eof =
		    true; /* close_notify, a plain EOF or an error: no more bytes either way */
	}
	buf_wipe(&raw);
}

void tls_close_both(struct flow *f)
{
	if (f->u && f->u_hs && !f->u_failed && !f->u_reset) {
		upstream_write(f); /* a close frame fits the socket's buffer */
		if (!f->u_shut) {
			SSL_shutdown(f->u);
			shutdown(f->fd, SHUT_WR);
			f->u_shut = true;
		}
	}
	f->closing = true;
}

/* Upstream: handshake, write requests, read responses. */
static void upstream_run(struct flow *f)
{
	if (!f->u || f->u_failed || f->u_reset)
		return;
	f->u_want_write = false;
	if (!upstream_handshake(f))
		return;
	upstream_write(f);
	upstream_read(f);
	/* An h2 upstream's WINDOW_UPDATE (or SETTINGS ack) lets more frames go now. */
	if (f->up2)
		upstream_write(f);
}

/* The guest side: handshake, then decrypt requests. */
static void guest_run(struct flow *f)
{
	if (!f->g_hs) {
		int k = SSL_do_handshake(f->g);
		drain_g_out(f);
		if (k != 1) {
			int e = ssl_error(f->g, k);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE &&
			    e != SSL_ERROR_WANT_CLIENT_HELLO_CB) {
				char se[200], why[300];
				ssl_err_text(se, sizeof(se));
				snprintf(why, sizeof(why),
					 "TLS handshake with the guest failed: %s", se);
				flow_event(f, NET_EV_HTTP, false, why, NULL);
				f->failed = true;
			} else if (f->g_eof) {
				f->failed = true;
			}
			return;
		}
		f->g_hs = true;
		const unsigned char *a;
		unsigned int an;
		SSL_get0_alpn_selected(f->g, &a, &an);
		bool h2 = an == 2 && !memcmp(a, "h2", 2);
		const char *why = NULL;
		bool up_h2 = f->u_h2 && !f->u_failed;
		if (h2 && h2_start(f, f->u_failed ? H2_UP_FAILED
				      : up_h2	  ? H2_UP_H2
						  : H2_UP_HTTP1) < 0)
			why = "HTTP/2: out of memory";
		else if (!h2 && up_h2 && up2_start(f) < 0)
			why = "HTTP/2 toward the upstream: out of memory";
		if (why) {
			flow_event(f, NET_EV_HTTP, false, why, NULL);
			f->failed = true;
			return;
		}
	}
	while (f->rq != RQ_STOPPED && buf_used(&f->req_in) < FLOW_BUF_HIGH &&
	       buf_used(&f->req_out) < FLOW_BUF_HIGH) {
		int k = ssl_read_into(f->g, &f->req_in);
		if (k > 0) {
			proxy_requests_run(f);
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
	drain_g_out(f);
}

void flow_run(struct flow *f)
{
	if (f->failed || f->g_closed)
		return;
	for (int round = 0; round < 8; round++) {
		size_t a = buf_used(&f->to_guest), b = buf_used(&f->req_out),
		       c = buf_used(&f->resp_in);
		size_t d = buf_used(&f->req_in), e = f->up2 ? buf_used(up2_wire(f)) : 0;
		bool hs = f->u_hs || f->u_failed;
		guest_run(f);
		if (f->failed)
			return;
		proxy_requests_run(f);
		upstream_run(f);
		proxy_responses_run(f);
		if (f->failed)
			return;
		flush_g_plain(f);
		/* The upstream's handshake ending lets the guest's go on. */
		bool progress = a != buf_used(&f->to_guest) || b != buf_used(&f->req_out) ||
				c != buf_used(&f->resp_in) || d != buf_used(&f->req_in) ||
				e != (f->up2 ? buf_used(up2_wire(f)) : 0) ||
				hs != (f->u_hs || f->u_failed);
		if (!progress)
			break;
	}
	if (f->h2) {
		if (h2_finished(f))
			flow_close_guest(f);
		return;
	}
	/* Requests refused or the upstream gone: answer in order once nothing is owed. */
	if (f->rq == RQ_STOPPED && (!f->qlen || f->u_failed || f->u_eof || f->u_reset) &&
	    f->rs != RS_TUNNEL) {
		if (buf_used(&f->final))
			tls_guest_write(f, buf_head(&f->final), buf_used(&f->final));
		buf_fini(&f->final);
		flow_close_guest(f);
		return;
	}
	if (f->u_failed && f->g_hs && f->qlen == 0 && f->rq == RQ_HEAD && f->g_eof)
		flow_close_guest(f);
	bool up_done = f->u_eof && !buf_used(&f->resp_in) && f->rs != RS_BODY;
	if (f->rs == RS_BODY && f->u_eof) {
		proxy_responses_run(f);
		up_done = f->rs != RS_BODY;
	}
	if (f->closing || up_done || (f->g_eof && f->u_shut && f->u_eof) ||
	    (f->rs == RS_TUNNEL && f->u_eof))
		flow_close_guest(f);
	else if (f->g_eof && !f->g_hs)
		f->failed = true;
}
