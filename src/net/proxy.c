/* SPDX-License-Identifier: MIT */
/*
 * The HTTP/1 proxy inside an intercepted TLS connection (a flow; tls.c moves its bytes).
 *
 * States and transitions. Requests (guest -> upstream), one function per state:
 *   RQ_HEAD    a request head is parsed (http.h), checked (Host = the TLS server name, the
 *              upstream is up, no secret placeholder headed elsewhere), rewritten (secrets.h)
 *              and queued as pending -> RQ_BODY; refused (400/403/502) -> RQ_STOPPED.
 *   RQ_BODY    the body streams through its framing -> RQ_HEAD at its end, or
 *              RQ_WAIT_UPGRADE after a WebSocket upgrade request.
 *   RQ_WAIT_UPGRADE  nothing passes until the upstream answers: 101 -> RQ_TUNNEL, else RQ_HEAD.
 *   RQ_TUNNEL  bytes, no longer HTTP.
 *   RQ_STOPPED nothing more is read; the refusal goes out after the responses still owed.
 * Responses (upstream -> guest), in request order:
 *   RS_HEAD    a response head for the oldest pending request; 1xx passes and stays here;
 *              101 to an upgrade -> RS_TUNNEL; otherwise re-framed when secrets are scrubbed
 *              -> RS_BODY; a malformed head answers 502 and ends the flow.
 *   RS_BODY    the body streams, scrubbed of secret values -> RS_HEAD at its end (the pending
 *              request is done and logged), or the flow closes (Connection: close).
 *   RS_TUNNEL  bytes, no longer HTTP.
 */
#define _GNU_SOURCE
#include "flow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "secrets.h"

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
	struct net_request rq = { p->method, p->url,  status,
				  p->up,     p->down, (now - p->t0) / 1000000u,
				  secret };
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
		snprintf(p->url, sizeof(p->url), "https://%s:%u%s", f->name, f->port,
			 t[0] == '/' ? t : "/");
	p->minor = m->minor;
	p->upgrade = m->upgrade;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	p->t0 = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* RQ_TUNNEL: the guest's bytes go upstream as they are. */
static bool rq_tunnel(struct flow *f)
{
	buf_append(&f->req_out, buf_head(&f->req_in), buf_used(&f->req_in));
	if (f->qlen)
		f->q[f->qhead].up += buf_used(&f->req_in);
	buf_consume(&f->req_in, buf_used(&f->req_in));
	return false;
}

/* RQ_BODY: one step of the request body, re-chunked when it came chunked. */
static bool rq_body(struct flow *f)
{
	struct pending *p = &f->q[(f->qhead + f->qlen - 1) % FLOW_MAX_PIPELINE];
	size_t used, off, dl;
	int r = http_body_step(&f->rq_body, buf_head(&f->req_in), buf_used(&f->req_in), f->g_eof,
			       &used, &off, &dl);
	if (r < 0) {
		flow_refuse(f, 400, "matchlock: malformed request body framing");
		return false;
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
		return true;
	}
	return used != 0;
}

/* A request that carries the placeholder of a secret not scoped to this host: 403. */
static void rq_refuse_leak(struct flow *f, struct pending *p, const struct secret *leak)
{
	char hosts[300] = "", reason[1024]; /* two names and the list of hosts */
	for (unsigned i = 0, k = 0; i < leak->nhosts && k < sizeof(hosts) - 1; i++)
		k += (unsigned)snprintf(hosts + k, sizeof(hosts) - k, "%s%s", i ? "," : "",
					leak->hosts[i]);
	snprintf(reason, sizeof(reason),
		 "matchlock: request to %s blocked: it carries the "
		 "placeholder of secret %s, which may only be sent to %s (secret_leak)",
		 f->name, leak->name, hosts);
	request_event(f, p, 403, false, reason, NET_EV_SECRET_LEAK, leak->name);
	request_event(f, p, 403, false, reason, NET_EV_REQUEST, leak->name);
	flow_refuse(f, 403, reason);
}

/* RQ_HEAD: parse, check and rewrite the next request head, then stream its body. */
static bool rq_head(struct flow *f)
{
	const struct secrets *ss = f->m->ss;
	if (!buf_used(&f->req_in) || f->qlen >= FLOW_MAX_PIPELINE)
		return false;
	long hl = http_head_len(buf_head(&f->req_in), buf_used(&f->req_in), HTTP_MAX_HEAD);
	if (hl == 0 && !f->g_eof)
		return false;
	struct http_msg m;
	const char *why = "an incomplete request head";
	char reason[1024]; /* up to three names and a list of hosts */
	if (hl <= 0 || http_parse_request(buf_head(&f->req_in), (size_t)hl, &m, &why) < 0) {
		if (hl < 0)
			why = "a request head larger than 16 KiB";
		snprintf(reason, sizeof(reason), "matchlock: bad request to %s: %s", f->name, why);
		flow_event(f, NET_EV_HTTP, false, reason, NULL);
		flow_refuse(f, 400, reason);
		return false;
	}
	const uint8_t *head = buf_head(&f->req_in);
	struct pending *p = &f->q[(f->qhead + f->qlen) % FLOW_MAX_PIPELINE];
	pending_fill(f, p, head, &m);
	if (strcmp(m.host, f->name)) {
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s blocked: Host %s does not "
			 "match the TLS server name %s",
			 f->name, m.host, f->name);
		request_event(f, p, 403, false, reason, NET_EV_REQUEST, NULL);
		flow_refuse(f, 403, reason);
		return false;
	}
	if (f->u_failed) {
		snprintf(reason, sizeof(reason), "matchlock: request to %s failed: %s", f->name,
			 f->u_why);
		request_event(f, p, 502, false, reason, NET_EV_REQUEST, NULL);
		snprintf(reason, sizeof(reason), "matchlock: request to %s failed: %s", f->name,
			 f->u_guest);
		flow_refuse(f, 502, reason);
		return false;
	}
	const struct secret *leak = NULL;
	size_t before = buf_used(&f->req_out);
	int r = ss && ss->n ? secrets_rewrite_request(ss, f->name, head, &m, true, &f->req_out,
						      &leak, &f->scrub)
			    : buf_append(&f->req_out, head, (size_t)hl);
	if (r == -EPERM) {
		rq_refuse_leak(f, p, leak);
		return false;
	}
	if (r < 0) {
		f->req_out.len = f->req_out.off + before;
		flow_refuse(f, 400, "matchlock: malformed request head");
		return false;
	}
	f->qlen++;
	buf_consume(&f->req_in, (size_t)hl);
	f->rq_chunked = m.framing == HTTP_BODY_CHUNKED;
	http_body_init(&f->rq_body, m.framing, m.length);
	f->rq = RQ_BODY;
	return true;
}

void proxy_requests_run(struct flow *f)
{
	if (f->h2) {
		h2_requests_run(f);
		return;
	}
	bool more = true;
	while (more && buf_used(&f->req_out) < FLOW_BUF_HIGH) {
		switch (f->rq) {
		case RQ_HEAD:
			more = rq_head(f);
			break;
		case RQ_BODY:
			more = rq_body(f);
			break;
		case RQ_TUNNEL:
			more = rq_tunnel(f);
			break;
		case RQ_WAIT_UPGRADE:
		case RQ_STOPPED:
			more = false;
			break;
		}
	}
}

/* Send a response body piece to the guest: scrubbed, in the framing chosen for it. */
static void response_data(struct flow *f, const uint8_t *p, size_t n, bool final)
{
	struct buf out = { 0 };
	scrub_feed(f->m->ss, &f->scrub, p, n, final, &out);
	if (buf_used(&out)) {
		if (f->rs_chunked_out) {
			char sz[24];
			int k = snprintf(sz, sizeof(sz), "%zx\r\n", buf_used(&out));
			tls_guest_write(f, sz, (size_t)k);
		}
		tls_guest_write(f, buf_head(&out), buf_used(&out));
		if (f->rs_chunked_out)
			tls_guest_write(f, "\r\n", 2);
	}
	buf_wipe(&out);
}

static void response_done(struct flow *f)
{
	struct pending *p = q_front(f);
	response_data(f, NULL, 0, true);
	if (f->rs_chunked_out)
		tls_guest_write(f, "0\r\n\r\n", 5);
	if (p) {
		request_event(f, p, f->rs_msg.status, true, "rule matched", NET_EV_REQUEST, NULL);
		q_pop(f);
	}
	f->rs = RS_HEAD;
	if (f->rs_close_after)
		f->closing = true;
}

/* RS_TUNNEL: the upstream's bytes go to the guest as they are. */
static bool rs_tunnel(struct flow *f)
{
	struct pending *p = q_front(f);
	if (p)
		p->down += buf_used(&f->resp_in);
	tls_guest_write(f, buf_head(&f->resp_in), buf_used(&f->resp_in));
	buf_consume(&f->resp_in, buf_used(&f->resp_in));
	return false;
}

/* RS_BODY: one step of the response body, scrubbed. */
static bool rs_body(struct flow *f)
{
	size_t used, off, dl;
	int r = http_body_step(&f->rs_body, buf_head(&f->resp_in), buf_used(&f->resp_in), f->u_eof,
			       &used, &off, &dl);
	if (r < 0) {
		struct pending *p = q_front(f);
		if (p)
			request_event(f, p, f->rs_msg.status, true,
				      "the upstream response ended early or was malformed",
				      NET_EV_REQUEST, NULL);
		f->failed = true;
		return false;
	}
	if (dl) {
		response_data(f, buf_head(&f->resp_in) + off, dl, false);
		if (q_front(f))
			q_front(f)->down += dl;
	}
	buf_consume(&f->resp_in, used);
	if (r == 1) {
		response_done(f);
		return !f->closing;
	}
	return used != 0;
}

/* A response head that cannot be parsed, or that nobody asked for: 502, and the flow ends. */
static void rs_refuse(struct flow *f, struct pending *p, const char *why)
{
	char reason[600];
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
}

/*
 * The head the guest gets for response m (head h) to p, before scrubbing: re-framed as chunked
 * (HTTP/1.1) or close-delimited (HTTP/1.0) when secrets may change the body's length.
 */
static void rs_head_out(struct flow *f, const struct pending *p, const struct http_msg *m,
			const uint8_t *h, struct buf *head)
{
	static const char *const framing_headers[] = { "content-length", "transfer-encoding",
						       NULL };
	static const char *const framing_and_connection[] = { "content-length", "transfer-encoding",
							      "connection", NULL };
	const struct secrets *ss = f->m->ss;
	bool body = m->framing != HTTP_BODY_NONE, scrubbing = body && ss && ss->n;
	f->rs_chunked_out = false;
	f->rs_close_after = m->close || m->framing == HTTP_BODY_CLOSE;
	if (m->status < 200 || !scrubbing) {
		/* 1xx and 101 pass as they are; a chunked body is re-encoded chunk by chunk
		   (trailers dropped). */
		f->rs_chunked_out = m->status >= 200 && m->framing == HTTP_BODY_CHUNKED;
		buf_append(head, h, m->head_len);
	} else if (p->minor == 1) {
		http_head_filter(h, m, framing_headers, "Transfer-Encoding: chunked\r\n", head);
		f->rs_chunked_out = true;
	} else {
		http_head_filter(h, m, framing_and_connection, "Connection: close\r\n", head);
		f->rs_close_after = true;
	}
}

/* RS_HEAD: the next response head, for the oldest pending request. */
static bool rs_head(struct flow *f)
{
	if (!buf_used(&f->resp_in))
		return false;
	long hl =
	    http_head_len(buf_head(&f->resp_in), buf_used(&f->resp_in), HTTP_MAX_RESPONSE_HEAD);
	if (hl == 0 && !f->u_eof)
		return false;
	struct pending *p = q_front(f);
	const char *why = "an incomplete response head";
	struct http_msg *m = &f->rs_msg;
	if (hl <= 0 || !p ||
	    http_parse_response(buf_head(&f->resp_in), (size_t)hl, !strcmp(p->method, "HEAD"), m,
				&why) < 0) {
		rs_refuse(f, p, why);
		return false;
	}
	struct buf head = { 0 }, scrubbed = { 0 };
	rs_head_out(f, p, m, buf_head(&f->resp_in), &head);
	scrub_all(f->m->ss, &f->scrub, buf_head(&head), buf_used(&head), &scrubbed);
	tls_guest_write(f, buf_head(&scrubbed), buf_used(&scrubbed));
	buf_wipe(&head);
	buf_wipe(&scrubbed);
	buf_consume(&f->resp_in, (size_t)hl);
	if (m->status == 101 && p->upgrade) {
		f->rs = RS_TUNNEL;
		f->rq = RQ_TUNNEL;
		request_event(f, p, 101, true, "upgraded to a WebSocket tunnel", NET_EV_REQUEST,
			      NULL);
		return true;
	}
	if (m->status < 200)
		return true; /* 100 Continue and friends: the real response follows */
	if (p->upgrade && f->rq == RQ_WAIT_UPGRADE)
		f->rq = RQ_HEAD;
	http_body_init(&f->rs_body, m->framing, m->length);
	f->rs = RS_BODY;
	return true;
}

void proxy_responses_run(struct flow *f)
{
	if (f->h2) {
		h2_responses_run(f);
		return;
	}
	if (f->u_h2)
		return; /* HTTP/2 frames: proxy_h2.c takes them once the guest's handshake ends */
	bool more = true;
	while (more && buf_used(&f->to_guest) + buf_used(&f->g_plain) < FLOW_BUF_HIGH) {
		switch (f->rs) {
		case RS_HEAD:
			more = rs_head(f);
			break;
		case RS_BODY:
			more = rs_body(f);
			break;
		case RS_TUNNEL:
			more = rs_tunnel(f);
			break;
		}
	}
}
