/* SPDX-License-Identifier: MIT */
/*
 * The proxy's HTTP/2 relay (src/net/proxy_h2.c) between a real HTTP/2 client (the guest) and a
 * real HTTP/2 server (the upstream), both libnghttp2 sessions driven in memory, no TLS: flow
 * control is tied across both ways (a side cannot push more than the windows while the other
 * reads nothing, and everything arrives once it does), a stream reset by the upstream reaches the
 * guest with its code, and the key goes out only toward its host; an AWS SigV4 request signed
 * with the placeholder credential leaves signed with the real key (another key: 403). And an h2
 * guest over an HTTP/1.1 upstream: streams go one at a time as HTTP/1.1 requests, translated.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "check.h"
#include "net/flow.h"
#include "net/secrets.h"
#include "net/sigv4.h"

#define BODY (3u * 1024 * 1024)
#define VALUE "sk-relay-value"

static struct secrets ss;
static struct mitm m;

/* One side's session and what the test saw on it. */
struct peer {
	nghttp2_session *s;
	bool consume; /* upstream: acknowledge DATA (else its window stays shut) */
	size_t got; /* DATA bytes received */
	uint64_t sum; /* of the DATA bytes, to compare */
	uint32_t rst; /* the last RST_STREAM code received, + 1 */
	int status; /* guest: the response's :status */
	char key[128]; /* upstream: x-api-key as received */
	char authz[400], token[128]; /* upstream: authorization, x-amz-security-token */
	bool ended; /* guest: the response ended */
	int32_t reset_id; /* upstream: reset this stream (REFUSED_STREAM) as its headers come */
	bool answer_big; /* upstream: answer each request with a BODY-byte body */
	size_t sent; /* guest: request body bytes handed to the session */
};

static int on_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name, size_t nlen,
		     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	(void)s, (void)fr, (void)flags;
	struct peer *p = ud;
	if (nlen == 9 && !memcmp(name, "x-api-key", 9) && vlen < sizeof(p->key))
		memcpy(p->key, value, vlen), p->key[vlen] = 0;
	if (nlen == 13 && !memcmp(name, "authorization", 13) && vlen < sizeof(p->authz))
		memcpy(p->authz, value, vlen), p->authz[vlen] = 0;
	if (nlen == 20 && !memcmp(name, "x-amz-security-token", 20) && vlen < sizeof(p->token))
		memcpy(p->token, value, vlen), p->token[vlen] = 0;
	if (nlen == 7 && !memcmp(name, ":status", 7))
		p->status = atoi((const char *)value); /* digits, then the next field's bytes */
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t n,
		   void *ud)
{
	(void)flags;
	struct peer *p = ud;
	p->got += n;
	for (size_t i = 0; i < n; i++)
		p->sum += d[i];
	if (p->consume) {
		nghttp2_session_consume_connection(s, n);
		nghttp2_session_consume_stream(s, id, n);
	}
	return 0;
}

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *ud);

static int on_frame(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
	struct peer *p = ud;
	if (fr->hd.type == NGHTTP2_RST_STREAM)
		p->rst = fr->rst_stream.error_code + 1;
	if ((fr->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    (fr->hd.type == NGHTTP2_DATA || fr->hd.type == NGHTTP2_HEADERS))
		p->ended = true;
	if (fr->hd.type == NGHTTP2_HEADERS && fr->hd.stream_id == p->reset_id)
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, fr->hd.stream_id,
					  NGHTTP2_REFUSED_STREAM);
	if (fr->hd.type == NGHTTP2_HEADERS && p->answer_big &&
	    (fr->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		nghttp2_nv nv[] = { { (uint8_t *)":status", (uint8_t *)"200", 7, 3, 0 } };
		nghttp2_data_provider dp = { .read_callback = body_read };
		nghttp2_submit_response(s, fr->hd.stream_id, nv, 1, &dp);
	}
	return 0;
}

/* The guest's request body: BODY bytes of a pattern. */
static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *ud)
{
	(void)s, (void)id, (void)src;
	struct peer *p = ud;
	size_t n = BODY - p->sent < len ? BODY - p->sent : len;
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)((p->sent + i) * 7);
	p->sent += n;
	if (p->sent == BODY)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static void peer_init(struct peer *p, bool server)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_option_new(&opt);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
	if (server)
		nghttp2_session_server_new2(&p->s, cb, p, opt);
	else
		nghttp2_session_client_new2(&p->s, cb, p, opt);
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	nghttp2_submit_settings(p->s, NGHTTP2_FLAG_NONE, NULL, 0);
}

/* Move bytes around until nothing moves: guest <-> relay <-> upstream. */
static void pump(struct flow *f, struct peer *g, struct peer *u)
{
	for (int round = 0; round < 100000; round++) {
		bool moved = false;
		const uint8_t *d;
		ssize_t n;
		while ((n = nghttp2_session_mem_send(g->s, &d)) > 0)
			buf_append(&f->req_in, d, (size_t)n), moved = true;
		h2_requests_run(f);
		while ((n = nghttp2_session_mem_send(u->s, &d)) > 0)
			buf_append(&f->resp_in, d, (size_t)n), moved = true;
		h2_responses_run(f);
		if (buf_used(&f->req_out)) {
			nghttp2_session_mem_recv(u->s, buf_head(&f->req_out),
						 buf_used(&f->req_out));
			buf_consume(&f->req_out, buf_used(&f->req_out));
			moved = true;
		}
		if (buf_used(&f->g_plain)) {
			nghttp2_session_mem_recv(g->s, buf_head(&f->g_plain),
						 buf_used(&f->g_plain));
			buf_consume(&f->g_plain, buf_used(&f->g_plain));
			moved = true;
		}
		h2_requests_run(f);
		if (!moved)
			return;
	}
}

static struct flow *relay_new(const char *host)
{
	struct flow *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->m = &m;
	snprintf(f->name, sizeof(f->name), "%s", host);
	f->port = 443;
	f->fd = -1;
	f->u_hs = f->u_h2 = true;
	if (h2_start(f, H2_UP_H2) < 0) {
		free(f);
		return NULL;
	}
	return f;
}

static int32_t post(struct peer *g, const char *host, bool with_body)
{
	char key[128];
	snprintf(key, sizeof(key), "Bearer %s", ss.s[0].placeholder);
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0 },
		{ (uint8_t *)":path", (uint8_t *)"/up", 5, 3, 0 },
		{ (uint8_t *)":authority", (uint8_t *)host, 10, strlen(host), 0 },
		{ (uint8_t *)"x-api-key", (uint8_t *)key, 9, strlen(key), 0 },
	};
	nghttp2_data_provider dp = { .read_callback = body_read };
	return nghttp2_submit_request(g->s, NULL, nv, 5, with_body ? &dp : NULL, NULL);
}

static void test_flow_control_is_tied_across(void)
{
	struct flow *f = relay_new("api.test");
	struct peer g = { 0 }, u = { .consume = false };
	peer_init(&g, false);
	peer_init(&u, true);
	g.consume = true;
	CHECK(f && post(&g, "api.test", true) > 0);
	pump(f, &g, &u);
	/* The upstream reads nothing: it got its own window, the guest no more than that plus
	   the relay's stream window (256 KiB), far from the whole body. */
	CHECK_EQ_INT(u.got, 65535);
	CHECK(g.sent <= 65535 + 256 * 1024 + 16384);
	CHECK(g.sent < BODY);
	/* The upstream takes what it has: everything arrives, byte for byte. */
	u.consume = true;
	nghttp2_session_consume_connection(u.s, u.got);
	nghttp2_session_consume_stream(u.s, 1, u.got);
	pump(f, &g, &u);
	uint64_t want = 0;
	for (size_t i = 0; i < BODY; i++)
		want += (uint8_t)(i * 7);
	CHECK_EQ_INT(u.got, BODY);
	CHECK(u.sum == want);
	/* The key went out in the header, its placeholder did not. */
	CHECK(!strcmp(u.key, "Bearer " VALUE));
	nghttp2_session_del(g.s);
	nghttp2_session_del(u.s);
	flow_free(f);
}

static void test_flow_control_is_tied_for_responses(void)
{
	struct flow *f = relay_new("api.test");
	struct peer g = { .consume = false }, u = { .consume = true, .answer_big = true };
	peer_init(&g, false);
	peer_init(&u, true);
	CHECK(f && post(&g, "api.test", false) > 0);
	pump(f, &g, &u);
	/* The guest reads nothing: the upstream sent no more than the windows allow. */
	CHECK_EQ_INT(g.got, 65535);
	CHECK(u.sent <= 65535 + 256 * 1024 + 16384);
	nghttp2_session_consume_connection(g.s, g.got);
	nghttp2_session_consume_stream(g.s, 1, g.got);
	g.consume = true;
	pump(f, &g, &u);
	uint64_t want = 0;
	for (size_t i = 0; i < BODY; i++)
		want += (uint8_t)(i * 7);
	CHECK_EQ_INT(g.status, 200);
	CHECK_EQ_INT(g.got, BODY);
	CHECK(g.sum == want && g.ended);
	nghttp2_session_del(g.s);
	nghttp2_session_del(u.s);
	flow_free(f);
}

static void test_upstream_reset_reaches_the_guest(void)
{
	struct flow *f = relay_new("api.test");
	struct peer g = { .consume = true }, u = { .consume = true, .reset_id = 1 };
	peer_init(&g, false);
	peer_init(&u, true);
	CHECK(f && post(&g, "api.test", false) > 0);
	pump(f, &g, &u);
	CHECK_EQ_INT(g.rst, NGHTTP2_REFUSED_STREAM + 1);
	nghttp2_session_del(g.s);
	nghttp2_session_del(u.s);
	flow_free(f);
}

static void test_key_toward_another_host_is_refused_on_its_stream(void)
{
	struct flow *f = relay_new("other.test");
	struct peer g = { .consume = true }, u = { .consume = true };
	peer_init(&g, false);
	peer_init(&u, true);
	CHECK(f && post(&g, "other.test", false) > 0);
	pump(f, &g, &u);
	CHECK_EQ_INT(g.status, 403);
	CHECK(g.ended);
	CHECK_EQ_INT(u.key[0], 0); /* nothing reached the upstream */
	CHECK(nghttp2_session_want_read(g.s)); /* the connection stays up for other streams */
	nghttp2_session_del(g.s);
	nghttp2_session_del(u.s);
	flow_free(f);
}

#define AWS_REAL_KEY "real/aws+key"
#define AWS_REAL_TOKEN "real-aws-token"
#define EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* The SigV4 signature of GET /bk/k on api.test with these token and Authorization (its own
   Signature ignored) under key. */
static void sign_get(const char *token, const char *authz, const char *key, char *sig)
{
	struct sigv4_field fs[] = {
		{ (const uint8_t *)"host", 4, (const uint8_t *)"api.test", 8 },
		{ (const uint8_t *)"x-amz-content-sha256", 20, (const uint8_t *)EMPTY_HASH, 64 },
		{ (const uint8_t *)"x-amz-date", 10, (const uint8_t *)"20261201T120000Z", 16 },
		{ (const uint8_t *)"x-amz-security-token", 20, (const uint8_t *)token,
		  strlen(token) },
	};
	struct sigv4_auth a;
	struct buf creq = { 0 };
	sig[0] = 0;
	if (sigv4_parse_authorization((const uint8_t *)authz, strlen(authz), &a) == 0) {
		memcpy(a.amz_date, "20261201T120000Z", 17);
		struct sigv4_req rq = { "GET", (const uint8_t *)"/bk/k", 5, fs, 4 };
		if (sigv4_canonical_request(&rq, &a, EMPTY_HASH, &creq) == 0)
			sigv4_sign(&a, (const uint8_t *)key, strlen(key), buf_head(&creq),
				   buf_used(&creq), sig);
	}
	buf_fini(&creq);
}

/* A SigV4 GET over h2 signed with key: the relay re-signs it with the real key. */
static void sigv4_get(const char *key, struct peer *g, struct peer *u)
{
	const char *id = secrets_aws(&ss, SECRET_AWS_KEY_ID)->placeholder;
	const char *tok = secrets_aws(&ss, SECRET_AWS_TOKEN)->placeholder;
	char authz[400], sig[SIGV4_SIG_LEN + 1];
	snprintf(authz, sizeof(authz),
		 "AWS4-HMAC-SHA256 Credential=%s/20261201/us-east-1/s3/aws4_request, "
		 "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "
		 "Signature=%064d",
		 id, 0);
	sign_get(tok, authz, key, sig);
	memcpy(strstr(authz, "Signature=") + 10, sig, SIGV4_SIG_LEN);
	struct flow *f = relay_new("api.test");
	peer_init(g, false);
	peer_init(u, true);
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0 },
		{ (uint8_t *)":path", (uint8_t *)"/bk/k", 5, 5, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"api.test", 10, 8, 0 },
		{ (uint8_t *)"x-amz-content-sha256", (uint8_t *)EMPTY_HASH, 20, 64, 0 },
		{ (uint8_t *)"x-amz-date", (uint8_t *)"20261201T120000Z", 10, 16, 0 },
		{ (uint8_t *)"x-amz-security-token", (uint8_t *)tok, 20, strlen(tok), 0 },
		{ (uint8_t *)"authorization", (uint8_t *)authz, 13, strlen(authz), 0 },
	};
	CHECK(f && nghttp2_submit_request(g->s, NULL, nv, 8, NULL, NULL) > 0);
	pump(f, g, u);
	nghttp2_session_del(g->s);
	nghttp2_session_del(u->s);
	flow_free(f);
}

static void test_sigv4_is_signed_again_over_h2(void)
{
	struct peer g = { .consume = true }, u = { .consume = true };
	sigv4_get(secrets_aws(&ss, SECRET_AWS_SECRET_KEY)->placeholder, &g, &u);
	char sig[SIGV4_SIG_LEN + 1];
	CHECK(!strcmp(u.token, AWS_REAL_TOKEN));
	CHECK(strstr(u.authz, "Credential=AKIDH2REAL/") != NULL);
	sign_get(u.token, u.authz, AWS_REAL_KEY, sig);
	const char *got = strstr(u.authz, "Signature=");
	CHECK(sig[0] && got && !strncmp(got + 10, sig, SIGV4_SIG_LEN));

	/* Signed with another key: 403 on the stream, nothing upstream. */
	struct peer g2 = { .consume = true }, u2 = { .consume = true };
	sigv4_get("some-other-key", &g2, &u2);
	CHECK_EQ_INT(g2.status, 403);
	CHECK_EQ_INT(u2.authz[0], 0);
}

/* An HTTP/1.1 upstream: the relay's bytes for it collect in up; the guest's go to g. */
static void pump_h1(struct flow *f, struct peer *g, struct buf *up)
{
	for (int round = 0; round < 10000; round++) {
		bool moved = false;
		const uint8_t *d;
		ssize_t n;
		while ((n = nghttp2_session_mem_send(g->s, &d)) > 0)
			buf_append(&f->req_in, d, (size_t)n), moved = true;
		h2_requests_run(f);
		h2_responses_run(f);
		if (buf_used(&f->req_out)) {
			buf_append(up, buf_head(&f->req_out), buf_used(&f->req_out));
			buf_consume(&f->req_out, buf_used(&f->req_out));
			moved = true;
		}
		if (buf_used(&f->g_plain)) {
			nghttp2_session_mem_recv(g->s, buf_head(&f->g_plain),
						 buf_used(&f->g_plain));
			buf_consume(&f->g_plain, buf_used(&f->g_plain));
			moved = true;
		}
		if (!moved)
			return;
	}
}

static bool has(const struct buf *b, const char *s)
{
	return memmem(buf_head(b), buf_used(b), s, strlen(s)) != NULL;
}

/*
 * An h2 guest over an HTTP/1.1 upstream: each stream is one request on the connection, the next
 * only once the previous response ended; fields become a request line, Host and joined cookies;
 * the key goes in, and the response comes back as HEADERS and DATA, scrubbed.
 */
static void test_h2_guest_over_an_http1_upstream(void)
{
	struct flow *f = calloc(1, sizeof(*f));
	struct peer g = { .consume = true };
	struct buf up = { 0 };
	char key[128], want[200];
	f->m = &m;
	snprintf(f->name, sizeof(f->name), "api.test");
	f->port = 443;
	f->fd = -1;
	f->u_hs = true;
	if (!CHECK(h2_start(f, H2_UP_HTTP1) == 0))
		return;
	peer_init(&g, false);
	snprintf(key, sizeof(key), "Bearer %s", ss.s[0].placeholder);
	nghttp2_nv a[] = {
		{ (uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0 },
		{ (uint8_t *)":path", (uint8_t *)"/a", 5, 2, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"api.test", 10, 8, 0 },
		{ (uint8_t *)"x-api-key", (uint8_t *)key, 9, strlen(key), 0 },
		{ (uint8_t *)"cookie", (uint8_t *)"a=1", 6, 3, 0 },
		{ (uint8_t *)"cookie", (uint8_t *)"b=2", 6, 3, 0 },
	};
	nghttp2_submit_request(g.s, NULL, a, 7, NULL, NULL);
	a[2].value = (uint8_t *)"/b";
	nghttp2_submit_request(g.s, NULL, a, 4, NULL, NULL);
	pump_h1(f, &g, &up);
	CHECK(has(&up, "GET /a HTTP/1.1\r\nHost: api.test\r\n"));
	snprintf(want, sizeof(want), "x-api-key: Bearer %s\r\n", VALUE);
	CHECK(has(&up, want));
	CHECK(has(&up, "cookie: a=1; b=2\r\n"));
	CHECK(!has(&up, ss.s[0].placeholder));
	CHECK(!has(&up, "/b")); /* the second waits for the first's response */
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 19\r\nConnection: "
				   "keep-alive\r\n\r\nbody " VALUE;
	buf_append(&f->resp_in, resp, sizeof(resp) - 1);
	buf_fini(&up);
	pump_h1(f, &g, &up);
	CHECK_EQ_INT(g.status, 200);
	CHECK_EQ_INT((int)g.got, 5 + (int)SECRET_PLACEHOLDER_LEN); /* scrubbed */
	CHECK(has(&up, "GET /b HTTP/1.1\r\n"));
	buf_append(&f->resp_in, "HTTP/1.1 204 No Content\r\n\r\n", 27);
	pump_h1(f, &g, &up);
	CHECK_EQ_INT(g.status, 204);
	CHECK(g.ended);
	nghttp2_session_del(g.s);
	buf_fini(&up);
	flow_free(f);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	char err[200];
	if (!CHECK_EQ_INT(secrets_add(&ss, "KEY", (const uint8_t *)VALUE, strlen(VALUE), "api.test",
				      err, sizeof(err)),
			  0))
		return check_summary();
	if (!CHECK_EQ_INT(secrets_add_aws(&ss, (const uint8_t *)"AKIDH2REAL", 10,
					  (const uint8_t *)AWS_REAL_KEY, strlen(AWS_REAL_KEY),
					  (const uint8_t *)AWS_REAL_TOKEN, strlen(AWS_REAL_TOKEN),
					  "api.test", err, sizeof(err)),
			  0))
		return check_summary();
	m.ss = &ss;
	CHECK_RUN(test_flow_control_is_tied_across);
	CHECK_RUN(test_flow_control_is_tied_for_responses);
	CHECK_RUN(test_upstream_reset_reaches_the_guest);
	CHECK_RUN(test_key_toward_another_host_is_refused_on_its_stream);
	CHECK_RUN(test_sigv4_is_signed_again_over_h2);
	CHECK_RUN(test_h2_guest_over_an_http1_upstream);
	secrets_clear(&ss);
	return check_summary();
}
