/* SPDX-License-Identifier: MIT */
/*
 * DATA frames from a pipe or a socket to the port without copying the bytes in the guest.
 *
 * Under TCG every byte the guest copies costs: a process's output read into a buffer, copied
 * into the mux's queue and copied again by the port's write() made exec stdout run at a fifth
 * of what a plain program writing the port reaches (bench/net). Here the bytes go by splice():
 * source -> `data` pipe (page references), header written into the `frame` pipe, `data` ->
 * `frame` (references again), `frame` -> port, which hands the pages to QEMU as one virtqueue
 * buffer (virtio_console's splice_write steals anonymous pipe pages, and copies the others
 * once, in the kernel).
 *
 * Order: a frame is spliced only when nothing waits in the mux's queue, and while a frame waits
 * in `frame` (the port was full) nothing else is written (link write in main.c): frames reach
 * the host in the order they were made. A frame is whole in `frame` before the port sees any
 * of it, and the port takes a splice whole or not at all, so the link never carries half a
 * frame. Both pipes are ours and hold at most one frame.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "common/log.h"

/*
 * `frame` holds more pages than `data` can: a frame is its header's page plus what `data` held.
 * A frame is at most MUX_MAX_PAYLOAD (64 full pages); `data` may hold it in up to 128 pieces.
 */
#define SPLICE_DATA_PIPE (512 << 10)
#define SPLICE_FRAME_PIPE (1 << 20)

static struct {
	int data[2], frame[2];
	uint32_t pending; /* bytes of one frame waiting in `frame` */
	bool ready;
} sp = { { -1, -1 }, { -1, -1 }, 0, false };

static int pipe_make(int p[2], int size)
{
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	if (fcntl(p[0], F_SETPIPE_SZ, size) < 0)
		return -errno;
	return 0;
}

void link_splice_init(void)
{
	int r = pipe_make(sp.data, SPLICE_DATA_PIPE);
	if (r == 0)
		r = pipe_make(sp.frame, SPLICE_FRAME_PIPE);
	if (r < 0) {
		warn("link: no splice pipes (%s): data is copied", strerror(-r));
		return;
	}
	sp.ready = true;
}

bool link_splice_pending(void)
{
	return sp.pending > 0;
}

bool agent_link_congested(void)
{
	return mux_congested(&agent.mux) || sp.pending > 0;
}

int link_splice_flush(void)
{
	while (sp.pending > 0) {
		ssize_t n = splice(sp.frame[0], NULL, agent.link_fd, NULL, sp.pending,
				   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		sp.pending -= (uint32_t)n;
	}
	return 0;
}

/* Move exactly n bytes from one of our pipes to the other (they are there, and there is room). */
static int pipe_move(int from, int to, uint32_t n)
{
	while (n > 0) {
		ssize_t k = splice(from, NULL, to, NULL, n, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		n -= (uint32_t)k;
	}
	return 0;
}

ssize_t link_splice_data(struct mux_stream *s, uint8_t chan, int fd, uint32_t max)
{
	if (!sp.ready || s->local_closed) {
		errno = EINVAL;
		return -1;
	}
	/* Frames queued before this one go first: try to write them now. */
	if (sp.pending > 0 || (buf_used(&agent.mux.out) > 0 && agent_link_write() < 0) ||
	    buf_used(&agent.mux.out) > 0) {
		errno = EBUSY;
		return -1;
	}
	if (max > MUX_MAX_PAYLOAD)
		max = MUX_MAX_PAYLOAD;
	if (max > s->send_credit)
		max = s->send_credit;
	ssize_t n = splice(fd, NULL, sp.data[1], NULL, max, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
	if (n <= 0)
		return n; /* EOF, or the source's errno (EAGAIN: nothing to read; EINVAL: no splice)
			   */
	uint8_t hdr[MUX_HDR_LEN];
	int r = mux_data_header(s, chan, (uint32_t)n, hdr);
	if (r == 0 && write(sp.frame[1], hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr))
		r = -EIO;
	if (r == 0)
		r = pipe_move(sp.data[0], sp.frame[1], (uint32_t)n);
	if (r < 0) {
		/* Our own pipes failed: the link's byte stream can no longer be trusted. */
		error("link: splice: %s", strerror(-r));
		agent.quit = 1;
		errno = EIO;
		return -1;
	}
	sp.pending = MUX_HDR_LEN + (uint32_t)n;
	r = link_splice_flush();
	if (r < 0 && r != -EAGAIN) {
		error("link write: %s", strerror(-r));
		agent.quit = 1;
	}
	agent_link_wants_write();
	return n;
}
