/* SPDX-License-Identifier: MIT */
/* The intercepting proxy's pure parts: HTTP/1 heads and bodies, secrets, ClientHello SNI. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/base64.h"
#include "net/http.h"
#include "net/secrets.h"
#include "net/tlshello.h"

#define S(x) (const uint8_t *)(x), strlen(x)

static void test_request_heads(void)
{
	struct http_msg m;
	const char *why;
	const char *ok =
	    "POST /v1/x?a=1 HTTP/1.1\r\nHost: API.test:8443\r\nContent-Length: 12\r\n\r\nbody";
	long hl = http_head_len(S(ok), HTTP_MAX_HEAD);
	CHECK_EQ_INT(hl, (long)strlen(ok) - 4);
	CHECK_EQ_INT(http_parse_request((const uint8_t *)ok, (size_t)hl, &m, &why), 0);
	CHECK(!strcmp(m.method, "POST") && !strcmp(m.host, "api.test"));
	CHECK_EQ_INT(m.framing, HTTP_BODY_LENGTH);
	CHECK_EQ_INT(m.length, 12);
	CHECK_EQ_INT(http_head_len(S("GET / HTTP/1.1\r\nHost: a\r\n"), HTTP_MAX_HEAD), 0);

	static const char *const bad[] = {
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: "
		"chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
		"GET https://b/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://b:8080/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET ws://b/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://u@b/ HTTP/1.1\r\nHost: b\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
		"GET x HTTP/1.1\r\nHost: a\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (!CHECK_EQ_INT(http_parse_request(S(bad[i]), &m, &why), -EPROTO))
			fprintf(stderr, "  accepted: %s\n", bad[i]);
	}
	CHECK_EQ_INT(
	    http_parse_request(
		S("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
		  "Connection: Upgrade\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n\r\n"),
		&m, &why),
	    0);
	CHECK(m.framing == HTTP_BODY_CHUNKED && m.upgrade && m.expect_continue);
	CHECK_EQ_INT(http_parse_request(S("GET / HTTP/1.0\r\nHost: a\r\n\r\n"), &m, &why), 0);
	CHECK(m.close && m.framing == HTTP_BODY_NONE);
	/* Absolute form, any scheme: its authority is the host (plain HTTP checks every request).
	 */
	CHECK_EQ_INT(
	    http_parse_request(S("GET http://Other.test:8080/x?y HTTP/1.1\r\n\r\n"), &m, &why), 0);
	CHECK(!strcmp(m.host, "other.test"));
	CHECK_EQ_INT(http_parse_request(
			 S("GET https://o.test HTTP/1.1\r\nHost: o.test:443\r\n\r\n"), &m, &why),
		     0);
	CHECK(!strcmp(m.host, "o.test"));
	/* An IP literal Host (a guest that dialed its synthetic address) keeps its brackets. */
	CHECK_EQ_INT(
	    http_parse_request(S("GET / HTTP/1.1\r\nHost: [FD6D::1]:8080\r\n\r\n"), &m, &why), 0);
	CHECK(!strcmp(m.host, "[fd6d::1]"));
	CHECK_EQ_INT(http_parse_request(S("GET / HTTP/1.1\r\nHost: [fd6d::1]x\r\n\r\n"), &m, &why),
		     -EPROTO);
	CHECK_EQ_INT(http_parse_request(S("GET / HTTP/1.1\r\nHost: [a.b@c]\r\n\r\n"), &m, &why),
		     -EPROTO);
	/* A head that never ends is refused at the bound. */
	char *big = malloc(HTTP_MAX_HEAD + 10);
	memset(big, 'a', HTTP_MAX_HEAD + 10);
	CHECK_EQ_INT(http_head_len((uint8_t *)big, HTTP_MAX_HEAD + 10, HTTP_MAX_HEAD), -EPROTO);
	free(big);
}

/* The spans of the one parser: every field, its value trimmed, and a head rebuilt from them. */
static void test_head_spans(void)
{
	struct http_msg m;
	const char *why;
	const char *h = "POST /p HTTP/1.1\r\nHost: a.test\r\nX-A:  v 1 \t\r\nEmpty:\r\n"
			"Content-Length: 3\r\n\r\n";
	if (!CHECK_EQ_INT(http_parse_request(S(h), &m, &why), 0))
		return;
	CHECK_EQ_INT(m.head_len, strlen(h));
	CHECK_EQ_INT(m.line_len, 16);
	CHECK_EQ_INT(m.nfields, 4);
	const struct http_field *f = &m.field[1];
	CHECK(http_field_is((const uint8_t *)h, f, "x-a") &&
	      !http_field_is((const uint8_t *)h, f, "x"));
	CHECK_EQ_MEM(h + f->value_off, f->value_len, "v 1", 3);
	CHECK_EQ_INT(m.field[2].value_len, 0);
	CHECK_EQ_INT(m.field[2].name_off, f->end + 2);
	CHECK_EQ_INT(m.field[3].end + 4, strlen(h));
	/* The rewrite keeps every other byte: spacing, case, order. */
	static const char *const drop[] = { "content-length", NULL };
	struct buf out = { 0 };
	CHECK_EQ_INT(http_head_filter((const uint8_t *)h, &m, drop, "T: 1\r\n", &out), 0);
	const char *want =
	    "POST /p HTTP/1.1\r\nHost: a.test\r\nX-A:  v 1 \t\r\nEmpty:\r\nT: 1\r\n\r\n";
	CHECK_EQ_MEM(buf_head(&out), buf_used(&out), want, strlen(want));
	buf_fini(&out);
	/* Response heads too. */
	const char *r = "HTTP/1.1 200 OK\r\nA: b\r\n\r\n";
	CHECK_EQ_INT(http_parse_response(S(r), false, &m, &why), 0);
	CHECK_EQ_INT(m.nfields, 1);
	CHECK_EQ_INT(m.line_len, 15);
	CHECK_EQ_MEM(r + m.field[0].value_off, m.field[0].value_len, "b", 1);
}

static void test_response_heads(void)
{
	struct http_msg m;
	const char *why;
	CHECK_EQ_INT(
	    http_parse_response(S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), false, &m, &why),
	    0);
	CHECK(m.status == 200 && m.framing == HTTP_BODY_LENGTH && m.length == 5);
	CHECK_EQ_INT(
	    http_parse_response(S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), true, &m, &why),
	    0);
	CHECK_EQ_INT(m.framing, HTTP_BODY_NONE);
	CHECK_EQ_INT(
	    http_parse_response(S("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"), false,
				&m, &why),
	    0);
	CHECK_EQ_INT(m.framing, HTTP_BODY_NONE);
	CHECK_EQ_INT(http_parse_response(S("HTTP/1.1 200 OK\r\n\r\n"), false, &m, &why), 0);
	CHECK_EQ_INT(m.framing, HTTP_BODY_CLOSE);
	CHECK_EQ_INT(http_parse_response(S("HTTP/1.1 100 Continue\r\n\r\n"), false, &m, &why), 0);
	CHECK(m.status == 100 && m.framing == HTTP_BODY_NONE);
	CHECK_EQ_INT(http_parse_response(S("HTTP/1.1 20 OK\r\n\r\n"), false, &m, &why), -EPROTO);
	CHECK_EQ_INT(
	    http_parse_response(
		S("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
		false, &m, &why),
	    -EPROTO);
}

/* Decode a whole body fed one byte at a time; returns the data or NULL if malformed. */
static char *decode_bytewise(enum http_framing f, uint64_t len, const char *wire, size_t *rest)
{
	struct http_body b;
	http_body_init(&b, f, len);
	struct buf in = { 0 }, out = { 0 };
	size_t n = strlen(wire), fed = 0;
	for (;;) {
		size_t used, off, dl;
		int r =
		    http_body_step(&b, buf_head(&in), buf_used(&in), fed == n, &used, &off, &dl);
		if (r < 0) {
			buf_fini(&in);
			buf_fini(&out);
			return NULL;
		}
		buf_append(&out, buf_head(&in) + off, dl);
		buf_consume(&in, used);
		if (r == 1)
			break;
		if (!used) {
			if (fed == n)
				break;
			buf_append(&in, wire + fed++, 1);
		}
	}
	*rest = n - fed + buf_used(&in);
	buf_put_u8(&out, 0);
	buf_fini(&in);
	return (char *)out.p;
}

static void test_bodies(void)
{
	size_t rest;
	char *d =
	    decode_bytewise(HTTP_BODY_CHUNKED, 0,
			    "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nT: x\r\n\r\nNEXT", &rest);
	CHECK(d && !strcmp(d, "hello world"));
	CHECK_EQ_INT(rest, 4); /* "NEXT": the next message starts right after the body */
	free(d);
	d = decode_bytewise(HTTP_BODY_LENGTH, 3, "abcdef", &rest);
	CHECK(d && !strcmp(d, "abc"));
	free(d);
	CHECK(decode_bytewise(HTTP_BODY_CHUNKED, 0, "zz\r\n", &rest) == NULL);
	CHECK(decode_bytewise(HTTP_BODY_CHUNKED, 0, "3\r\nabcX\r\n", &rest) == NULL);
	CHECK(decode_bytewise(HTTP_BODY_CHUNKED, 0, "ffffffffffffffffff\r\n", &rest) == NULL);
	CHECK(decode_bytewise(HTTP_BODY_CHUNKED, 0, "5\r\nab", &rest) ==
	      NULL); /* truncated at EOF */
	d = decode_bytewise(HTTP_BODY_CLOSE, 0, "until the end", &rest);
	CHECK(d && !strcmp(d, "until the end"));
	free(d);

	/* The trailer lines, and where the plain-HTTP walk says each step's body data is. */
	const char *ch = "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
	struct http_body b;
	http_body_init(&b, HTTP_BODY_CHUNKED, 0);
	size_t at = 0, used, off, dl, trailer = 0;
	for (int i = 0; i < 10 && at < strlen(ch); i++) {
		bool in_trailer = http_body_in_trailer(&b);
		int r = http_body_step(&b, (const uint8_t *)ch + at, strlen(ch) - at, true, &used,
				       &off, &dl);
		if (in_trailer && r == 0)
			trailer += used;
		at += used;
	}
	CHECK_EQ_INT(trailer, 8); /* "X-T: 1\r\n" */
	const char *req = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody";
	struct http_walk w = { 0 };
	struct http_msg m;
	const char *why;
	CHECK_EQ_INT(http_walk_step(&w, (const uint8_t *)req, strlen(req), false, &used, &m, &why),
		     1);
	http_walk_accept(&w, &m);
	CHECK_EQ_INT(w.data_len, 0);
	at = used;
	CHECK_EQ_INT(
	    http_walk_step(&w, (const uint8_t *)req + at, strlen(req) - at, false, &used, &m, &why),
	    0);
	CHECK(w.data_off == 0 && w.data_len == 4 && used == 4);
	char t[64];
	http_target_redacted(S("/v1/x?key=secret&b=2#frag"), t, sizeof(t));
	CHECK(!strcmp(t, "/v1/x?key=&b="));
}

static struct secrets ss;

/* Parse a request head (the one parser), then rewrite it for host. */
static int rewrite(const char *host, const char *head, bool strip, struct buf *out,
		   const struct secret **leak, struct scrub *sc)
{
	static struct http_msg m;
	const char *why;
	if (http_parse_request((const uint8_t *)head, strlen(head), &m, &why) < 0)
		return -EPROTO;
	return secrets_rewrite_request(&ss, host, (const uint8_t *)head, &m, strip, out, leak, sc);
}

static void test_secrets(void)
{
	char err[300];
	const uint8_t v[] = "sk-real/value+1";
	CHECK_EQ_INT(
	    secrets_add(&ss, "API_KEY", v, sizeof(v) - 1, "api.test,*.api2.test", err, sizeof(err)),
	    0);
	CHECK_EQ_INT(secrets_add(&ss, "API_KEY", v, 3, "a.test", err, sizeof(err)), -EEXIST);
	CHECK_EQ_INT(secrets_add(&ss, "BAD NAME", v, 3, "a.test", err, sizeof(err)), -EINVAL);
	CHECK_EQ_INT(
	    secrets_add(&ss, "CRLF", (const uint8_t *)"a\r\nb", 4, "a.test", err, sizeof(err)),
	    -EINVAL);
	CHECK_EQ_INT(secrets_add(&ss, "NOHOST", v, 3, "", err, sizeof(err)), -EINVAL);
	const struct secret *s = &ss.s[0];
	CHECK_EQ_INT(strlen(s->placeholder), SECRET_PLACEHOLDER_LEN);
	CHECK(!strncmp(s->placeholder, "SANDBOX_SECRET_", 15));
	CHECK_EQ_INT(strspn(s->placeholder + 15, "0123456789abcdef"), 32);
	CHECK(secret_host_ok(s, "api.test") && secret_host_ok(s, "x.api2.test") &&
	      !secret_host_ok(s, "api2.test"));

	/* Header, query (percent-encoded), Basic credentials. */
	char head[1024], basic_in[200], basic_out[200];
	struct buf b64 = { 0 };
	snprintf(basic_in, sizeof(basic_in), "u:%s", s->placeholder);
	base64_encode(&b64, (const uint8_t *)basic_in, strlen(basic_in));
	buf_put_u8(&b64, 0);
	snprintf(head, sizeof(head),
		 "GET /x?k=%s HTTP/1.1\r\nHost: api.test\r\nX-Key: Bearer %s\r\n"
		 "Authorization: Basic %s\r\nAccept-Encoding: gzip\r\n\r\n",
		 s->placeholder, s->placeholder, (char *)b64.p);
	buf_fini(&b64);
	struct buf out = { 0 };
	const struct secret *leak;
	CHECK_EQ_INT(rewrite("api.test", head, true, &out, &leak, NULL), 3);
	buf_put_u8(&out, 0);
	base64_encode(&b64, (const uint8_t *)"u:sk-real/value+1", 17);
	buf_put_u8(&b64, 0);
	snprintf(basic_out, sizeof(basic_out), "Authorization: Basic %s\r\n", (char *)b64.p);
	CHECK(strstr((char *)out.p, "GET /x?k=sk-real%2Fvalue%2B1 HTTP/1.1\r\n"));
	CHECK(strstr((char *)out.p, "X-Key: Bearer sk-real/value+1\r\n"));
	CHECK(strstr((char *)out.p, basic_out));
	CHECK(strstr((char *)out.p, "Accept-Encoding: identity\r\n\r\n") &&
	      !strstr((char *)out.p, "gzip"));
	CHECK(!strstr((char *)out.p, "SANDBOX_SECRET_"));
	buf_fini(&out);
	buf_fini(&b64);

	/* Headed elsewhere: refused, nothing written, the secret named. */
	CHECK_EQ_INT(rewrite("other.test", head, false, &out, &leak, NULL), -EPERM);
	CHECK(leak == s && buf_used(&out) == 0);
	/* Only inside Basic credentials: still caught. */
	snprintf(basic_in, sizeof(basic_in), "u:%s", s->placeholder);
	base64_encode(&b64, (const uint8_t *)basic_in, strlen(basic_in));
	buf_put_u8(&b64, 0);
	snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: o\r\nAuthorization: basic %s\r\n\r\n",
		 (char *)b64.p);
	buf_fini(&b64);
	CHECK_EQ_INT(rewrite("other.test", head, false, &out, &leak, NULL), -EPERM);
	/* In a header name too (HTTP/1 names may hold one). */
	snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: api.test\r\nX-%s: 1\r\n\r\n",
		 s->placeholder);
	CHECK_EQ_INT(rewrite("api.test", head, false, &out, &leak, NULL), 1);
	CHECK(memmem(buf_head(&out), buf_used(&out), "X-sk-real/value+1: 1\r\n", 22));
	buf_fini(&out);
	/* No placeholder: unchanged. */
	const char *plain = "GET / HTTP/1.1\r\nHost: o\r\nX: SANDBOX_SECRET_nothex\r\n\r\n";
	CHECK_EQ_INT(rewrite("other.test", plain, false, &out, &leak, NULL), 0);
	CHECK_EQ_MEM(buf_head(&out), buf_used(&out), plain, strlen(plain));
	buf_fini(&out);
}

/* One field at a time (HTTP/2's decoded fields): the rule HTTP/1 heads go through too. */
static int field(const char *host, const char *name, const char *value, bool url, struct buf *out,
		 const struct secret **leak)
{
	buf_fini(out);
	return secrets_rewrite_field(&ss, host, (const uint8_t *)name, strlen(name),
				     (const uint8_t *)value, strlen(value), url, out, leak, NULL);
}

static void test_secret_fields(void)
{
	const struct secret *s = &ss.s[0], *leak = NULL;
	char v[300];
	struct buf out = { 0 }, b64 = { 0 };
	snprintf(v, sizeof(v), "/x?k=%s", s->placeholder);
	CHECK_EQ_INT(field("api.test", ":path", v, true, &out, &leak), 1);
	CHECK_EQ_MEM(buf_head(&out), buf_used(&out), "/x?k=sk-real%2Fvalue%2B1", 24);
	snprintf(v, sizeof(v), "Bearer %s", s->placeholder);
	CHECK_EQ_INT(field("x.api2.test", "x-key", v, false, &out, &leak), 1);
	CHECK_EQ_MEM(buf_head(&out), buf_used(&out), "Bearer sk-real/value+1", 22);
	/* Basic: the credential is decoded, replaced and encoded again. */
	snprintf(v, sizeof(v), "u:%s", s->placeholder);
	base64_encode(&b64, (const uint8_t *)v, strlen(v));
	snprintf(v, sizeof(v), "Basic %.*s", (int)buf_used(&b64), (char *)buf_head(&b64));
	buf_fini(&b64);
	CHECK_EQ_INT(field("api.test", "authorization", v, false, &out, &leak), 1);
	base64_encode(&b64, (const uint8_t *)"u:sk-real/value+1", 17);
	CHECK(buf_used(&out) == 6 + buf_used(&b64) && !memcmp(buf_head(&out), "Basic ", 6) &&
	      !memcmp(buf_head(&out) + 6, buf_head(&b64), buf_used(&b64)));
	buf_fini(&b64);
	/* Elsewhere: refused, nothing appended, also when only the Basic credential has it. */
	CHECK_EQ_INT(field("other.test", "authorization", v, false, &out, &leak), -EPERM);
	CHECK(leak == s && buf_used(&out) == 0);
	leak = NULL;
	snprintf(v, sizeof(v), "Bearer %s", s->placeholder);
	CHECK_EQ_INT(field("other.test", "x-key", v, false, &out, &leak), -EPERM);
	CHECK(leak == s && buf_used(&out) == 0);
	/* No placeholder: the value as it was. */
	CHECK_EQ_INT(field("other.test", "x-key", "SANDBOX_SECRET_nothex", false, &out, &leak), 0);
	CHECK_EQ_MEM(buf_head(&out), buf_used(&out), "SANDBOX_SECRET_nothex", 21);
	buf_fini(&out);
}

static void test_scrub(void)
{
	const struct secret *s = &ss.s[0];
	const char *text = "a sk-real/value+1 b sk-real/value+1sk-real/value c sk-re";
	/* Every split point of the stream gives the same result. */
	char want[512];
	snprintf(want, sizeof(want), "a %s b %ssk-real/value c sk-re", s->placeholder,
		 s->placeholder);
	for (size_t cut = 0; cut <= strlen(text); cut++) {
		struct scrub sc = { 0 };
		struct buf out = { 0 };
		scrub_feed(&ss, &sc, (const uint8_t *)text, cut, false, &out);
		scrub_feed(&ss, &sc, (const uint8_t *)text + cut, strlen(text) - cut, false, &out);
		scrub_feed(&ss, &sc, NULL, 0, true, &out);
		if (!CHECK_EQ_MEM(buf_head(&out), buf_used(&out), want, strlen(want)))
			fprintf(stderr, "  cut at %zu\n", cut);
		buf_fini(&out);
		scrub_fini(&sc);
	}
	/* Bytes that cannot start a value are never held back (SSE arrives as it comes). */
	struct scrub sc = { 0 };
	struct buf out = { 0 };
	scrub_feed(&ss, &sc, S("data: 1\n\n"), false, &out);
	CHECK_EQ_INT(buf_used(&out), 9);
	buf_fini(&out);
	scrub_fini(&sc);
}

/* Scrub text split at cut into two feeds; the result (NUL-terminated, caller frees). */
static char *scrub_split(struct scrub *sc, const char *text, size_t cut)
{
	struct buf out = { 0 };
	scrub_feed(&ss, sc, (const uint8_t *)text, cut, false, &out);
	scrub_feed(&ss, sc, (const uint8_t *)text + cut, strlen(text) - cut, false, &out);
	scrub_feed(&ss, sc, NULL, 0, true, &out);
	buf_put_u8(&out, 0);
	char *r = strdup((const char *)buf_head(&out));
	buf_fini(&out);
	return r;
}

/* Whether mid occurs in t after any decoding a reader could apply (independent of secrets.c). */
static bool recoverable(const char *t, const char *mid)
{
	if (strstr(t, mid))
		return true;
	char dec[4096];
	size_t k = 0;
	for (size_t i = 0; t[i] && k + 1 < sizeof(dec); i++) { /* percent and JSON escapes */
		unsigned x;
		if (t[i] == '%' && sscanf(t + i + 1, "%2x", &x) == 1 &&
		    isxdigit((unsigned char)t[i + 2]))
			dec[k++] = (char)x, i += 2;
		else if (t[i] == '\\' && t[i + 1])
			dec[k++] = t[++i];
		else
			dec[k++] = t[i];
	}
	dec[k] = 0;
	if (strstr(dec, mid))
		return true;
	/* base64 and base64url runs, read from every character offset */
	for (size_t i = 0; t[i]; i++) {
		char run[4096];
		size_t rl = 0;
		for (size_t j = i; t[j] && rl + 1 < sizeof(run) &&
				   (isalnum((unsigned char)t[j]) || strchr("+/-_", t[j]));
		     j++)
			run[rl++] = t[j] == '-' ? '+' : t[j] == '_' ? '/' : t[j];
		rl -= rl % 4;
		struct buf b = { 0 };
		bool hit = rl && base64_decode(&b, run, rl) == 0 &&
			   memmem(buf_head(&b), buf_used(&b), mid, strlen(mid));
		buf_fini(&b);
		if (hit)
			return true;
	}
	return false;
}

/* A reflecting upstream hands back the value in any encoding: none lets it be recovered. */
static void test_scrub_encodings(void)
{
	const char *value = "sk-real/value+1";
	const char *mid = "real/value"; /* all but two bytes at each end */
	char b64[64], b64u[64], text[1024];
	struct buf t = { 0 };
	static const char *const pre[] = { "", "u", "us", "user:", "x" };
	static const char *const wrap[][2] = {
		{ "Authorization: Basic ", "\r\n" },
		{ "{\"auth\": \"", "\"}" },
		{ "?k=", "&x=1" },
		{ "", "" },
	};
	size_t ncase = 0;
	for (size_t pi = 0; pi < sizeof(pre) / sizeof(pre[0]); pi++) {
		char plain[128];
		snprintf(plain, sizeof(plain), "%s%s:tail", pre[pi], value);
		buf_fini(&t);
		base64_encode(&t, (const uint8_t *)plain, strlen(plain));
		snprintf(b64, sizeof(b64), "%.*s", (int)buf_used(&t), (const char *)buf_head(&t));
		snprintf(b64u, sizeof(b64u), "%s", b64);
		for (char *q = b64u; *q; q++)
			*q = *q == '+' ? '-' : *q == '/' ? '_' : *q == '=' ? 0 : *q;
		const char *forms[] = { b64,
					b64u,
					"sk-real%2Fvalue%2B1",
					"sk-real%2fvalue%2b1",
					"sk-real\\/value+1",
					value };
		for (size_t fi = 0; fi < sizeof(forms) / sizeof(forms[0]); fi++) {
			for (size_t ti = 0; ti < sizeof(wrap) / sizeof(wrap[0]); ti++) {
				snprintf(text, sizeof(text), "%s%s%s", wrap[ti][0], forms[fi],
					 wrap[ti][1]);
				for (size_t cut = 0; cut <= strlen(text); cut += 3) {
					struct scrub sc = { 0 };
					char *r = scrub_split(&sc, text, cut);
					if (!CHECK(!recoverable(r, mid)))
						fprintf(stderr, "  recovered from %s -> %s\n", text,
							r);
					free(r);
					scrub_fini(&sc);
					ncase++;
				}
			}
		}
	}
	buf_fini(&t);
	CHECK(ncase > 100);

	/* The proxy's own Basic token, echoed whole, comes back as the guest's token. */
	const struct secret *s = &ss.s[0];
	char head[512], guest_tok[256];
	snprintf(text, sizeof(text), "bob:%s", s->placeholder);
	buf_fini(&t);
	base64_encode(&t, (const uint8_t *)text, strlen(text));
	snprintf(guest_tok, sizeof(guest_tok), "%.*s", (int)buf_used(&t),
		 (const char *)buf_head(&t));
	snprintf(head, sizeof(head),
		 "GET / HTTP/1.1\r\nHost: api.test\r\nAuthorization: Basic %s\r\n\r\n", guest_tok);
	struct scrub sc = { 0 };
	struct buf out = { 0 };
	const struct secret *leak;
	CHECK_EQ_INT(rewrite("api.test", head, false, &out, &leak, &sc), 1);
	CHECK_EQ_INT(sc.nrec, 1);
	const char *sent = strstr((const char *)buf_head(&out), "Basic ") + 6;
	snprintf(text, sizeof(text), "echo: %.*s.", (int)(strchr(sent, '\r') - sent), sent);
	char *r = scrub_split(&sc, text, 10);
	snprintf(head, sizeof(head), "echo: %s.", guest_tok);
	CHECK(!strcmp(r, head));
	free(r);
	buf_fini(&out);
	buf_fini(&t);
	scrub_fini(&sc);
}

static void test_tlshello(void)
{
	/* A minimal ClientHello with SNI "API.Test". */
	uint8_t h[200];
	size_t k = 0;
	const char *name = "API.Test";
	size_t nl = strlen(name);
	uint8_t body[160];
	size_t b = 0;
	body[b++] = 3, body[b++] = 3;
	memset(body + b, 7, 32), b += 32;
	body[b++] = 0; /* session id */
	body[b++] = 0, body[b++] = 2, body[b++] = 0x13, body[b++] = 0x01; /* suites */
	body[b++] = 1, body[b++] = 0; /* compression */
	size_t extlen = 4 + 2 + 3 + nl;
	body[b++] = 0, body[b++] = (uint8_t)extlen;
	body[b++] = 0, body[b++] = 0; /* server_name */
	body[b++] = 0, body[b++] = (uint8_t)(2 + 3 + nl);
	body[b++] = 0, body[b++] = (uint8_t)(3 + nl);
	body[b++] = 0, body[b++] = 0, body[b++] = (uint8_t)nl;
	memcpy(body + b, name, nl), b += nl;
	h[k++] = 0x16, h[k++] = 3, h[k++] = 1, h[k++] = 0, h[k++] = (uint8_t)(4 + b);
	h[k++] = 1, h[k++] = 0, h[k++] = 0, h[k++] = (uint8_t)b;
	memcpy(h + k, body, b), k += b;
	char sni[256];
	CHECK_EQ_INT(tlshello_sni(h, k, sni, sizeof(sni)), 1);
	CHECK(!strcmp(sni, "api.test"));
	for (size_t i = 0; i < k; i++)
		CHECK_EQ_INT(tlshello_sni(h, i, sni, sizeof(sni)), 0);
	CHECK_EQ_INT(tlshello_sni(S("GET / HTTP/1.1\r\n"), sni, sizeof(sni)), -ENOENT);
	CHECK_EQ_INT(tlshello_sni(S("SSH-2.0-x\r\n"), sni, sizeof(sni)), -ENOENT);
	h[5] = 2; /* a ServerHello from the guest: TLS-looking, not a ClientHello */
	CHECK_EQ_INT(tlshello_sni(h, k, sni, sizeof(sni)), -EPROTO);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_request_heads);
	CHECK_RUN(test_head_spans);
	CHECK_RUN(test_response_heads);
	CHECK_RUN(test_bodies);
	CHECK_RUN(test_secrets);
	CHECK_RUN(test_secret_fields);
	CHECK_RUN(test_scrub);
	CHECK_RUN(test_scrub_encodings);
	CHECK_RUN(test_tlshello);
	secrets_clear(&ss);
	return check_summary();
}
