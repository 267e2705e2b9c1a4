/* SPDX-License-Identifier: MIT */
/*
 * Host-only benchmark of the TLS-intercepting proxy: keep-alive HTTPS, small requests.
 *
 *   proxy_bench CERT KEY CA N direct|matchlock|tcp:PORT
 *
 * Starts an HTTPS upstream (a thread per connection, blocking OpenSSL, "ok" to every request)
 * for bench.test, then times N sequential requests on one connection:
 *   direct     client -> upstream
 *   matchlock  client -> the sandbox proxy (src/net/mitm.c: a flow with the guest side on
 *              memory BIOs, exactly as the egress engine drives it, minus the VM link)
 *              -> upstream, verified with CA
 *   tcp:PORT   client -> another TLS proxy listening on PORT (mitmproxy in reverse mode)
 * Prints "requests/s p50_us p99_us".
 *
 *   proxy_bench CERT KEY CA 0 listen:UPORT
 *
 * Serves the sandbox proxy on a loopback port (printed first) for an outside client (h2load),
 * each connection a flow towards 127.0.0.1:UPORT (verified with CA as bench.test), one
 * connection at a time: the HTTP/2 rows of bench/proxy. BENCH_SECRET=1 gives the sandbox a
 * secret for bench.test: responses are scrubbed.
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
#include "net/secrets.h"

static SSL_CTX *srv_ctx;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *serve_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	SSL *s = SSL_new(srv_ctx);
	SSL_set_fd(s, fd);
	if (SSL_accept(s) == 1) {
		char buf[16384];
		size_t have = 0;
		for (;;) {
			int k = SSL_read(s, buf + have, (int)(sizeof(buf) - have));
			if (k <= 0)
				break;
			have += (size_t)k;
			char *end;
			while ((end = memmem(buf, have, "\r\n\r\n", 4))) {
				static const char resp[] =
				    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
				SSL_write(s, resp, sizeof(resp) - 1);
				size_t used = (size_t)(end + 4 - buf);
				memmove(buf, buf + used, have - used);
				have -= used;
			}
		}
	}
	SSL_free(s);
	close(fd);
	return NULL;
}

static void *serve(void *arg)
{
	int ls = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pthread_t t;
		pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
	return NULL;
}

static int dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static const char req[] = "GET /v1/ping HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\n\r\n";

/* One response ("...\r\n\r\nok") read from a blocking SSL. */
static void read_resp(SSL *c)
{
	char buf[4096];
	size_t have = 0;
	while (!(have >= 2 && memmem(buf, have, "\r\n\r\nok", 6))) {
		int k = SSL_read(c, buf + have, (int)(sizeof(buf) - have));
		if (k <= 0) {
			fprintf(stderr, "read failed\n");
			exit(1);
		}
		have += (size_t)k;
	}
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* listen:UPORT: the proxy between accepted clients and the upstream, until killed. */
static int proxy_listen(const char *ca_file, int uport)
{
	char err[300];
	char *cas[] = { (char *)ca_file, NULL };
	/* BENCH_SECRET=1: a secret for bench.test, so that every response is scrubbed. */
	static struct secrets ss;
	if (getenv("BENCH_SECRET") &&
	    secrets_add(&ss, "BENCH_KEY", (const uint8_t *)"sk-bench-secret-value", 21,
			"bench.test", err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	struct mitm *m = mitm_new(&ss, cas, err, sizeof(err));
	if (!m) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof(a);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 16) < 0)
		return 1;
	getsockname(ls, (struct sockaddr *)&a, &al);
	printf("%d\n", ntohs(a.sin_port));
	fflush(stdout);
	static uint8_t in[1 << 16];
	for (;;) {
		int cfd = accept(ls, NULL, NULL);
		if (cfd < 0)
			continue;
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		fcntl(cfd, F_SETFL, O_NONBLOCK);
		struct flow *f = flow_new(m, "bench.test", 443, NULL, NULL);
		int ufd = dial(uport);
		fcntl(ufd, F_SETFL, O_NONBLOCK);
		flow_set_upstream(f, ufd);
		size_t have = 0, off = 0;
		bool eof = false;
		for (;;) {
			if (off == have && !eof) {
				ssize_t k = read(cfd, in, sizeof(in));
				if (k > 0)
					have = (size_t)k, off = 0;
				else if (k == 0)
					eof = true;
			}
			while (off < have) {
				size_t t = flow_feed_guest(f, in + off, have - off);
				if (!t)
					break;
				off += t;
			}
			if (eof && off == have)
				flow_guest_eof(f);
			flow_run(f);
			struct buf *o = flow_to_guest(f);
			while (buf_used(o)) {
				ssize_t k = write(cfd, buf_head(o), buf_used(o));
				if (k <= 0)
					break;
				buf_consume(o, (size_t)k);
			}
			if (flow_failed(f) || (flow_done(f) && !buf_used(o)))
				break;
			struct pollfd pf[2] = {
				{ .fd = cfd,
				  .events = (short)((off == have && !eof ? POLLIN : 0) |
						    (buf_used(o) ? POLLOUT : 0)) },
				{ .fd = ufd, .events = (short)flow_events(f) },
			};
			poll(pf, 2, 1000);
		}
		flow_free(f);
		close(ufd);
		close(cfd);
	}
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: proxy_bench CERT KEY CA N direct|matchlock|tcp:PORT\n");
		return 2;
	}
	if (!strncmp(argv[5], "listen:", 7))
		return proxy_listen(argv[3], atoi(argv[5] + 7));
	int n = atoi(argv[4]);
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
	if (getenv("UPSTREAM_PORT"))
		a.sin_port = htons((uint16_t)atoi(getenv("UPSTREAM_PORT")));
	bind(ls, (struct sockaddr *)&a, sizeof(a));
	listen(ls, 64);
	getsockname(ls, (struct sockaddr *)&a, &al);
	int uport = ntohs(a.sin_port);
	pthread_t st;
	pthread_create(&st, NULL, serve, (void *)(intptr_t)ls);
	if (!strcmp(argv[5], "serve")) { /* only the upstream (for mitmproxy's own run) */
		printf("%d\n", uport);
		fflush(stdout);
		pause();
	}

	uint64_t *lat = calloc((size_t)n, sizeof(*lat));
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	SSL *c = SSL_new(cctx);
	SSL_set_tlsext_host_name(c, "bench.test");
	SSL_set1_host(c, "bench.test");
	uint64_t t0;
	if (!strcmp(argv[5], "matchlock")) {
		char err[300];
		char *cas[] = { argv[3], NULL };
		struct mitm *m = mitm_new(NULL, cas, err, sizeof(err));
		if (!m) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		BIO *pb = BIO_new_mem_buf(mitm_ca_pem(m), -1);
		X509 *ca = PEM_read_bio_X509(pb, NULL, NULL, NULL);
		X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), ca);
		struct flow *f = flow_new(m, "bench.test", 443, NULL, NULL);
		int fd = dial(uport);
		fcntl(fd, F_SETFL, O_NONBLOCK); /* as the egress engine's sockets are */
		flow_set_upstream(f, fd);
		BIO *cin = BIO_new(BIO_s_mem()), *cout = BIO_new(BIO_s_mem());
		BIO_set_mem_eof_return(cin, -1);
		SSL_set_bio(c, cin, cout);
		SSL_set_connect_state(c);
		/* Drive client, flow and upstream socket until the client has a whole response. */
		char buf[65536];
		t0 = 0;
		for (int i = -1; i < n; i++) {
			uint64_t s = now_us();
			bool hs = i < 0;
			if (!hs)
				SSL_write(c, req, sizeof(req) - 1);
			size_t have = 0;
			for (;;) {
				if (hs) {
					if (SSL_do_handshake(c) == 1)
						break;
				} else {
					int k;
					while ((k = SSL_read(c, buf + have, (int)(32768 - have))) >
					       0)
						have += (size_t)k;
					if (have >= 2 && memmem(buf, have, "\r\n\r\nok", 6))
						break;
				}
				int k;
				while ((k = BIO_read(cout, buf + 32768, 32768)) > 0) {
					size_t off = 0;
					while (off < (size_t)k)
						off +=
						    flow_feed_guest(f, (uint8_t *)buf + 32768 + off,
								    (size_t)k - off);
				}
				flow_run(f);
				struct buf *o = flow_to_guest(f);
				if (buf_used(o)) {
					BIO_write(cin, buf_head(o), (int)buf_used(o));
					buf_consume(o, buf_used(o));
					continue;
				}
				if (flow_failed(f) || flow_done(f)) {
					fprintf(stderr, "flow ended\n");
					return 1;
				}
				struct pollfd pf = { .fd = fd, .events = (short)flow_events(f) };
				if (pf.events)
					poll(&pf, 1, 1000);
			}
			if (i == 0)
				t0 = s;
			if (!hs)
				lat[i] = now_us() - s;
		}
	} else {
		int fd = dial(strncmp(argv[5], "tcp:", 4) ? uport : atoi(argv[5] + 4));
		SSL_CTX_load_verify_locations(cctx, argv[3], NULL);
		SSL_set_fd(c, fd);
		if (SSL_connect(c) != 1) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
		t0 = now_us();
		for (int i = 0; i < n; i++) {
			uint64_t s = now_us();
			SSL_write(c, req, sizeof(req) - 1);
			read_resp(c);
			lat[i] = now_us() - s;
		}
	}
	double secs = (double)(now_us() - t0) / 1e6;
	qsort(lat, (size_t)n, sizeof(*lat), cmp);
	printf("%.0f %llu %llu\n", n / secs, (unsigned long long)lat[n / 2],
	       (unsigned long long)lat[(size_t)n * 99 / 100]);
	return 0;
}
