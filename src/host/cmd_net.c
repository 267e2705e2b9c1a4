/* SPDX-License-Identifier: MIT */
/*
 * matchlock allow-list add|delete ID HOST[,HOST...] and matchlock port-forward ID
 * [LOCAL:]REMOTE...: change a running sandbox's network through its control socket.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/log.h"
#include "control.h"
#include "portfwd.h"
#include "proto/msg.h"

/* Send one request and wait for its answer (CTRL_OK or CTRL_FAIL); the reply goes to out. */
static int request(int fd, struct buf *msg, uint8_t *out, size_t cap, char *err, size_t errn)
{
	if (control_send(fd, msg, NULL, 0) < 0) {
		snprintf(err, errn, "the sandbox's supervisor did not take the request");
		return -EIO;
	}
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 30000) <= 0) {
		snprintf(err, errn, "no answer from the sandbox's supervisor");
		return -ETIMEDOUT;
	}
	int fds[3], nfds;
	ssize_t n = control_recv(fd, out, cap, fds, &nfds);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	if (n < 2) {
		snprintf(err, errn, "the sandbox stopped");
		return -EIO;
	}
	struct rd r = rd_make(out, (size_t)n);
	if (rd_u16(&r) == CTRL_FAIL) {
		uint16_t tag;
		struct rd v;
		snprintf(err, errn, "refused");
		while (msg_next(&r, &tag, &v) > 0) {
			char *s = NULL;
			if (tag == T_MESSAGE && msg_dup_str(&v, 400, &s) == 0) {
				snprintf(err, errn, "%s", s);
				free(s);
			}
		}
		return -EINVAL;
	}
	return (int)n;
}

int cmd_allow_list(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[1], "add") && strcmp(argv[1], "delete"))) {
		fputs("usage: matchlock allow-list add|delete ID HOST[,HOST...]\n", stderr);
		return 1;
	}
	char err[512] = "", id[32];
	int fd = cli_connect_sandbox(argv[2], id, sizeof(id), err, sizeof(err));
	if (fd < 0) {
		error("%s", err);
		return 1;
	}
	struct buf b = { 0 };
	buf_put_u16(&b, !strcmp(argv[1], "add") ? CTRL_ALLOW_ADD : CTRL_ALLOW_DEL);
	char *list = strdup(argv[3]), *save = NULL;
	for (char *h = strtok_r(list, ",", &save); h; h = strtok_r(NULL, ",", &save))
		if (*h)
			msg_put_str(&b, T_NAME, h);
	free(list);
	static uint8_t reply[CONTROL_MAX_MSG];
	int n = request(fd, &b, reply, sizeof(reply), err, sizeof(err));
	buf_fini(&b);
	close(fd);
	if (n < 0) {
		error("allow-list %s: %s", argv[1], err);
		return 1;
	}
	/* The whole list as it is now: empty means sealed. */
	struct rd r = rd_make(reply + 2, (size_t)n - 2), v;
	uint16_t tag;
	unsigned count = 0;
	while (msg_next(&r, &tag, &v) > 0) {
		char *s = NULL;
		if (tag == T_NAME && msg_dup_str(&v, 300, &s) == 0) {
			printf("%s\n", s);
			count++;
			free(s);
		}
	}
	if (!count)
		fprintf(stderr, "matchlock: %s now allows no host: its network is sealed\n", id);
	return 0;
}

int cmd_port_forward(int argc, char **argv)
{
	const char *address = NULL;
	int i = 1;
	if (i + 1 < argc && !strcmp(argv[i], "--address")) {
		address = argv[i + 1];
		i += 2;
	}
	if (argc - i < 2 || argv[i][0] == '-') {
		fputs("usage: matchlock port-forward [--address IP] ID [LOCAL:]REMOTE...\n",
		      stderr);
		return 1;
	}
	char err[512] = "", id[32];
	int fd = cli_connect_sandbox(argv[i], id, sizeof(id), err, sizeof(err));
	if (fd < 0) {
		error("%s", err);
		return 1;
	}
	int status = 0;
	for (int k = i + 1; k < argc; k++) {
		uint16_t local, remote;
		if (portfwd_parse(argv[k], &local, &remote) < 0) {
			error("port-forward %s: expected [LOCAL:]REMOTE ports", argv[k]);
			status = 1;
			break;
		}
		struct buf b = { 0 };
		buf_put_u16(&b, CTRL_PORT_FORWARD);
		msg_put_u16(&b, T_PORT, remote);
		msg_put_u16(&b, T_LOCAL_PORT, local);
		if (address)
			msg_put_str(&b, T_ADDR_TEXT, address);
		uint8_t reply[256];
		int n = request(fd, &b, reply, sizeof(reply), err, sizeof(err));
		buf_fini(&b);
		if (n < 0) {
			error("port-forward %s: %s", argv[k], err);
			status = 1;
			break;
		}
		struct rd r = rd_make(reply + 2, (size_t)n - 2), v;
		uint16_t tag, bound = local;
		while (msg_next(&r, &tag, &v) > 0)
			if (tag == T_LOCAL_PORT)
				msg_get_u16(&v, &bound);
		printf("%s:%u -> %u\n", address ? address : "127.0.0.1", bound, remote);
	}
	close(fd);
	return status;
}
