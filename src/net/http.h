/* SPDX-License-Identifier: MIT */
/*
 * The HTTP/1 parts of the egress path, and its only HTTP/1 head parser. One strict parser of
 * request and response heads (bounded, no obsolete folding, no ambiguous framing) returns the
 * head as spans over the caller's bytes: the start line and every header field. Everything that
 * looks at a head works on those spans — the plain-HTTP checks (http_walk), the TLS proxy, the
 * secret substitution (secrets.c) and the head rewrite (http_head_filter) — so no second
 * tokeniser can read a head differently. Also: telling a request from other bytes on a plain
 * connection, the 403/4xx/502 answers, and a streaming body decoder (content-length, chunked,
 * close-delimited) that never buffers a body. Pure code: unit-tested and fuzzed.
 */
#ifndef MATCHLOCK_HTTP_H
#define MATCHLOCK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define HTTP_MAX_HEAD (16u * 1024) /* a request head longer than this is refused */
#define HTTP_MAX_RESPONSE_HEAD (64u * 1024) /* upstreams send bigger heads (cookies) */
#define HTTP_MAX_HEADERS 128
#define HTTP_MAX_CHUNK_LINE 1024 /* a chunk-size line with extensions */
#define HTTP_MAX_TRAILERS (16u * 1024)

/*
 * Whether the first bytes of a connection are an HTTP/1 request: 1 yes (a request line, a
 * token, a space and "HTTP/" before the line ends, or a token line longer than HTTP_MAX_HEAD),
 * 0 more bytes needed, -1 no. Generous on purpose: what a lenient server could take for a
 * request is checked as one.
 */
int http_sniff_request(const uint8_t *p, size_t n);
/* How many CR and LF bytes start p: servers skip empty lines before a request line. */
size_t http_leading_empty(const uint8_t *p, size_t n);
/* Append a complete "403 Forbidden" response whose body is reason (one line). */
int http_build_403(struct buf *out, const char *reason);

/* Append a complete response with a one-line plain-text body; always Connection: close. */
int http_build_error(struct buf *out, int status, const char *reason);

enum http_framing {
	HTTP_BODY_NONE,
	HTTP_BODY_LENGTH,
	HTTP_BODY_CHUNKED,
	HTTP_BODY_CLOSE, /* responses only: the body ends when the connection does */
};

/*
 * One header field line, as offsets into the head: the name runs from name_off to the colon,
 * the value is what lies between optional whitespace after the colon and before end (the
 * line's CR). The next field starts at end + 2; after the last one, end + 2 is the empty line.
 */
struct http_field {
	uint32_t name_off;
	uint32_t name_len;
	uint32_t value_off;
	uint32_t value_len;
	uint32_t end;
};

/* A parsed head. Offsets are into the bytes it was parsed from. */
struct http_msg {
	size_t head_len; /* through the empty line */
	size_t line_len; /* the start line, without its CRLF */
	unsigned nfields;
	struct http_field field[HTTP_MAX_HEADERS];
	int minor; /* HTTP/1.minor */
	char method[16]; /* requests */
	size_t target_off, target_len; /* requests */
	char host[256]; /* requests: from Host (and an absolute-form target), lower case, no port;
			   an IPv6 literal in brackets */
	int status; /* responses */
	enum http_framing framing;
	uint64_t length; /* HTTP_BODY_LENGTH */
	bool close; /* Connection: close (or HTTP/1.0 without keep-alive) */
	bool upgrade; /* requests: Upgrade: websocket with Connection: upgrade */
	bool expect_continue;
};

/*
 * Length of the head at the start of p (through CRLFCRLF), 0 if it is not complete yet,
 * -EPROTO if none ends within max bytes.
 */
long http_head_len(const uint8_t *p, size_t n, size_t max);
/*
 * Parse a complete request head (n = its length). Returns 0 or -EPROTO with a short reason in
 * *why: the caller answers 400 and closes.
 */
int http_parse_request(const uint8_t *p, size_t n, struct http_msg *m, const char **why);
/* A response head, to a request that was HEAD (head_request) or not. */
int http_parse_response(const uint8_t *p, size_t n, bool head_request, struct http_msg *m,
			const char **why);
/*
 * Copy an authority (host[:port]) into host, lower case, port dropped; an IPv6 literal keeps
 * its brackets. -EPROTO if not a name or an IP literal. (Host, absolute targets, HTTP/2's
 * :authority.)
 */
int http_authority_host(const uint8_t *a, size_t n, char *host, size_t hostn);
/* Whether field f of head is named name (case-insensitive). */
bool http_field_is(const uint8_t *head, const struct http_field *f, const char *name);
/*
 * Copy a head parsed into m, leaving out the headers named in drop (NULL-terminated,
 * case-insensitive) and adding the lines of add (each "Name: value\r\n", may be NULL) before the
 * empty line.
 */
int http_head_filter(const uint8_t *head, const struct http_msg *m, const char *const *drop,
		     const char *add, struct buf *out);
/* The target for an event: path, and query keys without their values ("/p?a=&b="). */
void http_target_redacted(const uint8_t *t, size_t n, char *out, size_t outn);

/* Streaming body decoder: framing bytes are consumed, data is handed out in pieces. */
struct http_body {
	enum http_framing framing;
	uint64_t left; /* LENGTH: bytes to go; CHUNKED: of the current chunk */
	int st; /* CHUNKED: the decoder's state */
	size_t trailer_bytes;
};
void http_body_init(struct http_body *b, enum http_framing f, uint64_t length);
/*
 * One step over p[0..n): *used bytes are consumed; of those, p[*data_off..+*data_len) is body
 * data (possibly empty). Returns 1 when the body ended (the rest of p is the next message),
 * 0 to call again (with more bytes if *used was 0), -EPROTO if the framing is malformed.
 * eof: the connection ended (finishes a close-delimited body; anything else is truncated).
 */
int http_body_step(struct http_body *b, const uint8_t *p, size_t n, bool eof, size_t *used,
		   size_t *data_off, size_t *data_len);
/* Whether the next step of a chunked body reads a trailer line (the last chunk was read). */
bool http_body_in_trailer(const struct http_body *b);

/*
 * The guest -> upstream bytes of a plain-HTTP connection, walked request by request so that
 * every head is checked (keep-alive and pipelined alike): empty lines between requests pass,
 * a head is held until complete (at most HTTP_MAX_HEAD), a body streams through its framing.
 */
enum http_walk_state {
	HTTP_WALK_HEAD, /* the next bytes are a request head (after optional empty lines) */
	HTTP_WALK_BODY, /* inside a request body */
	HTTP_WALK_HOLD, /* a WebSocket upgrade went out: nothing passes until the answer */
	HTTP_WALK_TUNNEL, /* the upstream switched protocols: bytes, no longer HTTP */
};

struct http_walk {
	enum http_walk_state st;
	struct http_body body;
	unsigned nreq; /* heads accepted */
	size_t data_off, data_len; /* body data among the last step's *used bytes (0, 0: none) */
};

/*
 * One step over p[0..n), the bytes after those already walked. Returns 0 with *used bytes that
 * may pass (0: more bytes needed), 1 with a complete request head of *used bytes parsed into *m
 * (the caller checks it, then calls http_walk_accept or refuses the connection), or -EPROTO
 * with *why. eof: the guest will send nothing more.
 */
int http_walk_step(struct http_walk *w, const uint8_t *p, size_t n, bool eof, size_t *used,
		   struct http_msg *m, const char **why);
/* The head http_walk_step returned passed the caller's checks: walk its body next. */
void http_walk_accept(struct http_walk *w, const struct http_msg *m);
/*
 * The upstream's first bytes after an upgrade request (the connection's first request, so they
 * answer it): 101 makes the rest a tunnel, anything else means HTTP goes on. Returns true once
 * decided (p holds at least 12 bytes); a caller collects that many first.
 */
bool http_walk_upgrade_answer(struct http_walk *w, const uint8_t *p, size_t n);

#endif
