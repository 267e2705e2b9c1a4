/* SPDX-License-Identifier: MIT */
/*
 * The HTTP/1 proxy inside an intercepted TLS connection (a flow; tls.c moves its bytes).
 *
 * States and transitions. Requests (guest -> upstream), one function per state:
 *   RQ_HEAD    a request head is parsed (http.h), checked (Host = the TLS server name, the
 *              upstream is up, no secret placeholder headed elsewhere), its body planned
 *              (rq_body_plan: substituted or only inspected, and its framing upstream),
 *              rewritten (secrets.h) and queued as pending -> RQ_BODY; refused
 *              (400/403/413/415/502) -> RQ_STOPPED.
 *   RQ_BODY    the body streams through its framing and the substituter (secrets_body):
 *              as it came (its length cannot change), re-chunked (trailers kept), or held
 *              whole and sent with its new Content-Length -> RQ_HEAD at its end, or
 *              RQ_WAIT_UPGRADE after a WebSocket upgrade request; a placeholder headed
 *              elsewhere -> 403 and RQ_STOPPED, the upstream reset if part of the body left.
 *   RQ_WAIT_UPGRADE  nothing passes until the upstream answers: 101 -> RQ_TUNNEL, else RQ_HEAD.
 *   RQ_TUNNEL  no longer HTTP: WebSocket frames (ws.h) when the sandbox has secrets, their
 *              placeholders put in (ws_secrets_up); else bytes as they are. A placeholder
 *              headed elsewhere, or a frame the parser refuses -> both sides get a close
 *              frame (1008 or 1002/1009), RQ_STOPPED and RS_CLOSED, the connection ends.
 *   RQ_STOPPED nothing more is read; the refusal goes out after the responses still owed.
 * Responses (upstream -> guest), in request order:
 *   RS_HEAD    a response head for the oldest pending request; 1xx passes and stays here;
 *              101 to an upgrade -> RS_TUNNEL (with secrets: a 101 that agrees to an
 *              extension, which the proxy took out of the offer, is refused: 502 and the
 *              flow ends); otherwise re-framed when secrets are scrubbed
 *              -> RS_BODY; a malformed head answers 502 and ends the flow.
 *   RS_BODY    the body streams, scrubbed of secret values (a compressed one decoded,
 *              scrubbed and encoded again, codec.h) -> RS_HEAD at its end (the pending
 *              request is done and logged), or the flow closes (Connection: close).
 *   RS_TUNNEL  no longer HTTP: WebSocket frames, scrubbed (ws_secrets_down), or bytes.
 *   RS_CLOSED  the WebSocket relay ended the connection: nothing more passes.
 * WebSockets with secrets: the upgrade request goes without Sec-WebSocket-Extensions, so no
 * permessage-deflate (or any extension) is agreed and frames carry plain payload the proxy
 * can read, re-fragment and re-mask.
 */
#define _GNU_SOURCE
#include "flow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy_hooks.h"
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

/* The value of the first field called name in head (parsed into m), or NULL. */
static const uint8_t *field_value(const uint8_t *head, const struct http_msg *m, const char *name,
				  size_t *n)
{
	for (unsigned i = 0; i < m->nfields; i++) {
		if (http_field_is(head, &m->field[i], name)) {
			*n = m->field[i].value_len;
			return head + m->field[i].value_off;
		}
	}
	*n = 0;
	return NULL;
}

/* Why a request that carries leak's placeholder toward this flow's host is refused. */
static void leak_reason(struct flow *f, const struct secret *leak, const char *where, char *reason,
			size_t n)
{
	char hosts[300] = ""; /* the list of hosts */
	if (leak->kind == SECRET_AWS_SECRET_KEY) {
		snprintf(reason, n,
			 "matchlock: request to %s blocked: %s the placeholder of %s, the AWS "
			 "secret access key, which is never sent anywhere: the proxy signs with it "
			 "(secret_leak)",
			 f->name, where, leak->name);
		return;
	}
	for (unsigned i = 0, k = 0; i < leak->nhosts && k < sizeof(hosts) - 1; i++)
		k += (unsigned)snprintf(hosts + k, sizeof(hosts) - k, "%s%s", i ? "," : "",
					leak->hosts[i]);
	snprintf(reason, n,
		 "matchlock: request to %s blocked: %s the "
		 "placeholder of secret %s, which may only be sent to %s (secret_leak)",
		 f->name, where, leak->name, hosts);
}

/* A request whose head carries the placeholder of a secret not scoped to this host: 403. */
static void rq_refuse_leak(struct flow *f, struct pending *p, const struct secret *leak)
{
	char reason[1024]; /* two names and the list of hosts */
	leak_reason(f, leak, "it carries", reason, sizeof(reason));
	request_event(f, p, 403, false, reason, NET_EV_SECRET_LEAK, leak->name);
	request_event(f, p, 403, false, reason, NET_EV_REQUEST, leak->name);
	flow_refuse(f, 403, reason);
}

#define WS_STEP (16u * 1024) /* frame bytes relayed per step: the output buffers stay bounded */

/*
 * The WebSocket relay of one direction (from_guest or not) refused what it read (err from
 * ws_relay_feed): both sides get a close frame with the code and reason, an event says why,
 * and the connection ends once the close frames are out.
 */
static void ws_fail(struct flow *f, int err, bool from_guest)
{
	const struct ws_parser *ps = from_guest ? &f->ws_up.ps : &f->ws_down.ps;
	const struct secret *leak = f->ws_sec.leak;
	char reason[256], ev[1024]; /* reason: cut to WS_MAX_REASON; ev: two names and hosts */
	uint16_t code = WS_CLOSE_INTERNAL;
	if (err == -EPERM && leak) {
		code = WS_CLOSE_POLICY;
		snprintf(reason, sizeof(reason),
			 "matchlock: secret %.64s may not be sent to this host", leak->name);
		leak_reason(f, leak, "a WebSocket message carries", ev, sizeof(ev));
	} else if ((err == -EPROTO || err == -EMSGSIZE) && ps->why) {
		code = ps->code;
		snprintf(reason, sizeof(reason), "matchlock: %s", ps->why);
		snprintf(ev, sizeof(ev), "matchlock: WebSocket to %s closed: %s from the %s",
			 f->name, ps->why, from_guest ? "guest" : "upstream");
	} else {
		snprintf(reason, sizeof(reason), "matchlock: out of memory");
		snprintf(ev, sizeof(ev), "matchlock: WebSocket to %s closed: out of memory",
			 f->name);
	}
	struct pending *p = q_front(f);
	if (p && code == WS_CLOSE_POLICY)
		request_event(f, p, 101, false, ev, NET_EV_SECRET_LEAK, leak->name);
	if (p)
		request_event(f, p, 101, false, ev, NET_EV_REQUEST,
			      code == WS_CLOSE_POLICY ? leak->name : NULL);
	struct buf g = { 0 };
	ws_relay_close(&f->ws_down, code, reason, &g);
	tls_guest_write(f, buf_head(&g), buf_used(&g));
	buf_fini(&g);
	ws_relay_close(&f->ws_up, code, reason, &f->req_out);
	buf_wipe(&f->req_in);
	buf_wipe(&f->resp_in);
	f->rq = RQ_STOPPED;
	f->rs = RS_CLOSED;
	tls_close_both(f);
}

/*
 * After a 101 to the upgrade p: with secrets, the tunnel relays WebSocket frames through
 * ws_sec. A 101 that agrees to an extension is refused (we took them all out of the offer):
 * -EPROTO.
 */
static int ws_start(struct flow *f, const uint8_t *head, const struct http_msg *m)
{
	const struct secrets *ss = f->m->ss;
	size_t n;
	if (!ss || !ss->n)
		return 0;
	if (field_value(head, m, "sec-websocket-extensions", &n))
		return -EPROTO;
	ws_relay_init(&f->ws_up, true);
	ws_relay_init(&f->ws_down, false);
	ws_secrets_init(&f->ws_sec, ss, f->name, &f->scrub);
	f->ws_on = true;
	return 0;
}

/* RQ_TUNNEL: the guest's frames go upstream with placeholders put in (or its bytes as they
   are). */
static bool rq_tunnel(struct flow *f)
{
	size_t n = buf_used(&f->req_in);
	if (!n)
		return false;
	size_t before = buf_used(&f->req_out);
	if (!f->ws_on) {
		buf_append(&f->req_out, buf_head(&f->req_in), n);
	} else {
		struct ws_filter up = { ws_secrets_up, &f->ws_sec };
		n = n < WS_STEP ? n : WS_STEP;
		int r = ws_relay_feed(&f->ws_up, buf_head(&f->req_in), n, &up, &f->req_out);
		if (r < 0) {
			ws_fail(f, r, true);
			return false;
		}
	}
	if (f->qlen)
		f->q[f->qhead].up += buf_used(&f->req_out) - before;
	buf_consume_wiped(&f->req_in, n);
	return buf_used(&f->req_in) != 0;
}

/*
 * A decoder for kind, counted against the sandbox's MITM_WIDE_CODECS_MAX when it is br or zstd
 * (*wide says so; give it back with codec_release). Returns 0, -EBUSY (the sandbox runs as many
 * as it may) or -ENOMEM.
 */
int codec_take(struct flow *f, enum codec_kind kind, struct codec **c, bool *wide)
{
	*wide = kind == CODEC_BR || kind == CODEC_ZSTD;
	if (*wide && f->m->wide_codecs >= MITM_WIDE_CODECS_MAX) {
		*wide = false;
		return -EBUSY;
	}
	*c = codec_new(kind, false, false);
	if (!*c) {
		*wide = false;
		return -ENOMEM;
	}
	f->m->wide_codecs += *wide;
	return 0;
}

/* Free c (and enc, its encoder, when given), and give back its place if it was wide. */
void codec_release(struct flow *f, struct codec **c, struct codec **enc, bool *wide)
{
	codec_free(*c);
	*c = NULL;
	if (enc) {
		codec_free(*enc);
		*enc = NULL;
	}
	f->m->wide_codecs -= *wide;
	*wide = false;
}

/* The request body's state is done with (it ended or was refused). */
static void rq_body_reset(struct flow *f)
{
	secrets_body_fini(&f->rq_subst);
	f->rq_subst = (struct secrets_body){ 0 };
	f->rq_subst_on = false;
	codec_release(f, &f->rq_inspect, NULL, &f->rq_wide);
	buf_wipe(&f->rq_held);
	f->m->held -= buf_used(&f->rq_held_body);
	buf_wipe(&f->rq_held_body);
	buf_wipe(&f->rq_trailers);
	sigv4_flow_end(f);
}

void proxy_fini(struct flow *f)
{
	/* The translators are the proxy's: whoever ends a flow (tls.c, a harness) ends them here.
	 */
	h2_free(f->h2);
	f->h2 = NULL;
	up2_free(f->up2);
	f->up2 = NULL;
	proxy_hooks_fini(f);
	rq_body_reset(f);
	if (f->ws_on) {
		ws_secrets_fini(&f->ws_sec);
		ws_relay_fini(&f->ws_up);
		ws_relay_fini(&f->ws_down);
	}
	codec_release(f, &f->rs_dec, &f->rs_enc, &f->rs_wide);
}

/*
 * A SigV4 request refused (proxy_sigv4.c said why): 403 is a signature not made with the
 * placeholder secret key, reported as a secret_leak. queued: p was counted in qlen.
 */
static void rq_refuse_sigv4(struct flow *f, struct pending *p, int status, const char *reason,
			    bool queued)
{
	const struct secret *key = secrets_aws(f->m->ss, SECRET_AWS_SECRET_KEY);
	const char *name = status == 403 && key ? key->name : NULL;
	if (name)
		request_event(f, p, status, false, reason, NET_EV_SECRET_LEAK, name);
	request_event(f, p, status, false, reason, NET_EV_REQUEST, name);
	rq_body_reset(f);
	if (queued)
		f->qlen--;
	flow_refuse(f, status, reason);
}

/*
 * The request p (the newest pending one) is refused in its body (err from the substituter or
 * the decoder). Held bodies never left: the guest gets the refusal after the responses still
 * owed. A body that was streaming has partly gone upstream: the upstream connection is reset so
 * the request never completes, and the guest gets the refusal if its responses are at a
 * boundary (else it sees the connection end).
 */
static void rq_body_refuse(struct flow *f, struct pending *p, int err)
{
	char reason[1024]; /* two names and the list of hosts */
	int status;
	const struct secret *s = f->rq_subst.leak;
	switch (err) {
	case -EPERM:
		status = 403;
		leak_reason(f, s, "its body carries", reason, sizeof(reason));
		request_event(f, p, status, false, reason, NET_EV_SECRET_LEAK, s->name);
		break;
	case -ENOTSUP:
		status = 415;
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s refused: the placeholder of secret %s is inside "
			 "%s",
			 f->name, s->name,
			 f->sv ? "an AWS SigV4-signed body, which the proxy does not change (its "
				 "signature covers it)"
			       : "a compressed (Content-Encoding) body, where the proxy does not "
				 "replace it; send the body uncompressed");
		break;
	case -EFBIG:
		status = 413;
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s refused: its compressed body expands more than "
			 "%ux",
			 f->name, CODEC_MAX_RATIO);
		break;
	case -EPROTO:
		status = 400;
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s refused: its body is not valid data of its "
			 "Content-Encoding",
			 f->name);
		break;
	case -EKEYREJECTED: {
		status = 403;
		const struct secret *key = secrets_aws(f->m->ss, SECRET_AWS_SECRET_KEY);
		snprintf(
		    reason, sizeof(reason),
		    "matchlock: request to %s blocked: a chunk of its aws-chunked body was not "
		    "signed with the sandbox's placeholder secret key ($%s) (secret_leak)",
		    f->name, key->name);
		request_event(f, p, status, false, reason, NET_EV_SECRET_LEAK, key->name);
		break;
	}
	case -EMSGSIZE:
		status = 413;
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s refused: a signed chunk of its aws-chunked body "
			 "is over 1 MiB (the proxy holds each to sign it again)",
			 f->name);
		break;
	case -E2BIG:
		status = 413;
		snprintf(reason, sizeof(reason),
			 "matchlock: request to %s refused: with secret values put in, its body "
			 "grows past %u MiB (or the sandbox holds %u MiB of such bodies already)",
			 f->name, FLOW_HELD_OUT_MAX >> 20, MITM_HELD_MAX >> 20);
		break;
	default:
		status = 503;
		snprintf(reason, sizeof(reason), "matchlock: request to %s failed: out of memory",
			 f->name);
	}
	request_event(f, p, status, false, reason, NET_EV_REQUEST, s ? s->name : NULL);
	bool sent = f->rq_frame != RQF_HELD;
	rq_body_reset(f);
	f->qlen--; /* it gets no response from upstream */
	flow_refuse(f, status, reason);
	if (sent) {
		tls_upstream_reset(f);
		if (f->qlen || f->rs != RS_HEAD)
			buf_fini(&f->final);
	}
}

/*
 * A piece of the body of request p (final: its end), through the substituter (or, compressed,
 * inspected beside it), out in the framing chosen. Returns false when the request was refused.
 */
/*
 * The common case of rq_body_data, without a copy: the body goes through the substituter (or as
 * it is) straight into req_out, as it came or as one chunk whose size line is patched in after
 * (fixed width: leading zeros are valid). Returns 0 or the substituter's error (nothing of
 * this piece is left in req_out then).
 */
#define RQ_CHUNK_LINE 10 /* "%08zx\r\n" */
static int rq_body_direct(struct flow *f, struct pending *p, const uint8_t *data, size_t n,
			  bool final)
{
	struct buf *o = &f->req_out;
	bool chunked = f->rq_frame == RQF_CHUNKED;
	size_t mark = buf_used(o), line = chunked ? RQ_CHUNK_LINE : 0;
	int r = chunked ? buf_append(o, "00000000\r\n", RQ_CHUNK_LINE) : 0;
	if (r == 0)
		r = f->rq_subst_on ? secrets_body_feed(&f->rq_subst, data, n, final, o)
				   : buf_append(o, data, n);
	size_t k = buf_used(o) - mark - line;
	if (r == 0 && o->bad)
		r = -ENOMEM;
	if (r < 0 || !k) {
		/* Nothing of it goes: what this piece put in is taken back (and wiped). */
		explicit_bzero(buf_head(o) + mark, buf_used(o) - mark);
		o->len = o->off + mark;
		return r;
	}
	if (chunked) {
		char sz[24];
		snprintf(sz, sizeof(sz), "%08zx\r\n", k);
		memcpy(buf_head(o) + mark, sz, RQ_CHUNK_LINE);
		buf_append(o, "\r\n", 2);
	}
	p->up += k;
	return 0;
}

static bool rq_body_data(struct flow *f, struct pending *p, const uint8_t *data, size_t n,
			 bool final)
{
	struct buf out = { 0 };
	int r = 0;
	if (f->rq_frame != RQF_HELD && !f->rq_inspect && !f->sv && n < 0xffffff00u) {
		r = rq_body_direct(f, p, data, n, final);
		if (r < 0)
			rq_body_refuse(f, p, r);
		return r == 0;
	}
	if (f->sv && sigv4_signs_chunks(f->sv)) {
		/* Signed chunks are only checked for placeholders (raw, as they come). */
		struct buf sink = { 0 };
		r = secrets_body_feed(&f->rq_subst, data, n, final, &sink);
		buf_wipe(&sink);
		if (r == 0)
			r = sigv4_chunks_feed(f, data, n, final, &out);
	} else if (!f->rq_subst_on) {
		r = buf_append(&out, data, n);
	} else if (f->rq_inspect) {
		struct buf dec = { 0 }, sink = { 0 };
		r = buf_append(&out, data, n);
		if (r == 0)
			r = codec_feed(f->rq_inspect, data, n, final, &dec);
		if (r == 0)
			r = secrets_body_feed(&f->rq_subst, buf_head(&dec), buf_used(&dec), final,
					      &sink);
		buf_wipe(&dec);
		buf_wipe(&sink);
	} else {
		r = secrets_body_feed(&f->rq_subst, data, n, final, &out);
	}
	size_t k = buf_used(&out);
	if (r == 0 && f->rq_frame == RQF_HELD &&
	    (buf_used(&f->rq_held_body) + k > FLOW_HELD_OUT_MAX || f->m->held + k > MITM_HELD_MAX))
		r = -E2BIG;
	if (r < 0) {
		buf_wipe(&out);
		rq_body_refuse(f, p, r);
		return false;
	}
	if (k) {
		char sz[24];
		int z = snprintf(sz, sizeof(sz), "%zx\r\n", k);
		switch (f->rq_frame) {
		case RQF_HELD:
			f->m->held -= buf_used(&f->rq_held_body);
			buf_append(&f->rq_held_body, buf_head(&out), k);
			f->m->held += buf_used(&f->rq_held_body);
			break;
		case RQF_CHUNKED:
			buf_append(&f->req_out, sz, (size_t)z);
			buf_append(&f->req_out, buf_head(&out), k);
			buf_append(&f->req_out, "\r\n", 2);
			break;
		case RQF_AS_IS:
			buf_append(&f->req_out, buf_head(&out), k);
			break;
		}
		p->up += k;
	}
	buf_wipe(&out);
	return true;
}

/* The body of p ended: flush the substituter, then the framing's end. */
static bool rq_body_end(struct flow *f, struct pending *p)
{
	if (!rq_body_data(f, p, NULL, 0, true))
		return false;
	if (f->rq_frame == RQF_CHUNKED) {
		/* Trailers are header fields: placeholders in them are replaced as in a head. */
		struct buf t = { 0 };
		int r = buf_append(&t, "0\r\n", 3);
		if (f->rq_subst_on && r == 0) {
			struct secrets_body tb;
			secrets_body_init(&tb, f->m->ss, f->name, SECRETS_BODY_RAW, false);
			r = secrets_body_feed(&tb, buf_head(&f->rq_trailers),
					      buf_used(&f->rq_trailers), true, &t);
			f->rq_subst.leak = tb.leak;
			secrets_body_fini(&tb);
		} else if (r == 0) {
			r = buf_append(&t, buf_head(&f->rq_trailers), buf_used(&f->rq_trailers));
		}
		if (r == 0)
			r = buf_append(&t, "\r\n", 2);
		if (r < 0) {
			buf_wipe(&t);
			rq_body_refuse(f, p, r);
			return false;
		}
		buf_append(&f->req_out, buf_head(&t), buf_used(&t));
		buf_wipe(&t);
	} else if (f->rq_frame == RQF_HELD) {
		if (f->rq_held.bad || f->rq_held_body.bad) {
			rq_body_refuse(f, p, -ENOMEM); /* never a body cut short */
			return false;
		}
		/* The head without its empty line, the corrected length, the body. */
		char cl[48];
		int z = snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n\r\n",
				 buf_used(&f->rq_held_body));
		f->rq_held.len -= 2;
		buf_append(&f->rq_held, cl, (size_t)z);
		if (f->sv) {
			char reason[600];
			int status =
			    f->rq_held.bad
				? 503
				: sigv4_finish(f, &f->rq_held, 0, buf_head(&f->rq_held_body),
					       buf_used(&f->rq_held_body), reason, sizeof(reason));
			if (status) {
				if (f->rq_held.bad)
					snprintf(reason, sizeof(reason),
						 "matchlock: request to %s failed: out of memory",
						 f->name);
				rq_refuse_sigv4(f, p, status, reason, true);
				return false;
			}
		}
		buf_append(&f->req_out, buf_head(&f->rq_held), buf_used(&f->rq_held));
		buf_append(&f->req_out, buf_head(&f->rq_held_body), buf_used(&f->rq_held_body));
	}
	rq_body_reset(f);
	f->rq = p->upgrade ? RQ_WAIT_UPGRADE : RQ_HEAD;
	return true;
}

/* RQ_BODY: one step of the request body. */
static bool rq_body(struct flow *f)
{
	struct pending *p = &f->q[(f->qhead + f->qlen - 1) % FLOW_MAX_PIPELINE];
	size_t used, off, dl;
	bool trailer = http_body_in_trailer(&f->rq_body);
	int r = http_body_step(&f->rq_body, buf_head(&f->req_in), buf_used(&f->req_in), f->g_eof,
			       &used, &off, &dl);
	if (r < 0) {
		rq_body_reset(f);
		flow_refuse(f, 400, "matchlock: malformed request body framing");
		return false;
	}
	if (dl && !rq_body_data(f, p, buf_head(&f->req_in) + off, dl, false))
		return false;
	if (trailer && r == 0)
		buf_append(&f->rq_trailers, buf_head(&f->req_in), used);
	buf_consume(&f->req_in, used);
	if (r == 1)
		return rq_body_end(f, p);
	return used != 0;
}

/*
 * How the body of request m (head) goes upstream, decided before its head does: through the
 * substituter when the sandbox has secrets; a compressed body passes as it is and is only
 * inspected (decoded beside it); framing RQF_AS_IS unless values may change its length
 * (a secret is scoped to this host): then RQF_HELD up to FLOW_HELD_BODY_MAX (while the
 * sandbox's flows hold less than MITM_HELD_MAX), re-chunked beyond.
 * Returns 0, or the status of a refusal (reason written) before anything went upstream.
 */
static int rq_body_plan(struct flow *f, const uint8_t *head, const struct http_msg *m, char *reason,
			size_t rn)
{
	const struct secrets *ss = f->m->ss;
	f->rq_frame = m->framing == HTTP_BODY_CHUNKED ? RQF_CHUNKED : RQF_AS_IS;
	f->rq_subst_on = false;
	if (!ss || !ss->n || m->framing == HTTP_BODY_NONE)
		return 0;
	size_t n;
	const uint8_t *ce = field_value(head, m, "content-encoding", &n);
	enum codec_kind kind = codec_kind_of(ce, n);
	/* aws-chunked frames a SigV4 streaming body itself: it passes as it is, inspected raw. */
	if (kind == CODEC_OTHER && f->sv && n == 11 &&
	    !strncasecmp((const char *)ce, "aws-chunked", 11))
		kind = CODEC_IDENTITY;
	if (kind == CODEC_OTHER) {
		snprintf(reason, rn,
			 "matchlock: request to %s refused: its body is Content-Encoding %.*s, "
			 "which the proxy cannot look inside for secret placeholders (send it "
			 "uncompressed, gzip, deflate, br or zstd)",
			 f->name, (int)(n < 40 ? n : 40), (const char *)ce);
		return 415;
	}
	const uint8_t *ct = field_value(head, m, "content-type", &n);
	/* A SigV4-signed body is never changed: its signature covers it. */
	secrets_body_init(&f->rq_subst, ss, f->name, secrets_body_enc_for(ct, n),
			  kind != CODEC_IDENTITY || f->sv);
	f->rq_subst_on = true;
	if (kind != CODEC_IDENTITY) {
		int r = codec_take(f, kind, &f->rq_inspect, &f->rq_wide);
		if (r < 0) {
			snprintf(reason, rn, "matchlock: request to %s failed: %s", f->name,
				 r == -EBUSY
				     ? "the sandbox decodes as many br/zstd bodies as it may "
				       "at once; retry"
				     : "out of memory");
			return 503;
		}
	}
	if (f->sv && sigv4_needs_body(f)) {
		/* Held to hash it (sigv4_begin allowed only a Content-Length body that fits). */
		if (f->m->held + m->length > MITM_HELD_MAX) {
			snprintf(reason, rn,
				 "matchlock: request to %s failed: the sandbox holds %u MiB of "
				 "request bodies already; retry",
				 f->name, MITM_HELD_MAX >> 20);
			return 503;
		}
		f->rq_frame = RQF_HELD;
	}
	if (kind != CODEC_IDENTITY || f->sv)
		return 0;
	if (!secrets_host_bound(ss, f->name) || m->framing == HTTP_BODY_CHUNKED)
		return 0;
	if (m->length <= FLOW_HELD_BODY_MAX && f->m->held + m->length <= MITM_HELD_MAX) {
		f->rq_frame = RQF_HELD;
	} else if (m->minor == 1) {
		f->rq_frame = RQF_CHUNKED;
	} else {
		snprintf(reason, rn,
			 "matchlock: request to %s refused: a body over %u MiB toward a secret's "
			 "host is re-sent chunked, which needs HTTP/1.1",
			 f->name, FLOW_HELD_BODY_MAX >> 20);
		return 413;
	}
	return 0;
}

/*
 * The head that goes upstream for the framing chosen, before secrets are put in: the guest's
 * own (0), or a copy without Content-Length (and, held, without Expect: the proxy says 100
 * Continue itself; a WebSocket upgrade with secrets: without Sec-WebSocket-Extensions) parsed
 * again into alt_m (1). -EPROTO if that fails.
 */
static int rq_head_framed(struct flow *f, const uint8_t *head, const struct http_msg *m,
			  struct buf *alt, struct http_msg *alt_m)
{
	const char *drop[4], *add = NULL, *why;
	unsigned nd = 0;
	if (f->rq_frame == RQF_HELD) {
		drop[nd++] = "content-length";
		drop[nd++] = "expect";
	} else if (f->rq_frame == RQF_CHUNKED && m->framing == HTTP_BODY_LENGTH) {
		drop[nd++] = "content-length";
		add = "Transfer-Encoding: chunked\r\n";
	}
	/* Frames must carry plain payload to be relayed with secrets: no extension offered. */
	if (m->upgrade && f->m->ss && f->m->ss->n)
		drop[nd++] = "sec-websocket-extensions";
	if (!nd)
		return 0;
	drop[nd] = NULL;
	http_head_filter(head, m, drop, add, alt);
	if (alt->bad || http_parse_request(buf_head(alt), buf_used(alt), alt_m, &why) < 0)
		return -EPROTO;
	return 1;
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
	if (m.upgrade && f->up2) {
		snprintf(
		    reason, sizeof(reason),
		    "matchlock: request to %s refused: a WebSocket upgrade needs HTTP/1.1 to the "
		    "upstream, which chose HTTP/2 (connect without offering ALPN http/1.1)",
		    f->name);
		request_event(f, p, 501, false, reason, NET_EV_REQUEST, NULL);
		flow_refuse(f, 501, reason);
		return false;
	}
	/* Hooks first: secrets are put in after them, so no hook sees a value. */
	uint64_t hk_matched;
	uint32_t hk_gen;
	int hk = proxy_hooks_request(f, &m, &hl, &hk_matched, &hk_gen, reason, sizeof(reason));
	if (hk != PROXY_HOOKS_GO) {
		if (hk == PROXY_HOOKS_BLOCK) {
			request_event(f, p, 403, false, reason, NET_EV_REQUEST, NULL);
			flow_refuse(f, 403, reason);
		}
		return false;
	}
	head = buf_head(&f->req_in);
	pending_fill(f, p, head, &m);
	p->hk_matched = hk_matched;
	p->hk_gen = hk_gen;
	const struct secret *leak = NULL;
	int status = ss && ss->n ? sigv4_begin(f, head, &m, reason, sizeof(reason)) : 0;
	if (!status)
		status = rq_body_plan(f, head, &m, reason, sizeof(reason));
	if (status) {
		rq_body_reset(f);
		/* A placeholder headed elsewhere in the head says more than the body's refusal. */
		struct buf scratch = { 0 };
		int lr = ss && ss->n ? secrets_rewrite_request(ss, f->name, head, &m, true,
							       &scratch, &leak, NULL)
				     : 0;
		buf_wipe(&scratch);
		if (lr == -EPERM) {
			rq_refuse_leak(f, p, leak);
			return false;
		}
		request_event(f, p, status, false, reason, NET_EV_REQUEST, NULL);
		flow_refuse(f, status, reason);
		return false;
	}
	struct http_msg alt_m;
	struct buf alt = { 0 };
	int r = rq_head_framed(f, head, &m, &alt, &alt_m);
	const uint8_t *h = r == 1 ? buf_head(&alt) : head;
	const struct http_msg *hm = r == 1 ? &alt_m : &m;
	struct buf *to = f->rq_frame == RQF_HELD ? &f->rq_held : &f->req_out;
	size_t before = buf_used(to);
	if (r >= 0)
		r = ss && ss->n
			? secrets_rewrite_request(ss, f->name, h, hm, true, to, &leak, &f->scrub)
			: buf_append(to, h, hm->head_len);
	buf_fini(&alt);
	if (r < 0) {
		to->len = to->off + before;
		rq_body_reset(f);
		if (r == -EPERM)
			rq_refuse_leak(f, p, leak);
		else
			flow_refuse(f, 400, "matchlock: malformed request head");
		return false;
	}
	/* A SigV4 signature over a known payload hash is checked and made again now. */
	status = f->sv && !sigv4_needs_body(f)
		     ? sigv4_finish(f, to, before, NULL, 0, reason, sizeof(reason))
		     : 0;
	if (status) {
		to->len = to->off + before;
		rq_refuse_sigv4(f, p, status, reason, false);
		return false;
	}
	/* Held, the upstream never sees Expect: the guest hears 100 Continue from us. */
	if (f->rq_frame == RQF_HELD && m.expect_continue && !f->qlen && f->rs == RS_HEAD)
		tls_guest_write(f, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	f->qlen++;
	buf_consume(&f->req_in, (size_t)hl);
	http_body_init(&f->rq_body, m.framing, m.length);
	f->rq = RQ_BODY;
	return true;
}

/*
 * A guest that got http/1.1 (or no ALPN) and opens with the HTTP/2 preface anyway (prior
 * knowledge: httpx with HTTP/1.1 turned off, for one) is taken at its word: the connection
 * becomes HTTP/2, translated to the HTTP/1.1 upstream (proxy_h2.c). Returns whether it did
 * (or waits: the bytes so far may be the preface's start).
 */
static bool h2_prior_knowledge(struct flow *f)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	size_t n = buf_used(&f->req_in), pn = sizeof(preface) - 1;
	if (f->up2 || f->rq != RQ_HEAD || f->qlen || f->qhead || f->rs != RS_HEAD ||
	    memcmp(buf_head(&f->req_in), preface, n < pn ? n : pn))
		return false;
	if (n < pn)
		return !f->g_eof;
	if (h2_start(f, f->u_failed ? H2_UP_FAILED : H2_UP_HTTP1) < 0)
		return false;
	h2_requests_run(f);
	return true;
}

void proxy_requests_run(struct flow *f)
{
	if (f->h2) {
		h2_requests_run(f);
		return;
	}
	if (h2_prior_knowledge(f))
		return;
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

/*
 * A compressed response piece: decoded, scrubbed and encoded again in the same coding (a client
 * that saves the body as it came still gets what the upstream meant to send). Returns 0, or a
 * negative errno when the body cannot be decoded (corrupt, cut short, or a bomb).
 */
static int response_recode(struct flow *f, const uint8_t *p, size_t n, bool final, struct buf *out)
{
	struct buf dec = { 0 }, clean = { 0 };
	int r = codec_feed(f->rs_dec, p, n, final, &dec);
	if (r == 0)
		r = proxy_hooks_scrub_feed(f->m->ss, &f->scrub, f->rs_hk, buf_head(&dec),
					   buf_used(&dec), final, &clean);
	if (r == 0 && !f->rs_enc && buf_used(&clean)) {
		f->rs_enc = codec_new(f->rs_coding, true, codec_raw(f->rs_dec));
		if (!f->rs_enc)
			r = -ENOMEM;
	}
	if (r == 0 && f->rs_enc && (buf_used(&clean) || final))
		r = codec_feed(f->rs_enc, buf_head(&clean), buf_used(&clean), final, out);
	buf_wipe(&dec);
	buf_wipe(&clean);
	return r;
}

/* Send a response body piece to the guest: scrubbed, in the framing chosen for it. */
static void response_data(struct flow *f, const uint8_t *p, size_t n, bool final)
{
	struct buf out = { 0 };
	if (f->rs_dec) {
		int r = response_recode(f, p, n, final, &out);
		if (r < 0) {
			/* What is decoded so far went out scrubbed; the rest cannot be checked. */
			char reason[600];
			snprintf(reason, sizeof(reason),
				 "matchlock: the %s response from %s %s: the connection is cut",
				 codec_name(f->rs_coding), f->name,
				 r == -EFBIG ? "expands more than the bound on decoding"
					     : "cannot be decoded to scrub secrets from it");
			struct pending *q = q_front(f);
			if (q)
				request_event(f, q, f->rs_msg.status, false, reason, NET_EV_REQUEST,
					      NULL);
			f->failed = true;
			buf_wipe(&out);
			return;
		}
	} else {
		proxy_hooks_scrub_feed(f->m->ss, &f->scrub, f->rs_hk, p, n, final, &out);
	}
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
	codec_release(f, &f->rs_dec, &f->rs_enc, &f->rs_wide);
	hooks_body_free(f->rs_hk);
	f->rs_hk = NULL;
	if (f->failed)
		return;
	if (p) {
		request_event(f, p, f->rs_msg.status, true, "rule matched", NET_EV_REQUEST, NULL);
		q_pop(f);
	}
	f->rs = RS_HEAD;
	if (f->rs_close_after)
		f->closing = true;
}

/* RS_TUNNEL: the upstream's frames go to the guest scrubbed (or its bytes as they are). */
static bool rs_tunnel(struct flow *f)
{
	struct pending *p = q_front(f);
	size_t n = buf_used(&f->resp_in);
	if (!n)
		return false;
	if (!f->ws_on) {
		if (p)
			p->down += n;
		tls_guest_write(f, buf_head(&f->resp_in), n);
	} else {
		struct ws_filter down = { ws_secrets_down, &f->ws_sec };
		struct buf out = { 0 };
		n = n < WS_STEP ? n : WS_STEP;
		int r = ws_relay_feed(&f->ws_down, buf_head(&f->resp_in), n, &down, &out);
		if (r < 0) {
			buf_wipe(&out);
			ws_fail(f, r, false);
			return false;
		}
		if (p)
			p->down += buf_used(&out);
		tls_guest_write(f, buf_head(&out), buf_used(&out));
		buf_wipe(&out);
	}
	buf_consume_wiped(&f->resp_in, n);
	return buf_used(&f->resp_in) != 0;
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
		if (f->failed)
			return false;
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
 * (HTTP/1.1) or close-delimited (HTTP/1.0) when secrets may change the body's length; a
 * compressed body (gzip, deflate, br, zstd) gets its decoder (rs_dec). -EPROTONOSUPPORT: a coding
 * the proxy cannot decode, so the body cannot be scrubbed.
 */
static int rs_head_out(struct flow *f, const struct pending *p, const struct http_msg *m,
		       const uint8_t *h, struct buf *head)
{
	static const char *const framing_headers[] = { "content-length", "transfer-encoding",
						       NULL };
	static const char *const framing_and_connection[] = { "content-length", "transfer-encoding",
							      "connection", NULL };
	const struct secrets *ss = f->m->ss;
	bool body = m->framing != HTTP_BODY_NONE,
	     scrubbing = body && ((ss && ss->n) || f->rs_hk); /* hook body edits too */
	f->rs_chunked_out = false;
	f->rs_close_after = m->close || m->framing == HTTP_BODY_CLOSE;
	if (scrubbing && m->status >= 200) {
		/* A compressed body is scrubbed decoded (the guest asked for identity anyway). */
		size_t n;
		const uint8_t *ce = field_value(h, m, "content-encoding", &n);
		f->rs_coding = codec_kind_of(ce, n);
		if (f->rs_coding == CODEC_OTHER)
			return -EPROTONOSUPPORT;
		if (f->rs_coding != CODEC_IDENTITY) {
			int r = codec_take(f, f->rs_coding, &f->rs_dec, &f->rs_wide);
			if (r < 0)
				return r;
		}
	}
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
	return 0;
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
	f->rs_hk = proxy_hooks_body_start(f, f->rs_hk, p->hk_matched, p->hk_gen, m->status);
	int r = rs_head_out(f, p, m, buf_head(&f->resp_in), &head);
	if (r < 0) {
		buf_wipe(&head);
		rs_refuse(
		    f, p,
		    r == -ENOMEM ? "out of memory"
		    : r == -EBUSY
			? "the sandbox decodes as many br/zstd responses as it may at once"
			: "a Content-Encoding the proxy cannot decode to scrub secrets from (it "
			  "decodes gzip, deflate, br and zstd)");
		return false;
	}
	if (m->status == 101 && p->upgrade && ws_start(f, buf_head(&f->resp_in), m) < 0) {
		buf_wipe(&head);
		rs_refuse(f, p,
			  "a WebSocket 101 that agrees to an extension the proxy took out of the "
			  "offer (it relays frames without extensions when secrets are set)");
		return false;
	}
	if (m->status >= 200)
		proxy_hooks_response(f, p->hk_matched, p->hk_gen, !strcmp(p->method, "HEAD"),
				     &head);
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
	if (f->up2)
		up2_pull(f); /* the h2 upstream's responses, as HTTP/1.1 */
	else if (f->u_h2)
		return; /* HTTP/2 frames: proxy_h2.c or proxy_up2.c takes them after the handshake
			 */
	bool more = true;
	while (more && !f->failed &&
	       buf_used(&f->to_guest) + buf_used(&f->g_plain) < FLOW_BUF_HIGH) {
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
		case RS_CLOSED:
			buf_wipe(&f->resp_in);
			more = false;
			break;
		}
	}
}
