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

#include "proto/mux.h"

/* What an epoll registration points at: the dispatch switch in main.c keys on type. */
enum agent_ev_type { EV_LINK, EV_SIGNAL, EV_EXEC_IN, EV_EXEC_OUT, EV_EXEC_ERR, EV_NET_LISTEN,
		     EV_NET_CONN, EV_DNS_UDP, EV_DNS_TCP_LISTEN, EV_DNS_TCP };

struct agent_ev {
	enum agent_ev_type type;
	int fd;
	uint32_t events; /* currently registered interest */
	void *obj;
};

struct agent {
	int epfd;
	int link_fd;
	struct agent_ev link_ev;
	struct mux mux;
	uint64_t boot_ns; /* CLOCK_BOOTTIME at agent start */
	int quit;
};

extern struct agent agent;

/* main.c */
int agent_ev_add(struct agent_ev *e, int fd, uint32_t events);
void agent_ev_set(struct agent_ev *e, uint32_t events);
void agent_ev_del(struct agent_ev *e);
void agent_link_wants_write(void);

/* mount.c: build the sandbox root and pseudo-filesystems; -errno with a console message. */
int mount_root(void);
int mount_setup_sandbox(void);

/* cgroup.c: a CPU quota for every process we start (fractional --cpus). */
int cgroup_set_cpu_quota(uint32_t milli_cpus);
/* In a child before exec: join the sandbox cgroup (no-op without a quota). */
void cgroup_enter_sandbox(void);

/* files.c: SVC_FILE_WRITE, SVC_FILE_READ, SVC_FILE_LIST. */
int files_open(struct mux_stream *s, uint16_t svc, struct rd *body);
bool files_owns(struct mux_stream *s);
int files_on_frame(struct mux_stream *s, const struct mux_frame *f);
void files_resume_all(void);

/* exec.c */
int exec_open(struct mux_stream *s, struct rd *req);
int exec_on_frame(struct mux_stream *s, const struct mux_frame *f);
void exec_on_event(struct agent_ev *e, uint32_t events);
void exec_on_sigchld(void);
/* Re-arm output reads after credit arrives or the link drains. */
void exec_resume_all(void);
/* Free sessions that ended during the last epoll batch. */
void exec_collect_garbage(void);

/* net.c: the redirected network (see there). NET_PROXY_PORT is the loopback listener. */
#define NET_PROXY_PORT 15001
/* Before hello (so it is part of a template): routes, redirect rules, proxy, DNS stub. */
int net_prepare(void);
/* At CONFIG: /etc/hosts and resolv.conf; with the network disabled, tear it all down. */
int net_setup(bool enabled, char **hosts, size_t nhosts);
int net_listen(int family, uint16_t port, int type);
void net_on_event(struct agent_ev *e, uint32_t events);
int net_on_frame(struct mux_stream *s, const struct mux_frame *f);
/* SVC_PORT (port forwarding): connect to the port on loopback and relay. */
int net_port_open(struct mux_stream *s, struct rd *body);
bool net_owns(struct mux_stream *s);
void net_resume_all(void);
void net_collect_garbage(void);

/* nft.c */
int nft_install_redirect(uint16_t proxy_port);
/* Delete every nftables table (--no-network takes the redirect away). */
int nft_remove_all(void);

/* dnsstub.c */
int dnsstub_start(void);
void dnsstub_stop(void);
void dnsstub_on_event(struct agent_ev *e, uint32_t events);
void dnsstub_on_reply(struct rd *r);
void dnsstub_collect_garbage(void);

/* trust.c: add the sandbox CA (PEM) to the image's trust bundles. */
int trust_install_ca(const char *pem);

#endif
