/* SPDX-License-Identifier: MIT */
/*
 * The guest agent: PID 1 of every sandbox. It builds the root filesystem (mount.c), opens the
 * link to the host and serves it from one epoll loop (main.c), and runs processes (exec.c).
 */
#ifndef MATCHLOCK_AGENT_H
#define MATCHLOCK_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/loop.h"
#include "proto/mux.h"

/*
 * Who owns a stream: the tag in mux_stream.owner, next to the owner's state in user. The frame
 * dispatch in main.c switches on it; AGENT_STREAM_NONE is a stream whose owner is gone.
 */
enum agent_stream_owner {
	AGENT_STREAM_NONE,
	AGENT_STREAM_EXEC,
	AGENT_STREAM_FILES,
	AGENT_STREAM_COPY,
	AGENT_STREAM_NET,
	AGENT_STREAM_FS /* only in the file-service relay (fuse.c) */
};

static inline void agent_stream_own(struct mux_stream *s, enum agent_stream_owner owner, void *obj)
{
	s->owner = (uint8_t)owner;
	s->user = obj;
}

struct agent {
	struct loop loop; /* the one event loop (common/loop): every fd is a watch on it */
	int link_fd;
	struct watch link_w;
	struct mux mux;
	uint64_t boot_ns; /* CLOCK_BOOTTIME at agent start */
	int quit;
};

extern struct agent agent;

/* main.c */
void agent_link_wants_write(void);
/* Open the virtio-serial port QEMU named port_name (non-blocking): fd or -errno. */
int agent_open_port(const char *port_name);
/* The config is applied: CTL_READY, or CTL_ERROR with error (one line) when not NULL. */
void agent_config_done(const char *error);
/*
 * Write what waits for the link: a spliced frame first, then the mux's queue. 0 when all is
 * written, -EAGAIN when the port is full, or -errno.
 */
int agent_link_write(void);

/*
 * splice.c: DATA frames into the port without copying in the guest (see there). A frame takes at
 * most a quarter of a stream's window, so the next ones go while the host credits the first.
 */
#define MUX_SPLICE_MAX (MUX_WINDOW / 4)
void link_splice_init(void);
bool link_splice_pending(void);
/* Write the spliced frame still waiting: 0, -EAGAIN (port full) or -errno. */
int link_splice_flush(void);
/* Producers stop here: the mux's queue is over its mark or a spliced frame waits. */
bool agent_link_congested(void);
/*
 * Like read(fd) into a DATA frame on s of at most max bytes (and the credit): returns the bytes
 * sent, 0 at EOF, or -1 with errno: the source's (EAGAIN, or EINVAL when it cannot splice),
 * EBUSY when queued frames could not be written first. In the last two cases copy instead.
 */
ssize_t link_splice_data(struct mux_stream *s, uint8_t chan, int fd, uint32_t max);

/*
 * mount.c: before hello, /dev, /proc, /sys and the image in the initramfs (-errno, said on the
 * console), then the sandbox root on the image and the writable disk (-errno with err); at
 * CONFIG the volumes (T_VOLUME, added with mount_volume_add). mount_volumes_close before
 * powering off.
 */
int mount_early(void);
int mount_root(char *err, size_t errn);
int mount_setup_sandbox(char *err, size_t errn);
int mount_volume_add(struct rd *v);
int mount_volumes(char *err, size_t errn);
void mount_volumes_close(void);

/* cgroup.c: a CPU quota for every process we start (fractional --cpus). */
int cgroup_set_cpu_quota(uint32_t milli_cpus);
/* In a child before exec: join the sandbox cgroup (no-op without a quota). */
void cgroup_enter_sandbox(void);

/* files.c: SVC_FILE_WRITE, SVC_FILE_READ, SVC_FILE_LIST. */
int files_open(struct mux_stream *s, uint16_t svc, struct rd *body);
int files_on_frame(struct mux_stream *s, const struct mux_frame *f);
void files_resume_all(void);

/* copy.c: SVC_TREE_PACK, SVC_TREE_UNPACK (matchlock cp, overlay diffs). */
int copy_open(struct mux_stream *s, uint16_t svc, struct rd *body);
int copy_on_frame(struct mux_stream *s, const struct mux_frame *f);
void copy_resume_all(void);

/*
 * fuse.c: host folders (SVC_FS), relayed by a process of its own. At CONFIG: fuse_config_add
 * for each T_MOUNT, then fuse_start: 0 nothing to mount, 1 mounting (agent_config_done
 * follows), -errno with err.
 */
int fuse_config_add(struct rd *v);
int fuse_start(char *err, size_t errn);
/* The upper layer of overlay mount index (its changes, for diffs): 0, or -ENOENT. */
int fuse_upper_path(uint32_t index, char *out, size_t n);

/* exec.c */
int exec_open(struct mux_stream *s, struct rd *req);
int exec_on_frame(struct mux_stream *s, const struct mux_frame *f);
void exec_on_sigchld(void);
/* Re-arm output reads after credit arrives or the link drains. */
void exec_resume_all(void);

/* net.c: the redirected network (see there). NET_PROXY_PORT is the loopback listener. */
#define NET_PROXY_PORT 15001
/* Before hello (so it is part of a template): routes, redirect rules, proxy, DNS stub. */
int net_prepare(void);
/* At CONFIG: /etc/hosts and resolv.conf; with the network disabled, tear it all down. */
int net_setup(bool enabled, char **hosts, size_t nhosts);
int net_listen(int family, uint16_t port, int type);
int net_on_frame(struct mux_stream *s, const struct mux_frame *f);
/* SVC_PORT (port forwarding): connect to the port on loopback and relay. */
int net_port_open(struct mux_stream *s, struct rd *body);
void net_resume_all(void);

/* nft.c */
int nft_install_redirect(uint16_t proxy_port);
/* Delete every nftables table (--no-network takes the redirect away). */
int nft_remove_all(void);

/* dnsstub.c */
int dnsstub_start(void);
void dnsstub_stop(void);
void dnsstub_on_reply(struct rd *r);

/* trust.c: add the sandbox CA (PEM) to the image's trust bundles. */
int trust_install_ca(const char *pem);

#endif
