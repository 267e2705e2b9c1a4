/* SPDX-License-Identifier: MIT */
/*
 * Network hooks inside the HTTP/1 proxy (proxy_hooks.c with proxy.c), a flow driven in memory
 * without TLS: a blocked request never reaches req_out and the guest is owed a 403; edits reach
 * the upstream; a callback holds the request until its answer (which may edit it) and fails
 * closed on a NULL answer; a flow freed while waiting cancels its question; secrets are put in
 * after the hooks (the question holds the placeholder, the upstream gets the value); response
 * headers and body are edited.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "net/flow.h"
#include "net/proxy_hooks.h"
#include "net/secrets.h"

#define VALUE "sk-hooks-value-1"

static struct secrets ss;
static struct mitm m;

/* A stub asker: remembers the last question and who to answer. */
static struct {
	json_t *q;
	hook_answer_fn fn;
	void *who;
	int64_t next, cancelled;
} ask;

static int64_t stub_ask(void *opaque, json_t *q, hook_answer_fn fn, void *who)
{
	(void)opaque;
	json_decref(ask.q);
	ask.q = q;
	ask.fn = fn;
	ask.who = who;
	return ++ask.next;
}

static void stub_cancel(void *opaque, int64_t ticket)
{
	(void)opaque;
	ask.cancelled = ticket;
	ask.fn = NULL;
}

static const struct hook_asker asker = { stub_ask, stub_cancel, NULL };
static int woken;

static void on_wake(void *opaque)
{
	(void)opaque;
	woken++;
}

static struct hooks *rules(const char *text)
{
	char err[512];
	struct hooks *h = NULL;
	CHECK(hooks_parse_text((const uint8_t *)text, strlen(text), &h, err, sizeof(err)) == 0);
	if (h)
		h->asker = &asker;
	return h;
}

static struct flow *flow_make(struct hooks *h)
{
	struct flow *f = calloc(1, sizeof(*f));
	m.ss = &ss;
	m.hooks = h;
	f->m = &m;
	snprintf(f->name, sizeof(f->name), "a.test");
	f->port = 443;
	f->fd = -1;
	f->u_hs = true;
	flow_set_wake(f, on_wake, NULL);
	return f;
}

static void flow_drop(struct flow *f)
{
	proxy_fini(f);
	buf_wipe(&f->req_in);
	buf_wipe(&f->req_out);
	buf_wipe(&f->resp_in);
	buf_wipe(&f->g_plain);
	buf_wipe(&f->final);
	free(f);
}

static void request(struct flow *f, const char *head)
{
	buf_append(&f->req_in, head, strlen(head));
	proxy_requests_run(f);
}

static bool has(const struct buf *b, const char *s)
{
	return buf_used(b) && memmem(buf_head(b), buf_used(b), s, strlen(s));
}

static void test_block_and_edit(void)
{
	struct hooks *h =
	    rules("[{\"name\": \"adm\", \"path\": \"/admin/**\", \"action\": \"block\"},"
		  " {\"set_headers\": {\"X-Tag\": \"t\"}, \"delete_headers\": [\"cookie\"]}]");
	struct flow *f = flow_make(h);
	request(f, "GET /x?q=1 HTTP/1.1\r\nHost: a.test\r\nCookie: s=1\r\n\r\n");
	CHECK(has(&f->req_out, "GET /x?q=1 HTTP/1.1\r\n"));
	CHECK(has(&f->req_out, "x-tag: t\r\n"));
	CHECK(!has(&f->req_out, "Cookie"));
	size_t before = buf_used(&f->req_out);
	request(f, "GET /admin/x HTTP/1.1\r\nHost: a.test\r\n\r\n");
	CHECK_EQ_INT(buf_used(&f->req_out), before); /* nothing of it went upstream */
	CHECK(has(&f->final, "403"));
	CHECK(has(&f->final, "hook rule adm"));
	CHECK_EQ_INT(f->rq, RQ_STOPPED);
	flow_drop(f);
	hooks_free(h);
}

static void test_callback_holds_then_edits(void)
{
	struct hooks *h =
	    rules("[{\"name\": \"cb\", \"path\": \"/cb\", \"action\": \"callback\"}]");
	struct flow *f = flow_make(h);
	char head[300];
	snprintf(head, sizeof(head), "GET /cb HTTP/1.1\r\nHost: a.test\r\nX-Key: %s\r\n\r\n",
		 ss.s[0].placeholder);
	woken = 0;
	request(f, head);
	CHECK_EQ_INT(buf_used(&f->req_out), 0); /* held */
	CHECK(ask.fn != NULL);
	/* The question holds the placeholder, never the value. */
	const char *k =
	    json_string_value(json_object_get(json_object_get(ask.q, "headers"), "x-key"));
	CHECK(k && !strcmp(k, ss.s[0].placeholder));
	char *dump = json_dumps(ask.q, 0);
	CHECK(dump && !strstr(dump, VALUE));
	free(dump);
	/* More bytes from the guest do not start anything while it waits. */
	proxy_requests_run(f);
	CHECK_EQ_INT(buf_used(&f->req_out), 0);
	json_t *a = json_pack("{s:s,s:{s:s}}", "action", "allow", "set_headers", "X-Cb", "yes");
	ask.fn(ask.who, a);
	json_decref(a);
	CHECK_EQ_INT(woken, 1);
	proxy_requests_run(f); /* what the owner's wake does */
	CHECK(has(&f->req_out, "x-cb: yes\r\n"));
	CHECK(has(&f->req_out, "X-Key: " VALUE "\r\n")); /* secrets after hooks */
	CHECK(!has(&f->req_out, "SANDBOX_SECRET_"));
	flow_drop(f);
	hooks_free(h);
}

static void test_callback_fails_closed_and_cancels(void)
{
	struct hooks *h = rules("[{\"name\": \"cb\", \"action\": \"callback\"}]");
	struct flow *f = flow_make(h);
	request(f, "GET /a HTTP/1.1\r\nHost: a.test\r\n\r\n");
	CHECK(ask.fn != NULL);
	ask.fn(ask.who, NULL); /* no answer in time */
	proxy_requests_run(f);
	CHECK_EQ_INT(buf_used(&f->req_out), 0);
	CHECK(has(&f->final, "403"));
	CHECK(has(&f->final, "no answer"));
	flow_drop(f);

	/* Freed while waiting: the question is cancelled, its answer never delivered. */
	f = flow_make(h);
	request(f, "GET /a HTTP/1.1\r\nHost: a.test\r\n\r\n");
	int64_t t = ask.next;
	flow_drop(f);
	CHECK_EQ_INT(ask.cancelled, t);

	/* Nobody to ask: refused at once. */
	h->asker = NULL;
	f = flow_make(h);
	request(f, "GET /a HTTP/1.1\r\nHost: a.test\r\n\r\n");
	CHECK(has(&f->final, "no SDK is connected"));
	flow_drop(f);
	hooks_free(h);
}

static void test_response_edits(void)
{
	struct hooks *h =
	    rules("[{\"set_response_headers\": {\"X-Seen\": \"1\"},"
		  " \"delete_response_headers\": [\"server\"],"
		  " \"body_replacements\": [{\"find\": \"ab\", \"replace\": \"XYZ\"}]}]");
	struct flow *f = flow_make(h);
	request(f, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
	const char *resp = "HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 5\r\n\r\nxabab";
	buf_append(&f->resp_in, resp, strlen(resp));
	proxy_responses_run(f);
	CHECK(has(&f->g_plain, "x-seen: 1\r\n"));
	CHECK(!has(&f->g_plain, "Server"));
	CHECK(!has(&f->g_plain, "Content-Length: 5"));
	CHECK(has(&f->g_plain, "Transfer-Encoding: chunked\r\n"));
	CHECK(has(&f->g_plain, "xXYZXYZ"));
	CHECK(has(&f->g_plain, "0\r\n\r\n"));
	flow_drop(f);
	hooks_free(h);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	char err[256];
	CHECK(secrets_add(&ss, "KEY", (const uint8_t *)VALUE, strlen(VALUE), "a.test", err,
			  sizeof(err)) == 0);
	CHECK_RUN(test_block_and_edit);
	CHECK_RUN(test_callback_holds_then_edits);
	CHECK_RUN(test_callback_fails_closed_and_cancels);
	CHECK_RUN(test_response_edits);
	json_decref(ask.q);
	secrets_clear(&ss);
	return check_summary();
}
