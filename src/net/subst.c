/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "subst.h"

#include <errno.h>
#include <string.h>

/*
 * Replace patterns in p[0..n). Returns how many bytes were decided (all of them if final) in
 * *decided; the rest may start a pattern and is left for later.
 */
static int subst_run(const struct subst_rules *r, const uint8_t *p, size_t n, bool final,
		     struct buf *out, size_t *decided)
{
	size_t i = 0;
	int err = 0;
	while (i < n) {
		struct subst_match m = { 0 };
		enum subst_find k = r->find(r->ctx, p + i, n - i, final, &m);
		if (k == SUBST_NONE || m.at > n - i || (k == SUBST_FOUND && m.len > n - i - m.at)) {
			buf_append(out, p + i, n - i);
			i = n;
			break;
		}
		buf_append(out, p + i, m.at);
		if (k == SUBST_MAYBE && !final) {
			i += m.at;
			break;
		}
		if (k == SUBST_MAYBE || !m.len) {
			/* final, or a rule set that found nothing to take: pass one byte on */
			buf_append(out, p + i + m.at, 1);
			i += m.at + 1;
			continue;
		}
		err = r->put(r->ctx, p + i + m.at, &m, out);
		if (err < 0) {
			i += m.at;
			break;
		}
		i += m.at + m.len;
	}
	*decided = i;
	if (!err && out->bad)
		err = -ENOMEM;
	return err;
}

int subst_feed(struct subst *st, const struct subst_rules *r, const uint8_t *p, size_t n,
	       bool final, struct buf *out)
{
	size_t k;
	int err;
	if (!buf_used(&st->hold)) {
		err = subst_run(r, p, n, final, out, &k);
		if (err < 0)
			return err;
		if (k < n && buf_append(&st->hold, p + k, n - k) < 0)
			return -ENOMEM;
		return 0;
	}
	if (n && buf_append(&st->hold, p, n) < 0)
		return -ENOMEM;
	err = subst_run(r, buf_head(&st->hold), buf_used(&st->hold), final, out, &k);
	if (k) {
		explicit_bzero(buf_head(&st->hold), k);
		buf_consume(&st->hold, k);
	}
	return err;
}

void subst_fini(struct subst *st)
{
	if (st->hold.p)
		explicit_bzero(st->hold.p, st->hold.cap);
	buf_fini(&st->hold);
}
