/* SPDX-License-Identifier: MIT */
/*
 * File services for the host (the SDKs' read_file, write_file, list_files): they work in any
 * image, even one without a shell. Content streams in both directions under the same credit
 * flow control as process output, so files of any size pass without either side buffering them
 * whole. Each request ends with CTL_EXIT (code 0) or CTL_ERROR (errno and a message).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "common/util.h"
#include "proto/msg.h"

#define MAX_FILE_OPS 64
#define MAX_LISTING (16u << 20) /* bytes of directory records per list request */

struct file_op {
	struct mux_stream *s;
	uint16_t svc;
	int fd; /* read/write target */
	struct buf listing; /* list: records not yet sent */
	uint64_t remaining; /* read: bytes still to send (T_LENGTH) */
	struct file_op *next;
};

static struct file_op *ops;
static unsigned nops;

static void send_ctl_end(struct mux_stream *s, int err, const char *what)
{
	struct buf b = { 0 };
	if (err) {
		char msg[600];
		snprintf(msg, sizeof(msg), "%s: %s", what, strerror(err));
		buf_put_u16(&b, CTL_ERROR);
		msg_put_u32(&b, T_ERRNO, (uint32_t)err);
		msg_put_str(&b, T_MESSAGE, msg);
	} else {
		buf_put_u16(&b, CTL_EXIT);
		msg_put_u32(&b, T_EXIT_CODE, 0);
	}
	mux_send_msg(&agent.mux, s->id, &b);
	buf_fini(&b);
}

static void op_end(struct file_op *f, int err, const char *what)
{
	send_ctl_end(f->s, err, what);
	agent_stream_own(f->s, AGENT_STREAM_NONE, NULL);
	mux_close(&agent.mux, f->s, 0);
	agent_link_wants_write();
	if (f->fd >= 0)
		close(f->fd);
	buf_fini(&f->listing);
	for (struct file_op **p = &ops; *p; p = &(*p)->next) {
		if (*p == f) {
			*p = f->next;
			break;
		}
	}
	nops--;
	free(f);
}

/* Send file content or listing records while credit lasts; end at EOF. */
static void op_pump(struct file_op *f)
{
	uint8_t tmp[MUX_DATA_CHUNK];
	while (f->s->send_credit > 0 && !mux_congested(&agent.mux)) {
		uint32_t room = f->s->send_credit < sizeof(tmp) ? f->s->send_credit : sizeof(tmp);
		ssize_t n;
		if (f->svc == SVC_FILE_READ) {
			if (room > f->remaining)
				room = (uint32_t)f->remaining;
			n = room ? read(f->fd, tmp, room) : 0;
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				op_end(f, errno, "read");
				return;
			}
		} else {
			n = (ssize_t)(buf_used(&f->listing) < room ? buf_used(&f->listing) : room);
			memcpy(tmp, buf_head(&f->listing), (size_t)n);
			buf_consume(&f->listing, (size_t)n);
		}
		if (n == 0) {
			op_end(f, 0, NULL);
			return;
		}
		mux_send_data(&agent.mux, f->s, MUX_CHAN_OUT, tmp, (uint32_t)n);
		if (f->svc == SVC_FILE_READ)
			f->remaining -= (uint64_t)n;
		agent_link_wants_write();
	}
}

static int put_record(struct buf *b, const char *name, const struct stat *st)
{
	struct buf rec = { 0 };
	msg_put_str(&rec, T_NAME, name);
	msg_put_u64(&rec, T_SIZE, (uint64_t)st->st_size);
	msg_put_u32(&rec, T_MODE, st->st_mode);
	msg_put_u64(&rec, T_TIME_NS,
		    (uint64_t)st->st_mtim.tv_sec * 1000000000ull + (uint64_t)st->st_mtim.tv_nsec);
	int r = buf_used(b) + buf_used(&rec) + 4 > MAX_LISTING ? -E2BIG : 0;
	if (r == 0)
		r = buf_put_u32(b, (uint32_t)buf_used(&rec));
	if (r == 0)
		r = buf_append(b, buf_head(&rec), buf_used(&rec));
	buf_fini(&rec);
	return r;
}

static int list_dir(const char *path, struct buf *out)
{
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		int e = -errno;
		close(dfd);
		return e;
	}
	struct dirent *e;
	int r = 0;
	while (r == 0 && (e = readdir(d))) {
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		r = put_record(out, e->d_name, &st);
	}
	closedir(d);
	return r;
}

int files_open(struct mux_stream *s, uint16_t svc, struct rd *body)
{
	char *path = NULL;
	uint32_t mode = 0644;
	uint8_t append = 0;
	uint64_t offset = 0, length = UINT64_MAX;
	uint16_t tag;
	struct rd v;
	int k, err = 0;
	const char *what = "request";
	while ((k = msg_next(body, &tag, &v)) > 0) {
		if (tag == T_PATH) {
			free(path);
			path = NULL;
			if (msg_dup_str(&v, MSG_MAX_STR, &path) < 0)
				k = -EPROTO;
		} else if ((tag == T_MODE && msg_get_u32(&v, &mode) < 0) ||
			   (tag == T_APPEND && msg_get_u8(&v, &append) < 0) ||
			   (tag == T_OFFSET && msg_get_u64(&v, &offset) < 0) ||
			   (tag == T_LENGTH && msg_get_u64(&v, &length) < 0)) {
			k = -EPROTO;
		}
		if (k < 0)
			break;
	}
	if (k < 0 || !path || path[0] != '/') {
		send_ctl_end(s, EINVAL, "request (an absolute path is needed)");
		goto refuse;
	}
	if (nops >= MAX_FILE_OPS) {
		send_ctl_end(s, EMFILE, "too many file transfers at once");
		goto refuse;
	}
	struct file_op *f = calloc(1, sizeof(*f));
	if (!f) {
		send_ctl_end(s, ENOMEM, "request");
		goto refuse;
	}
	f->s = s;
	f->svc = svc;
	f->fd = -1;
	if (svc == SVC_FILE_WRITE) {
		what = path;
		/* Parents are created, like the SDKs promise; only regular files are written. */
		char *slash = strrchr(path, '/');
		if (slash && slash != path) {
			*slash = 0;
			mkdir_p(path, 0755);
			*slash = '/';
		}
		f->fd = open(path,
			     O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK |
				 (append ? O_APPEND : O_TRUNC),
			     mode & 07777);
		struct stat st;
		if (f->fd < 0 || fstat(f->fd, &st) < 0)
			err = errno;
		else if (!S_ISREG(st.st_mode))
			err = EINVAL;
		else if (fchmod(f->fd, mode & 07777) < 0)
			err = errno;
	} else if (svc == SVC_FILE_READ) {
		what = path;
		struct stat st;
		f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (f->fd < 0 || fstat(f->fd, &st) < 0)
			err = errno;
		else if (S_ISDIR(st.st_mode))
			err = EISDIR;
		else if (!S_ISREG(st.st_mode))
			err = EINVAL;
		else if (offset && lseek(f->fd, (off_t)(offset > INT64_MAX ? INT64_MAX : offset),
					 SEEK_SET) < 0)
			err = errno;
		f->remaining = length;
	} else {
		what = path;
		int r = list_dir(path, &f->listing);
		err = r < 0 ? -r : 0;
	}
	f->next = ops;
	ops = f;
	nops++;
	agent_stream_own(s, AGENT_STREAM_FILES, f);
	if (err) {
		op_end(f, err, what);
	} else if (svc != SVC_FILE_WRITE) {
		op_pump(f);
	}
	free(path);
	return 0;
refuse:
	free(path);
	mux_close(&agent.mux, s, 0);
	agent_link_wants_write();
	return 0;
}

int files_on_frame(struct mux_stream *s, const struct mux_frame *f)
{
	struct file_op *op = s->user;
	switch (f->type) {
	case MUX_DATA:
		if (op->svc == SVC_FILE_WRITE && f->chan == MUX_CHAN_IN) {
			/* Local files on tmpfs or the overlay: a plain write does not stall us. */
			if (write_all(op->fd, f->payload, f->len) < 0) {
				mux_consumed(&agent.mux, s, f->len);
				op_end(op, errno, "write");
				return 0;
			}
		}
		mux_consumed(&agent.mux, s, f->len);
		agent_link_wants_write();
		break;
	case MUX_EOF:
		if (op->svc == SVC_FILE_WRITE && f->chan == MUX_CHAN_IN) {
			int err = close(op->fd) < 0 ? errno : 0;
			op->fd = -1;
			op_end(op, err, "close");
		}
		break;
	case MUX_CREDIT:
		if (op->svc != SVC_FILE_WRITE)
			op_pump(op);
		break;
	case MUX_CLOSE:
		/* The host gave up: stop. (op_end answers; the host ignores it.) */
		op_end(op, ECANCELED, "transfer");
		break;
	}
	return 0;
}

void files_resume_all(void)
{
	for (struct file_op *f = ops, *next; f; f = next) {
		next = f->next;
		if (f->svc != SVC_FILE_WRITE)
			op_pump(f);
	}
}
