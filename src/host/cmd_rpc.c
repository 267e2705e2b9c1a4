/* SPDX-License-Identifier: MIT */
/*
 * matchlock rpc: one sandbox served over stdin/stdout as JSON-RPC 2.0, one JSON object per
 * line (requests up to 16 MiB). Requests overlap; each is answered by its id; streaming output
 * arrives as notifications carrying the request's id. stdout carries nothing but protocol.
 *
 * Lines are parsed as they arrive and queued; the queue is dispatched from the top of the main
 * loop, never from inside an event callback, because create and close run the sandbox's boot
 * and stop sequences, which drive the loop themselves.
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

#include "common/child.h"
#include "cli.h"
#include "common/base64.h"
#include "common/jsonw.h"
#include "common/log.h"
#include "common/util.h"
#include "oci/oci.h"
#include "proto/env.h"
#include "proto/msg.h"
#include "sandbox.h"
#include "session.h"

#define RPC_MAX_LINE (16u << 20)
#define RPC_OUT_HIGH (8u << 20) /* stop taking guest output while this much waits on stdout */
#define RPC_MAX_CAPTURE (16u << 20) /* exec: stdout and stderr each kept per call; log */
#define RPC_MAX_CALLS 256
#define RPC_MAX_READ (8u << 20) /* read_file: bytes per request (larger files in chunks) */
#define RPC_MAX_EVENTS (256u << 10) /* event notifications waiting for the client; then dropped */
#define RPC_KEEP_BUF (1u << 20) /* a drained output buffer larger than this is freed */

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
	CALL_LOG
};

struct rpc;

struct call {
	struct rpc *rpc;
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

struct rpc {
	struct loop loop;
	struct watch in_w, out_w;
	struct buf in, out;
	struct buf events; /* event notifications not yet in out (RPC_MAX_EVENTS) */
	uint64_t events_dropped; /* since the last "dropped" notice */
	bool in_eof, overlong;
	json_t *queue; /* parsed requests waiting for dispatch */
	struct call *calls;
	unsigned ncalls;
	/*
	 * The sandbox (session.h): sess.sb while it runs; sess.spec.policy is what allow_list_*
	 * change; sess.env, sess.user and sess.workdir are every exec's defaults.
	 */
	struct session sess;
	struct sandbox *sb; /* == sess.sb: NULL before create and after close */
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
			/* The client went away: nothing more to say to anyone. */
			buf_consume(&r->out, buf_used(&r->out));
			buf_fini(&r->events);
			r->in_eof = true;
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

static bool need_sandbox(struct rpc *r, json_t *id)
{
	if (r->sb && !sandbox_failure(r->sb))
		return true;
	rpc_error(r, id, E_SANDBOX,
		  r->sb ? "the sandbox failed: %s" : "no sandbox: call create first",
		  r->sb ? sandbox_failure(r->sb) : "");
	return false;
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

/*
 * Put a {KEY: VALUE} object (a request's env) on top of e. Returns 0, or -errno with err saying
 * which variable and why (where names the parameter).
 */
static int env_put_json(struct env *e, json_t *obj, const char *where, char *err, size_t errn)
{
	if (obj && !json_is_object(obj)) {
		snprintf(err, errn, "%s must be an object {NAME: VALUE}", where);
		return -EINVAL;
	}
	const char *k;
	json_t *val;
	json_object_foreach(obj, k, val)
	{
		int rc = json_is_string(val) ? env_set_kv(e, k, json_string_value(val)) : -EINVAL;
		if (rc < 0) {
			snprintf(err, errn, "%s.%.64s: %s", where, k,
				 json_is_string(val) ? env_strerror(rc)
						     : "the value must be a string");
			return rc;
		}
	}
	return 0;
}

/* Start argv with p's options (working_dir, user, env, rows, cols, timeout_seconds). */
static void exec_argv(struct rpc *r, json_t *id, char **argv, json_t *p, enum call_kind kind)
{
	/* create's environment, then the request's on top. */
	struct env env = { 0 };
	char err[512];
	int k = env_copy(&env, &r->sess.env);
	if (k < 0)
		snprintf(err, sizeof(err), "out of memory");
	else
		k = env_put_json(&env, json_object_get(p, "env"), "env", err, sizeof(err));
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
			   : r->sess.workdir,
		.user = json_is_string(json_object_get(p, "user"))
			    ? json_string_value(json_object_get(p, "user"))
			    : r->sess.user,
		.stdin_on = kind == CALL_PIPE || kind == CALL_TTY,
		.tty = kind == CALL_TTY,
		.rows = (uint16_t)json_integer_value(json_object_get(p, "rows")),
		.cols = (uint16_t)json_integer_value(json_object_get(p, "cols")),
		.timeout_s = (unsigned)json_integer_value(json_object_get(p, "timeout_seconds")),
	};
	struct call *c = call_new(r, id, kind);
	if (!c) {
		rpc_error(r, id, E_INTERNAL, "too many requests in flight");
	} else if (!(c->x = sandbox_exec_start(r->sb, &req, &call_ops, c, err, sizeof(err)))) {
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
	if (!need_sandbox(r, id))
		return;
	char **argv = command_argv(json_object_get(p, "command"));
	if (!argv) {
		rpc_error(r, id, E_PARAMS,
			  "command must be a string or a non-empty array of strings");
		return;
	}
	exec_argv(r, id, argv, p, kind);
	strv_free(argv);
}

static void m_stdin(struct rpc *r, json_t *p, bool eof)
{
	struct call *c = call_find(r, json_object_get(p, "id"));
	if (!c || !c->x)
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
	struct call *c = call_find(r, json_object_get(p, "id"));
	json_int_t rows = json_integer_value(json_object_get(p, "rows"));
	json_int_t cols = json_integer_value(json_object_get(p, "cols"));
	if (c && c->x && rows > 0 && cols > 0 && rows < 65536 && cols < 65536)
		sandbox_exec_resize(c->x, (uint16_t)rows, (uint16_t)cols);
}

static void m_file(struct rpc *r, json_t *id, json_t *p, enum call_kind kind)
{
	if (!need_sandbox(r, id))
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
	c->x = sandbox_file_start(r->sb, &fr, &call_ops, c, err, sizeof(err));
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

static void m_log(struct rpc *r, json_t *id, bool stream)
{
	if (!r->sb) {
		rpc_error(r, id, E_SANDBOX, "no sandbox: call create first");
		return;
	}
	char path[4300];
	snprintf(path, sizeof(path), "%s/log", r->sess.L.dir);
	struct log_reader *lr = log_reader_open(path); /* log.1, then log */
	if (!lr) {
		rpc_error(r, id, E_INTERNAL, "log: %s", strerror(errno));
		return;
	}
	if (!stream) {
		/* The log's last RPC_MAX_CAPTURE bytes, base64: the console may hold any bytes. */
		struct buf b = { 0 };
		bool truncated = false;
		uint8_t *p;
		ssize_t n = 1;
		while (n > 0 && (p = buf_reserve(&b, 65536))) {
			n = log_reader_read(lr, p, 65536);
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
	if (!c) {
		rpc_result(r, id, json_pack("{s:b}", "cancelled", 0));
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

/* network {allowed_hosts[], add_hosts[{host, ip}], block_private_ips, no_network} into pol. */
static int rpc_policy_from(struct policy *pol, json_t *net, char *err, size_t errn)
{
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(net, "allowed_hosts"), i, v)
	{
		if (!json_is_string(v) || policy_add(pol, json_string_value(v)) < 0) {
			snprintf(err, errn, "allowed_hosts[%zu]: expected a host name or glob", i);
			return -EINVAL;
		}
	}
	json_array_foreach(json_object_get(net, "add_hosts"), i, v)
	{
		const char *h = json_string_value(json_object_get(v, "host"));
		const char *ip = json_string_value(json_object_get(v, "ip"));
		char spec[POLICY_NAME_MAX + 64];
		bool v6 = ip && strchr(ip, ':');
		if (h && ip)
			snprintf(spec, sizeof(spec), v6 ? "%s:[%s]" : "%s:%s", h, ip);
		if (!h || !ip || policy_pin(pol, spec) < 0) {
			snprintf(err, errn, "add_hosts[%zu]: expected {host, ip}", i);
			return -EINVAL;
		}
	}
	json_t *bp = json_object_get(net, "block_private_ips");
	pol->allow_private = json_is_false(bp);
	pol->no_network = json_is_true(json_object_get(net, "no_network"));
	return 0;
}

/* network.secrets {NAME: {value, hosts[]}} into ss (session_start allows their hosts). */
static int rpc_secrets_from(struct secrets *ss, json_t *secrets, char *err, size_t errn)
{
	const char *name;
	json_t *v;
	json_object_foreach(secrets, name, v)
	{
		const char *value = json_string_value(json_object_get(v, "value"));
		json_t *hosts = json_object_get(v, "hosts");
		char list[2048] = "";
		size_t i;
		json_t *h;
		json_array_foreach(hosts, i, h)
		{
			if (!json_is_string(h) ||
			    strlen(list) + strlen(json_string_value(h)) + 2 >= sizeof(list)) {
				snprintf(err, errn, "network.secrets.%s.hosts: expected host names",
					 name);
				return -EINVAL;
			}
			if (i)
				strcat(list, ",");
			strcat(list, json_string_value(h));
		}
		if (!value || !list[0]) {
			snprintf(err, errn,
				 "network.secrets.%s: needs a value and at least one host", name);
			return -EINVAL;
		}
		if (secrets_add(ss, name, (const uint8_t *)value, strlen(value), list, err, errn) <
		    0)
			return -EINVAL;
		/* The SDK's program may hold the value in the environment we inherited (child.h).
		 */
		child_wipe_env_value(value, strlen(value));
	}
	return 0;
}

/* Every egress decision becomes an `event` notification. */
static void rpc_on_net_event(const struct net_event *ev, void *opaque)
{
	struct rpc *r = opaque;
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
	json_t *msg = json_pack("{s:s,s:{s:s,s:s,s:o}}", "method", "event", "params", "type",
				"network", "timestamp", when, "network", n ? n : json_object());
	if (rpc_queue(&r->events, msg) < 0)
		r->events_dropped++;
	rpc_flush(r);
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
	if (!need_sandbox(r, id))
		return;
	json_t *hosts = json_object_get(p, "hosts");
	if (!json_is_array(hosts)) {
		rpc_error(r, id, E_PARAMS, "hosts must be an array of host names or globs");
		return;
	}
	struct policy *pol = r->sess.spec.policy;
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
	if (!need_sandbox(r, id))
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
			if (portfwd_add(&r->sess.sup.pf, addr, (uint16_t)lp, (uint16_t)rp, &bound,
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

/*
 * create's params, checked for shape before they become a spec. Every field the server does not
 * know (vfs, privileged, dns_servers, mtu, intercept, a secret's placeholder, ...) is refused by
 * name, at every level, in the validator's words (sandbox_spec_unsupported): a caller who asked
 * for a protection must not silently get none. Fields the spec has but does not implement yet
 * (disk_size_mb) and every range are sandbox_spec_check's. Returns 0 or -EINVAL with err.
 */
static int keys_known(json_t *obj, const char *where, const char *const *known, char *err,
		      size_t errn)
{
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v)
	{
		bool ok = false;
		for (const char *const *q = known; *q && !ok; q++)
			ok = !strcmp(k, *q);
		if (!ok) {
			char name[160];
			snprintf(name, sizeof(name), "%s%s%.64s", where, *where ? "." : "", k);
			sandbox_spec_unsupported(err, errn, name);
			return -EINVAL;
		}
	}
	return 0;
}

/* Is v absent or of the type check accepts? Sets err naming where.name otherwise. */
static bool field_ok(json_t *obj, const char *where, const char *name, int (*check)(const json_t *),
		     const char *what, char *err, size_t errn)
{
	json_t *v = json_object_get(obj, name);
	if (!v || check(v))
		return true;
	snprintf(err, errn, "%s%s%s must be %s", where, *where ? "." : "", name, what);
	return false;
}

static int is_obj(const json_t *v)
{
	return json_is_object(v);
}
static int is_arr(const json_t *v)
{
	return json_is_array(v);
}
static int is_str(const json_t *v)
{
	return json_is_string(v);
}
static int is_bool(const json_t *v)
{
	return json_is_boolean(v);
}
static int is_num(const json_t *v)
{
	return json_is_number(v);
}
static int is_int(const json_t *v)
{
	return json_is_integer(v);
}

static bool strings_ok(json_t *arr, const char *what, char *err, size_t errn)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		if (!json_is_string(v)) {
			snprintf(err, errn, "%s[%zu] must be a string", what, i);
			return false;
		}
	}
	return true;
}

/* mounts: [{host, guest?, mode?}], strings; what they name is sandbox_spec_check's. */
static int mounts_check(json_t *arr, char *err, size_t errn)
{
	static const char *const mount[] = { "host", "guest", "mode", NULL };
	char where[64];
	size_t i;
	json_t *v;
	if (arr && !json_is_array(arr)) {
		snprintf(err, errn, "mounts must be an array of {host, guest, mode}");
		return -EINVAL;
	}
	if (json_array_size(arr) > SPEC_MAX_MOUNTS) {
		snprintf(err, errn, "mounts: at most %d host folders", SPEC_MAX_MOUNTS);
		return -EINVAL;
	}
	json_array_foreach(arr, i, v)
	{
		snprintf(where, sizeof(where), "mounts[%zu]", i);
		if (!json_is_object(v)) {
			snprintf(err, errn, "%s must be an object {host, guest, mode}", where);
			return -EINVAL;
		}
		if (keys_known(v, where, mount, err, errn) < 0 ||
		    !field_ok(v, where, "host", is_str, "a string", err, errn) ||
		    !field_ok(v, where, "guest", is_str, "a string", err, errn) ||
		    !field_ok(v, where, "mode", is_str, "a string", err, errn))
			return -EINVAL;
	}
	return 0;
}

static int create_check(json_t *p, char *err, size_t errn)
{
	static const char *const top[] = { "image",	   "env",
					   "resources",	   "network",
					   "image_config", "launch_entrypoint",
					   "mounts",	   NULL };
	static const char *const resources[] = { "cpus", "memory_mb", "disk_size_mb",
						 "timeout_seconds", NULL };
	static const char *const network[] = {
		"allowed_hosts", "add_hosts", "block_private_ips", "no_network", "secrets",
		"hostname",	 NULL
	};
	static const char *const add_host[] = { "host", "ip", NULL };
	static const char *const secret[] = { "value", "hosts", NULL };
	static const char *const image_config[] = { "user", "working_dir", "entrypoint",
						    "cmd",  "env",	   NULL };
	json_t *res = json_object_get(p, "resources"), *net = json_object_get(p, "network");
	json_t *ic = json_object_get(p, "image_config");
	if (keys_known(p, "", top, err, errn) < 0)
		return -EINVAL;
	if (!field_ok(p, "", "image", is_str, "a string", err, errn) ||
	    !field_ok(p, "", "env", is_obj, "an object {NAME: VALUE}", err, errn) ||
	    !field_ok(p, "", "resources", is_obj, "an object", err, errn) ||
	    !field_ok(p, "", "network", is_obj, "an object", err, errn) ||
	    !field_ok(p, "", "image_config", is_obj, "an object", err, errn) ||
	    !field_ok(p, "", "launch_entrypoint", is_bool, "true or false", err, errn))
		return -EINVAL;
	if (keys_known(res, "resources", resources, err, errn) < 0 ||
	    keys_known(net, "network", network, err, errn) < 0 ||
	    keys_known(ic, "image_config", image_config, err, errn) < 0)
		return -EINVAL;
	/* Types only: the ranges are sandbox_spec_check's, the same for every entry point. */
	if (!field_ok(res, "resources", "cpus", is_num, "a number", err, errn) ||
	    !field_ok(res, "resources", "memory_mb", is_int, "an integer", err, errn) ||
	    !field_ok(res, "resources", "disk_size_mb", is_int, "an integer", err, errn) ||
	    !field_ok(res, "resources", "timeout_seconds", is_int, "an integer", err, errn))
		return -EINVAL;
	if (!field_ok(net, "network", "allowed_hosts", is_arr, "an array of host names", err,
		      errn) ||
	    !field_ok(net, "network", "add_hosts", is_arr, "an array of {host, ip}", err, errn) ||
	    !field_ok(net, "network", "block_private_ips", is_bool, "true or false", err, errn) ||
	    !field_ok(net, "network", "no_network", is_bool, "true or false", err, errn) ||
	    !field_ok(net, "network", "secrets", is_obj, "an object {NAME: {value, hosts}}", err,
		      errn) ||
	    !field_ok(net, "network", "hostname", is_str, "a string", err, errn))
		return -EINVAL;
	size_t i;
	json_t *v;
	char where[96];
	json_array_foreach(json_object_get(net, "add_hosts"), i, v)
	{
		snprintf(where, sizeof(where), "network.add_hosts[%zu]", i);
		if (!json_is_object(v)) {
			snprintf(err, errn, "%s must be an object {host, ip}", where);
			return -EINVAL;
		}
		if (keys_known(v, where, add_host, err, errn) < 0)
			return -EINVAL;
	}
	const char *name;
	json_object_foreach(json_object_get(net, "secrets"), name, v)
	{
		snprintf(where, sizeof(where), "network.secrets.%.64s", name);
		if (!json_is_object(v)) {
			snprintf(err, errn, "%s must be an object {value, hosts}", where);
			return -EINVAL;
		}
		if (keys_known(v, where, secret, err, errn) < 0)
			return -EINVAL;
	}
	if (mounts_check(json_object_get(p, "mounts"), err, errn) < 0)
		return -EINVAL;
	if (!field_ok(ic, "image_config", "user", is_str, "a string", err, errn) ||
	    !field_ok(ic, "image_config", "working_dir", is_str, "a string", err, errn) ||
	    !field_ok(ic, "image_config", "entrypoint", is_arr, "an array of strings", err, errn) ||
	    !field_ok(ic, "image_config", "cmd", is_arr, "an array of strings", err, errn) ||
	    !field_ok(ic, "image_config", "env", is_obj, "an object {NAME: VALUE}", err, errn) ||
	    !strings_ok(json_object_get(ic, "entrypoint"), "image_config.entrypoint", err, errn) ||
	    !strings_ok(json_object_get(ic, "cmd"), "image_config.cmd", err, errn) ||
	    !strings_ok(json_object_get(net, "allowed_hosts"), "network.allowed_hosts", err, errn))
		return -EINVAL;
	return 0;
}

/* A JSON array of strings (checked by create_check) as a NULL-terminated copy; NULL: ENOMEM. */
static char **json_strv(json_t *arr)
{
	char **v = calloc(json_array_size(arr) + 1, sizeof(char *));
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e)
	{
		if (v && !(v[i] = strdup(json_string_value(e)))) {
			spec_strv_free(v);
			v = NULL;
		}
	}
	return v;
}

/*
 * create's params (already through create_check) into sp. This is translation only: whether
 * the values are acceptable is sandbox_spec_check's call, the same for `matchlock run`.
 */
static int create_spec(json_t *p, struct sandbox_spec *sp, char *err, size_t errn)
{
	json_t *res = json_object_get(p, "resources"), *net = json_object_get(p, "network");
	json_t *ic = json_object_get(p, "image_config"), *v;
	const char *image = json_string_value(json_object_get(p, "image"));
	if (!image || !*image) {
		snprintf(err, errn, "image is required");
		return -EINVAL;
	}
	/* A path is a root filesystem (directory or tarball); anything else an OCI reference. */
	bool is_path = image[0] == '/' || image[0] == '.';
	int k = spec_strdup(is_path ? &sp->rootfs : &sp->image, image);
	if ((v = json_object_get(res, "cpus")))
		sp->cpus = json_number_value(v);
	if ((v = json_object_get(res, "memory_mb")))
		sp->memory_mb = json_integer_value(v);
	if ((sp->has_disk_size = (v = json_object_get(res, "disk_size_mb"))))
		sp->disk_size_mb = json_integer_value(v);
	if ((sp->has_timeout = (v = json_object_get(res, "timeout_seconds"))))
		sp->timeout_s = json_integer_value(v);
	sp->lifetime = LIFETIME_CLIENT;
	k = k ?: spec_strdup(&sp->accel, getenv("MATCHLOCK_ACCEL"));
	k = k ?: spec_strdup(&sp->hostname, json_string_value(json_object_get(net, "hostname")));
	k = k ?: spec_strdup(&sp->user, json_string_value(json_object_get(ic, "user")));
	k = k ?: spec_strdup(&sp->workdir, json_string_value(json_object_get(ic, "working_dir")));
	if (!k && (v = json_object_get(ic, "entrypoint")) && !(sp->entrypoint = json_strv(v)))
		k = -ENOMEM;
	if (!k && (v = json_object_get(ic, "cmd")) && !(sp->cmd = json_strv(v)))
		k = -ENOMEM;
	if (k < 0) {
		snprintf(err, errn, "out of memory");
		return k;
	}
	/* Above the image's Env, Docker's order: image_config.env, then env. */
	if ((k = env_put_json(&sp->env, json_object_get(ic, "env"), "image_config.env", err,
			      errn)) < 0 ||
	    (k = env_put_json(&sp->env, json_object_get(p, "env"), "env", err, errn)) < 0)
		return k == -ENOMEM ? k : -EINVAL;
	/* A mount without a guest path goes to the workspace, as `run -v HOST` does. */
	size_t i;
	json_array_foreach(json_object_get(p, "mounts"), i, v)
	{
		struct spec_mount *m = &sp->mounts[i];
		const char *guest = json_string_value(json_object_get(v, "guest"));
		k = spec_strdup(&m->host, json_string_value(json_object_get(v, "host")));
		k = k ?: spec_strdup(&m->guest, guest ? guest : SPEC_WORKSPACE);
		k = k ?: spec_strdup(&m->mode, json_string_value(json_object_get(v, "mode")));
		sp->nmounts = (unsigned)i + 1;
		if (k < 0) {
			snprintf(err, errn, "out of memory");
			return k;
		}
	}
	if (rpc_policy_from(sp->policy, net, err, errn) < 0 ||
	    rpc_secrets_from(sp->secrets, json_object_get(net, "secrets"), err, errn) < 0)
		return -EINVAL;
	return 0;
}

static void m_create(struct rpc *r, json_t *id, json_t *p)
{
	char err[1024] = "";
	struct sandbox_spec spec;
	if (r->sb) {
		rpc_error(r, id, E_SANDBOX, "this rpc session already has a sandbox (%s)",
			  r->sess.L.id);
		return;
	}
	if (sandbox_spec_init(&spec) < 0) {
		rpc_error(r, id, E_INTERNAL, "out of memory");
		return;
	}
	int k = create_check(p, err, sizeof(err));
	k = k ?: create_spec(p, &spec, err, sizeof(err));
	if (k == 0) {
		spec.net_event = rpc_on_net_event;
		spec.net_opaque = r;
		k = session_start(&r->sess, &spec, &r->loop, err, sizeof(err));
	}
	sandbox_spec_fini(&spec);
	if (k < 0) {
		session_fini(&r->sess);
		rpc_error(r, id,
			  k == -EINVAL	 ? E_PARAMS
			  : k == -ENOMEM ? E_INTERNAL
					 : E_SANDBOX,
			  "%s", err);
		return;
	}
	r->sb = r->sess.sb;
	/* launch_entrypoint: the image's Entrypoint + Cmd (Docker's rules, image_config's on top)
	 * runs in the background. */
	if (json_is_true(json_object_get(p, "launch_entrypoint")) && r->sess.argv[0])
		exec_argv(r, NULL, r->sess.argv, NULL, CALL_STREAM);
	rpc_result(r, id, json_pack("{s:s}", "id", r->sess.L.id));
}

/* Stop the sandbox; like `matchlock kill`, its record stays (stopped) with its log until `matchlock
 * rm`. */
static void rpc_close_sandbox(struct rpc *r)
{
	if (!r->sb)
		return;
	session_stop(&r->sess, NULL);
	session_fini(&r->sess);
	r->sb = NULL;
}

/* close takes no parameters: a stop timeout asked for would otherwise be silently ignored. */
static void m_close(struct rpc *r, json_t *id, json_t *p)
{
	static const char *const none[] = { NULL };
	char err[256];
	if (keys_known(p, "", none, err, sizeof(err)) < 0) {
		rpc_error(r, id, E_PARAMS, "%s", err);
		return;
	}
	rpc_close_sandbox(r);
	rpc_result(r, id, json_object());
}

static void dispatch(struct rpc *r, json_t *req)
{
	json_t *id = json_object_get(req, "id");
	const char *method = json_string_value(json_object_get(req, "method"));
	json_t *p = json_object_get(req, "params");
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
		m_log(r, id, false);
	} else if (!strcmp(method, "log_stream")) {
		m_log(r, id, true);
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
	json_array_append_new(r->queue, req);
}

static void on_stdin(struct watch *w, uint32_t events)
{
	(void)events;
	struct rpc *r = w->obj;
	uint8_t tmp[65536];
	ssize_t n = read(w->fd, tmp, sizeof(tmp));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		r->in_eof = true;
		loop_watch(&r->loop, w, 0);
		return;
	}
	for (ssize_t i = 0, start = 0; i <= n; i++) {
		if (i < n && tmp[i] != '\n')
			continue;
		size_t piece = (size_t)(i - start);
		if (i == n) {
			/* A partial line: keep it, within bounds. */
			if (r->overlong || buf_used(&r->in) + piece > RPC_MAX_LINE) {
				r->overlong = true;
				buf_consume(&r->in, buf_used(&r->in));
			} else {
				buf_append(&r->in, tmp + start, piece);
			}
			break;
		}
		if (r->overlong || buf_used(&r->in) + piece > RPC_MAX_LINE) {
			rpc_error(r, NULL, E_INVALID, "request line longer than %u bytes",
				  RPC_MAX_LINE);
		} else if (buf_used(&r->in)) {
			buf_append(&r->in, tmp + start, piece);
			on_line(r, (const char *)buf_head(&r->in), buf_used(&r->in));
		} else {
			on_line(r, (const char *)tmp + start, piece);
		}
		buf_consume(&r->in, buf_used(&r->in));
		r->overlong = false;
		start = i + 1;
	}
}

int cmd_rpc(int argc, char **argv)
{
	if (argc > 1) {
		puts("usage: matchlock rpc\n\nServe one sandbox as JSON-RPC 2.0 over stdin/stdout "
		     "(see the SDKs).");
		return !strcmp(argv[1], "--help") ? 0 : 1;
	}
	struct rpc r = { .sess.sigfd = -1, .sess.notify_fd = -1 };
	log_set_quiet(!getenv("MATCHLOCK_DEBUG"));
	signal(SIGPIPE, SIG_IGN);
	if (loop_init(&r.loop) < 0) {
		error("event loop: %s", strerror(errno));
		return EXIT_MATCHLOCK;
	}
	r.queue = json_array();
	fd_set_nonblock(STDIN_FILENO, 1);
	fd_set_nonblock(STDOUT_FILENO, 1);
	watch_init(&r.in_w, STDIN_FILENO, on_stdin, &r);
	watch_init(&r.out_w, STDOUT_FILENO, on_stdout, &r);
	loop_watch(&r.loop, &r.in_w, EPOLLIN);

	while (!(r.in_eof && json_array_size(r.queue) == 0)) {
		/* While stdout is over its high mark, requests wait: their answers would pile up.
		 */
		while (json_array_size(r.queue) && buf_used(&r.out) < RPC_OUT_HIGH) {
			json_t *req = json_incref(json_array_get(r.queue, 0));
			json_array_remove(r.queue, 0);
			dispatch(&r, req);
			json_decref(req);
		}
		if (r.sb && r.sess.sup.stop) {
			/* The lifetime ran out, or `matchlock kill` asked. */
			rpc_close_sandbox(&r);
		}
		if (r.in_eof && !json_array_size(r.queue))
			break;
		loop_run_once(&r.loop, 0);
	}
	/* stdin closed: the client is gone; so is its sandbox. Stopping it finishes its running
	 * execs through op_done, which ends their calls; then end what is left (log streams).
	 * Ending the calls first made op_done end them a second time (a double free). */
	rpc_close_sandbox(&r);
	while (r.calls)
		call_end(r.calls);
	fd_set_nonblock(STDOUT_FILENO, 0);
	rpc_flush(&r);
	json_decref(r.queue);
	buf_fini(&r.in);
	buf_fini(&r.out);
	buf_fini(&r.events);
	session_fini(&r.sess);
	loop_fini(&r.loop);
	return 0;
}
