/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"

#define QMP_MAX_LINE (1u << 20)

/* Read one line (QMP messages are single lines) within the deadline. */
static json_t *qmp_read(int fd, uint64_t deadline, char *err, size_t errn)
{
	static char line[QMP_MAX_LINE];
	size_t len = 0;
	for (;;) {
		uint64_t now = now_ns();
		if (now >= deadline) {
			snprintf(err, errn, "QMP: no answer from QEMU in time");
			return NULL;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int k = poll(&p, 1, (int)((deadline - now) / 1000000 + 1));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			continue;
		/* Byte at a time up to the newline: QMP traffic here is tiny. */
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n <= 0) {
			snprintf(err, errn, "QMP: QEMU closed the monitor");
			return NULL;
		}
		if (c != '\n') {
			if (len + 1 >= sizeof(line)) {
				snprintf(err, errn, "QMP: oversized message");
				return NULL;
			}
			line[len++] = c;
			continue;
		}
		json_error_t je;
		json_t *j = json_loadb(line, len, 0, &je);
		if (!j) {
			snprintf(err, errn, "QMP: bad JSON: %s", je.text);
			return NULL;
		}
		return j;
	}
}

static int qmp_write(int fd, json_t *msg, const int *pass)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	if (!s)
		return -ENOMEM;
	size_t n = strlen(s);
	struct iovec iov[2] = { { .iov_base = s, .iov_len = n },
				{ .iov_base = "\n", .iov_len = 1 } };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	if (pass) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), pass, sizeof(int));
	}
	ssize_t w;
	do
		w = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	free(s);
	return w == (ssize_t)(n + 1) ? 0 : -EIO;
}

static int qmp_exchange(int fd, json_t *msg, const int *pass, json_t **ret, unsigned timeout_ms,
			char *err, size_t errn)
{
	uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
	if (qmp_write(fd, msg, pass) < 0) {
		snprintf(err, errn, "QMP: cannot write to QEMU");
		return -EIO;
	}
	for (;;) {
		json_t *j = qmp_read(fd, deadline, err, errn);
		if (!j)
			return -EIO;
		json_t *r = json_object_get(j, "return");
		json_t *e = json_object_get(j, "error");
		if (r) {
			if (ret)
				*ret = json_incref(r);
			json_decref(j);
			return 0;
		}
		if (e) {
			snprintf(err, errn, "QEMU: %s",
				 json_string_value(json_object_get(e, "desc")) ?: "error");
			json_decref(j);
			return -EIO;
		}
		json_decref(j); /* an event */
	}
}

int qmp_handshake(int fd, unsigned timeout_ms, char *err, size_t errn)
{
	json_t *greeting = qmp_read(fd, now_ns() + timeout_ms * 1000000ull, err, errn);
	if (!greeting)
		return -EIO;
	bool ok = json_object_get(greeting, "QMP") != NULL;
	json_decref(greeting);
	if (!ok) {
		snprintf(err, errn, "QMP: unexpected greeting");
		return -EIO;
	}
	return qmp_call(fd, "qmp_capabilities", NULL, NULL, timeout_ms, err, errn);
}

int qmp_call(int fd, const char *cmd, json_t *args, json_t **ret, unsigned timeout_ms, char *err,
	     size_t errn)
{
	json_t *msg = json_pack("{s:s}", "execute", cmd);
	if (args)
		json_object_set(msg, "arguments", args);
	int r = qmp_exchange(fd, msg, NULL, ret, timeout_ms, err, errn);
	json_decref(msg);
	return r;
}

int qmp_send_fd(int fd, const char *name, int pass, unsigned timeout_ms, char *err, size_t errn)
{
	json_t *msg = json_pack("{s:s,s:{s:s}}", "execute", "getfd", "arguments", "fdname", name);
	int r = qmp_exchange(fd, msg, &pass, NULL, timeout_ms, err, errn);
	json_decref(msg);
	return r;
}

int qmp_send(int fd, const char *cmd, json_t *args)
{
	json_t *msg = json_pack("{s:s}", "execute", cmd);
	if (msg && args)
		json_object_set(msg, "arguments", args);
	int r = msg ? qmp_write(fd, msg, NULL) : -ENOMEM;
	json_decref(msg);
	return r;
}

int qmp_rx_take(int fd, struct qmp_rx *rx, json_t **msg, char *err, size_t errn)
{
	for (;;) {
		char c;
		ssize_t n = read(fd, &c, 1); /* byte at a time: QMP traffic here is tiny */
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0) {
			snprintf(err, errn, "QMP: QEMU closed the monitor");
			return -EIO;
		}
		if (c != '\n') {
			if (buf_used(&rx->line) + 1 >= QMP_MAX_LINE ||
			    buf_append(&rx->line, &c, 1) < 0) {
				snprintf(err, errn, "QMP: oversized message");
				return -EIO;
			}
			continue;
		}
		json_error_t je;
		json_t *j =
		    json_loadb((const char *)buf_head(&rx->line), buf_used(&rx->line), 0, &je);
		buf_consume(&rx->line, buf_used(&rx->line));
		if (!j) {
			snprintf(err, errn, "QMP: bad JSON: %s", je.text);
			return -EIO;
		}
		if (json_object_get(j, "event")) {
			json_decref(j);
			continue;
		}
		*msg = j;
		return 1;
	}
}

void qmp_rx_fini(struct qmp_rx *rx)
{
	buf_fini(&rx->line);
}
