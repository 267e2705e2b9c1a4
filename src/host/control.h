/* SPDX-License-Identifier: MIT */
/*
 * The control socket of a running sandbox: <state>/sandboxes/<id>/control.sock, a unix
 * SOCK_SEQPACKET socket in a 0700 directory. CLI verbs (exec, kill, ...) talk to the sandbox's
 * supervisor through it. One message per packet: u16 type + TLVs (proto/msg.h encoding).
 * `exec` passes the client's stdin/stdout/stderr as file descriptors (SCM_RIGHTS), so output
 * goes straight from the supervisor to wherever the client's stdout points.
 */
#ifndef MATCHLOCK_CONTROL_H
#define MATCHLOCK_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"

#define CONTROL_MAX_MSG (256 * 1024)
#define CONTROL_MAX_CLIENTS 64

enum ctrl_type {
	CTRL_EXEC = 1, /* client: exec request TLVs + 3 fds */
	CTRL_INTERRUPT, /* client: Ctrl-C for its exec */
	CTRL_RESIZE, /* client: T_ROWS, T_COLS */
	CTRL_STOP, /* client: stop the sandbox; answered with CTRL_OK once it is down */
	CTRL_EXIT, /* server: T_EXIT_CODE, optional T_MESSAGE */
	CTRL_OK, /* server */
	CTRL_FAIL, /* server: T_MESSAGE */
	CTRL_PORT_FORWARD, /* client: T_PORT (remote), T_LOCAL_PORT, T_ADDR_TEXT; answered
			      CTRL_OK with T_LOCAL_PORT = the port bound */
	CTRL_ALLOW_ADD, /* client: T_NAME, repeated; answered CTRL_OK with T_NAME = every rule */
	CTRL_ALLOW_DEL, /* client: T_NAME, repeated; likewise */
	/*
	 * client: a tree out of the guest (matchlock cp, diff): T_PATH, T_FLAGS, T_SHARE as
	 * SVC_TREE_PACK takes them + 1 fd the tree stream is written to (closed at its end);
	 * answered CTRL_OK, or CTRL_FAIL with T_MESSAGE.
	 */
	CTRL_TREE_PACK,
	/*
	 * client: a tree into the guest: T_PATH, T_NAME, T_FLAGS as SVC_TREE_UNPACK takes them +
	 * 1 fd the tree stream is read from until EOF; answered like CTRL_TREE_PACK.
	 */
	CTRL_TREE_UNPACK,
	/*
	 * client: the sandbox's host folders; answered CTRL_OK with, per mount in order, T_MOUNT
	 * ("INDEX MODE GUESTPATH", as in CTL_CONFIG) and T_PATH (the host folder).
	 */
	CTRL_MOUNTS,
};

/* Path of a sandbox's state directory. */
int control_dir(const char *id, char *out, size_t n);
/* Listen in dir; returns the fd or -errno (err says why). */
int control_listen(const char *dir, char *err, size_t errn);
/*
 * A client may use the control socket: its uid (SO_PEERCRED) is ours or root's. The socket is
 * 0600 in a 0700 directory already; this holds even if a path to it is handed out.
 */
bool control_peer_allowed(int fd);
/* Connect to the sandbox id; returns the fd, -ENOENT/-ECONNREFUSED when it is not running. */
int control_connect(const char *id);
/* The same for another socket NAME in dir (a pool standby's pool.sock, pool.h). */
int control_listen_named(const char *dir, const char *name, char *err, size_t errn);
int control_connect_named(const char *dir, const char *name);
/* Send one message with up to 3 fds. */
int control_send(int fd, const struct buf *msg, const int *fds, int nfds);
/*
 * Receive one message into p (cap bytes); fds (up to 3) land in fds[] and *nfds. Returns the
 * length, 0 at EOF, or -errno (-EMSGSIZE for a truncated message; any fds are closed then).
 */
ssize_t control_recv(int fd, uint8_t *p, size_t cap, int *fds, int *nfds);
/* Build a message: type + one optional string TLV. */
int control_simple(int fd, uint16_t type, uint16_t tag, const char *s);

#endif
