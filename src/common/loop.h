/* SPDX-License-Identifier: MIT */
/*
 * The supervisor's event loop: one epoll set, fds registered as watches (a callback each),
 * one-shot timers, and deferred frees so an object can be released while events for it are
 * still pending in the current batch. Single-threaded; the clock is read once per iteration.
 */
#ifndef MATCHLOCK_LOOP_H
#define MATCHLOCK_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct watch;
typedef void (*watch_fn)(struct watch *w, uint32_t events);

struct watch {
	int fd;
	uint32_t events; /* registered interest; 0 = not in the epoll set */
	watch_fn fn;
	void *obj;
	bool dead; /* released during this batch: pending events are dropped */
};

struct timer {
	uint64_t at; /* monotonic ns; 0 = not armed */
	void (*fn)(struct timer *t);
	void *obj;
	struct timer *next;
};

struct loop {
	int epfd;
	uint64_t now; /* monotonic ns, read once per iteration */
	struct timer *timers; /* armed, unsorted (a handful per sandbox) */
	struct deferred *graveyard;
};

int loop_init(struct loop *l);
void loop_fini(struct loop *l);
static inline void watch_init(struct watch *w, int fd, watch_fn fn, void *obj)
{
	*w = (struct watch){ .fd = fd, .fn = fn, .obj = obj };
}
/* Set the interest of w (0 removes it from the epoll set, so hang-ups cannot spin the loop). */
void loop_watch(struct loop *l, struct watch *w, uint32_t events);
/* Remove w for good; events already returned in this batch for it are dropped. */
void loop_unwatch(struct loop *l, struct watch *w);
void loop_timer_set(struct loop *l, struct timer *t, uint64_t at);
void loop_timer_cancel(struct loop *l, struct timer *t);
/* Free p with fn after the current batch (objects that embed watches). */
void loop_defer_free(struct loop *l, void *p, void (*fn)(void *));
/* Wait for events or timers, at most until deadline (0 = none); dispatch; run deferred frees. */
int loop_run_once(struct loop *l, uint64_t deadline);

#endif
