/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Next line of the head (without CRLF), or NULL with r bad at the end of the bytes. */
static const uint8_t *next_line(struct rd *r, size_t *len)
{
	size_t start = r->off;
	const uint8_t *base = r->p + start;
	while (rd_left(r) >= 2) {
		if (r->p[r->off] == '\r' && r->p[r->off + 1] == '\n') {
			*len = r->off - start;
			rd_bytes(r, 2);
			return base;
		}
		rd_bytes(r, 1);
	}
	r->bad = true;
	return NULL;
}

/* Copy an authority (host[:port]) into host, lower case, port dropped. -EPROTO if not a name. */
static int authority_host(const uint8_t *a, size_t n, char *host, size_t hostn)
{
	size_t end = 0;
	while (end < n && a[end] != ':')
		end++;
	if (end == 0 || end >= hostn)
		return -EPROTO;
	for (size_t i = 0; i < end; i++) {
		if (!isalnum(a[i]) && a[i] != '-' && a[i] != '.' && a[i] != '_')
			return -EPROTO; /* IP literals in brackets, userinfo, spaces... */
		host[i] = (char)tolower(a[i]);
	}
	if (host[end - 1] == '.')
		end--;
	host[end] = 0;
	for (size_t i = end + (end < n ? 1 : 0); i < n; i++)
		if (!isdigit(a[i]))
			return -EPROTO;
	return 0;
}

int http_request_host(const uint8_t *p, size_t n, char *host, size_t hostn)
{
	struct rd r = rd_make(p, n > HTTP_MAX_HEAD ? HTTP_MAX_HEAD : n);
	size_t len;
	const uint8_t *line = next_line(&r, &len);
	if (!line)
		return n >= HTTP_MAX_HEAD ? -EPROTO : 0;
	/* Request line: METHOD SP TARGET SP VERSION. */
	const uint8_t *sp1 = memchr(line, ' ', len);
	const uint8_t *sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - line)) : NULL;
	if (!sp1 || !sp2 || sp1 == line)
		return -EPROTO;
	const uint8_t *target = sp1 + 1;
	size_t tlen = (size_t)(sp2 - target);
	char uri_host[256] = "";
	if (tlen > 7 && !strncasecmp((const char *)target, "http://", 7)) {
		const uint8_t *auth = target + 7;
		size_t alen = 0;
		while (7 + alen < tlen && auth[alen] != '/')
			alen++;
		if (authority_host(auth, alen, uri_host, sizeof(uri_host)) < 0)
			return -EPROTO;
	}
	bool found = false;
	for (;;) {
		line = next_line(&r, &len);
		if (!line)
			return n >= HTTP_MAX_HEAD ? -EPROTO : 0;
		if (len == 0)
			break;
		if (len < 5 || strncasecmp((const char *)line, "host:", 5))
			continue;
		if (found)
			return -EPROTO; /* two Host headers: ambiguous, refuse */
		const uint8_t *v = line + 5;
		size_t vl = len - 5;
		while (vl && (*v == ' ' || *v == '\t'))
			v++, vl--;
		while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			vl--;
		if (authority_host(v, vl, host, hostn) < 0)
			return -EPROTO;
		found = true;
	}
	if (!found) {
		if (!uri_host[0])
			return -EPROTO;
		snprintf(host, hostn, "%s", uri_host);
	}
	if (uri_host[0] && strcmp(uri_host, host))
		return -EPROTO;
	return 1;
}

int http_build_403(struct buf *out, const char *reason)
{
	char head[256];
	size_t blen = strlen(reason) + 1;
	int k = snprintf(head, sizeof(head),
			 "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\nX-Matchlock-Denied: 1\r\n\r\n",
			 blen);
	if (buf_append(out, head, (size_t)k) < 0 || buf_append(out, reason, blen - 1) < 0 ||
	    buf_append(out, "\n", 1) < 0)
		return -ENOMEM;
	return 0;
}
