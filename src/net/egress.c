/* SPDX-License-Identifier: MIT */
/*
 * The egress engine (egress.h says what it does). One struct conn per SVC_TCP stream.
 *
 * States and transitions of a connection (conn_state):
 *   (open)        the address the guest dialed names an allowed host:port ->
 *                 C_CONNECTING when --add-host pins its address, else C_RESOLVING;
 *                 not allowed -> denied (see below).
 *   C_RESOLVING   the host's resolver works on the name -> C_CONNECTING to an address that
 *                 passes the private-address check; no usable address -> denied.
 *   C_CONNECTING  a non-blocking connect -> C_OPEN; refused or timed out -> denied.
 *   C_OPEN        relaying both ways with half-close and credit; the stream or the socket ends
 *                 -> closed (conn_end).
 *   C_DENY_HTTP   plain HTTP that was denied: the guest's bytes are dropped until its request
 *                 head is in, then it gets a 403 and the stream closes.
 *   C_NO_UPSTREAM intercepted TLS whose upstream was denied or failed: the flow answers 502.
 * Denied: raw TCP is refused at once (the agent resets the guest's socket); plain HTTP ->
 * C_DENY_HTTP; intercepted TLS -> C_NO_UPSTREAM.
 *
 * Independently, what the guest's bytes are (conn_mode), decided by its first bytes:
 *   M_UNKNOWN -> M_TLS    a ClientHello whose SNI is the connection's name (the mitm, tls.c
 *                         and proxy.c, takes the stream over);
 *             -> M_RAW    anything else; an HTTP/1 request line (or port 80) makes it plain
 *                         HTTP: every request head is checked (http_walk) before it goes up,
 *                         and its body is scanned for secret placeholders (after a WebSocket
 *                         upgrade, with secrets: the payloads of its frames, conn_check_ws).
 * Intercepted connections (M_TLS and plain HTTP) end after EGRESS_IDLE_TIMEOUT_S without a
 * byte either way and after EGRESS_MAX_LIFETIME_S open (life_timer); raw relays have no limit.
 */
#define _GNU_SOURCE
#include "egress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addrpool.h"
#include "common/log.h"
#include "common/util.h"
#include "dns.h"
#include "http.h"
#include "mitm.h"
#include "proxy_hooks.h"
#include "proto/msg.h"
#include "resolve.h"
#include "tlshello.h"
#include "ws.h"

#define HTTP_PORT 80

enum conn_state {
	C_RESOLVING, /* waiting for the host's lookup of the name */
	C_CONNECTING, /* nonblocking connect in progress */
	C_OPEN, /* relaying */
	C_DENY_HTTP, /* denied: a 403 goes out once the request head is in */
	C_NO_UPSTREAM, /* intercepted TLS whose upstream failed: the flow answers 502 */
};

enum conn_mode {
	M_UNKNOWN, /* nothing from the guest yet: TLS or not? */
	M_RAW, /* relayed as bytes (plain HTTP gets every request head checked) */
	M_TLS, /* intercepted: c->tls */
};

struct conn {
	struct egress *e;
	struct mux_stream *s;
	struct watch w; /* the upstream socket */
	struct timer connect_timer;
	struct timer life_timer; /* intercepted: the idle and lifetime limits (conn_limits_arm) */
	uint64_t opened, last_io; /* monotonic ns: intercepted since, last byte either way */
	enum conn_state state;
	char name[POLICY_NAME_MAX + 1];
	char dst[INET6_ADDRSTRLEN + 2]; /* what we dial, for messages */
	char reason[300]; /* C_DENY_HTTP: the explanation sent in the 403 */
	uint16_t port;
	int guest_family;
	uint8_t guest_addr[16]; /* the synthetic address the guest dialed */
	bool http; /* plain HTTP: every request head is checked before it goes upstream */
	struct http_walk walk; /* plain HTTP: where the check of the guest's bytes stands */
	struct secrets_body scan; /* plain HTTP: placeholders looked for in request bodies */
	uint8_t resp_pfx[12]; /* walk on hold: the upstream's first bytes ("HTTP/1.1 101") */
	bool ws_on; /* plain HTTP after a WebSocket upgrade, with secrets: frames are looked into */
	struct ws_parser ws; /* ... the guest's frames, for placeholders (conn_check_ws) */
	uint8_t npfx;
	struct buf up; /* guest bytes not yet written upstream (bounded by the mux window) */
	size_t clear; /* how many bytes at the front of up are checked and may go upstream */
	bool guest_eof, up_shut, down_eof;
	struct resolve_job *job;
	enum conn_mode mode;
	struct flow *tls;
};

/* One name denied in the current interval: repeats are counted, not logged. */
struct deny_count {
	enum net_event_kind kind;
	char name[POLICY_NAME_MAX + 1];
	uint64_t repeats; /* this interval, after the logged one */
};

struct egress {
	struct loop *l;
	struct mux *m;
	const struct policy *p;
	struct egress_ops ops;
	void *opaque;
	struct mitm *mitm; /* NULL: no interception */
	struct addrpool pool;
	struct resolver res;
	struct watch res_w;
	unsigned nconns;
	struct conn *conns[EGRESS_MAX_CONNS];
	unsigned ndeny;
	struct deny_count deny[EGRESS_DENY_NAMES];
	uint64_t deny_other; /* denials of names the table had no room for, this interval */
	struct timer deny_timer; /* ends the interval: armed while the table is not empty */
	uint64_t idle_ns, life_ns; /* the limits of intercepted connections; 0: none */
	bool stalled; /* some upstream stopped reading because the link was congested */
	bool dying; /* egress_free: the link is going away, do not flush */
};

/*
 * Whether a denial of (kind, name) is logged: the first in an interval is, repeats are counted
 * for the summary line (one per name per interval).
 */
static bool deny_log_first(struct egress *e, enum net_event_kind kind, const char *name)
{
	if (!e->ndeny && !e->deny_other)
		loop_timer_set(e->l, &e->deny_timer,
			       e->l->now + EGRESS_DENY_INTERVAL_S * 1000000000ull);
	for (unsigned i = 0; i < e->ndeny; i++) {
		if (e->deny[i].kind == kind && !strcmp(e->deny[i].name, name)) {
			e->deny[i].repeats++;
			return false;
		}
	}
	if (e->ndeny >= EGRESS_DENY_NAMES) {
		e->deny_other++;
		return false;
	}
	struct deny_count *d = &e->deny[e->ndeny++];
	d->kind = kind;
	d->repeats = 0;
	snprintf(d->name, sizeof(d->name), "%s", name);
	return true;
}

/*
 * The interval ended: one line per name that was denied again, one for the names beyond the
 * table. A name denied again keeps its place (its next denial is counted, not logged); a name
 * that went quiet leaves, so a later denial of it is logged in full.
 */
static void deny_summarise(struct egress *e)
{
	unsigned keep = 0;
	for (unsigned i = 0; i < e->ndeny; i++) {
		struct deny_count *d = &e->deny[i];
		if (!d->repeats)
			continue;
		log_msg(LOG_INFO, "network: %s denied %s %llu more times in the last %d s",
			net_event_log_name(d->kind), *d->name ? d->name : "-",
			(unsigned long long)d->repeats, EGRESS_DENY_INTERVAL_S);
		d->repeats = 0;
		e->deny[keep++] = *d;
	}
	if (e->deny_other)
		log_msg(LOG_INFO,
			"network: %llu more denials of other names in the last %d s (more than "
			"%d names were denied)",
			(unsigned long long)e->deny_other, EGRESS_DENY_INTERVAL_S,
			EGRESS_DENY_NAMES);
	e->ndeny = keep;
	e->deny_other = 0;
}

static void on_deny_timer(struct timer *t)
{
	struct egress *e = t->obj;
	deny_summarise(e);
	if (e->ndeny)
		loop_timer_set(e->l, &e->deny_timer,
			       e->l->now + EGRESS_DENY_INTERVAL_S * 1000000000ull);
}

/* An event from a TLS flow: log it (never with a secret value: flows do not put one in). */
static void emit_flow(struct egress *e, const struct net_event *ev)
{
	if (!ev->allowed && !deny_log_first(e, ev->kind, ev->name ? ev->name : "")) {
		/* counted for the interval's summary */
	} else if (ev->req) {
		const struct net_request *q = ev->req;
		log_msg(ev->allowed ? LOG_DEBUG : LOG_INFO,
			"network: %s %s %s %s -> %d (%llu B up, %llu B down, %llu ms)%s%s",
			net_event_log_name(ev->kind), ev->allowed ? "allowed" : "blocked",
			q->method, q->url, q->status, (unsigned long long)q->bytes_up,
			(unsigned long long)q->bytes_down, (unsigned long long)q->duration_ms,
			ev->allowed ? "" : ": ", ev->allowed ? "" : ev->reason);
	} else {
		log_msg(ev->allowed ? LOG_DEBUG : LOG_INFO, "network: %s %s %s port %u: %s",
			net_event_log_name(ev->kind), ev->allowed ? "allowed" : "denied", ev->name,
			ev->port, ev->reason);
	}
	if (e->ops.event)
		e->ops.event(ev, e->opaque);
}

static void emit(struct egress *e, enum net_event_kind kind, bool allowed, const char *name,
		 const char *detail, uint16_t port, const char *reason)
{
	char where[80] = "";
	if (port)
		snprintf(where, sizeof(where), " port %u", port);
	/* Denials are shown to the user (once per name per interval); what was allowed is debug. */
	if (!allowed && !deny_log_first(e, kind, name))
		goto event;
	log_msg(allowed ? LOG_DEBUG : LOG_INFO, "network: %s %s %s%s%s%s: %s",
		net_event_log_name(kind), allowed ? "allowed" : "denied", *name ? name : "-",
		detail ? " " : "", detail ? detail : "", where, reason);
event:
	/* Events stay one per decision: the RPC's queue has its own bound. */
	if (e->ops.event) {
		struct net_event ev = { kind, allowed, name, detail, port, reason, NULL };
		e->ops.event(&ev, e->opaque);
	}
}

/* ---- DNS -------------------------------------------------------------------------------- */

static void dns_send_reply(struct egress *e, uint32_t tag, const struct buf *msg)
{
	struct buf b = { 0 };
	buf_put_u16(&b, CTL_DNS_REPLY);
	msg_put_u32(&b, T_DNS_TAG, tag);
	msg_put_tlv(&b, T_DNS_MSG, buf_head(msg), (uint32_t)buf_used(msg));
	if (mux_send_ctl(e->m, 0, buf_head(&b), (uint32_t)buf_used(&b)) == 0)
		e->ops.flush(e->opaque);
	buf_fini(&b);
}

/* Decide one query; fills the answers and returns the rcode. */
static enum dns_rcode dns_decide(struct egress *e, const struct dns_query *q,
				 struct dns_answer *ans, unsigned *nans)
{
	char tb[16];
	const char *type = dns_type_name(q->qtype, tb, sizeof(tb));
	const char *name = q->name;
	*nans = 0;
	if (e->p->no_network) {
		emit(e, NET_EV_DNS, false, name, type, 0,
		     "the sandbox has no network (--no-network)");
		return DNS_NXDOMAIN;
	}
	if (q->qclass != 1) {
		emit(e, NET_EV_DNS, false, name, type, 0, "only class IN is answered");
		return DNS_REFUSED;
	}
	const char *rule = q->name_ok ? policy_match(e->p, name) : NULL;
	if (!rule) {
		char why[400];
		snprintf(why, sizeof(why), "%s (default deny; allow it with --allow-host)",
			 q->name_ok ? "no --allow-host rule matches this name"
				    : "not a valid host name");
		emit(e, NET_EV_DNS, false, q->name_ok ? name : "(invalid name)", type, 0, why);
		return DNS_NXDOMAIN;
	}
	if (q->qtype == DNS_CNAME) {
		emit(e, NET_EV_DNS, true, name, type, 0, "allowed name, no alias");
		return DNS_NOERROR;
	}
	if (q->qtype != DNS_A && q->qtype != DNS_AAAA) {
		emit(e, NET_EV_DNS, false, name, type, 0,
		     "only A, AAAA and CNAME queries are answered (nothing is forwarded)");
		return DNS_REFUSED;
	}
	int idx = addrpool_get(&e->pool, name);
	if (idx < 0) {
		emit(e, NET_EV_DNS, false, name, type, 0, "too many names in this sandbox");
		return DNS_SERVFAIL;
	}
	char why[300];
	snprintf(why, sizeof(why), "rule %s", rule);
	emit(e, NET_EV_DNS, true, name, type, 0, why);
	ans[0].type = q->qtype;
	addrpool_addr((unsigned)idx, q->qtype == DNS_A ? AF_INET : AF_INET6, ans[0].addr);
	*nans = 1;
	return DNS_NOERROR;
}

int egress_on_dns(struct egress *e, struct rd *r)
{
	uint16_t tag;
	struct rd v, msg = { 0 };
	uint32_t qtag = 0;
	bool have_tag = false, have_msg = false;
	int k;
	while ((k = msg_next(r, &tag, &v)) > 0) {
		if (tag == T_DNS_TAG && msg_get_u32(&v, &qtag) == 0)
			have_tag = true;
		else if (tag == T_DNS_MSG) {
			msg = v;
			have_msg = true;
		}
	}
	if (k < 0 || !have_tag || !have_msg)
		return -EPROTO;
	size_t n = rd_left(&msg);
	const uint8_t *p = rd_bytes(&msg, n);
	struct dns_query q;
	struct dns_answer ans[1];
	unsigned nans = 0;
	enum dns_rcode rc;
	int pr = p ? dns_parse_query(p, n, &q) : -EPROTO;
	if (pr == -EOPNOTSUPP) {
		rc = DNS_NOTIMP;
	} else if (pr < 0) {
		if (n < DNS_HDR_LEN)
			return 0; /* not even a header: nothing to answer */
		emit(e, NET_EV_DNS, false, "", NULL, 0, "malformed query");
		rc = DNS_FORMERR;
		q.question_end = 0;
	} else {
		rc = dns_decide(e, &q, ans, &nans);
	}
	struct buf out = { 0 };
	if (dns_build_reply(&out, p, n, &q, rc, ans, nans, EGRESS_DNS_TTL) == 0)
		dns_send_reply(e, qtag, &out);
	buf_fini(&out);
	return 0;
}

/* ---- connections ------------------------------------------------------------------------ */

static void conn_free(void *p)
{
	free(p);
}

/* Close the stream (err: 0, or an errno the agent turns into a reset) and free c. */
static void conn_end(struct conn *c, uint32_t err)
{
	struct egress *e = c->e;
	if (c->s) {
		c->s->user = NULL;
		mux_close(e->m, c->s, err);
		c->s = NULL;
	}
	if (c->w.fd >= 0) {
		loop_unwatch(e->l, &c->w);
		close(c->w.fd);
		c->w.fd = -1;
	}
	if (c->job)
		c->job->owner = NULL;
	loop_timer_cancel(e->l, &c->connect_timer);
	loop_timer_cancel(e->l, &c->life_timer);
	secrets_body_fini(&c->scan);
	buf_wipe(&c->up);
	flow_free(c->tls);
	c->tls = NULL;
	for (unsigned i = 0; i < e->nconns; i++) {
		if (e->conns[i] == c) {
			e->conns[i] = e->conns[--e->nconns];
			break;
		}
	}
	loop_defer_free(e->l, c, conn_free);
	if (!e->dying)
		e->ops.flush(e->opaque);
}

/* Send what we can of b to the guest, then EOF and close: used for the 403. */
static void conn_reply_and_end(struct conn *c, struct buf *b)
{
	uint32_t k = mux_send_data(c->e->m, c->s, MUX_CHAN_OUT, buf_head(b), (uint32_t)buf_used(b));
	(void)k; /* a fresh stream has a full window: the reply always fits */
	mux_send_eof(c->e->m, c->s, MUX_CHAN_OUT);
	conn_end(c, 0);
}

static void conn_send_403(struct conn *c)
{
	struct buf b = { 0 };
	if (http_build_403(&b, c->reason) == 0)
		conn_reply_and_end(c, &b);
	else
		conn_end(c, ECONNREFUSED);
	buf_fini(&b);
}

static void conn_drop_upstream(struct conn *c)
{
	if (c->w.fd >= 0) {
		loop_unwatch(c->e->l, &c->w);
		close(c->w.fd);
		c->w.fd = -1;
	}
	if (c->job) {
		c->job->owner = NULL;
		c->job = NULL;
	}
	loop_timer_cancel(c->e->l, &c->connect_timer);
}

static void conn_tls_pump(struct conn *c);

/* Whether the guest's request head is complete (or can no longer be): time for the 403. */
static bool conn_head_in(const struct conn *c)
{
	const uint8_t *p = buf_head(&c->up);
	size_t n = buf_used(&c->up), i = http_leading_empty(p, n);
	return c->guest_eof || c->walk.nreq || http_head_len(p + i, n - i, HTTP_MAX_HEAD) != 0;
}

/*
 * Deny c. reason (the whole story, possibly with what the host's resolver said) goes to the
 * log and the event; the guest gets guest_reason, or reason itself when that is NULL. Raw TCP
 * is refused at once (the agent resets the guest's socket); plain HTTP gets a 403 once the
 * request head is in; intercepted TLS a 502.
 */
static void conn_deny_as(struct conn *c, enum net_event_kind kind, const char *reason,
			 const char *guest_reason)
{
	if (!guest_reason)
		guest_reason = reason;
	if (c->tls) { /* the guest's TLS is up: it gets a 502 saying why */
		conn_drop_upstream(c);
		c->state = C_NO_UPSTREAM;
		flow_upstream_failed(c->tls, reason, guest_reason);
		conn_tls_pump(c);
		return;
	}
	emit(c->e, kind, false, c->name, c->dst, c->port, reason);
	if (!c->http) {
		conn_end(c, ECONNREFUSED);
		return;
	}
	snprintf(c->reason, sizeof(c->reason), "matchlock: request to %s blocked: %s",
		 *c->name ? c->name : c->dst, guest_reason);
	conn_drop_upstream(c);
	c->state = C_DENY_HTTP;
	/* Whatever the guest sent is dropped: give the window back. */
	mux_consumed(c->e->m, c->s, (uint32_t)buf_used(&c->up));
	if (conn_head_in(c))
		conn_send_403(c);
	/* else: keep the partial head (at most HTTP_MAX_HEAD) until it is complete */
}

static void conn_deny(struct conn *c, enum net_event_kind kind, const char *reason)
{
	conn_deny_as(c, kind, reason, NULL);
}

static void conn_update_watch(struct conn *c)
{
	if (c->w.fd < 0)
		return;
	uint32_t ev = 0;
	if (c->state == C_CONNECTING)
		ev = EPOLLOUT;
	if (c->tls) {
		ev = c->state == C_CONNECTING ? EPOLLOUT
		     : c->state == C_OPEN     ? flow_events(c->tls)
					      : 0;
	} else if (c->state == C_OPEN) {
		if (!c->down_eof && c->s && c->s->send_credit > 0 && !mux_congested(c->e->m))
			ev |= EPOLLIN;
		if (c->clear)
			ev |= EPOLLOUT;
	}
	loop_watch(c->e->l, &c->w, ev);
}

static bool conn_maybe_finish(struct conn *c)
{
	if (c->guest_eof && c->up_shut && c->down_eof) {
		conn_end(c, 0);
		return true;
	}
	return false;
}

/* Guest -> upstream. Returns false if c was ended. */
static bool conn_pump_up(struct conn *c)
{
	struct egress *e = c->e;
	if (c->state != C_OPEN || c->mode != M_RAW)
		return true;
	while (c->clear) {
		ssize_t n = send(c->w.fd, buf_head(&c->up), c->clear, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			debug("network: %s %s port %u: send: %s", c->name, c->dst, c->port,
			      strerror(errno));
			conn_end(c, ECONNRESET);
			return false;
		}
		buf_consume(&c->up, (size_t)n);
		c->clear -= (size_t)n;
		mux_consumed(e->m, c->s, (uint32_t)n);
	}
	if (!buf_used(&c->up) && c->guest_eof && !c->up_shut) {
		shutdown(c->w.fd, SHUT_WR);
		c->up_shut = true;
	}
	e->ops.flush(e->opaque);
	return !conn_maybe_finish(c);
}

static bool conn_check_http(struct conn *c);

/* The upstream's first bytes after a WebSocket upgrade request: tunnel, or HTTP goes on. */
static void conn_upgrade_answer(struct conn *c, const uint8_t *p, size_t n)
{
	size_t k = sizeof(c->resp_pfx) - c->npfx;
	if (k > n)
		k = n;
	memcpy(c->resp_pfx + c->npfx, p, k);
	c->npfx = (uint8_t)(c->npfx + k);
	if (http_walk_upgrade_answer(&c->walk, c->resp_pfx, c->npfx))
		debug("network: %s port %u: WebSocket upgrade %s", c->name, c->port,
		      c->walk.st == HTTP_WALK_TUNNEL ? "accepted: tunnel"
						     : "refused: HTTP goes on");
}

/* Upstream -> guest, as far as credit and the link allow. Returns false if c was ended. */
static bool conn_pump_down(struct conn *c)
{
	struct egress *e = c->e;
	static uint8_t tmp[MUX_DATA_CHUNK];
	while (c->state == C_OPEN && !c->down_eof && c->s->send_credit > 0) {
		if (mux_congested(e->m)) {
			e->stalled = true;
			break;
		}
		size_t room = c->s->send_credit < sizeof(tmp) ? c->s->send_credit : sizeof(tmp);
		ssize_t n = recv(c->w.fd, tmp, room, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			debug("network: %s %s port %u: recv: %s", c->name, c->dst, c->port,
			      strerror(errno));
			conn_end(c, ECONNRESET);
			return false;
		}
		if (n == 0) {
			c->down_eof = true;
			mux_send_eof(e->m, c->s, MUX_CHAN_OUT);
			break;
		}
		if (c->http && c->walk.st == HTTP_WALK_HOLD)
			conn_upgrade_answer(c, tmp, (size_t)n);
		mux_send_data(e->m, c->s, MUX_CHAN_OUT, tmp, (uint32_t)n);
	}
	e->ops.flush(e->opaque);
	return !conn_maybe_finish(c);
}

static void conn_pump(struct conn *c)
{
	if (c->tls) {
		conn_tls_pump(c);
		return;
	}
	for (int round = 0; round < 2; round++) {
		bool held = c->http && c->walk.st == HTTP_WALK_HOLD;
		if (!conn_pump_up(c) || !conn_pump_down(c))
			return;
		if (!held || c->walk.st == HTTP_WALK_HOLD)
			break;
		/* The upstream answered a WebSocket upgrade: check or pass what the guest sent
		 * since. */
		if (!conn_check_http(c))
			return;
	}
	conn_update_watch(c);
}

/* Intercepted TLS: feed the flow, run it, send what it has for the guest. */
static void conn_tls_pump(struct conn *c)
{
	struct egress *e = c->e;
	struct flow *f = c->tls;
	for (int round = 0; round < 4; round++) {
		size_t took = 0;
		if (buf_used(&c->up)) {
			took = flow_feed_guest(f, buf_head(&c->up), buf_used(&c->up));
			if (took) {
				explicit_bzero(buf_head(&c->up), took);
				buf_consume(&c->up, took);
				mux_consumed(e->m, c->s, (uint32_t)took);
			}
		}
		if (c->guest_eof && !buf_used(&c->up))
			flow_guest_eof(f);
		flow_run(f);
		if (flow_failed(f)) {
			conn_end(c, ECONNRESET);
			return;
		}
		struct buf *out = flow_to_guest(f);
		while (buf_used(out) && c->s->send_credit > 0) {
			if (mux_congested(e->m)) {
				e->stalled = true;
				break;
			}
			size_t n = buf_used(out);
			if (n > MUX_DATA_CHUNK)
				n = MUX_DATA_CHUNK;
			uint32_t k =
			    mux_send_data(e->m, c->s, MUX_CHAN_OUT, buf_head(out), (uint32_t)n);
			if (!k)
				break;
			buf_consume(out, k);
		}
		e->ops.flush(e->opaque);
		if (flow_done(f) && !buf_used(out)) {
			mux_send_eof(e->m, c->s, MUX_CHAN_OUT);
			conn_end(c, 0);
			return;
		}
		if (!took || !buf_used(&c->up))
			break;
	}
	conn_update_watch(c);
}

static void on_conn_io(struct watch *w, uint32_t events)
{
	struct conn *c = w->obj;
	c->last_io = c->e->l->now;
	if (c->state == C_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (!err && !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		loop_timer_cancel(c->e->l, &c->connect_timer);
		if (err) {
			char why[300];
			snprintf(why, sizeof(why), "connecting to %s failed: %s", c->dst,
				 strerror(err));
			emit(c->e, NET_EV_CONNECT, false, c->name, c->dst, c->port, why);
			conn_end(c, ECONNREFUSED);
			return;
		}
		c->state = C_OPEN;
		debug("network: connected to %s (%s) port %u", c->name, c->dst, c->port);
		if (c->tls)
			flow_set_upstream(c->tls, c->w.fd);
	}
	conn_pump(c);
}

static void on_connect_timeout(struct timer *t)
{
	struct conn *c = t->obj;
	char why[200];
	snprintf(why, sizeof(why), "connecting to %s timed out", c->dst);
	emit(c->e, NET_EV_CONNECT, false, c->name, c->dst, c->port, why);
	conn_end(c, ETIMEDOUT);
}

/* The next moment an intercepted connection's limits must be looked at. */
static uint64_t conn_limits_due(const struct conn *c)
{
	const struct egress *e = c->e;
	uint64_t idle = e->idle_ns ? c->last_io + e->idle_ns : 0;
	uint64_t life = e->life_ns ? c->opened + e->life_ns : 0;
	return !idle ? life : !life ? idle : idle < life ? idle : life;
}

/* c turned out to be intercepted (or plain HTTP): from now on it is idle- and age-limited. */
static void conn_limits_arm(struct conn *c)
{
	if (c->opened)
		return;
	c->opened = c->last_io = c->e->l->now;
	uint64_t due = conn_limits_due(c);
	if (due)
		loop_timer_set(c->e->l, &c->life_timer, due);
}

/*
 * The idle or lifetime limit of c may be reached. Idle: the guest gets an EOF, as from a server
 * that closes a keep-alive connection. Too old: a reset (a transfer may be cut short).
 */
static void on_conn_limits(struct timer *t)
{
	struct conn *c = t->obj;
	const struct egress *e = c->e;
	uint64_t now = e->l->now;
	bool old = e->life_ns && now >= c->opened + e->life_ns;
	bool idle = e->idle_ns && now >= c->last_io + e->idle_ns;
	if (!old && !idle) {
		loop_timer_set(e->l, &c->life_timer, conn_limits_due(c));
		return;
	}
	log_msg(LOG_INFO, "network: %s port %u: connection closed: %s %llu s", c->name, c->port,
		old ? "open for more than" : "idle for",
		(unsigned long long)((old ? e->life_ns : e->idle_ns) / 1000000000ull));
	if (!old && c->s)
		mux_send_eof(e->m, c->s, MUX_CHAN_OUT);
	conn_end(c, old ? ETIMEDOUT : 0);
}

static void addr_text(int family, const uint8_t *a, char *out, size_t n)
{
	char t[INET6_ADDRSTRLEN];
	inet_ntop(family, a, t, sizeof(t));
	snprintf(out, n, family == AF_INET6 ? "[%s]" : "%s", t);
}

/* Dial exactly this address (the one that was checked). */
static void conn_dial(struct conn *c, int family, const uint8_t *addr, const char *why)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	addr_text(family, addr, c->dst, sizeof(c->dst));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(c->port);
		memcpy(&sin->sin_addr, addr, 4);
		sl = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(c->port);
		memcpy(&sin6->sin6_addr, addr, 16);
		sl = sizeof(*sin6);
	}
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_deny(c, NET_EV_CONNECT, "no socket for the upstream connection");
		return;
	}
	emit(c->e, NET_EV_CONNECT, true, c->name, c->dst, c->port, why);
	c->w.fd = fd;
	c->state = C_CONNECTING;
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
		char r[300];
		snprintf(r, sizeof(r), "connecting to %s failed: %s", c->dst, strerror(errno));
		emit(c->e, NET_EV_CONNECT, false, c->name, c->dst, c->port, r);
		conn_end(c, ECONNREFUSED);
		return;
	}
	loop_timer_set(c->e->l, &c->connect_timer,
		       c->e->l->now + EGRESS_CONNECT_TIMEOUT_MS * 1000000ull);
	conn_update_watch(c);
}

/*
 * What the guest is told when the host's lookup decides: the same words whether the name does
 * not exist, failed, or resolved to a blocked address, so the guest learns nothing about the
 * host's resolver or network. The full story goes to the log and the event.
 */
#define GUEST_RESOLVE_DENIED                                                \
	"the host's answer for this name is not one matchlock may connect " \
	"to (the sandbox log says why)"

/* The host's answers for c->name: all must be public (unless allowed), then dial one. */
static void conn_resolved(struct conn *c, const struct resolve_job *j)
{
	char why[512], a[INET6_ADDRSTRLEN + 2]; /* a name, an address and the reason */
	if (j->err) {
		snprintf(why, sizeof(why), "the host cannot resolve %s (%s)", c->name,
			 j->err == -ENOENT   ? "no such name"
			 : j->err == -EAGAIN ? "temporary failure"
					     : "error");
		conn_deny_as(c, NET_EV_CONNECT, why, GUEST_RESOLVE_DENIED);
		return;
	}
	const struct resolve_addr *pick = NULL;
	for (unsigned i = 0; i < j->n; i++) {
		const char *bad = policy_addr_blocked(j->addrs[i].family, j->addrs[i].addr);
		if (!bad && j->addrs[i].local)
			bad = "an address of this host";
		if (bad && !c->e->p->allow_private) {
			addr_text(j->addrs[i].family, j->addrs[i].addr, a, sizeof(a));
			snprintf(c->dst, sizeof(c->dst), "%s", a);
			snprintf(why, sizeof(why),
				 "%s resolves to %s (%s); private addresses are "
				 "blocked (--allow-private-ips or --add-host allows them)",
				 c->name, a, bad);
			conn_deny_as(c, NET_EV_CONNECT, why, GUEST_RESOLVE_DENIED);
			return;
		}
		if (!pick ||
		    (pick->family != c->guest_family && j->addrs[i].family == c->guest_family))
			pick = &j->addrs[i];
	}
	const char *rule = policy_match_port(c->e->p, c->name, c->port);
	if (!rule) { /* the allow-list changed while we were resolving */
		conn_deny(c, NET_EV_CONNECT,
			  "no --allow-host rule matches this name and port any more");
		return;
	}
	snprintf(why, sizeof(why), "rule %s", rule);
	conn_dial(c, pick->family, pick->addr, why);
}

static void on_resolved(struct watch *w, uint32_t events)
{
	(void)events;
	struct egress *e = w->obj;
	struct resolve_job *j;
	while ((j = resolver_take(&e->res))) {
		struct conn *c = j->owner;
		if (c) {
			c->job = NULL;
			conn_resolved(c, j);
		}
		free(j);
	}
}

/* A new SVC_TCP stream: check the destination against the policy, then resolve or dial. */
static void conn_open(struct egress *e, struct mux_stream *s, struct rd *body)
{
	uint16_t tag, port = 0;
	struct rd v;
	uint8_t addr[16];
	int family = 0, k;
	while ((k = msg_next(body, &tag, &v)) > 0) {
		if (tag == T_PORT && msg_get_u16(&v, &port) < 0)
			k = -EPROTO;
		if (tag == T_ADDR && (rd_left(&v) == 4 || rd_left(&v) == 16)) {
			family = rd_left(&v) == 4 ? AF_INET : AF_INET6;
			memcpy(addr, rd_bytes(&v, rd_left(&v)), family == AF_INET ? 4 : 16);
		}
		if (k < 0)
			break;
	}
	if (k < 0 || !family || !port) {
		emit(e, NET_EV_CONNECT, false, "", NULL, 0,
		     "malformed connection request from the guest");
		mux_close(e->m, s, EINVAL);
		return;
	}
	if (e->nconns >= EGRESS_MAX_CONNS) {
		emit(e, NET_EV_CONNECT, false, "", NULL, port,
		     "too many open connections in this sandbox");
		mux_close(e->m, s, ECONNREFUSED);
		return;
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		mux_close(e->m, s, ENOMEM);
		return;
	}
	c->e = e;
	c->s = s;
	c->port = port;
	c->guest_family = family;
	memcpy(c->guest_addr, addr, family == AF_INET ? 4 : 16);
	c->http = port == HTTP_PORT;
	watch_init(&c->w, -1, on_conn_io, c);
	c->connect_timer = (struct timer){ .fn = on_connect_timeout, .obj = c };
	c->life_timer = (struct timer){ .fn = on_conn_limits, .obj = c };
	addr_text(family, addr, c->dst, sizeof(c->dst));
	s->user = c;
	e->conns[e->nconns++] = c;

	const struct policy *p = e->p;
	const char *name = addrpool_name(&e->pool, family, addr);
	if (p->no_network) {
		conn_deny(c, NET_EV_CONNECT, "the sandbox has no network (--no-network)");
		return;
	}
	if (!name) {
		conn_deny(c, NET_EV_CONNECT,
			  "not an address matchlock's DNS handed out; connect by "
			  "host name (allow it with --allow-host)");
		return;
	}
	snprintf(c->name, sizeof(c->name), "%s", name);
	const char *rule = policy_match_port(p, name, port);
	if (!rule) {
		char why[POLICY_NAME_MAX + 300];
		if (policy_match(p, name))
			snprintf(why, sizeof(why),
				 "the rules for %s do not open port %u (a bare name opens "
				 "80 and 443; allow it with --allow-host %s:%u)",
				 name, port, name, port);
		else
			snprintf(why, sizeof(why),
				 "no --allow-host rule matches this name (default deny)");
		conn_deny(c, NET_EV_CONNECT, why);
		return;
	}
	const struct policy_pin *pin = policy_find_pin(p, name);
	if (pin) {
		char why[400];
		snprintf(why, sizeof(why), "rule %s, address pinned by --add-host", rule);
		conn_dial(c, pin->family, pin->addr, why);
		return;
	}
	c->state = C_RESOLVING;
	c->job = resolver_start(&e->res, name, c);
	if (!c->job)
		conn_deny(c, NET_EV_CONNECT,
			  errno == EAGAIN ? "too many host lookups in flight"
					  : "cannot start a host lookup");
}

/* A request the flow held for an SDK callback may go on (proxy_hooks.h). */
static void on_flow_wake(void *opaque)
{
	conn_tls_pump(opaque);
}

static void on_flow_event(void *opaque, const struct net_event *ev)
{
	struct conn *c = opaque;
	struct net_event e2 = *ev;
	e2.detail = c->dst;
	emit_flow(c->e, &e2);
}

/*
 * The guest's first bytes decide: a TLS ClientHello is intercepted (when the sandbox has a
 * mitm), an HTTP/1 request line on any port makes the connection plain HTTP (every request
 * head checked), anything else is relayed as bytes. Port 80 is HTTP whatever comes. Returns
 * -1 if c was ended.
 */
static int conn_classify(struct conn *c)
{
	struct egress *e = c->e;
	char sni[POLICY_NAME_MAX + 1], why[700];
	const uint8_t *p = buf_head(&c->up);
	size_t n = buf_used(&c->up);
	if (c->state == C_DENY_HTTP || c->http) {
		c->mode = M_RAW;
		return 0;
	}
	int r = e->mitm ? tlshello_sni(p, n, sni, sizeof(sni)) : -ENOENT;
	if (r == 0 && !c->guest_eof)
		return 0;
	if (r == -ENOENT || r == 0) {
		int h = http_sniff_request(p, n);
		if (h == 0 && !c->guest_eof)
			return 0;
		c->http = h == 1;
		c->mode = M_RAW;
		return 0;
	}
	if (r < 0) {
		emit(e, NET_EV_CONNECT, false, c->name, c->dst, c->port,
		     "a malformed TLS ClientHello (TLS is only let through intercepted)");
		conn_end(c, ECONNRESET);
		return -1;
	}
	if (sni[0] && strcmp(sni, c->name)) {
		snprintf(why, sizeof(why),
			 "the TLS server name %s does not match the connection's host "
			 "name %s",
			 sni, c->name);
		emit(e, NET_EV_CONNECT, false, c->name, c->dst, c->port, why);
		conn_end(c, ECONNRESET);
		return -1;
	}
	c->tls = flow_new(e->mitm, c->name, c->port, on_flow_event, c);
	if (!c->tls) {
		conn_end(c, ENOMEM);
		return -1;
	}
	flow_set_wake(c->tls, on_flow_wake, c);
	c->mode = M_TLS;
	c->http = false;
	if (c->state == C_OPEN)
		flow_set_upstream(c->tls, c->w.fd);
	return 0;
}

/* Whether a Host that is an IP literal names the synthetic address the guest dialed. */
static bool conn_host_is_guest_addr(const struct conn *c, const char *host)
{
	char t[INET6_ADDRSTRLEN];
	uint8_t a[16];
	size_t n = strlen(host);
	if (c->guest_family == AF_INET6 && n > 2 && host[0] == '[' && n - 2 < sizeof(t)) {
		memcpy(t, host + 1, n - 2);
		t[n - 2] = 0;
		return inet_pton(AF_INET6, t, a) == 1 && !memcmp(a, c->guest_addr, 16);
	}
	return c->guest_family == AF_INET && inet_pton(AF_INET, host, a) == 1 &&
	       !memcmp(a, c->guest_addr, 4);
}

/* One complete, well-formed request head at p (hl bytes): is it for this connection's host? */
static bool conn_check_head(struct conn *c, const uint8_t *p, size_t hl, const struct http_msg *m)
{
	char reason[600];
	if (strcmp(m->host, c->name) && !conn_host_is_guest_addr(c, m->host)) {
		snprintf(reason, sizeof(reason),
			 "request %u names host %s (Host header or absolute "
			 "URL), not the connection's host name %s",
			 c->walk.nreq + 1, m->host, c->name);
		conn_deny(c, NET_EV_HTTP, reason);
		return false;
	}
	const struct secrets *ss = c->e->mitm ? mitm_secrets(c->e->mitm) : NULL;
	const struct secret *sp = secrets_find_placeholder(ss, p, hl);
	if (sp) {
		snprintf(reason, sizeof(reason),
			 "the request carries the placeholder of secret %s over "
			 "plain HTTP; secrets are only sent over TLS (use https://)",
			 sp->name);
		emit(c->e, NET_EV_SECRET_LEAK, false, c->name, c->dst, c->port, reason);
		conn_deny(c, NET_EV_HTTP, reason);
		return false;
	}
	if (proxy_hooks_plain(c->e->mitm, c->name, p, m, reason, sizeof(reason)) < 0) {
		conn_deny(c, NET_EV_HTTP, reason);
		return false;
	}
	emit(c->e, NET_EV_HTTP, true, c->name, c->dst, c->port, "Host matches");
	return true;
}

/*
 * A piece of a plain-HTTP request body: no placeholder may go upstream in it (secrets go over
 * TLS only). The scan keeps the start of a placeholder split across pieces, so the piece that
 * completes one is stopped before it is cleared: at most its first bytes went upstream, and
 * the upstream connection is reset so the request never completes.
 */
static bool conn_check_body(struct conn *c, const uint8_t *p, size_t n)
{
	const struct secrets *ss = c->e->mitm ? mitm_secrets(c->e->mitm) : NULL;
	if (!ss || !ss->n)
		return true;
	if (!c->scan.ss)
		secrets_body_init(&c->scan, ss, "", SECRETS_BODY_RAW,
				  true); /* no host: all refused */
	struct buf sink = { 0 };
	int r = secrets_body_feed(&c->scan, p, n, false, &sink);
	buf_wipe(&sink);
	if (r == 0)
		return true;
	char reason[600];
	if (r == -EPERM || r == -ENOTSUP)
		snprintf(reason, sizeof(reason),
			 "the request body carries the placeholder of secret %s over plain HTTP; "
			 "secrets are only sent over TLS (use https://)",
			 c->scan.leak->name);
	else
		snprintf(reason, sizeof(reason), "out of memory");
	if (c->scan.leak)
		emit(c->e, NET_EV_SECRET_LEAK, false, c->name, c->dst, c->port, reason);
	if (c->w.fd >= 0) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 }; /* close() resets */
		setsockopt(c->w.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	conn_deny(c, NET_EV_HTTP, reason);
	return false;
}

/*
 * A plain-HTTP WebSocket upgrade in a sandbox with secrets: Sec-WebSocket-Extensions is renamed
 * in place (same length, a name servers ignore) so no extension is agreed and the guest's
 * frames carry plain payload that conn_check_ws can look into.
 */
static void conn_drop_ws_extensions(struct conn *c, uint8_t *head, const struct http_msg *m)
{
	static const char renamed[] = "X-Matchlock-Dropped-Exts";
	const struct secrets *ss = c->e->mitm ? mitm_secrets(c->e->mitm) : NULL;
	if (!ss || !ss->n)
		return;
	for (unsigned i = 0; i < m->nfields; i++)
		if (http_field_is(head, &m->field[i], "sec-websocket-extensions"))
			memcpy(head + m->field[i].name_off, renamed, sizeof(renamed) - 1);
}

/*
 * The guest's bytes of a plain-HTTP WebSocket (after 101), in a sandbox with secrets: no
 * placeholder may go upstream in a message or control frame (secrets go over TLS only). The
 * frames are parsed (ws.h) and their payloads looked into, split anywhere; the bytes pass as
 * they are. A placeholder, or a frame that cannot be read and so not looked into, resets the
 * connection before the piece that completes it goes upstream. Returns false if c was ended.
 */
static bool conn_check_ws(struct conn *c, const uint8_t *p, size_t n)
{
	const struct secrets *ss = c->e->mitm ? mitm_secrets(c->e->mitm) : NULL;
	if (!ss || !ss->n)
		return true;
	if (!c->ws_on) {
		ws_parser_init(&c->ws, true);
		secrets_body_fini(&c->scan);
		secrets_body_init(&c->scan, ss, "", SECRETS_BODY_RAW,
				  true); /* no host: all refused */
		c->ws_on = true;
	}
	struct buf pl = { 0 }, sink = { 0 };
	const struct secret *leak = NULL;
	size_t at = 0;
	int r = 0;
	while (at < n && r == 0) {
		struct ws_piece pc;
		size_t k;
		pl.off = pl.len = 0;
		r = ws_parse(&c->ws, p + at, n - at, &k, &pc, &pl);
		at += k;
		if (r == 0 && pc.kind == WS_PIECE_CONTROL) {
			leak = secrets_find_placeholder(ss, buf_head(&pl), buf_used(&pl));
			r = leak ? -EPERM : 0;
		} else if (r == 0 && pc.kind == WS_PIECE_DATA) {
			r = secrets_body_feed(&c->scan, buf_head(&pl), buf_used(&pl), pc.last,
					      &sink);
			leak = c->scan.leak;
			sink.off = sink.len = 0;
		}
	}
	buf_wipe(&pl);
	buf_wipe(&sink);
	if (r == 0)
		return true;
	char reason[600];
	if (leak) {
		snprintf(
		    reason, sizeof(reason),
		    "a WebSocket message carries the placeholder of secret %s over plain HTTP; "
		    "secrets are only sent over TLS (use wss://)",
		    leak->name);
		emit(c->e, NET_EV_SECRET_LEAK, false, c->name, c->dst, c->port, reason);
	} else {
		snprintf(reason, sizeof(reason),
			 "the guest sent %s on a WebSocket, which cannot be looked into for secret "
			 "placeholders",
			 c->ws.why ? c->ws.why : "more than memory allows");
	}
	emit(c->e, NET_EV_HTTP, false, c->name, c->dst, c->port, reason);
	if (c->w.fd >= 0) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 }; /* close() resets */
		setsockopt(c->w.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	conn_end(c, ECONNRESET);
	return false;
}

/*
 * Plain HTTP: walk the guest's bytes past what is already cleared (http_walk) and clear what
 * may go upstream; every request head is checked first. Returns false if c was denied. Not
 * HTTP (a raw connection): everything is clear.
 */
static bool conn_check_http(struct conn *c)
{
	if (!c->http) {
		c->clear = buf_used(&c->up);
		return true;
	}
	for (;;) {
		size_t used;
		struct http_msg m;
		const char *why = "";
		const uint8_t *p = buf_head(&c->up) + c->clear;
		int r = http_walk_step(&c->walk, p, buf_used(&c->up) - c->clear, c->guest_eof,
				       &used, &m, &why);
		if (r < 0) {
			char reason[300];
			snprintf(reason, sizeof(reason), "not a well-formed HTTP/1 request: %s",
				 why);
			conn_deny(c, NET_EV_HTTP, reason);
			return false;
		}
		if (r == 1) {
			if (!conn_check_head(c, p, used, &m))
				return false;
			if (m.upgrade)
				conn_drop_ws_extensions(c, buf_head(&c->up) + c->clear, &m);
			http_walk_accept(&c->walk, &m);
			secrets_body_fini(&c->scan); /* a new body */
		}
		if (c->walk.data_len && !conn_check_body(c, p + c->walk.data_off, c->walk.data_len))
			return false;
		if (c->walk.st == HTTP_WALK_TUNNEL && used && !conn_check_ws(c, p, used))
			return false;
		c->clear += used;
		if (!used)
			return true;
	}
}

/*
 * Guest bytes (or its EOF) arrived: learn what the stream speaks, check plain HTTP requests,
 * then relay. Until the first bytes tell TLS from HTTP from raw TCP nothing moves, except at
 * EOF (final), when whatever came decides.
 */
static void conn_advance(struct conn *c, bool final)
{
	if (c->mode == M_UNKNOWN && (conn_classify(c) < 0 || (!final && c->mode == M_UNKNOWN)))
		return;
	if (c->tls || c->http)
		conn_limits_arm(c);
	if (c->mode == M_RAW && !conn_check_http(c))
		return;
	conn_pump(c);
}

int egress_on_frame(struct egress *e, struct mux_stream *s, const struct mux_frame *f)
{
	if (f->type == MUX_OPEN) {
		struct rd r = rd_make(f->payload, f->len);
		uint16_t svc = rd_u16(&r);
		if (svc != SVC_TCP) {
			mux_close(e->m, s, EPROTONOSUPPORT);
			return 0;
		}
		conn_open(e, s, &r);
		e->ops.flush(e->opaque);
		return 0;
	}
	struct conn *c = s->user;
	if (!c) {
		/* We ended this stream already: keep the protocol moving. */
		if (f->type == MUX_DATA)
			mux_consumed(e->m, s, f->len);
		if (f->type == MUX_CLOSE)
			mux_close(e->m, s, 0);
		return 0;
	}
	c->last_io = e->l->now;
	switch (f->type) {
	case MUX_DATA:
		if (f->chan != MUX_CHAN_IN || c->guest_eof) {
			conn_end(c, EPROTO);
			return 0;
		}
		if (buf_append(&c->up, f->payload, f->len) < 0) {
			conn_end(c, ENOMEM);
			return 0;
		}
		if (c->state == C_DENY_HTTP) {
			mux_consumed(e->m, s, f->len);
			if (conn_head_in(c))
				conn_send_403(c);
			return 0;
		}
		conn_advance(c, false);
		break;
	case MUX_EOF:
		if (f->chan != MUX_CHAN_IN) {
			conn_end(c, EPROTO);
			return 0;
		}
		c->guest_eof = true;
		if (c->state == C_DENY_HTTP) {
			conn_send_403(c);
			return 0;
		}
		conn_advance(c, true);
		break;
	case MUX_CREDIT:
		if (c->state == C_OPEN || c->tls)
			conn_pump(c);
		break;
	case MUX_CLOSE:
		conn_end(c, 0);
		break;
	default:
		break;
	}
	return 0;
}

void egress_resume(struct egress *e)
{
	if (!e || !e->stalled || mux_congested(e->m))
		return;
	e->stalled = false;
	for (unsigned i = e->nconns; i-- > 0;)
		if (i < e->nconns && (e->conns[i]->state == C_OPEN || e->conns[i]->tls))
			conn_pump(e->conns[i]);
}

int egress_put_hosts(struct egress *e, struct buf *b)
{
	for (unsigned i = 0; i < e->p->npins; i++) {
		int idx = addrpool_get(&e->pool, e->p->pins[i].name);
		if (idx < 0)
			return idx;
		for (int fam = 0; fam < 2; fam++) {
			uint8_t a[16];
			char t[INET6_ADDRSTRLEN], line[POLICY_NAME_MAX + 64];
			addrpool_addr((unsigned)idx, fam ? AF_INET6 : AF_INET, a);
			inet_ntop(fam ? AF_INET6 : AF_INET, a, t, sizeof(t));
			snprintf(line, sizeof(line), "%s %s", t, e->p->pins[i].name);
			msg_put_str(b, T_HOSTS_LINE, line);
		}
	}
	return 0;
}

/* A limit in seconds from the environment (a whole number; 0: none), else def; in ns. */
static uint64_t env_seconds(const char *var, unsigned def)
{
	const char *v = getenv(var);
	char *end;
	unsigned long long x = def;
	if (v && *v) {
		errno = 0;
		x = strtoull(v, &end, 10);
		if (errno || *end || x > 10u * 365 * 86400) {
			log_msg(LOG_WARN, "%s=%s: not a number of seconds; using %u", var, v, def);
			x = def;
		}
	}
	return (uint64_t)x * 1000000000ull;
}

struct egress *egress_new(struct loop *l, struct mux *m, const struct policy *p, struct mitm *mitm,
			  const struct egress_ops *ops, void *opaque)
{
	struct egress *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->l = l;
	e->m = m;
	e->p = p;
	e->mitm = mitm;
	e->ops = *ops;
	e->opaque = opaque;
	addrpool_init(&e->pool);
	int r = resolver_init(&e->res);
	if (r < 0) {
		free(e);
		errno = -r;
		return NULL;
	}
	e->deny_timer = (struct timer){ .fn = on_deny_timer, .obj = e };
	e->idle_ns = env_seconds("MATCHLOCK_PROXY_IDLE_TIMEOUT", EGRESS_IDLE_TIMEOUT_S);
	e->life_ns = env_seconds("MATCHLOCK_PROXY_MAX_LIFETIME", EGRESS_MAX_LIFETIME_S);
	watch_init(&e->res_w, e->res.fds[0], on_resolved, e);
	loop_watch(l, &e->res_w, EPOLLIN);
	return e;
}

void egress_free(struct egress *e)
{
	if (!e)
		return;
	e->dying = true;
	while (e->nconns) {
		struct conn *c = e->conns[0];
		if (c->s)
			c->s->user = NULL;
		c->s = NULL; /* the mux is going away with the sandbox */
		conn_end(c, 0);
	}
	loop_timer_cancel(e->l, &e->deny_timer);
	deny_summarise(e); /* the counts of the last, unfinished interval */
	loop_unwatch(e->l, &e->res_w);
	resolver_fini(&e->res);
	addrpool_fini(&e->pool);
	loop_defer_free(e->l, e, conn_free);
}
