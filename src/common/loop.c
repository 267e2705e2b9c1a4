/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct deferred {
	void *p;
	void (*fn)(void *);
	struct deferred *next;
};

int loop_init(struct loop *l)
{
	memset(l, 0, sizeof(*l));
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->now = now_ns();
	return l->epfd < 0 ? -errno : 0;
}

static void loop_collect(struct loop *l)
{
	while (l->graveyard) {
		struct deferred *d = l->graveyard;
		l->graveyard = d->next;
		d->fn(d->p);
		free(d);
	}
}

void loop_fini(struct loop *l)
{
	loop_collect(l);
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
}

void loop_watch(struct loop *l, struct watch *w, uint32_t events)
{
	if (w->fd < 0 || w->dead || events == w->events)
		return;
	struct epoll_event ev = { .events = events, .data.ptr = w };
	int op = !w->events ? EPOLL_CTL_ADD : !events ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
	if (epoll_ctl(l->epfd, op, w->fd, &ev) < 0) {
		/* Regular files cannot be polled; their owners treat them as always ready. */
		if (errno != EPERM)
			warn("epoll_ctl(fd %d): %s", w->fd, strerror(errno));
		return;
	}
	w->events = events;
}

void loop_unwatch(struct loop *l, struct watch *w)
{
	loop_watch(l, w, 0);
	w->dead = true;
}

void loop_timer_set(struct loop *l, struct timer *t, uint64_t at)
{
	bool armed = false;
	for (struct timer *i = l->timers; i; i = i->next)
		armed |= i == t;
	t->at = at;
	if (!armed) {
		t->next = l->timers;
		l->timers = t;
	}
}

void loop_timer_cancel(struct loop *l, struct timer *t)
{
	for (struct timer **p = &l->timers; *p; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			break;
		}
	}
	t->at = 0;
	t->next = NULL;
}

void loop_defer_free(struct loop *l, void *p, void (*fn)(void *))
{
	struct deferred *d = malloc(sizeof(*d));
	if (!d) {
		/* Out of memory: leaking is safer than a use-after-free. */
		return;
	}
	*d = (struct deferred){ .p = p, .fn = fn, .next = l->graveyard };
	l->graveyard = d;
}

int loop_run_once(struct loop *l, uint64_t deadline)
{
	for (struct timer *t = l->timers; t; t = t->next)
		if (!deadline || t->at < deadline)
			deadline = t->at;
	int timeout = -1;
	if (deadline)
		timeout = deadline <= l->now ? 0 : (int)((deadline - l->now + 999999) / 1000000);

	struct epoll_event evs[32];
	int n = epoll_wait(l->epfd, evs, 32, timeout);
	if (n < 0 && errno != EINTR)
		return -errno;
	l->now = now_ns();
	for (int i = 0; i < n; i++) {
		struct watch *w = evs[i].data.ptr;
		if (!w->dead)
			w->fn(w, evs[i].events);
	}
	/* Fire due timers; a callback may re-arm or cancel timers, so restart the walk. */
	for (bool again = true; again;) {
		again = false;
		for (struct timer *t = l->timers; t; t = t->next) {
			if (t->at && t->at <= l->now) {
				loop_timer_cancel(l, t);
				t->fn(t);
				again = true;
				break;
			}
		}
	}
	loop_collect(l);
	return n < 0 ? 0 : n;
}
