/* SPDX-License-Identifier: MIT */
/*
 * matchlock rpc: sandboxes served over stdin/stdout as JSON-RPC 2.0, one JSON object per line
 * (requests up to 16 MiB). Requests overlap; each is answered by its id; streaming output
 * arrives as notifications carrying the request's id. stdout carries nothing but protocol.
 *
 * One server holds up to RPC_MAX_SANDBOXES sandboxes, each a session (session.h) started and
 * stopped asynchronously on the server's one loop: `create` is answered from the session's
 * started() callback, `close` from its stopped() callback, so an image being pulled for one
 * sandbox never stops the others' requests. A request names its sandbox with "sandbox": ID, or
 * leaves it out when the server holds one (today's one-sandbox SDKs).
 *
 * Lines are dispatched as they are parsed, from cmd_rpc's own loop between two batches of events
 * (rpc_take): nothing a method does runs the loop, so a dispatch is never on the stack twice.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common/base64.h"
#include "common/jsonw.h"
#include "common/log.h"
#include "common/util.h"
#include "oci/oci.h"
#include "proto/env.h"
#include "proto/msg.h"
#include "rpc_hooks.h"
#include "spec_hooks.h"
#include "rpc_spec.h"
#include "sandbox.h"
#include "session.h"

#define RPC_MAX_LINE (16u << 20)
#define RPC_OUT_HIGH (8u << 20) /* stdout holds this much: requests and guest output wait */
#define RPC_MAX_CAPTURE (16u << 20) /* exec: stdout and stderr each kept per call; log */
#define RPC_MAX_CALLS 256
#define RPC_MAX_READ (8u << 20) /* read_file: bytes per request (larger files in chunks) */
#define RPC_MAX_EVENTS (256u << 10) /* event notifications waiting for the client; then dropped */
#define RPC_KEEP_BUF (1u << 20) /* a drained output buffer larger than this is freed */
#define RPC_READ (64u << 10) /* stdin bytes read at a time */
#define RPC_MAX_SANDBOXES 16 /* sandboxes one server holds (starting, running or stopping) */
#define RPC_EXIT_WAIT_NS (60 * 1000000000ull) /* at EOF: for the stops; then they are killed */

enum rpc_err {
	E_PARSE = -32700,
	E_INVALID = -32600,
	E_METHOD = -32601,
	E_PARAMS = -32602,
	E_INTERNAL = -32603,
	E_SANDBOX = -32000,
	E_EXEC = -32001,
	E_FILE = -32002,
	E_CANCELLED = -32003,
};

enum call_kind {
	CALL_EXEC,
	CALL_STREAM,
	CALL_PIPE,
	CALL_TTY,
	CALL_WRITE,
	CALL_READ,
	CALL_LIST,
	CALL_LOG,
	CALL_CREATE, /* answered by the session's started() */
	CALL_CLOSE, /* answered by the session's stopped() */
};

struct rpc;
struct rpc_sandbox;

struct call {
	struct rpc *rpc;
	struct rpc_sandbox *rs; /* the sandbox it runs in (NULL: a log stream, or it is gone) */
	json_t *id;
	enum call_kind kind;
	struct sandbox_exec *x;
	struct buf cap[3]; /* exec: captured stdout/stderr; read/list: content */
	size_t cap_max; /* bytes kept per channel; more is counted in truncated */
	bool truncated[3];
	bool read_whole; /* read_file without a length: more than RPC_MAX_READ is an error */
	struct buf in; /* pipe/tty stdin or file content not yet accepted */
	bool in_eof;
	size_t owed; /* output bytes to credit back once stdout drains */
	bool cancelled;
	uint64_t start;
	/* log_stream */
	struct log_reader *log;
	struct timer log_timer;
	struct call *next;
};

/* One sandbox of the server, from create until its stop has completed. */
struct rpc_sandbox {
	struct rpc *rpc;
	/*
	 * sess.sb while it runs; sess.spec.policy is what allow_list_* change; sess.env, sess.user
	 * and sess.workdir are every exec's defaults; sess.L.id is its ID once started.
	 */
	struct session sess;
	enum { RS_STARTING, RS_RUNNING, RS_STOPPING } state;
	struct call *create; /* RS_STARTING: the create request */
	bool cancelling; /* RS_STARTING: session_cancel was called */
	bool launch_entrypoint;
	struct rpc_hooks_asker asker; /* its hook rules' callbacks (rpc_hooks.h) */
	struct rpc_sandbox *next;
};

struct rpc {
	struct loop loop;
	struct watch in_w, out_w;
	/*
	 * What was read from stdin and not yet dispatched: complete lines, then the start of the
	 * next one (partial bytes, at most RPC_MAX_LINE). Lines wait here while stdout is full.
	 */
	struct buf in;
	size_t partial;
	struct buf out;
	struct buf events; /* event notifications not yet in out (RPC_MAX_EVENTS) */
	uint64_t events_dropped; /* since the last "dropped" notice */
	bool in_eof, overlong;
	bool client_gone; /* stdout failed: requests still waiting are dropped */
	struct call *calls;
	unsigned ncalls;
	struct rpc_sandbox *sandboxes;
	unsigned nsandboxes;
	struct rpc_hooks hooks; /* questions to the client for callback rules */
};

/* ---- output ------------------------------------------------------------------------------ */

/*
 * Event notifications wait in their own queue (r->events), moved to stdout's queue whole lines
 * at a time while that is short. Past RPC_MAX_EVENTS bytes waiting, events are dropped and
 * counted; the client is told with one `event {type: "dropped", count}` once it reads again.
 * The sandbox never waits for the client; results and exec output keep their own backpressure.
 */
static void events_move(struct rpc *r)
{
	if (buf_used(&r->out) >= RPC_MAX_EVENTS || (!buf_used(&r->events) && !r->events_dropped))
		return;
	buf_append(&r->out, buf_head(&r->events), buf_used(&r->events));
	buf_fini(&r->events);
	if (r->events_dropped) {
		char line[160];
		int n = snprintf(line, sizeof(line),
				 "{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":{\"type\":"
				 "\"dropped\",\"count\":%llu}}\n",
				 (unsigned long long)r->events_dropped);
		buf_append(&r->out, line, (size_t)n);
		r->events_dropped = 0;
	}
}

static void rpc_flush(struct rpc *r)
{
	for (;;) {
		events_move(r);
		if (!buf_used(&r->out))
			break;
		ssize_t n = write(STDOUT_FILENO, buf_head(&r->out), buf_used(&r->out));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			/* The client went away: nothing more to say to anyone, nor to hear
			 * (rpc_take drops the requests still waiting). */
			buf_consume(&r->out, buf_used(&r->out));
			buf_fini(&r->events);
			r->in_eof = r->client_gone = true;
			break;
		}
		buf_consume(&r->out, (size_t)n);
	}
	/* A large result leaves a large buffer: give it back once it has drained. */
	if (!buf_used(&r->out) && r->out.cap > RPC_KEEP_BUF)
		buf_fini(&r->out);
	loop_watch(&r->loop, &r->out_w, buf_used(&r->out) ? EPOLLOUT : 0);
	/* Requests wait on stdin while stdout is full: a client that never reads cannot queue
	 * unbounded results. */
	bool full = buf_used(&r->out) >= RPC_OUT_HIGH;
	if (!r->in_eof)
		loop_watch(&r->loop, &r->in_w, full ? 0 : EPOLLIN);
	if (!full) {
		for (struct call *c = r->calls; c; c = c->next) {
			if (c->owed && c->x) {
				sandbox_exec_consumed(c->x, c->owed);
				c->owed = 0;
			}
		}
	}
}

static void on_stdout(struct watch *w, uint32_t events)
{
	(void)events;
	rpc_flush(w->obj);
}

/*
 * A JSON string of untrusted bytes (guest file names, host names, messages): valid UTF-8 as is;
 * anything else with each invalid byte replaced by U+FFFD, so encoding a reply cannot fail.
 */
static json_t *json_text(const char *s)
{
	if (!s)
		return json_string("");
	size_t n = strlen(s);
	json_t *j = json_stringn(s, n);
	if (j)
		return j;
	struct buf b = { 0 };
	const uint8_t *p = (const uint8_t *)s;
	for (size_t i = 0; i < n;) {
		uint8_t c = p[i];
		size_t len = c < 0x80		  ? 1
			     : (c & 0xe0) == 0xc0 ? 2
			     : (c & 0xf0) == 0xe0 ? 3
			     : (c & 0xf8) == 0xf0 ? 4
						  : 0;
		uint32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
		bool ok = len && i + len <= n;
		for (size_t k = 1; ok && k < len; k++) {
			ok = (p[i + k] & 0xc0) == 0x80;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		/* No overlong forms, surrogates or values past U+10FFFF (what jansson refuses). */
		if (ok && len > 1)
			ok = cp >= (len == 2   ? 0x80u
				    : len == 3 ? 0x800u
					       : 0x10000u) &&
			     cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
		if (ok) {
			buf_append(&b, p + i, len);
			i += len;
		} else {
			buf_append(&b, "\xef\xbf\xbd", 3);
			i++;
		}
	}
	j = json_stringn(buf_used(&b) ? (const char *)buf_head(&b) : "", buf_used(&b));
	buf_fini(&b);
	return j ? j : json_string("");
}

/* Queue one message (consumed) on q; -ENOMEM or -EINVAL when it cannot be encoded. */
static int rpc_queue(struct buf *q, json_t *msg)
{
	if (!msg)
		return -EINVAL;
	json_object_set_new(msg, "jsonrpc", json_string("2.0"));
	char *s = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (!s)
		return -EINVAL;
	int k = buf_append(q, s, strlen(s));
	if (k == 0)
		k = buf_put_u8(q, '\n');
	free(s);
	return k;
}

static void rpc_error(struct rpc *r, json_t *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void rpc_error(struct rpc *r, json_t *id, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* The message can quote the guest (a file error): json_text keeps it encodable. */
	json_t *e = json_pack("{s:o,s:{s:i,s:o}}", "id", id ? json_incref(id) : json_null(),
			      "error", "code", code, "message", json_text(msg));
	if (rpc_queue(&r->out, e) < 0)
		warn("rpc: out of memory answering request");
	rpc_flush(r);
}

/* Answer id with result (consumed). A result that cannot be encoded is answered with an error:
 * every request gets an answer. */
static void rpc_result(struct rpc *r, json_t *id, json_t *result)
{
	if (!id) {
		json_decref(result);
		return;
	}
	if (!result || rpc_queue(&r->out, json_pack("{sOso}", "id", id, "result", result)) < 0) {
		rpc_error(r, id, E_INTERNAL, "the reply could not be encoded");
		return;
	}
	rpc_flush(r);
}

static void rpc_notify(struct rpc *r, const char *method, json_t *params)
{
	if (rpc_queue(&r->out, json_pack("{s:s,s:o}", "method", method, "params", params)) < 0)
		warn("rpc: a %s notification could not be encoded", method);
	rpc_flush(r);
}

/* A bulk field of a result: bytes sent as base64. */
struct b64_field {
	const char *name;
	const struct buf *data;
};

/*
 * Answer id with the object small (consumed) plus the bulk fields, base64-encoded straight into
 * stdout's queue: the bytes are not copied through intermediate JSON strings.
 */
static void rpc_result_bulk(struct rpc *r, json_t *id, json_t *small, const struct b64_field *f,
			    size_t nf)
{
	char *ids = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
	char *obj = small ? json_dumps(small, JSON_COMPACT) : NULL;
	json_decref(small);
	size_t len = buf_used(&r->out);
	int k = ids && obj ? 0 : -ENOMEM;
	if (k == 0) {
		static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":";
		size_t ol = strlen(obj) - 1; /* without the closing brace */
		k = buf_append(&r->out, head, sizeof(head) - 1);
		k = k ?: buf_append(&r->out, ids, strlen(ids));
		k = k ?: buf_append(&r->out, ",\"result\":", 10);
		k = k ?: buf_append(&r->out, obj, ol);
		for (size_t i = 0; i < nf && !k; i++) {
			k = buf_append(&r->out, ol > 1 || i ? ",\"" : "\"", ol > 1 || i ? 2 : 1);
			k = k ?: buf_append(&r->out, f[i].name, strlen(f[i].name));
			k = k ?: buf_append(&r->out, "\":\"", 3);
			k = k ?: base64_encode(&r->out, buf_head(f[i].data), buf_used(f[i].data));
			k = k ?: buf_put_u8(&r->out, '"');
		}
		k = k ?: buf_append(&r->out, "}}\n", 3);
	}
	free(ids);
	free(obj);
	if (k < 0) {
		r->out.len = r->out.off + len; /* drop the partial line */
		rpc_error(r, id, E_INTERNAL, "the reply could not be encoded (out of memory)");
		return;
	}
	rpc_flush(r);
}

static json_t *b64_json(const uint8_t *p, size_t n)
{
	struct buf b = { 0 };
	if (base64_encode(&b, p, n) < 0) {
		buf_fini(&b);
		return NULL;
	}
	json_t *s = json_stringn(buf_used(&b) ? (const char *)buf_head(&b) : "", buf_used(&b));
	buf_fini(&b);
	return s;
}

/* ---- calls ------------------------------------------------------------------------------- */

static struct call *call_new(struct rpc *r, json_t *id, enum call_kind kind)
{
	if (r->ncalls >= RPC_MAX_CALLS)
		return NULL;
	struct call *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->rpc = r;
	c->id = json_incref(id);
	c->kind = kind;
	c->start = now_ns();
	c->cap_max = RPC_MAX_CAPTURE;
	c->next = r->calls;
	r->calls = c;
	r->ncalls++;
	return c;
}

static void call_free(void *p)
{
	struct call *c = p;
	json_decref(c->id);
	for (int i = 0; i < 3; i++)
		buf_fini(&c->cap[i]);
	buf_fini(&c->in);
	free(c);
}

static void call_end(struct call *c)
{
	struct rpc *r = c->rpc;
	for (struct call **p = &r->calls; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	r->ncalls--;
	log_reader_free(c->log);
	c->log = NULL;
	loop_timer_cancel(&r->loop, &c->log_timer);
	c->x = NULL;
	loop_defer_free(&r->loop, c, call_free);
}

static struct call *call_find(struct rpc *r, json_t *id)
{
	for (struct call *c = r->calls; c; c = c->next)
		if (json_equal(c->id, id))
			return c;
	return NULL;
}

static const char *stream_prefix(enum call_kind k)
{
	return k == CALL_PIPE ? "exec_pipe" : k == CALL_TTY ? "exec_tty" : "exec_stream";
}

static void op_output(struct sandbox_exec *x, int chan, const uint8_t *p, size_t n)
{
	struct call *c = sandbox_exec_opaque(x);
	struct rpc *r = c->rpc;
	if (!c->id) {
		/* A background process (launch_entrypoint): nobody to tell. */
		sandbox_exec_consumed(x, n);
		return;
	}
	if (c->kind == CALL_EXEC || c->kind == CALL_READ || c->kind == CALL_LIST) {
		/* Keep up to cap_max, then only note that there was more. */
		size_t room = c->cap_max - buf_used(&c->cap[chan]);
		if (n > room)
			c->truncated[chan] = true;
		if ((n < room ? n : room) && buf_append(&c->cap[chan], p, n < room ? n : room) < 0)
			c->truncated[chan] = true;
		sandbox_exec_consumed(x, n);
		return;
	}
	char method[64];
	snprintf(method, sizeof(method), "%s.%s", stream_prefix(c->kind),
		 chan == EXEC_STDERR ? "stderr" : "stdout");
	json_t *data = b64_json(p, n);
	if (data)
		rpc_notify(r, method, json_pack("{s:O,s:o}", "id", c->id, "data", data));
	else
		warn("rpc: out of memory: %zu bytes of %s lost", n, method);
	/* Credit returns only as fast as our client reads. */
	if (buf_used(&r->out) < RPC_OUT_HIGH)
		sandbox_exec_consumed(x, n);
	else
		c->owed += n;
}

static void pump_in(struct call *c)
{
	while (c->x && buf_used(&c->in)) {
		size_t k = sandbox_exec_write(c->x, buf_head(&c->in), buf_used(&c->in));
		if (!k)
			return;
		buf_consume(&c->in, k);
	}
	if (c->x && c->in_eof && !buf_used(&c->in)) {
		sandbox_exec_close_stdin(c->x);
		c->in_eof = false;
	}
}

static void op_writable(struct sandbox_exec *x)
{
	pump_in(sandbox_exec_opaque(x));
}

static json_t *list_json(struct buf *recs)
{
	json_t *files = json_array();
	struct rd r = rd_make(buf_head(recs), buf_used(recs));
	while (rd_left(&r) >= 4) {
		uint32_t len = rd_u32(&r);
		const uint8_t *p = rd_bytes(&r, len);
		if (!p)
			break;
		struct rd rec = rd_make(p, len), v;
		uint16_t tag;
		char *name = NULL;
		uint64_t size = 0, mtime = 0;
		uint32_t mode = 0;
		while (msg_next(&rec, &tag, &v) > 0) {
			if (tag == T_NAME && !name)
				msg_dup_str(&v, MSG_MAX_STR, &name);
			else if (tag == T_SIZE)
				msg_get_u64(&v, &size);
			else if (tag == T_MODE)
				msg_get_u32(&v, &mode);
			else if (tag == T_TIME_NS)
				msg_get_u64(&v, &mtime);
		}
		if (!name)
			continue;
		char when[40];
		time_t t = (time_t)(mtime / 1000000000u);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		/* name: UTF-8 (invalid bytes as U+FFFD); name_b64: the name's exact bytes. */
		json_array_append_new(
		    files, json_pack("{s:o,s:o*,s:I,s:i,s:s,s:b}", "name", json_text(name),
				     "name_b64", b64_json((const uint8_t *)name, strlen(name)),
				     "size", (json_int_t)size, "mode", (int)(mode & 07777),
				     "mod_time", when, "is_dir", S_ISDIR(mode)));
		free(name);
	}
	return files;
}

static void op_done(struct sandbox_exec *x, int status, const char *err)
{
	struct call *c = sandbox_exec_opaque(x);
	struct rpc *r = c->rpc;
	long long ms = (long long)((now_ns() - c->start) / 1000000);
	c->x = NULL;
	if (!c->id) {
		if (status != 0)
			info("background process ended with status %d%s%s", status, err ? ": " : "",
			     err ? err : "");
	} else if (c->cancelled) {
		rpc_error(r, c->id, E_CANCELLED, "cancelled");
	} else if (c->kind == CALL_WRITE) {
		if (status == 0)
			rpc_result(r, c->id, json_object());
		else
			rpc_error(r, c->id, E_FILE, "%s", err ? err : "write failed");
	} else if (c->kind == CALL_READ) {
		if (status != 0) {
			rpc_error(r, c->id, E_FILE, "%s", err ? err : "read failed");
		} else if (c->read_whole && c->truncated[1]) {
			/* No length was asked and the file has more than one request carries. */
			rpc_error(
			    r, c->id, E_FILE,
			    "the file is larger than %u bytes: read it in chunks (offset, length)",
			    RPC_MAX_READ);
		} else {
			struct b64_field f = { "content", &c->cap[1] };
			rpc_result_bulk(
			    r, c->id, json_pack("{s:I}", "size", (json_int_t)buf_used(&c->cap[1])),
			    &f, 1);
		}
	} else if (c->kind == CALL_LIST) {
		if (status != 0)
			rpc_error(r, c->id, E_FILE, "%s", err ? err : "list failed");
		else if (c->truncated[1])
			rpc_error(r, c->id, E_FILE, "the directory listing is larger than %u bytes",
				  RPC_MAX_CAPTURE);
		else
			rpc_result(r, c->id, json_pack("{s:o}", "files", list_json(&c->cap[1])));
	} else if (status < 0) {
		rpc_error(r, c->id, E_SANDBOX, "%s", err ? err : "the sandbox failed");
	} else if (err && (status == 126 || status == 127)) {
		rpc_error(r, c->id, E_EXEC, "%s", err);
	} else if (c->kind == CALL_EXEC) {
		json_t *res = json_pack("{s:i,s:I}", "exit_code", status, "duration_ms", ms);
		/* Output past RPC_MAX_CAPTURE was dropped: say which stream lost what. */
		if (c->truncated[1])
			json_object_set_new(res, "stdout_truncated", json_true());
		if (c->truncated[2])
			json_object_set_new(res, "stderr_truncated", json_true());
		if (c->truncated[1] || c->truncated[2])
			json_object_set_new(res, "truncated", json_true());
		struct b64_field f[2] = { { "stdout", &c->cap[1] }, { "stderr", &c->cap[2] } };
		rpc_result_bulk(r, c->id, res, f, 2);
	} else {
		rpc_result(r, c->id,
			   json_pack("{s:i,s:I}", "exit_code", status, "duration_ms", ms));
	}
	call_end(c);
}

static const struct exec_ops call_ops = { .output = op_output,
					  .writable = op_writable,
					  .done = op_done };

/* ---- methods ----------------------------------------------------------------------------- */

static void rs_cancel(struct rpc_sandbox *rs);

/*
 * The sandbox a request is for: params' "sandbox" ID, or, when that is left out, the one sandbox
 * this server holds (a client of one sandbox never needs to name it). NULL after answering id
 * with why not.
 */
static struct rpc_sandbox *rpc_target(struct rpc *r, json_t *id, json_t *p)
{
	json_t *want = json_object_get(p, "sandbox");
	if (want && !json_is_string(want)) {
		rpc_error(r, id, E_PARAMS, "sandbox must be a sandbox ID (a string)");
		return NULL;
	}
	if (want) {
		for (struct rpc_sandbox *rs = r->sandboxes; rs; rs = rs->next)
			if (rs->state != RS_STARTING &&
			    !strcmp(rs->sess.L.id, json_string_value(want)))
				return rs;
		rpc_error(r, id, E_SANDBOX,
			  "no sandbox %.64s in this rpc server (closed, or never created here)",
			  json_string_value(want));
		return NULL;
	}
	if (r->nsandboxes == 1)
		return r->sandboxes;
	if (!r->nsandboxes)
		rpc_error(r, id, E_SANDBOX, "no sandbox: call create first");
	else
		rpc_error(r, id, E_PARAMS,
			  "this rpc server holds %u sandboxes: say which with \"sandbox\": ID",
			  r->nsandboxes);
	return NULL;
}

/* rpc_target, when that sandbox runs (and has not failed); else NULL, id answered. */
static struct rpc_sandbox *rpc_running(struct rpc *r, json_t *id, json_t *p)
{
	struct rpc_sandbox *rs = rpc_target(r, id, p);
	if (!rs)
		return NULL;
	if (rs->state == RS_STARTING)
		rpc_error(r, id, E_SANDBOX,
			  "the sandbox is still starting: wait for create's answer");
	else if (rs->state == RS_STOPPING || !rs->sess.sb)
		rpc_error(r, id, E_SANDBOX, "the sandbox %s is stopping", rs->sess.L.id);
	else if (sandbox_failure(rs->sess.sb))
		rpc_error(r, id, E_SANDBOX, "the sandbox failed: %s", sandbox_failure(rs->sess.sb));
	else
		return rs;
	return NULL;
}

/* "command": a string runs through sh -c; an array is argv, run directly. */
static char **command_argv(json_t *cmd)
{
	if (json_is_string(cmd)) {
		char **v = calloc(4, sizeof(char *));
		if (v) {
			v[0] = strdup("/bin/sh");
			v[1] = strdup("-c");
			v[2] = strdup(json_string_value(cmd));
		}
		return v;
	}
	if (!json_is_array(cmd) || json_array_size(cmd) == 0 || json_array_size(cmd) > MSG_MAX_ARGS)
		return NULL;
	char **v = calloc(json_array_size(cmd) + 1, sizeof(char *));
	size_t i;
	json_t *e;
	json_array_foreach(cmd, i, e)
	{
		if (!v || !json_is_string(e)) {
			free(v);
			return NULL;
		}
		v[i] = strdup(json_string_value(e));
	}
	return v;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* Start argv in rs with p's options (working_dir, user, env, rows, cols, timeout_seconds). */
static void exec_argv(struct rpc_sandbox *rs, json_t *id, char **argv, json_t *p,
		      enum call_kind kind)
{
	struct rpc *r = rs->rpc;
	/* create's environment, then the request's on top. */
	struct env env = { 0 };
	char err[512];
	int k = env_copy(&env, &rs->sess.env);
	if (k < 0)
		snprintf(err, sizeof(err), "out of memory");
	else
		k = rpc_spec_env_put(&env, json_object_get(p, "env"), "env", err, sizeof(err));
	if (k < 0) {
		rpc_error(r, id, k == -ENOMEM ? E_INTERNAL : E_PARAMS, "%s", err);
		env_fini(&env);
		return;
	}
	struct exec_request req = {
		.argv = argv,
		.env = env_vector(&env),
		.cwd = json_is_string(json_object_get(p, "working_dir"))
			   ? json_string_value(json_object_get(p, "working_dir"))
			   : rs->sess.workdir,
		.user = json_is_string(json_object_get(p, "user"))
			    ? json_string_value(json_object_get(p, "user"))
			    : rs->sess.user,
		.stdin_on = kind == CALL_PIPE || kind == CALL_TTY,
		.tty = kind == CALL_TTY,
		.rows = (uint16_t)json_integer_value(json_object_get(p, "rows")),
		.cols = (uint16_t)json_integer_value(json_object_get(p, "cols")),
		.timeout_s = (unsigned)json_integer_value(json_object_get(p, "timeout_seconds")),
	};
	struct call *c = call_new(r, id, kind);
	if (c)
		c->rs = rs;
	if (!c) {
		rpc_error(r, id, E_INTERNAL, "too many requests in flight");
	} else if (!(c->x =
			 sandbox_exec_start(rs->sess.sb, &req, &call_ops, c, err, sizeof(err)))) {
		rpc_error(r, id, E_EXEC, "%s", err);
		call_end(c);
	} else if (kind == CALL_PIPE || kind == CALL_TTY) {
		rpc_notify(r, kind == CALL_PIPE ? "exec_pipe.ready" : "exec_tty.ready",
			   json_pack("{s:O}", "id", id));
	}
	env_fini(&env);
}

static void m_exec(struct rpc *r, json_t *id, json_t *p, enum call_kind kind)
{
	struct rpc_sandbox *rs = rpc_running(r, id, p);
	if (!rs)
		return;
	char **argv = command_argv(json_object_get(p, "command"));
	if (!argv) {
		rpc_error(r, id, E_PARAMS,
			  "command must be a string or a non-empty array of strings");
		return;
	}
	exec_argv(rs, id, argv, p, kind);
	strv_free(argv);
}

/*
 * The running call a notification (stdin, resize) is for: by its request id, in the sandbox
 * named by "sandbox" if that is given. NULL: none (a notification has nothing to answer).
 */
static struct call *call_for_note(struct rpc *r, json_t *p)
{
	struct call *c = call_find(r, json_object_get(p, "id"));
	const char *want = json_string_value(json_object_get(p, "sandbox"));
	if (!c || !c->x ||
	    (json_object_get(p, "sandbox") && (!want || !c->rs || strcmp(c->rs->sess.L.id, want))))
		return NULL;
	return c;
}

static void m_stdin(struct rpc *r, json_t *p, bool eof)
{
	struct call *c = call_for_note(r, p);
	if (!c)
		return; /* a notification: nothing to answer */
	if (eof) {
		c->in_eof = true;
	} else {
		const char *d = json_string_value(json_object_get(p, "data"));
		if (!d || buf_used(&c->in) > RPC_MAX_LINE ||
		    base64_decode(&c->in, d, strlen(d)) < 0)
			return;
	}
	pump_in(c);
}

static void m_resize(struct rpc *r, json_t *p)
{
	struct call *c = call_for_note(r, p);
	json_int_t rows = json_integer_value(json_object_get(p, "rows"));
	json_int_t cols = json_integer_value(json_object_get(p, "cols"));
	if (c && rows > 0 && cols > 0 && rows < 65536 && cols < 65536)
		sandbox_exec_resize(c->x, (uint16_t)rows, (uint16_t)cols);
}

static void m_file(struct rpc *r, json_t *id, json_t *p, enum call_kind kind)
{
	struct rpc_sandbox *rs = rpc_running(r, id, p);
	if (!rs)
		return;
	const char *path = json_string_value(json_object_get(p, "path"));
	if (!path || path[0] != '/') {
		rpc_error(r, id, E_PARAMS, "path must be an absolute path");
		return;
	}
	struct file_request fr = { .path = path, .mode = 0644 };
	fr.op = kind == CALL_WRITE  ? SVC_FILE_WRITE
		: kind == CALL_READ ? SVC_FILE_READ
				    : SVC_FILE_LIST;
	json_t *mode = json_object_get(p, "mode");
	if (json_is_integer(mode))
		fr.mode = (uint32_t)json_integer_value(mode) & 07777;
	fr.append = json_is_true(json_object_get(p, "append"));
	json_t *off = json_object_get(p, "offset"), *len = json_object_get(p, "length");
	if ((off && (!json_is_integer(off) || json_integer_value(off) < 0)) ||
	    (len && (!json_is_integer(len) || json_integer_value(len) < 0))) {
		rpc_error(r, id, E_PARAMS, "offset and length must be non-negative integers");
		return;
	}
	if (kind == CALL_READ && json_integer_value(len) > RPC_MAX_READ) {
		rpc_error(r, id, E_PARAMS,
			  "length: at most %u bytes per read_file (read larger files in chunks)",
			  RPC_MAX_READ);
		return;
	}
	fr.offset = (uint64_t)json_integer_value(off);
	fr.length = (uint64_t)json_integer_value(len);
	/* No length: the whole file if it fits one request; one byte more tells us it does not. */
	bool whole = kind == CALL_READ && !len;
	if (whole)
		fr.length = RPC_MAX_READ + 1ull;
	else if (kind == CALL_READ && !fr.length)
		fr.length =
		    1; /* length 0 means "to the end" to the agent: ask for 1 byte, keep none */
	char err[512];
	struct call *c = call_new(r, id, kind);
	if (!c) {
		rpc_error(r, id, E_INTERNAL, "too many requests in flight");
		return;
	}
	c->rs = rs;
	if (kind == CALL_READ) {
		c->cap_max = whole ? RPC_MAX_READ : (size_t)json_integer_value(len);
		c->read_whole = whole;
	}
	if (kind == CALL_WRITE) {
		const char *content = json_string_value(json_object_get(p, "content"));
		if (!content || base64_decode(&c->in, content, strlen(content)) < 0) {
			rpc_error(r, id, E_PARAMS, "content must be base64");
			call_end(c);
			return;
		}
		c->in_eof = true;
	}
	c->x = sandbox_file_start(rs->sess.sb, &fr, &call_ops, c, err, sizeof(err));
	if (!c->x) {
		rpc_error(r, id, E_FILE, "%s", err);
		call_end(c);
		return;
	}
	pump_in(c);
}

static void on_log_timer(struct timer *t)
{
	struct call *c = t->obj;
	struct rpc *r = c->rpc;
	uint8_t tmp[65536];
	ssize_t n;
	while (buf_used(&r->out) < RPC_OUT_HIGH &&
	       (n = log_reader_read(c->log, tmp, sizeof(tmp))) > 0) {
		json_t *data = b64_json(tmp, (size_t)n);
		if (data)
			rpc_notify(r, "log_stream.data",
				   json_pack("{s:O,s:o}", "id", c->id, "data", data));
	}
	loop_timer_set(&r->loop, t, r->loop.now + 200000000ull);
}

static void m_log(struct rpc *r, json_t *id, json_t *p, bool stream)
{
	struct rpc_sandbox *rs = rpc_target(r, id, p);
	if (!rs)
		return;
	if (rs->state == RS_STARTING) {
		rpc_error(r, id, E_SANDBOX,
			  "the sandbox is still starting: wait for create's answer");
		return;
	}
	char path[4300];
	snprintf(path, sizeof(path), "%s/log", rs->sess.L.dir);
	struct log_reader *lr = log_reader_open(path); /* log.1, then log */
	if (!lr) {
		rpc_error(r, id, E_INTERNAL, "log: %s", strerror(errno));
		return;
	}
	if (!stream) {
		/* The log's last RPC_MAX_CAPTURE bytes, base64: the console may hold any bytes. */
		struct buf b = { 0 };
		bool truncated = false;
		uint8_t *dst;
		ssize_t n = 1;
		while (n > 0 && (dst = buf_reserve(&b, 65536))) {
			n = log_reader_read(lr, dst, 65536);
			if (n > 0)
				b.len += (size_t)n;
			if (buf_used(&b) > RPC_MAX_CAPTURE) { /* keep the newest bytes */
				buf_consume(&b, buf_used(&b) - RPC_MAX_CAPTURE);
				truncated = true;
			}
		}
		log_reader_free(lr);
		struct b64_field f = { "content", &b };
		rpc_result_bulk(
		    r, id, truncated ? json_pack("{s:b}", "truncated", 1) : json_object(), &f, 1);
		buf_fini(&b);
		return;
	}
	struct call *c = call_new(r, id, CALL_LOG);
	if (!c) {
		log_reader_free(lr);
		rpc_error(r, id, E_INTERNAL, "too many requests in flight");
		return;
	}
	c->log = lr;
	c->log_timer = (struct timer){ .fn = on_log_timer, .obj = c };
	loop_timer_set(&r->loop, &c->log_timer, r->loop.now);
}

static void m_cancel(struct rpc *r, json_t *id, json_t *p)
{
	struct call *c = call_find(r, json_object_get(p, "id"));
	if (!c || c->kind == CALL_CLOSE) {
		/* Nothing running by that id, or a stop, which cannot be undone. */
		rpc_result(r, id, json_pack("{s:b}", "cancelled", 0));
		return;
	}
	if (c->kind == CALL_CREATE) {
		/* The start is abandoned (an image pull included); create is answered "cancelled"
		 * from started(), which may come before this answer. */
		rpc_result(r, id, json_pack("{s:b}", "cancelled", 1));
		rs_cancel(c->rs);
		return;
	}
	c->cancelled = true;
	if (c->kind == CALL_LOG) {
		rpc_error(r, c->id, E_CANCELLED, "cancelled");
		call_end(c);
	} else if (c->x) {
		/* The process gets SIGTERM, then SIGKILL; its request is answered "cancelled". */
		sandbox_exec_cancel(c->x, 2000);
	}
	rpc_result(r, id, json_pack("{s:b}", "cancelled", 1));
}

/* Every egress decision becomes an `event` notification naming its sandbox. */
static void rpc_on_net_event(const struct net_event *ev, void *opaque)
{
	struct rpc_sandbox *rs = opaque;
	struct rpc *r = rs->rpc;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char when[40], url[600];
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (ev->port)
		snprintf(url, sizeof(url), "%s:%u", ev->name ? ev->name : "", ev->port);
	else
		snprintf(url, sizeof(url), "%s", ev->name ? ev->name : "");
	if (buf_used(&r->events) >= RPC_MAX_EVENTS) {
		/* The client is not reading: count, never wait (events_move tells it later). */
		r->events_dropped++;
		return;
	}
	/* Names and reasons come from the guest: json_text keeps them encodable. */
	json_t *n =
	    json_pack("{s:o,s:o,s:o,s:b,s:o*}", "method", json_text(net_event_rpc_method(ev)),
		      "url", json_text(url), "host", json_text(ev->name), "blocked", !ev->allowed,
		      "block_reason", ev->allowed ? NULL : json_text(ev->reason));
	if (n && ev->detail)
		json_object_set_new(n, "detail", json_text(ev->detail));
	if (n && ev->req) {
		/* One intercepted request (or a blocked leak): what the spec's network event
		 * carries. */
		json_object_set_new(n, "url", json_text(ev->req->url));
		json_object_set_new(n, "status_code", json_integer(ev->req->status));
		json_object_set_new(n, "request_bytes",
				    json_integer((json_int_t)ev->req->bytes_up));
		json_object_set_new(n, "response_bytes",
				    json_integer((json_int_t)ev->req->bytes_down));
		json_object_set_new(n, "duration_ms",
				    json_integer((json_int_t)ev->req->duration_ms));
		if (ev->kind == NET_EV_SECRET_LEAK)
			json_object_set_new(n, "secret_leak", json_text(ev->req->secret));
	}
	json_t *msg = json_pack("{s:s,s:{s:s,s:s,s:s,s:o}}", "method", "event", "params", "type",
				"network", "sandbox", rs->sess.L.id, "timestamp", when, "network",
				n ? n : json_object());
	if (rpc_queue(&r->events, msg) < 0)
		r->events_dropped++;
	rpc_flush(r);
}

/* A file operation a hook rule blocked or reports: an `event` of type file. */
static void rpc_on_file_event(const struct sandbox_file_event *ev, void *opaque)
{
	struct rpc_sandbox *rs = opaque;
	struct rpc *r = rs->rpc;
	char when[40];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (buf_used(&r->events) >= RPC_MAX_EVENTS) {
		r->events_dropped++;
		return;
	}
	json_t *f = rpc_hooks_file_event(ev);
	json_t *msg =
	    json_pack("{s:s,s:{s:s,s:s,s:s,s:o}}", "method", "event", "params", "type", "file",
		      "sandbox", rs->sess.L.id, "timestamp", when, "file", f ? f : json_object());
	if (rpc_queue(&r->events, msg) < 0)
		r->events_dropped++;
	rpc_flush(r);
}

/* A hook question to the client (rpc_hooks.h): a request line of ours on stdout. */
static int rpc_hooks_send(void *ctx, json_t *msg)
{
	struct rpc *r = ctx;
	if (r->client_gone) {
		json_decref(msg);
		return -EPIPE;
	}
	int k = rpc_queue(&r->out, msg);
	rpc_flush(r);
	return k;
}

/* hooks_set {sandbox?, hooks} and hooks_get {sandbox?}: a running sandbox's rules. */
static void m_hooks(struct rpc *r, json_t *id, json_t *p, bool set)
{
	struct rpc_sandbox *rs = rpc_running(r, id, p);
	if (!rs)
		return;
	char err[1024];
	json_t *res =
	    set ? rpc_hooks_set(rs->sess.spec.hooks, rs->sess.spec.fhooks, p, err, sizeof(err))
		: rpc_hooks_get(rs->sess.spec.hooks, rs->sess.spec.fhooks);
	if (!res) {
		rpc_error(r, id, E_PARAMS, "%s", err);
		return;
	}
	rpc_result(r, id, res);
}

static json_t *rules_json(const struct policy *p)
{
	json_t *a = json_array();
	for (unsigned i = 0; i < p->nrules; i++)
		json_array_append_new(a, json_string(p->rules[i]));
	return a;
}

static void m_allow(struct rpc *r, json_t *id, json_t *p, bool add)
{
	struct rpc_sandbox *rs = rpc_running(r, id, p);
	if (!rs)
		return;
	json_t *hosts = json_object_get(p, "hosts");
	if (!json_is_array(hosts)) {
		rpc_error(r, id, E_PARAMS, "hosts must be an array of host names or globs");
		return;
	}
	struct policy *pol = rs->sess.spec.policy;
	if (pol->no_network) {
		rpc_error(r, id, E_SANDBOX, "this sandbox has no network (no_network)");
		return;
	}
	json_t *changed = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(hosts, i, v)
	{
		const char *h = json_string_value(v);
		int k = !h ? -EINVAL : add ? policy_add(pol, h) : policy_delete(pol, h);
		if (k < 0 && !(k == -ENOENT && !add)) {
			json_decref(changed);
			rpc_error(r, id, E_PARAMS, "hosts[%zu]: %s", i,
				  k == -ENOSPC ? "too many rules" : "not a host name or glob");
			return;
		}
		if (k == 0)
			json_array_append_new(changed, json_string(h));
	}
	rpc_result(r, id,
		   json_pack("{s:o,s:o}", add ? "added" : "removed", changed, "allowed_hosts",
			     rules_json(pol)));
}

static void m_port_forward(struct rpc *r, json_t *id, json_t *p)
{
	struct rpc_sandbox *rs = rpc_running(r, id, p);
	if (!rs)
		return;
	json_t *fw = json_object_get(p, "forwards"), *addrs = json_object_get(p, "addresses");
	if (!json_is_array(fw) || !json_array_size(fw)) {
		rpc_error(r, id, E_PARAMS,
			  "forwards must be a non-empty array of {local_port, remote_port}");
		return;
	}
	json_t *bindings = json_array();
	size_t na = json_is_array(addrs) && json_array_size(addrs) ? json_array_size(addrs) : 1;
	size_t i;
	json_t *f;
	json_array_foreach(fw, i, f)
	{
		json_int_t lp = json_integer_value(json_object_get(f, "local_port"));
		json_int_t rp = json_integer_value(json_object_get(f, "remote_port"));
		if (lp < 0 || lp > 65535 || rp < 1 || rp > 65535) {
			json_decref(bindings);
			rpc_error(r, id, E_PARAMS,
				  "forwards[%zu]: ports must be 0-65535 (remote 1-65535)", i);
			return;
		}
		for (size_t a = 0; a < na; a++) {
			const char *addr = json_is_array(addrs)
					       ? json_string_value(json_array_get(addrs, a))
					       : NULL;
			char err[300];
			uint16_t bound;
			if (portfwd_add(&rs->sess.sup.pf, addr, (uint16_t)lp, (uint16_t)rp, &bound,
					err, sizeof(err)) < 0) {
				json_decref(bindings);
				rpc_error(r, id, E_SANDBOX, "%s", err);
				return;
			}
			json_array_append_new(bindings,
					      json_pack("{s:s,s:i,s:i}", "address",
							addr ? addr : "127.0.0.1", "local_port",
							bound, "remote_port", (int)rp));
		}
	}
	rpc_result(r, id, json_pack("{s:o}", "bindings", bindings));
}

/* ---- sandboxes --------------------------------------------------------------------------- */

/*
 * rs is gone (its start failed or was cancelled, or its stop completed): answer the closes
 * waiting for it, detach the calls still pointing at it, and free it.
 */
static void rs_gone(struct rpc_sandbox *rs)
{
	struct rpc *r = rs->rpc;
	for (struct call *c = r->calls, *next; c; c = next) {
		next = c->next;
		if (c->rs != rs)
			continue;
		c->rs = NULL;
		if (c->kind == CALL_CLOSE) {
			rpc_result(r, c->id, json_object());
			call_end(c);
		} else if (c->x || c->kind == CALL_CREATE) {
			/* A stop ends each exec through op_done first: only a backstop. */
			rpc_error(r, c->id, E_SANDBOX, "the sandbox stopped");
			call_end(c);
		}
	}
	for (struct rpc_sandbox **p = &r->sandboxes; *p; p = &(*p)->next) {
		if (*p == rs) {
			*p = rs->next;
			r->nsandboxes--;
			break;
		}
	}
	session_fini(&rs->sess);
	/* A callback of this session may still be on the stack. */
	loop_defer_free(&r->loop, rs, free);
}

static void rs_stopped(struct session *s, void *opaque)
{
	(void)s;
	rs_gone(opaque);
}

/* Stop rs (see session_stop); its closes are answered once it is gone. */
static void rs_stop(struct rpc_sandbox *rs)
{
	if (rs->state != RS_RUNNING)
		return;
	rs->state = RS_STOPPING;
	if (!rs->sess.sb) {
		rs_gone(rs); /* nothing runs: session_stop would not call back */
		return;
	}
	session_stop(&rs->sess, NULL, rs_stopped, rs);
}

/* Abandon rs's start; create is answered "cancelled" from started(). */
static void rs_cancel(struct rpc_sandbox *rs)
{
	if (rs->state != RS_STARTING || rs->cancelling)
		return;
	rs->cancelling = true;
	session_cancel(&rs->sess);
}

/* Close rs: a running sandbox is stopped, a starting one cancelled. */
static void rs_close(struct rpc_sandbox *rs)
{
	if (rs->state == RS_STARTING)
		rs_cancel(rs);
	else
		rs_stop(rs);
}

/* The error code answering a create that failed with k (session_start or started()). */
static int start_code(int k)
{
	return k == -EINVAL	 ? E_PARAMS
	       : k == -ENOMEM	 ? E_INTERNAL
	       : k == -ECANCELED ? E_CANCELLED
				 : E_SANDBOX;
}

static void rs_started(struct session *s, int k, const char *err, void *opaque)
{
	struct rpc_sandbox *rs = opaque;
	struct rpc *r = rs->rpc;
	struct call *c = rs->create;
	rs->create = NULL;
	if (k < 0) {
		rpc_error(r, c->id, start_code(k), "%s", err && *err ? err : strerror(-k));
		call_end(c);
		rs_gone(rs);
		return;
	}
	rs->state = RS_RUNNING;
	/* launch_entrypoint: the image's Entrypoint + Cmd (Docker's rules, image_config's on top)
	 * runs in the background. */
	if (rs->launch_entrypoint && s->argv[0])
		exec_argv(rs, NULL, s->argv, NULL, CALL_STREAM);
	rpc_result(r, c->id, json_pack("{s:s}", "id", s->L.id));
	call_end(c);
	if (rs->cancelling)
		rs_stop(rs); /* closed (or cancelled) when it was too late to abandon the start */
}

static void m_create(struct rpc *r, json_t *id, json_t *p)
{
	char err[1024] = "";
	struct sandbox_spec spec;
	if (r->nsandboxes >= RPC_MAX_SANDBOXES) {
		rpc_error(
		    r, id, E_SANDBOX,
		    "this rpc server already holds %d sandboxes, the most it serves: close one "
		    "first",
		    RPC_MAX_SANDBOXES);
		return;
	}
	if (sandbox_spec_init(&spec) < 0) {
		rpc_error(r, id, E_INTERNAL, "out of memory");
		return;
	}
	int k = rpc_spec_from_json(p, &spec, err, sizeof(err));
	struct rpc_sandbox *rs = NULL;
	struct call *c = NULL;
	if (k == 0 && (!(rs = calloc(1, sizeof(*rs))) || !(c = call_new(r, id, CALL_CREATE)))) {
		snprintf(err, sizeof(err), rs ? "too many requests in flight" : "out of memory");
		free(rs);
		k = -ENOMEM;
	}
	if (k < 0) {
		sandbox_spec_fini(&spec);
		rpc_error(r, id, start_code(k), "%s", err);
		return;
	}
	*rs = (struct rpc_sandbox){
		.rpc = r,
		.state = RS_STARTING,
		.create = c,
		.launch_entrypoint = json_is_true(json_object_get(p, "launch_entrypoint")),
		.next = r->sandboxes,
	};
	c->rs = rs;
	r->sandboxes = rs;
	r->nsandboxes++;
	spec.net_event = rpc_on_net_event;
	spec.net_opaque = rs;
	spec.file_event = rpc_on_file_event;
	rpc_hooks_asker_init(&rs->asker, &r->hooks, rs->sess.L.id);
	spec.hooks->asker = spec.fhooks->asker = &rs->asker.a;
	/* From here on started() answers (from the loop), unless the start cannot even begin. */
	k = session_start(&rs->sess, &spec, &r->loop, rs_started, rs, err, sizeof(err));
	sandbox_spec_fini(&spec);
	if (k < 0) {
		rpc_error(r, id, start_code(k), "%s", err);
		rs->create = NULL;
		call_end(c);
		rs_gone(rs);
	}
}

/*
 * close {sandbox?}: stop it (a starting one is cancelled); answered once it is gone. Like
 * `matchlock kill`, its record stays (stopped) with its log until `matchlock rm`. A stop
 * timeout asked for would be silently ignored: close takes no other parameter.
 */
static void m_close(struct rpc *r, json_t *id, json_t *p)
{
	static const char *const known[] = { "sandbox", NULL };
	char err[256];
	if (rpc_spec_keys_known(p, "", known, err, sizeof(err)) < 0) {
		rpc_error(r, id, E_PARAMS, "%s", err);
		return;
	}
	if (!r->nsandboxes && !json_object_get(p, "sandbox")) {
		rpc_result(r, id, json_object()); /* nothing to close */
		return;
	}
	struct rpc_sandbox *rs = rpc_target(r, id, p);
	if (!rs)
		return;
	struct call *c = call_new(r, id, CALL_CLOSE);
	if (!c) {
		rpc_error(r, id, E_INTERNAL, "too many requests in flight");
		return;
	}
	c->rs = rs;
	rs_close(rs);
}

static void dispatch(struct rpc *r, json_t *req)
{
	json_t *id = json_object_get(req, "id");
	const char *method = json_string_value(json_object_get(req, "method"));
	json_t *p = json_object_get(req, "params");
	/* A response from the client: the answer to a hook question of ours. */
	if (json_is_object(req) && !method &&
	    (json_object_get(req, "result") || json_object_get(req, "error")) &&
	    rpc_hooks_on_response(&r->hooks, req))
		return;
	if (!json_is_object(req) || !method ||
	    (id && !json_is_integer(id) && !json_is_string(id)) ||
	    !json_is_string(json_object_get(req, "jsonrpc")) ||
	    strcmp(json_string_value(json_object_get(req, "jsonrpc")), "2.0") != 0) {
		rpc_error(r, json_is_integer(id) || json_is_string(id) ? id : NULL, E_INVALID,
			  "invalid request");
		return;
	}
	if (p && !json_is_object(p)) {
		rpc_error(r, id, E_PARAMS, "params must be an object");
		return;
	}
	json_t *empty = NULL;
	if (!p)
		p = empty = json_object();
	if (id && call_find(r, id)) {
		rpc_error(r, id, E_INVALID, "a request with this id is still running");
	} else if (!strcmp(method, "create")) {
		m_create(r, id, p);
	} else if (!strcmp(method, "exec")) {
		m_exec(r, id, p, CALL_EXEC);
	} else if (!strcmp(method, "exec_stream")) {
		m_exec(r, id, p, CALL_STREAM);
	} else if (!strcmp(method, "exec_pipe")) {
		m_exec(r, id, p, CALL_PIPE);
	} else if (!strcmp(method, "exec_tty")) {
		m_exec(r, id, p, CALL_TTY);
	} else if (!strcmp(method, "exec_pipe.stdin") || !strcmp(method, "exec_tty.stdin")) {
		m_stdin(r, p, false);
	} else if (!strcmp(method, "exec_pipe.stdin_eof") ||
		   !strcmp(method, "exec_tty.stdin_eof")) {
		m_stdin(r, p, true);
	} else if (!strcmp(method, "exec_tty.resize")) {
		m_resize(r, p);
	} else if (!strcmp(method, "write_file")) {
		m_file(r, id, p, CALL_WRITE);
	} else if (!strcmp(method, "read_file")) {
		m_file(r, id, p, CALL_READ);
	} else if (!strcmp(method, "list_files")) {
		m_file(r, id, p, CALL_LIST);
	} else if (!strcmp(method, "log")) {
		m_log(r, id, p, false);
	} else if (!strcmp(method, "log_stream")) {
		m_log(r, id, p, true);
	} else if (!strcmp(method, "cancel")) {
		m_cancel(r, id, p);
	} else if (!strcmp(method, "close")) {
		m_close(r, id, p);
	} else if (!strcmp(method, "allow_list_add")) {
		m_allow(r, id, p, true);
	} else if (!strcmp(method, "allow_list_delete")) {
		m_allow(r, id, p, false);
	} else if (!strcmp(method, "port_forward")) {
		m_port_forward(r, id, p);
	} else if (!strcmp(method, "hooks_set")) {
		m_hooks(r, id, p, true);
	} else if (!strcmp(method, "hooks_get")) {
		m_hooks(r, id, p, false);
	} else {
		rpc_error(r, id, E_METHOD, "unknown method %s", method);
	}
	json_decref(empty);
}

/* ---- input ------------------------------------------------------------------------------- */

static void on_line(struct rpc *r, const char *line, size_t n)
{
	while (n && (line[n - 1] == '\r' || line[n - 1] == ' '))
		n--;
	if (!n)
		return;
	json_error_t je;
	json_t *req = json_loadb(line, n, JSON_REJECT_DUPLICATES, &je);
	if (!req) {
		rpc_error(r, NULL, E_PARSE, "parse error: %s", je.text);
		return;
	}
	dispatch(r, req);
	json_decref(req);
}

/*
 * Dispatch the complete lines waiting in r->in, in order, while stdout has room for their
 * answers; the rest wait (stdin is not watched meanwhile, rpc_flush). Called only from
 * cmd_rpc's loop between two batches of events, never from a callback: no dispatch is on the
 * stack when another starts.
 */
static void rpc_take(struct rpc *r)
{
	while (!r->client_gone && buf_used(&r->out) < RPC_OUT_HIGH &&
	       buf_used(&r->in) > r->partial) {
		const char *p = (const char *)buf_head(&r->in);
		const char *nl = memchr(p, '\n', buf_used(&r->in) - r->partial);
		size_t n = (size_t)(nl - p);
		if (n > RPC_MAX_LINE)
			rpc_error(r, NULL, E_INVALID, "request line longer than %u bytes",
				  RPC_MAX_LINE);
		else
			on_line(r, p, n);
		buf_consume(&r->in, n + 1);
	}
	if (r->client_gone) {
		buf_fini(&r->in);
		r->partial = 0;
	}
}

/*
 * n bytes were just read onto the end of r->in: keep the line being received within
 * RPC_MAX_LINE. A longer line's bytes are dropped as they arrive, and the line is answered with
 * one error when its end comes; so r->in holds the lines of one read plus at most one line.
 */
static void rpc_in_bound(struct rpc *r, size_t n)
{
	uint8_t *p = r->in.p + r->in.len - n;
	if (r->overlong) {
		uint8_t *nl = memchr(p, '\n', n);
		if (!nl) {
			r->in.len -= n;
			return;
		}
		size_t drop = (size_t)(nl + 1 - p);
		memmove(p, nl + 1, n - drop);
		r->in.len -= drop;
		n -= drop;
		r->overlong = false;
		rpc_error(r, NULL, E_INVALID, "request line longer than %u bytes", RPC_MAX_LINE);
	}
	uint8_t *last = memrchr(p, '\n', n);
	r->partial = last ? (size_t)(p + n - last - 1) : r->partial + n;
	if (r->partial > RPC_MAX_LINE) {
		r->in.len -= r->partial;
		r->partial = 0;
		r->overlong = true;
	}
}

/* Read what stdin has; rpc_take dispatches it once this batch of events is done. */
static void on_stdin(struct watch *w, uint32_t events)
{
	(void)events;
	struct rpc *r = w->obj;
	uint8_t *p = buf_reserve(&r->in, RPC_READ);
	ssize_t n = p ? read(w->fd, p, RPC_READ) : -1;
	if (n < 0 && p && (errno == EAGAIN || errno == EINTR))
		return;
	if (!p)
		warn("rpc: out of memory reading requests: no more are taken");
	if (n <= 0) {
		r->in_eof = true;
		loop_watch(&r->loop, w, 0);
		return;
	}
	r->in.len += (size_t)n;
	rpc_in_bound(r, (size_t)n);
}

/* Close the sandboxes whose lifetime ran out or that `matchlock kill` stopped. */
static void rpc_reap(struct rpc *r)
{
	for (struct rpc_sandbox *rs = r->sandboxes, *next; rs; rs = next) {
		next = rs->next;
		if (rs->state == RS_RUNNING && rs->sess.sup.stop)
			rs_stop(rs);
	}
}

int cmd_rpc(int argc, char **argv)
{
	if (argc > 1) {
		puts("usage: matchlock rpc\n\nServe sandboxes as JSON-RPC 2.0 over stdin/stdout "
		     "(see the SDKs and spec/rpc.md).");
		return !strcmp(argv[1], "--help") ? 0 : 1;
	}
	struct rpc r = { 0 };
	log_set_quiet(!getenv("MATCHLOCK_DEBUG"));
	signal(SIGPIPE, SIG_IGN);
	if (loop_init(&r.loop) < 0) {
		error("event loop: %s", strerror(errno));
		return EXIT_MATCHLOCK;
	}
	fd_set_nonblock(STDIN_FILENO, 1);
	fd_set_nonblock(STDOUT_FILENO, 1);
	watch_init(&r.in_w, STDIN_FILENO, on_stdin, &r);
	watch_init(&r.out_w, STDOUT_FILENO, on_stdout, &r);
	rpc_hooks_init(&r.hooks, &r.loop, rpc_hooks_send, &r);
	loop_watch(&r.loop, &r.in_w, EPOLLIN);

	/* The one place that runs the loop; requests are dispatched between its batches. */
	for (;;) {
		rpc_take(&r);
		rpc_reap(&r);
		if (r.in_eof && buf_used(&r.in) <= r.partial)
			break;
		loop_run_once(&r.loop, 0);
	}
	/*
	 * stdin closed: the client is gone; so are its sandboxes. Every start is abandoned and
	 * every sandbox stopped, at once; each stop finishes its running execs through op_done,
	 * which ends their calls. Then end what is left (log streams).
	 */
	for (struct rpc_sandbox *rs = r.sandboxes, *next; rs; rs = next) {
		next = rs->next;
		rs_close(rs);
	}
	uint64_t give_up = now_ns() + RPC_EXIT_WAIT_NS;
	while (r.sandboxes && now_ns() < give_up)
		loop_run_once(&r.loop, give_up);
	while (r.sandboxes) {
		/* Each stop is bounded, so this is a backstop: session_fini kills without grace. */
		warn("rpc: sandbox %s did not stop in time; killed", r.sandboxes->sess.L.id);
		rs_gone(r.sandboxes);
	}
	while (r.calls)
		call_end(r.calls);
	fd_set_nonblock(STDOUT_FILENO, 0);
	rpc_flush(&r);
	buf_fini(&r.in);
	buf_fini(&r.out);
	buf_fini(&r.events);
	loop_fini(&r.loop);
	return 0;
}
