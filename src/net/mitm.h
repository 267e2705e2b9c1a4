/* SPDX-License-Identifier: MIT */
/*
 * TLS interception for one sandbox. A per-sandbox CA (ECDSA P-256, generated in memory; its key
 * never leaves this process) signs leaf certificates minted per server name and cached. A flow
 * is one intercepted connection: the guest's TLS is terminated with memory BIOs (the egress
 * engine feeds it the guest's bytes and sends what it produces), a verified TLS connection goes
 * upstream on a non-blocking socket, and HTTP/1.1 runs between them through a streaming proxy:
 * requests are checked (Host = server name) and get their secret placeholders replaced,
 * responses get real secret values replaced by placeholders. Nothing blocks; no threads.
 * The CA and its leaves: tls_ca.c; the contexts and both TLS ends: tls.c; the HTTP between
 * them: proxy.c (its states are described there); the flow they share: flow.h.
 */
#ifndef MATCHLOCK_MITM_H
#define MATCHLOCK_MITM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "egress.h"
#include "secrets.h"

#define MITM_MAX_UPSTREAM_CA 16
#define FLOW_MAX_PIPELINE 32 /* requests in flight on one connection; more wait in the buffer */
#define FLOW_BUF_HIGH (256u * 1024) /* stop reading a side while this much waits for the other */

struct mitm;
struct flow;

/*
 * ss (may be NULL) and the upstream CA files stay the caller's and must outlive the mitm.
 * Returns NULL with a reason in err.
 */
struct mitm *mitm_new(const struct secrets *ss, char *const *upstream_ca, char *err, size_t errn);
void mitm_free(struct mitm *m);
/* The CA certificate, PEM (public; sent to the guest). */
const char *mitm_ca_pem(const struct mitm *m);
const struct secrets *mitm_secrets(const struct mitm *m);

typedef void (*flow_event_fn)(void *opaque, const struct net_event *ev);

/* A flow for a connection to name:port; events go to fn. NULL on failure (errno). */
struct flow *flow_new(struct mitm *m, const char *name, uint16_t port, flow_event_fn fn,
		      void *opaque);
/* Wipes every buffer. NULL is fine. Does not close the upstream fd (not ours). */
void flow_free(struct flow *f);
/* The upstream socket is connected (not owned by the flow). */
int flow_set_upstream(struct flow *f, int fd);
/*
 * The upstream connection could not be made: requests will get a 502 saying guest_why (why
 * when NULL); why goes to the event.
 */
void flow_upstream_failed(struct flow *f, const char *why, const char *guest_why);
/* Guest ciphertext; returns how many bytes were taken (fewer when the flow is full). */
size_t flow_feed_guest(struct flow *f, const uint8_t *p, size_t n);
void flow_guest_eof(struct flow *f);
/* Make all the progress possible (call after feeding, on socket events, on credit). */
void flow_run(struct flow *f);
/* Ciphertext for the guest: the caller sends and consumes it. */
struct buf *flow_to_guest(struct flow *f);
/* Epoll events the flow wants on the upstream socket. */
uint32_t flow_events(const struct flow *f);
/* Everything is said: once flow_to_guest is drained, end the guest's stream (EOF). */
bool flow_done(const struct flow *f);
/* A fatal error: reset the guest's connection instead. */
bool flow_failed(const struct flow *f);

#endif
