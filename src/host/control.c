/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"
#include "common/paths.h"
#include "proto/msg.h"

int control_dir(const char *id, char *out, size_t n)
{
	char state[4096];
	int r = paths_state_dir(state, sizeof(state));
	if (r < 0)
		return r;
	/* IDs come from users: only our own shape may become a path. */
	if (strncmp(id, "vm-", 3) != 0 || strlen(id) > 15 ||
	    strspn(id + 3, "0123456789abcdef") != strlen(id + 3))
		return -ENOENT;
	if (snprintf(out, n, "%s/sandboxes/%s", state, id) >= (int)n)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * sun_path is 108 bytes; MATCHLOCK_HOME may be longer. Go through an O_PATH fd of the directory
 * and /proc/self/fd, which is always short.
 */
static int sock_addr_named(const char *dir, const char *name, int *dirfd, struct sockaddr_un *sa)
{
	*dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*dirfd < 0)
		return -errno;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", *dirfd, name);
	return 0;
}

int control_listen_named(const char *dir, const char *name, char *err, size_t errn)
{
	struct sockaddr_un sa;
	_cleanup_close_ int dirfd = -1;
	int r = sock_addr_named(dir, name, &dirfd, &sa);
	if (r < 0) {
		snprintf(err, errn, "%s: %s", dir, strerror(-r));
		return r;
	}
	unlinkat(dirfd, name, 0);
	/*
	 * Owner-only whatever the umask, and so is its directory (another local user must not
	 * even reach it); control_peer_allowed checks each client again.
	 */
	fchmod(dirfd, 0700);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fchmodat(dirfd, name, 0600, 0) < 0 || listen(fd, 16) < 0) {
		r = -errno;
		snprintf(err, errn, "socket %s in %s: %s", name, dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return r;
	}
	return fd;
}

bool control_peer_allowed(int fd)
{
	struct ucred cr;
	socklen_t n = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &n) < 0)
		return false;
	return cr.uid == geteuid() || cr.uid == 0;
}

int control_connect_named(const char *dir, const char *name)
{
	struct sockaddr_un sa;
	_cleanup_close_ int dirfd = -1;
	int r = sock_addr_named(dir, name, &dirfd, &sa);
	if (r < 0)
		return r == -ENOTDIR ? -ENOENT : r;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int control_listen(const char *dir, char *err, size_t errn)
{
	return control_listen_named(dir, "control.sock", err, errn);
}

int control_connect(const char *id)
{
	char dir[4200];
	int r = control_dir(id, dir, sizeof(dir));
	return r < 0 ? r : control_connect_named(dir, "control.sock");
}

int control_send(int fd, const struct buf *msg, const int *fds, int nfds)
{
	if (msg->bad)
		return -ENOMEM; /* an append failed while msg was built: never send it with a gap */
	struct iovec iov = { .iov_base = buf_head(msg), .iov_len = buf_used(msg) };
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

ssize_t control_recv(int fd, uint8_t *p, size_t cap, int *fds, int *nfds)
{
	struct iovec iov = { .iov_base = p, .iov_len = cap };
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	*nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int got[3];
		for (int i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*nfds < 3)
				got[(*nfds)++] = f;
			else
				close(f);
		}
		memcpy(fds, got, (size_t)*nfds * sizeof(int));
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (int i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
		return -EMSGSIZE;
	}
	return n;
}

int control_simple(int fd, uint16_t type, uint16_t tag, const char *s)
{
	struct buf b = { 0 };
	buf_put_u16(&b, type);
	if (s)
		msg_put_str(&b, tag, s);
	int r = control_send(fd, &b, NULL, 0);
	buf_fini(&b);
	return r;
}
