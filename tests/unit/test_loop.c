/* SPDX-License-Identifier: MIT */
/* The event loop of the supervisor and the agent (src/common/loop.c). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "check.h"
#include "common/loop.h"

struct pair {
	struct loop *l;
	struct watch w[2];
	int calls[2];
	int freed; /* deferred frees run so far */
	int freed_during_batch; /* what freed was when a callback ran */
};

static void on_readable(struct watch *w, uint32_t events)
{
	struct pair *p = w->obj;
	int i = w == &p->w[1];
	p->calls[i]++;
	CHECK(events & EPOLLIN);
	p->freed_during_batch = p->freed;
}

/* Each callback releases the other watch, as an owner freeing its peer would. */
static void on_readable_unwatch_other(struct watch *w, uint32_t events)
{
	on_readable(w, events);
	struct pair *p = w->obj;
	loop_unwatch(p->l, &p->w[w == &p->w[0]]);
}

static void count_free(void *obj)
{
	((struct pair *)obj)->freed++;
}

static void on_readable_defer(struct watch *w, uint32_t events)
{
	on_readable(w, events);
	struct pair *p = w->obj;
	loop_defer_free(p->l, p, count_free);
	loop_unwatch(p->l, w);
}

/* Two readable pipes; fn on both. Returns 0, or -1 if the set-up failed. */
static int pair_start(struct loop *l, struct pair *p, int fds[2][2], watch_fn fn)
{
	*p = (struct pair){ .l = l };
	for (int i = 0; i < 2; i++) {
		if (pipe2(fds[i], O_CLOEXEC | O_NONBLOCK) < 0 || write(fds[i][1], "x", 1) != 1)
			return -1;
		watch_init(&p->w[i], fds[i][0], fn, p);
		loop_watch(l, &p->w[i], EPOLLIN);
	}
	return 0;
}

static void pair_close(int fds[2][2])
{
	for (int i = 0; i < 2; i++) {
		close(fds[i][0]);
		close(fds[i][1]);
	}
}

static void test_watch_fires(void)
{
	struct loop l;
	struct pair p;
	int fds[2][2];
	if (!CHECK(loop_init(&l) == 0) || !CHECK(pair_start(&l, &p, fds, on_readable) == 0))
		return;
	CHECK_EQ_INT(loop_run_once(&l, l.now + 1), 2);
	CHECK(p.calls[0] == 1 && p.calls[1] == 1);
	/* Interest 0 takes the fd out of the set: still readable, never reported. */
	loop_watch(&l, &p.w[0], 0);
	loop_watch(&l, &p.w[1], 0);
	CHECK_EQ_INT(loop_run_once(&l, l.now), 0);
	CHECK(p.calls[0] == 1 && p.calls[1] == 1);
	pair_close(fds);
	loop_fini(&l);
}

/* An event already returned in this batch for a released watch is dropped. */
static void test_unwatch_drops_pending(void)
{
	struct loop l;
	struct pair p;
	int fds[2][2];
	if (!CHECK(loop_init(&l) == 0) ||
	    !CHECK(pair_start(&l, &p, fds, on_readable_unwatch_other) == 0))
		return;
	loop_run_once(&l, l.now + 1);
	CHECK_EQ_INT(p.calls[0] + p.calls[1], 1);
	pair_close(fds);
	loop_fini(&l);
}

/* Frees asked for during a batch run after all of its callbacks. */
static void test_defer_free_after_batch(void)
{
	struct loop l;
	struct pair p;
	int fds[2][2];
	if (!CHECK(loop_init(&l) == 0) || !CHECK(pair_start(&l, &p, fds, on_readable_defer) == 0))
		return;
	loop_run_once(&l, l.now + 1);
	CHECK(p.calls[0] == 1 && p.calls[1] == 1);
	CHECK_EQ_INT(p.freed_during_batch, 0);
	CHECK_EQ_INT(p.freed, 2);
	pair_close(fds);
	loop_fini(&l);
}

static int fired;
static void on_timer(struct timer *t)
{
	(void)t;
	fired++;
}

static void test_timers(void)
{
	struct loop l;
	if (!CHECK(loop_init(&l) == 0))
		return;
	struct timer due = { .fn = on_timer }, cancelled = { .fn = on_timer };
	fired = 0;
	loop_timer_set(&l, &due, l.now);
	loop_timer_set(&l, &cancelled, l.now);
	loop_timer_cancel(&l, &cancelled);
	loop_run_once(&l, 0); /* the due timer bounds the wait */
	CHECK_EQ_INT(fired, 1);
	CHECK_EQ_INT(due.at, 0); /* fired timers are disarmed */
	loop_run_once(&l, l.now);
	CHECK_EQ_INT(fired, 1);
	loop_fini(&l);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_watch_fires);
	CHECK_RUN(test_unwatch_drops_pending);
	CHECK_RUN(test_defer_free_after_batch);
	CHECK_RUN(test_timers);
	return check_summary();
}
