/* SPDX-License-Identifier: MIT */
/*
 * Host-only benchmark of request bodies through the TLS-intercepting proxy:
 *
 *   proxy_body CERT KEY CA MB direct|matchlock|matchlock-subst
 *
 * Starts an HTTPS upstream (blocking OpenSSL, a thread) for bench.test that reads one request
 * body (Content-Length or chunked) and answers "ok", then POSTs MB megabytes to it:
 *   direct           client -> upstream
 *   matchlock        client -> the sandbox proxy (a flow driven as the egress engine drives it,
 *                    minus the VM link) -> upstream; the sandbox has a secret for another host,
 *                    so the body keeps its length and is only scanned
 *   matchlock-subst  the secret is bench.test's and its placeholder sits near the body's end:
 *                    the body is re-sent chunked with the value in
 * Prints "MB/s upstream_bytes busiest_thread_cpu_ms": the last is the CPU time of the busier of
 * the two threads (the client, with the proxy in its loop, and the upstream), which bounds what
 * an idle machine reaches and, unlike MB/s, hardly moves when other work shares the cores.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "net/mitm.h"

static SSL_CTX *srv_ctx;
static volatile unsigned long long upstream_bytes;
static volatile double server_cpu; /* seconds of the upstream thread, once it answered */

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Buffered reads from the upstream's SSL. */
struct rbuf {
	SSL *s;
	char b[65536];
	size_t off, len;
};

static int rb_fill(struct rbuf *r)
{
	if (r->off == r->len)
		r->off = r->len = 0;
	int k = SSL_read(r->s, r->b + r->len, (int)(sizeof(r->b) - r->len));
	if (k <= 0)
		return -1;
	r->len += (size_t)k;
	return 0;
}

/* A line (CRLF), copied into out (truncated to n - 1). */
static int rb_line(struct rbuf *r, char *out, size_t n)
{
	for (;;) {
		char *e = memmem(r->b + r->off, r->len - r->off, "\r\n", 2);
		if (e) {
			size_t l = (size_t)(e - (r->b + r->off));
			snprintf(out, n, "%.*s", (int)(l < n ? l : n - 1), r->b + r->off);
			r->off += l + 2;
			return 0;
		}
		if (r->off) {
			memmove(r->b, r->b + r->off, r->len - r->off);
			r->len -= r->off;
			r->off = 0;
		}
		if (rb_fill(r) < 0)
			return -1;
	}
}

/* Skip n body bytes. */
static int rb_skip(struct rbuf *r, unsigned long long n)
{
	while (n) {
		if (r->off == r->len && rb_fill(r) < 0)
			return -1;
		size_t k = r->len - r->off < n ? r->len - r->off : (size_t)n;
		r->off += k;
		n -= k;
		upstream_bytes += k;
	}
	return 0;
}

static void *serve(void *arg)
{
	int ls = (int)(intptr_t)arg;
	int fd = accept(ls, NULL, NULL);
	static struct rbuf r;
	r.s = SSL_new(srv_ctx);
	SSL_set_fd(r.s, fd);
	if (SSL_accept(r.s) != 1)
		return NULL;
	char line[1024];
	unsigned long long clen = 0;
	int chunked = 0;
	while (rb_line(&r, line, sizeof(line)) == 0 && line[0]) {
		if (!strncasecmp(line, "content-length:", 15))
			clen = strtoull(line + 15, NULL, 10);
		if (!strncasecmp(line, "transfer-encoding:", 18) && strstr(line, "chunked"))
			chunked = 1;
	}
	if (!chunked) {
		rb_skip(&r, clen);
	} else {
		for (;;) {
			if (rb_line(&r, line, sizeof(line)) < 0)
				return NULL;
			unsigned long long n = strtoull(line, NULL, 16);
			if (!n)
				break;
			rb_skip(&r, n);
			rb_line(&r, line, sizeof(line));
		}
		while (rb_line(&r, line, sizeof(line)) == 0 && line[0])
			;
	}
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	server_cpu = thread_cpu_s();
	SSL_write(r.s, resp, sizeof(resp) - 1);
	return NULL;
}

static int dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		exit(1);
	}
	return fd;
}

/* The body's bytes at offset off (ph, when given, sits 1000 bytes before the end). */
static void body_piece(char *p, size_t off, size_t n, size_t total, const char *ph)
{
	static char pattern[16384 + 41]; /* the text repeats every 41 bytes */
	if (!pattern[0])
		for (size_t i = 0; i < sizeof(pattern); i++)
			pattern[i] = "abcdefghijklmnopqrstuvwxyz0123456789 {}:,"[i % 41];
	memcpy(p, pattern + off % 41, n);
	size_t at = total - 1000, pl = ph ? strlen(ph) : 0;
	for (size_t i = 0; i < pl; i++)
		if (at + i >= off && at + i < off + n)
			p[at + i - off] = ph[i];
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr,
			"usage: proxy_body CERT KEY CA MB direct|matchlock|matchlock-subst\n");
		return 2;
	}
	size_t total = (size_t)atoi(argv[4]) << 20;
	const char *mode = argv[5];
	srv_ctx = SSL_CTX_new(TLS_server_method());
	if (SSL_CTX_use_certificate_chain_file(srv_ctx, argv[1]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(srv_ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "bad cert/key\n");
		return 1;
	}
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof(a);
	bind(ls, (struct sockaddr *)&a, sizeof(a));
	listen(ls, 4);
	getsockname(ls, (struct sockaddr *)&a, &al);
	pthread_t st;
	pthread_create(&st, NULL, serve, (void *)(intptr_t)ls);

	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(cctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
	SSL *c = SSL_new(cctx);
	SSL_set_tlsext_host_name(c, "bench.test");
	SSL_set1_host(c, "bench.test");
	char head[200], chunk[16384];
	int hl = snprintf(head, sizeof(head),
			  "POST /upload HTTP/1.1\r\nHost: bench.test\r\nContent-Type: "
			  "application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
			  total);
	double t0;
	if (strncmp(mode, "matchlock", 9)) {
		SSL_CTX_load_verify_locations(cctx, argv[3], NULL);
		SSL_set_fd(c, dial(ntohs(a.sin_port)));
		if (SSL_connect(c) != 1) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
		t0 = now_s();
		SSL_write(c, head, hl);
		for (size_t off = 0; off < total; off += sizeof(chunk)) {
			size_t n = total - off < sizeof(chunk) ? total - off : sizeof(chunk);
			body_piece(chunk, off, n, total, NULL);
			for (size_t w = 0; w < n;)
				w += (size_t)SSL_write(c, chunk + w, (int)(n - w));
		}
		char resp[256];
		while (SSL_read(c, resp, sizeof(resp)) > 0 && !memmem(resp, sizeof(resp), "ok", 2))
			;
	} else {
		static struct secrets ss;
		char err[300];
		bool subst = !strcmp(mode, "matchlock-subst");
		secrets_add(&ss, "KEY", (const uint8_t *)"sk-live-0123456789abcdef", 24,
			    subst ? "bench.test" : "elsewhere.test", err, sizeof(err));
		char *cas[] = { argv[3], NULL };
		struct mitm *m = mitm_new(&ss, cas, err, sizeof(err));
		if (!m) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		BIO *pb = BIO_new_mem_buf(mitm_ca_pem(m), -1);
		X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx),
				    PEM_read_bio_X509(pb, NULL, NULL, NULL));
		struct flow *f = flow_new(m, "bench.test", 443, NULL, NULL);
		int fd = dial(ntohs(a.sin_port));
		fcntl(fd, F_SETFL, O_NONBLOCK); /* as the egress engine's sockets are */
		flow_set_upstream(f, fd);
		BIO *cin = BIO_new(BIO_s_mem()), *cout = BIO_new(BIO_s_mem());
		BIO_set_mem_eof_return(cin, -1);
		SSL_set_bio(c, cin, cout);
		SSL_set_connect_state(c);
		static char pend[65536], resp[4096];
		size_t poff = 0, plen = 0, off = 0, have = 0;
		bool head_sent = false;
		t0 = now_s();
		for (;;) {
			if (!SSL_is_init_finished(c)) {
				SSL_do_handshake(c);
			} else if (!head_sent) {
				SSL_write(c, head, hl);
				head_sent = true;
			} else if (off < total && BIO_ctrl_pending(cout) < 65536) {
				size_t n =
				    total - off < sizeof(chunk) ? total - off : sizeof(chunk);
				body_piece(chunk, off, n, total,
					   subst ? ss.s[0].placeholder : NULL);
				int k = SSL_write(c, chunk, (int)n);
				if (k > 0)
					off += (size_t)k;
			}
			if (poff == plen) {
				int k = BIO_read(cout, pend, sizeof(pend));
				poff = 0;
				plen = k > 0 ? (size_t)k : 0;
			}
			if (poff < plen)
				poff += flow_feed_guest(f, (uint8_t *)pend + poff, plen - poff);
			flow_run(f);
			struct buf *o = flow_to_guest(f);
			if (buf_used(o)) {
				BIO_write(cin, buf_head(o), (int)buf_used(o));
				buf_consume(o, buf_used(o));
			}
			int k;
			while (SSL_is_init_finished(c) &&
			       (k = SSL_read(c, resp + have, (int)(sizeof(resp) - 1 - have))) > 0)
				have += (size_t)k;
			if (memmem(resp, have, "\nok", 3)) /* "ok", or chunked "2\r\nok" */
				break;
			if (flow_failed(f) || flow_done(f)) {
				fprintf(stderr, "flow ended\n");
				return 1;
			}
			struct pollfd pf = { .fd = fd, .events = (short)flow_events(f) };
			if (pf.events)
				poll(&pf, 1, poff < plen || off < total ? 0 : 1);
		}
	}
	double secs = now_s() - t0, cpu = thread_cpu_s();
	pthread_join(st, NULL);
	if (server_cpu > cpu)
		cpu = server_cpu;
	printf("%.0f %llu %.0f\n", (double)total / 1e6 / secs, (unsigned long long)upstream_bytes,
	       cpu * 1e3);
	return 0;
}
