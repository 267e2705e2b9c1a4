/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the tree stream reader (proto/tree.c), which parses what a hostile
 * guest sends for `matchlock cp` and `matchlock diff`. Input: a flags byte (bit 0: deletions
 * allowed, as in an apply; the rest: the split size of the feed), then the stream. Beyond "no
 * crash, no leak", it aborts when a record reaches the writer that could leave the destination
 * or break the stream's rules:
 *  - the first record is not the root (path ""), or a later one has an absolute path, an empty,
 *    "." or ".." component, or is deeper than TREE_MAX_DEPTH;
 *  - a record follows a root that is not a directory, or a deletion arrives when not allowed;
 *  - a symlink has no target, a kind is out of range, a string holds a NUL;
 *  - a file's content is not exactly its size, or content arrives outside a file;
 *  - tree_parse_done accepts a stream without its end record.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	bool allow_delete;
	uint64_t records;
	uint8_t root_kind;
	bool in_file;
	uint64_t want, got;
};

static void check_path(const char *p)
{
	unsigned depth = 0;
	if (!*p || *p == '/')
		abort();
	for (const char *c = p;;) {
		const char *s = strchr(c, '/');
		size_t n = s ? (size_t)(s - c) : strlen(c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			abort();
		if (++depth > TREE_MAX_DEPTH)
			abort();
		if (!s)
			return;
		c = s + 1;
	}
}

static int on_entry(void *o, const struct tree_entry *e)
{
	struct seen *s = o;
	if (s->in_file || e->kind < TREE_FILE || e->kind >= TREE_END)
		abort();
	if (s->records++ == 0) {
		if (e->path[0] || e->kind == TREE_DELETE)
			abort();
		s->root_kind = e->kind;
	} else {
		if (s->root_kind != TREE_DIR)
			abort();
		check_path(e->path);
	}
	if (e->kind == TREE_DELETE && !s->allow_delete)
		abort();
	if (e->kind == TREE_SYMLINK && !e->link[0])
		abort();
	if (e->mode & ~07777u)
		abort();
	if (e->kind == TREE_FILE) {
		s->in_file = true;
		s->want = e->size;
		s->got = 0;
	} else if (e->size) {
		abort();
	}
	return 0;
}

static int on_data(void *o, const uint8_t *p, size_t n)
{
	struct seen *s = o;
	if (!s->in_file || n == 0 || !p || s->got + n > s->want)
		abort();
	s->got += n;
	return 0;
}

static int on_file_end(void *o)
{
	struct seen *s = o;
	if (!s->in_file || s->got != s->want)
		abort();
	s->in_file = false;
	return 0;
}

static const struct tree_parse_ops ops = {
	.entry = on_entry,
	.data = on_data,
	.file_end = on_file_end,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct tree_parser p;
	if (size < 1)
		return 0;
	struct seen s = { .allow_delete = data[0] & 1 };
	size_t split = (data[0] >> 1) + 1;
	tree_parse_init(&p, s.allow_delete);
	data++;
	size--;
	int r = 0;
	for (size_t off = 0; off < size && r == 0; off += split) {
		size_t n = size - off < split ? size - off : split;
		r = tree_parse_feed(&p, data + off, n, &ops, &s);
	}
	/* The end record is accepted only after a root and never inside a file. */
	if (r == 0 && tree_parse_done(&p) == 0 && (s.in_file || s.records == 0))
		abort();
	return 0;
}
