/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/proto/tree.c: a tree packed and unpacked on one machine keeps its bytes,
 * modes, times and symlinks; `docker cp` placement; hostile streams (.., symlinks out, records
 * after a file root) are refused and write nothing outside the destination; applying an
 * overlay's changes (deletions, opaque directories).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "proto/msg.h"
#include "proto/tree.h"

static char top[] = "/tmp/test_tree.XXXXXX";

static void sh(const char *cmd)
{
	if (system(cmd) != 0)
		fprintf(stderr, "command failed: %s\n", cmd);
}

/* A listing of a tree: names, types, modes, mtimes, link targets, sizes and content hashes. */
static char *listing(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && find . -mindepth 1 -printf '%%p %%y %%m %%T@ %%l %%s\\n' | LC_ALL=C "
		 "sort && find . -type f -exec md5sum {} + | LC_ALL=C sort",
		 dir);
	FILE *f = popen(cmd, "r");
	static char out[1 << 16];
	size_t n = f ? fread(out, 1, sizeof(out) - 1, f) : 0;
	if (f)
		pclose(f);
	out[n] = 0;
	return strdup(out);
}

/* Pack src and unpack it at dest in chunks of chunk bytes; returns the unpack's result. */
static int copy(const char *src, const char *dest, unsigned flags, char *err, size_t errn)
{
	struct tree_pack *p = calloc(1, sizeof(*p));
	struct tree_unpack *u = calloc(1, sizeof(*u));
	char base[256];
	bool contents;
	uint8_t chunk[777];
	int r = tree_src_base(src, base, sizeof(base), &contents);
	if (r == 0)
		r = tree_pack_open(p, src, 0);
	if (r < 0)
		snprintf(err, errn, "%s", p->err);
	if (r == 0 &&
	    (r = tree_unpack_init(u, dest, base, flags | (contents ? TREE_CONTENTS : 0))) == 0) {
		ssize_t n;
		while (r == 0 && (n = tree_pack_read(p, chunk, sizeof(chunk))) != 0)
			r = n < 0 ? (int)n : tree_unpack_feed(u, chunk, (size_t)n);
		if (r == 0)
			r = tree_unpack_finish(u);
		if (r < 0)
			snprintf(err, errn, "%s", u->err[0] ? u->err : p->err);
	}
	tree_pack_close(p);
	tree_unpack_fini(u);
	free(p);
	free(u);
	return r;
}

static void make_sample(const char *dir)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "set -e; mkdir -p '%s/sub/deep' '%s/empty'; cd '%s'; printf hello > a.txt; "
		 "chmod 640 a.txt; head -c 3000000 /dev/urandom > sub/big; chmod 755 sub/big; "
		 "ln -s ../a.txt sub/link; ln -s /etc/passwd abs; printf x > sub/deep/x; "
		 "chmod 0550 sub/deep; chmod 700 empty; touch -d '2001-02-03 04:05:06.123456789' "
		 "a.txt sub/big; touch -h -d '2002-01-01' sub/link; touch -d '2003-03-03' sub/deep "
		 "empty sub",
		 dir, dir, dir);
	if (system(cmd) != 0)
		fprintf(stderr, "making the sample failed\n");
}

static void test_round_trip(void)
{
	char src[300], dst[300], err[5000] = "";
	snprintf(src, sizeof(src), "%s/rt-src", top);
	snprintf(dst, sizeof(dst), "%s/rt-dst", top);
	make_sample(src);
	/* DEST does not exist: it becomes the copy of SRC. */
	if (!CHECK_EQ_INT(copy(src, dst, 0, err, sizeof(err)), 0))
		fprintf(stderr, "%s\n", err);
	char *a = listing(src), *b = listing(dst);
	CHECK(strstr(a, "sub/big") && strstr(a, "empty d 700"));
	CHECK(!strcmp(a, b));
	if (strcmp(a, b))
		fprintf(stderr, "--- src\n%s--- dst\n%s", a, b);
	free(a);
	free(b);
}

static void test_docker_placement(void)
{
	char src[300], dst[300], err[5000], path[400];
	struct stat st;
	snprintf(src, sizeof(src), "%s/pl-src", top);
	snprintf(dst, sizeof(dst), "%s/pl-dst", top);
	make_sample(src);
	mkdir(dst, 0755);
	/* An existing directory receives SRC by its name. */
	CHECK_EQ_INT(copy(src, dst, 0, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/pl-src/sub/big", dst);
	CHECK_EQ_INT(stat(path, &st), 0);
	/* SRC/. puts the entries into DEST itself. */
	snprintf(path, sizeof(path), "%s/.", src);
	CHECK_EQ_INT(copy(path, dst, 0, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/sub/big", dst);
	CHECK_EQ_INT(stat(path, &st), 0);
	/* A file into a directory, then over a file. */
	snprintf(path, sizeof(path), "%s/a.txt", src);
	CHECK_EQ_INT(copy(path, dst, 0, err, sizeof(err)), 0);
	char other[400];
	snprintf(other, sizeof(other), "%s/renamed", dst);
	CHECK_EQ_INT(copy(path, other, 0, err, sizeof(err)), 0);
	CHECK_EQ_INT(copy(path, other, 0, err, sizeof(err)), 0);
	CHECK(stat(other, &st) == 0 && st.st_size == 5 && (st.st_mode & 07777) == 0640);
	/* A directory onto a file, a file onto a directory, a missing parent: refused. */
	CHECK_EQ_INT(copy(src, other, 0, err, sizeof(err)), -ENOTDIR);
	snprintf(other, sizeof(other), "%s/sub", dst);
	CHECK_EQ_INT(copy(path, other, 0, err, sizeof(err)), 0); /* into it: sub/a.txt */
	snprintf(other, sizeof(other), "%s/nope/x", dst);
	CHECK(copy(path, other, 0, err, sizeof(err)) < 0);
	snprintf(other, sizeof(other), "%s/nodir/", dst);
	CHECK(copy(path, other, 0, err, sizeof(err)) < 0);
	CHECK_EQ_INT(copy("/nonexistent-matchlock", dst, 0, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "nonexistent-matchlock") != NULL);
}

/* ---- hand-made streams ---- */

static void rec(struct buf *s, uint8_t kind, const char *path, const char *link, uint64_t size,
		const char *data)
{
	struct buf h = { 0 };
	msg_put_u8(&h, T_KIND, kind);
	if (path)
		msg_put_str(&h, T_PATH, path);
	msg_put_u32(&h, T_MODE, kind == TREE_DIR ? 0755 : 0644);
	msg_put_u64(&h, T_TIME_NS, 1000000000ull);
	if (kind == TREE_FILE)
		msg_put_u64(&h, T_SIZE, size);
	if (link)
		msg_put_str(&h, T_LINK, link);
	buf_put_u32(s, (uint32_t)buf_used(&h));
	buf_append(s, buf_head(&h), buf_used(&h));
	if (data)
		buf_append(s, data, size);
	buf_fini(&h);
}

static int feed(const char *dest, unsigned flags, const struct buf *s, char *err, size_t errn)
{
	struct tree_unpack *u = calloc(1, sizeof(*u));
	int r = tree_unpack_init(u, dest, "in", flags);
	/* One byte at a time: every split must work. */
	for (size_t i = 0; r == 0 && i < buf_used(s); i++)
		r = tree_unpack_feed(u, buf_head(s) + i, 1);
	if (r == 0)
		r = tree_unpack_finish(u);
	snprintf(err, errn, "%s", u->err);
	tree_unpack_fini(u);
	free(u);
	return r;
}

static void test_hostile(void)
{
	char dst[300], outside[300], err[5000], path[400];
	struct stat st;
	snprintf(dst, sizeof(dst), "%s/h-dst", top);
	snprintf(outside, sizeof(outside), "%s/h-outside", top);
	mkdir(dst, 0755);
	mkdir(outside, 0755);
	struct buf s = { 0 };
	/* A symlink out of the tree, then a file through it. */
	rec(&s, TREE_DIR, "", NULL, 0, NULL);
	rec(&s, TREE_SYMLINK, "esc", outside, 0, NULL);
	rec(&s, TREE_FILE, "esc/pwned", NULL, 3, "bad");
	rec(&s, TREE_END, NULL, NULL, 0, NULL);
	CHECK(feed(dst, 0, &s, err, sizeof(err)) < 0);
	snprintf(path, sizeof(path), "%s/pwned", outside);
	CHECK(stat(path, &st) < 0 && errno == ENOENT);
	buf_fini(&s);
	/* A relative symlink upwards, then a file of the same name: replaced, not followed. */
	char dst2[300];
	snprintf(dst2, sizeof(dst2), "%s/h-dst2", top);
	rec(&s, TREE_DIR, "", NULL, 0, NULL);
	rec(&s, TREE_SYMLINK, "up", "../h-outside/victim", 0, NULL);
	rec(&s, TREE_FILE, "up", NULL, 3, "bad");
	rec(&s, TREE_END, NULL, NULL, 0, NULL);
	CHECK_EQ_INT(feed(dst2, 0, &s, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/victim", outside);
	CHECK(stat(path, &st) < 0 && errno == ENOENT);
	snprintf(path, sizeof(path), "%s/up", dst2);
	CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
	buf_fini(&s);
	/* Names that climb, absolute names, empty components: malformed. */
	static const char *const bad[] = {
		"..", "../x", "a/../../x", "/etc/x", "a//b", ".", "a/."
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rec(&s, TREE_DIR, "", NULL, 0, NULL);
		rec(&s, TREE_FILE, bad[i], NULL, 1, "x");
		rec(&s, TREE_END, NULL, NULL, 0, NULL);
		CHECK_EQ_INT(feed(dst, 0, &s, err, sizeof(err)), -EPROTO);
		buf_fini(&s);
	}
	/* More records after a file root; a deletion outside an apply; a cut-short stream. */
	rec(&s, TREE_FILE, "", NULL, 1, "x");
	rec(&s, TREE_FILE, "x", NULL, 1, "x");
	snprintf(path, sizeof(path), "%s/fileroot", dst);
	CHECK_EQ_INT(feed(path, 0, &s, err, sizeof(err)), -EPROTO);
	buf_fini(&s);
	rec(&s, TREE_DIR, "", NULL, 0, NULL);
	rec(&s, TREE_DELETE, "x", NULL, 0, NULL);
	CHECK_EQ_INT(feed(dst, 0, &s, err, sizeof(err)), -EPROTO);
	buf_fini(&s);
	rec(&s, TREE_DIR, "", NULL, 0, NULL);
	rec(&s, TREE_FILE, "x", NULL, 10, NULL); /* no content follows */
	CHECK_EQ_INT(feed(dst, 0, &s, err, sizeof(err)), -EPROTO);
	CHECK(strstr(err, "cut short") != NULL);
	buf_fini(&s);
	/* An oversized header length. */
	buf_put_u32(&s, TREE_MAX_HEADER + 1);
	CHECK_EQ_INT(feed(dst, 0, &s, err, sizeof(err)), -EPROTO);
	buf_fini(&s);
	DIR *d = opendir(outside);
	unsigned n = 0;
	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	CHECK_EQ_INT(n, 2); /* . and .. only */
}

static void test_apply(void)
{
	char dst[300], err[5000], path[400];
	struct stat st;
	snprintf(dst, sizeof(dst), "%s/ap", top);
	char cmd[2000];
	snprintf(cmd, sizeof(cmd), "cd %s && mkdir -p keep gone opq && touch old gone/f opq/hidden",
		 dst);
	mkdir(dst, 0755);
	sh(cmd);
	struct buf s = { 0 };
	rec(&s, TREE_DIR, "", NULL, 0, NULL);
	rec(&s, TREE_DELETE, "old", NULL, 0, NULL);
	rec(&s, TREE_DELETE, "gone", NULL, 0, NULL);
	rec(&s, TREE_FILE, "new", NULL, 2, "hi");
	struct buf h = { 0 };
	msg_put_u8(&h, T_KIND, TREE_DIR);
	msg_put_str(&h, T_PATH, "opq");
	msg_put_u32(&h, T_MODE, 0755);
	msg_put_u8(&h, T_OPAQUE, 1);
	buf_put_u32(&s, (uint32_t)buf_used(&h));
	buf_append(&s, buf_head(&h), buf_used(&h));
	buf_fini(&h);
	rec(&s, TREE_FILE, "opq/seen", NULL, 1, "s");
	rec(&s, TREE_END, NULL, NULL, 0, NULL);
	if (!CHECK_EQ_INT(feed(dst, TREE_APPLY, &s, err, sizeof(err)), 0))
		fprintf(stderr, "%s\n", err);
	buf_fini(&s);
	snprintf(path, sizeof(path), "%s/old", dst);
	CHECK(lstat(path, &st) < 0);
	snprintf(path, sizeof(path), "%s/gone", dst);
	CHECK(lstat(path, &st) < 0);
	snprintf(path, sizeof(path), "%s/keep", dst);
	CHECK(lstat(path, &st) == 0);
	snprintf(path, sizeof(path), "%s/opq/hidden", dst);
	CHECK(lstat(path, &st) < 0);
	snprintf(path, sizeof(path), "%s/opq/seen", dst);
	CHECK(lstat(path, &st) == 0);
	snprintf(path, sizeof(path), "%s/new", dst);
	CHECK(lstat(path, &st) == 0 && st.st_size == 2);
}

/* A file over a file: rewritten in place (inode kept) unless another name links it. */
static void test_rewrite_in_place_never_through_links(void)
{
	char dst[300], err[5000], path[400], outside[400];
	struct stat a, b;
	snprintf(dst, sizeof(dst), "%s/rw", top);
	snprintf(path, sizeof(path), "%s/single", dst);
	snprintf(outside, sizeof(outside), "%s/rw-outside", top);
	mkdir(dst, 0755);
	FILE *f = fopen(path, "w");
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/linked", dst);
	f = fopen(outside, "w");
	if (f) {
		fputs("keep", f);
		fclose(f);
	}
	CHECK_EQ_INT(link(outside, path), 0);
	snprintf(path, sizeof(path), "%s/single", dst);
	CHECK_EQ_INT(stat(path, &a), 0);
	struct buf s = { 0 };
	rec(&s, TREE_DIR, "", NULL, 0, NULL);
	rec(&s, TREE_FILE, "single", NULL, 3, "new");
	rec(&s, TREE_FILE, "linked", NULL, 3, "new");
	rec(&s, TREE_END, NULL, NULL, 0, NULL);
	CHECK_EQ_INT(feed(dst, TREE_APPLY, &s, err, sizeof(err)), 0);
	buf_fini(&s);
	CHECK(stat(path, &b) == 0 && b.st_ino == a.st_ino && b.st_size == 3);
	CHECK(stat(outside, &b) == 0 && b.st_size == 4 && b.st_nlink == 1);
	snprintf(path, sizeof(path), "%s/linked", dst);
	CHECK(stat(path, &b) == 0 && b.st_size == 3);
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	if (!mkdtemp(top)) {
		perror("mkdtemp");
		return 1;
	}
	CHECK_RUN(test_round_trip);
	CHECK_RUN(test_docker_placement);
	CHECK_RUN(test_hostile);
	CHECK_RUN(test_apply);
	CHECK_RUN(test_rewrite_in_place_never_through_links);
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s'; rm -rf '%s'", top, top);
	sh(cmd);
	return check_summary();
}
