/* SPDX-License-Identifier: MIT */
/*
 * The file server driven with hand-built FUSE requests on a temporary share: INIT negotiation,
 * header and name checks (malformed requests get an error reply with their unique), lookups
 * and forgets, symlinks that are never followed on the host, stale node ids and handles, a
 * directory swapped for a symlink under a node the guest holds, read/write bounds, readdir
 * paging, read-only shares, the node and handle limits, and the xattr namespace rules.
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
#include "common/util.h"
#include "fs/share.h"

#define NO_REPLY 1000 /* call(): the server sent nothing */

static struct fs_share *S;
static struct buf out;
static uint64_t unique;
static char top[64], share[96], outside[96];
static uint8_t req[FS_MAX_REQUEST + 64];
static uint8_t body[FS_MAX_REPLY]; /* the last reply's body */
static size_t body_len;
static uint64_t last_unique;
static int fds_before;

/* Descriptors open in this process: a share that is closed leaves none behind. */
static int count_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 65536; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

/* Send a request of up to three body parts; the reply's error (0 ok, -errno) or NO_REPLY. */
static int call3(uint32_t op, uint64_t node, const void *a, size_t na, const void *b, size_t nb,
		 const void *c, size_t nc)
{
	struct fuse_in_header h = {
		.len = (uint32_t)(sizeof(h) + na + nb + nc),
		.opcode = op,
		.unique = ++unique,
		.nodeid = node,
	};
	struct fuse_out_header oh;
	size_t n = sizeof(h);

	memcpy(req, &h, sizeof(h));
	if (na)
		memcpy(req + n, a, na), n += na;
	if (nb)
		memcpy(req + n, b, nb), n += nb;
	if (nc)
		memcpy(req + n, c, nc), n += nc;
	buf_consume(&out, buf_used(&out));
	if (fs_share_handle(S, req, n, &out) < 0)
		return -EPROTO;
	if (buf_used(&out) == 0)
		return NO_REPLY;
	CHECK(buf_used(&out) >= sizeof(oh));
	memcpy(&oh, buf_head(&out), sizeof(oh));
	CHECK_EQ_INT(oh.len, buf_used(&out));
	last_unique = oh.unique;
	body_len = oh.len - sizeof(oh);
	memcpy(body, buf_head(&out) + sizeof(oh), body_len);
	return oh.error;
}

static int call(uint32_t op, uint64_t node, const void *a, size_t na)
{
	return call3(op, node, a, na, NULL, 0, NULL, 0);
}

static int call_name(uint32_t op, uint64_t node, const void *a, size_t na, const char *name)
{
	return call3(op, node, a, na, name, strlen(name) + 1, NULL, 0);
}

/* LOOKUP: the node id, or -errno (-ENOENT for a negative entry). */
static int64_t lookup(uint64_t parent, const char *name, struct fuse_entry_out *e)
{
	struct fuse_entry_out tmp;
	int r = call_name(FUSE_LOOKUP, parent, NULL, 0, name);

	if (r)
		return r;
	memcpy(e ? e : &tmp, body, sizeof(tmp));
	return (e ? e : &tmp)->nodeid ? (int64_t)(e ? e : &tmp)->nodeid : -ENOENT;
}

static int64_t open_node(uint32_t op, uint64_t node, uint32_t flags)
{
	struct fuse_open_in in = { .flags = flags };
	struct fuse_open_out o;
	int r = call(op, node, &in, sizeof(in));

	if (r)
		return r;
	memcpy(&o, body, sizeof(o));
	return (int64_t)o.fh;
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	CHECK(f);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void setup(bool ro)
{
	struct fs_share_opts o = { .read_only = ro };
	struct fuse_init_in in = { .major = 7, .minor = 37, .flags = ~0u };

	fds_before = count_fds();
	snprintf(top, sizeof(top), "/tmp/fs-unit.XXXXXX");
	CHECK(mkdtemp(top));
	snprintf(share, sizeof(share), "%s/share", top);
	snprintf(outside, sizeof(outside), "%s/outside", top);
	CHECK(mkdir(share, 0755) == 0 && mkdir(outside, 0755) == 0);
	write_file(outside, "secret", "canary");
	write_file(share, "file", "inside");
	CHECK(mkdir(strcat(strcpy((char[128]){ 0 }, share), "/dir"), 0755) == 0);
	CHECK_EQ_INT(fs_share_open(share, &o, &S), 0);
	CHECK_EQ_INT(call(FUSE_INIT, 0, &in, sizeof(in)), 0);
}

static void teardown(void)
{
	char p[128];

	fs_share_close(S);
	S = NULL;
	buf_fini(&out);
	CHECK_EQ_INT(count_fds(), fds_before);
	/* Nothing outside the share changed. */
	snprintf(p, sizeof(p), "%s/secret", outside);
	char *s = NULL;
	CHECK(read_file_str(p, 64, &s) >= 0 && s && !strcmp(s, "canary"));
	free(s);
	rm_rf(top);
}

static void test_init_negotiation(void)
{
	struct fuse_init_in in = { .major = 7, .minor = 37, .max_readahead = 65536, .flags = ~0u };
	struct fuse_init_out o;

	setup(false);
	CHECK_EQ_INT(call(FUSE_INIT, 0, &in, sizeof(in)), 0);
	CHECK_EQ_INT(body_len, sizeof(o));
	memcpy(&o, body, sizeof(o));
	CHECK_EQ_INT(o.major, 7);
	CHECK_EQ_INT(o.minor, 31);
	CHECK_EQ_INT(o.max_write, FS_MAX_WRITE);
	CHECK(o.flags & FUSE_DO_READDIRPLUS);
	CHECK(!(o.flags & (FUSE_WRITEBACK_CACHE | FUSE_POSIX_ACL | FUSE_SETXATTR_EXT)));
	/* An older kernel's 16-byte INIT gets its own minor and only the flags it offered. */
	in = (struct fuse_init_in){ .major = 7, .minor = 27, .flags = FUSE_BIG_WRITES };
	CHECK_EQ_INT(call(FUSE_INIT, 0, &in, 16), 0);
	memcpy(&o, body, sizeof(o));
	CHECK_EQ_INT(o.minor, 27);
	CHECK_EQ_INT(o.flags, FUSE_BIG_WRITES);
	in.minor = 22;
	CHECK_EQ_INT(call(FUSE_INIT, 0, &in, 16), -EPROTO);
	in.major = 8;
	CHECK_EQ_INT(call(FUSE_INIT, 0, &in, 16), -EPROTO);
	CHECK_EQ_INT(call(FUSE_INIT, 0, &in, 8), -EINVAL);
	teardown();
}

static void test_malformed_headers(void)
{
	struct fuse_in_header h = { .len = 100, .opcode = FUSE_GETATTR, .unique = 77, .nodeid = 1 };
	uint8_t raw[sizeof(h) + 16] = { 0 };
	struct fuse_out_header oh;

	setup(false);
	buf_consume(&out, buf_used(&out));
	/* Not even a header: the stream is closed. */
	CHECK_EQ_INT(fs_share_handle(S, raw, sizeof(h) - 1, &out), -EPROTO);
	CHECK_EQ_INT(buf_used(&out), 0);
	/* A length that disagrees with the bytes: an error reply with the request's unique. */
	memcpy(raw, &h, sizeof(h));
	CHECK_EQ_INT(fs_share_handle(S, raw, sizeof(raw), &out), 0);
	memcpy(&oh, buf_head(&out), sizeof(oh));
	CHECK_EQ_INT(oh.error, -EINVAL);
	CHECK_EQ_INT(oh.unique, 77);
	/* Extensions longer than the body. */
	buf_consume(&out, buf_used(&out));
	h.len = sizeof(raw);
	h.total_extlen = 3;
	memcpy(raw, &h, sizeof(h));
	CHECK_EQ_INT(fs_share_handle(S, raw, sizeof(raw), &out), 0);
	memcpy(&oh, buf_head(&out), sizeof(oh));
	CHECK_EQ_INT(oh.error, -EINVAL);
	/* Longer than any request may be, even with a matching header. */
	static uint8_t big[FS_MAX_REQUEST + 1 - sizeof(struct fuse_in_header)];
	CHECK_EQ_INT(call(FUSE_WRITE, 1, big, sizeof(big)), -EINVAL);
	CHECK_EQ_INT(call(FUSE_WRITE, 1, big, sizeof(big) - 1), -EBADF); /* the largest: parsed */
	/* Unknown and unimplemented opcodes; short bodies. */
	CHECK_EQ_INT(call(9999, 1, NULL, 0), -ENOSYS);
	CHECK_EQ_INT(call(FUSE_SETLK, 1, raw, sizeof(raw)), -ENOSYS);
	CHECK_EQ_INT(call(FUSE_READ, 1, raw, 8), -EINVAL);
	CHECK_EQ_INT(call(FUSE_GETATTR, 1, NULL, 0), -EINVAL);
	CHECK_EQ_INT(last_unique, unique);
	/* FORGET of anything, INTERRUPT: never a reply, not even an error. */
	CHECK_EQ_INT(call(FUSE_FORGET, 12345, raw, 8), NO_REPLY);
	CHECK_EQ_INT(call(FUSE_FORGET, 1, raw, 2), NO_REPLY);
	CHECK_EQ_INT(call(FUSE_INTERRUPT, 1, raw, 8), NO_REPLY);
	struct fuse_batch_forget_in bf = { .count = 1000000 };
	CHECK_EQ_INT(call(FUSE_BATCH_FORGET, 0, &bf, sizeof(bf)), NO_REPLY);
	teardown();
}

static void test_names_are_single_components(void)
{
	static const char *bad[] = { "..", ".", "dir/../file", "/etc", "a/b" };
	char longname[300];

	setup(false);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CHECK_EQ_INT(lookup(1, bad[i], NULL), -EINVAL);
	CHECK_EQ_INT(call(FUSE_LOOKUP, 1, "file", 4), -EINVAL); /* no NUL */
	CHECK_EQ_INT(call(FUSE_LOOKUP, 1, "\0file", 6), -EINVAL); /* empty */
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	CHECK_EQ_INT(lookup(1, longname, NULL), -ENAMETOOLONG);
	CHECK_EQ_INT(call_name(FUSE_MKDIR, 1, (struct fuse_mkdir_in[]){ { 0755, 0 } },
			       sizeof(struct fuse_mkdir_in), ".."),
		     -EINVAL);
	CHECK(lookup(1, "file", NULL) > 0);
	CHECK_EQ_INT(lookup(1, "missing", NULL), -ENOENT);
	teardown();
}

static void test_lookup_forget_and_stale_ids(void)
{
	struct fuse_entry_out e1, e2;
	struct fuse_getattr_in ga = { 0 };
	struct fs_share_stats st;
	int64_t f;

	setup(false);
	f = lookup(1, "file", &e1);
	CHECK(f > 1 && lookup(1, "file", &e2) == f); /* one inode, one node */
	CHECK(S_ISREG(e1.attr.mode) && e1.attr.size == 6 && e1.entry_valid == 1);
	fs_share_stats(S, &st);
	CHECK_EQ_INT(st.nodes, 2);
	CHECK_EQ_INT(call(FUSE_GETATTR, (uint64_t)f, &ga, sizeof(ga)), 0);
	struct fuse_forget_in fg = { .nlookup = 2 };
	CHECK_EQ_INT(call(FUSE_FORGET, (uint64_t)f, &fg, sizeof(fg)), NO_REPLY);
	fs_share_stats(S, &st);
	CHECK_EQ_INT(st.nodes, 1);
	/* The forgotten id is stale even once its slot is reused. */
	CHECK_EQ_INT(call(FUSE_GETATTR, (uint64_t)f, &ga, sizeof(ga)), -ESTALE);
	CHECK(lookup(1, "dir", NULL) > 0);
	CHECK_EQ_INT(call(FUSE_GETATTR, (uint64_t)f, &ga, sizeof(ga)), -ESTALE);
	CHECK_EQ_INT(call(FUSE_GETATTR, 0, &ga, sizeof(ga)), -ESTALE);
	CHECK_EQ_INT(call(FUSE_GETATTR, ~0ull, &ga, sizeof(ga)), -ESTALE);
	/* The root is never forgotten. */
	CHECK_EQ_INT(call(FUSE_FORGET, 1, &fg, sizeof(fg)), NO_REPLY);
	CHECK_EQ_INT(call(FUSE_GETATTR, 1, &ga, sizeof(ga)), 0);
	/* Unknown handles. */
	struct fuse_read_in rd = { .fh = 5, .size = 10 };
	CHECK_EQ_INT(call(FUSE_READ, 1, &rd, sizeof(rd)), -EBADF);
	rd.fh = ~0ull;
	CHECK_EQ_INT(call(FUSE_READDIR, 1, &rd, sizeof(rd)), -EBADF);
	struct fuse_release_in rl = { .fh = 3 };
	CHECK_EQ_INT(call(FUSE_RELEASE, 1, &rl, sizeof(rl)), -EBADF);
	teardown();
}

/* Symlinks are nodes of their own: never followed on the host, opened, or walked through. */
static void test_symlinks_never_followed(void)
{
	struct fuse_entry_out e;
	int64_t l;
	char target[128];

	setup(false);
	snprintf(target, sizeof(target), "%s/secret", outside);
	CHECK_EQ_INT(call3(FUSE_SYMLINK, 1, "abs", 4, target, strlen(target) + 1, NULL, 0), 0);
	CHECK_EQ_INT(call3(FUSE_SYMLINK, 1, "up", 3, "../outside", 11, NULL, 0), 0);
	l = lookup(1, "abs", &e);
	CHECK(l > 0 && S_ISLNK(e.attr.mode));
	CHECK_EQ_INT(open_node(FUSE_OPEN, (uint64_t)l, O_RDONLY), -EACCES);
	CHECK_EQ_INT(open_node(FUSE_OPENDIR, (uint64_t)l, O_RDONLY), -ENOTDIR);
	CHECK_EQ_INT(call(FUSE_READLINK, (uint64_t)l, NULL, 0), 0);
	CHECK_EQ_MEM(body, body_len, target, strlen(target));
	l = lookup(1, "up", &e);
	CHECK(l > 0 && S_ISLNK(e.attr.mode));
	CHECK_EQ_INT(lookup((uint64_t)l, "secret", NULL), -ENOTDIR);
	/* A symlink is never a parent, even for creating. */
	CHECK_EQ_INT(call_name(FUSE_MKDIR, (uint64_t)l, (struct fuse_mkdir_in[]){ { 0755, 0 } },
			       sizeof(struct fuse_mkdir_in), "x"),
		     -ENOTDIR);
	/* CREATE over an existing symlink does not follow it. */
	struct fuse_create_in ci = { .flags = O_WRONLY | O_CREAT, .mode = 0644 };
	CHECK(call_name(FUSE_CREATE, 1, &ci, sizeof(ci), "abs") < 0);
	teardown();
}

/* A directory the guest holds is swapped for a symlink to the outside on the host. */
static void test_swapped_directory(void)
{
	char a[160], b[160];
	int64_t d, f, fh;

	setup(false);
	write_file(share, "dir/secret", "inside");
	d = lookup(1, "dir", NULL);
	f = lookup((uint64_t)d, "secret", NULL);
	CHECK(d > 0 && f > 0);
	snprintf(a, sizeof(a), "%s/dir", share);
	snprintf(b, sizeof(b), "%s/dir.real", share);
	CHECK(rename(a, b) == 0 && symlink(outside, a) == 0);
	/* Held nodes still mean the real directory, which stays in the tree. */
	fh = open_node(FUSE_OPEN, (uint64_t)f, O_RDWR);
	CHECK(fh >= 0);
	struct fuse_read_in rd = { .fh = (uint64_t)fh, .size = 100 };
	CHECK_EQ_INT(call(FUSE_READ, (uint64_t)f, &rd, sizeof(rd)), 0);
	CHECK_EQ_MEM(body, body_len, "inside", 6);
	CHECK_EQ_INT(lookup((uint64_t)d, "secret", NULL), f);
	/* A fresh lookup of the name finds the symlink, which leads nowhere. */
	int64_t l = lookup(1, "dir", NULL);
	CHECK(l > 0 && l != d);
	CHECK_EQ_INT(lookup((uint64_t)l, "secret", NULL), -ENOTDIR);
	/* The file's recorded name swapped for a symlink: reopening refuses. */
	snprintf(a, sizeof(a), "%s/dir.real/secret", share);
	snprintf(b, sizeof(b), "%s/secret", outside);
	CHECK(unlink(a) == 0 && symlink(b, a) == 0);
	CHECK_EQ_INT(open_node(FUSE_OPEN, (uint64_t)f, O_RDONLY), -ESTALE);
	teardown();
}

static void test_create_write_read(void)
{
	struct fuse_create_in ci = { .flags = O_RDWR | O_CREAT, .mode = 06755 };
	struct {
		struct fuse_entry_out e;
		struct fuse_open_out o;
	} co;
	static uint8_t data[FS_MAX_WRITE + 1];
	struct fuse_write_in wi = { .size = 5 };
	struct fuse_read_in ri = { .size = 5 };

	setup(false);
	CHECK_EQ_INT(call_name(FUSE_CREATE, 1, &ci, sizeof(ci), "new"), 0);
	memcpy(&co, body, sizeof(co));
	CHECK_EQ_INT(co.e.attr.mode & 07777, 0755); /* no set-id bits on the host */
	wi.fh = ri.fh = co.o.fh;
	CHECK_EQ_INT(call3(FUSE_WRITE, co.e.nodeid, &wi, sizeof(wi), "hello", 5, NULL, 0), 0);
	CHECK_EQ_INT(((struct fuse_write_out *)body)->size, 5);
	CHECK_EQ_INT(call(FUSE_READ, co.e.nodeid, &ri, sizeof(ri)), 0);
	CHECK_EQ_MEM(body, body_len, "hello", 5);
	/* Size fields that disagree with the body, or exceed the maxima. */
	wi.size = 6;
	CHECK_EQ_INT(call3(FUSE_WRITE, co.e.nodeid, &wi, sizeof(wi), "hello", 5, NULL, 0), -EINVAL);
	wi.size = FS_MAX_WRITE + 1;
	CHECK_EQ_INT(call3(FUSE_WRITE, co.e.nodeid, &wi, sizeof(wi), data, sizeof(data), NULL, 0),
		     -EINVAL);
	wi.size = FS_MAX_WRITE;
	CHECK_EQ_INT(call3(FUSE_WRITE, co.e.nodeid, &wi, sizeof(wi), data, FS_MAX_WRITE, NULL, 0),
		     0);
	ri.size = FS_MAX_WRITE + 1;
	CHECK_EQ_INT(call(FUSE_READ, co.e.nodeid, &ri, sizeof(ri)), -EINVAL);
	ri.size = 10;
	ri.offset = 1ull << 63;
	CHECK_EQ_INT(call(FUSE_READ, co.e.nodeid, &ri, sizeof(ri)), -EINVAL);
	/* chown is accepted and changes nothing; truncate through the handle. */
	struct fuse_setattr_in sa = { .valid = FATTR_UID | FATTR_GID | FATTR_SIZE | FATTR_FH,
				      .uid = 4321,
				      .gid = 4321,
				      .size = 2,
				      .fh = co.o.fh };
	CHECK_EQ_INT(call(FUSE_SETATTR, co.e.nodeid, &sa, sizeof(sa)), 0);
	struct fuse_attr_out ao;
	memcpy(&ao, body, sizeof(ao));
	CHECK_EQ_INT(ao.attr.size, 2);
	CHECK_EQ_INT(ao.attr.uid, 0);
	struct fuse_release_in rl = { .fh = co.o.fh };
	CHECK_EQ_INT(call(FUSE_RELEASE, co.e.nodeid, &rl, sizeof(rl)), 0);
	CHECK_EQ_INT(call(FUSE_RELEASE, co.e.nodeid, &rl, sizeof(rl)), -EBADF);
	/* Devices are refused; FIFOs are fine. */
	struct fuse_mknod_in mk = { .mode = S_IFCHR | 0666, .rdev = 0x103 };
	CHECK_EQ_INT(call_name(FUSE_MKNOD, 1, &mk, sizeof(mk), "null"), -EPERM);
	mk.mode = S_IFIFO | 0644;
	CHECK_EQ_INT(call_name(FUSE_MKNOD, 1, &mk, sizeof(mk), "fifo"), 0);
	teardown();
}

/* READDIR in pages as small as one entry: every name exactly once, "." and ".." included. */
static void test_readdir_paging(void)
{
	char names[64] = { 0 };
	int64_t fh;
	uint64_t off = 0;
	int seen = 0, calls = 0;

	setup(false);
	for (int i = 0; i < 40; i++) {
		char n[16];
		snprintf(n, sizeof(n), "f%02d", i);
		write_file(share, n, "");
	}
	fh = open_node(FUSE_OPENDIR, 1, O_RDONLY);
	CHECK(fh >= 0);
	for (;;) {
		struct fuse_read_in in = { .fh = (uint64_t)fh, .offset = off, .size = 40 };
		if (!CHECK_EQ_INT(call(FUSE_READDIR, 1, &in, sizeof(in)), 0) || !body_len ||
		    ++calls > 100)
			break;
		CHECK(body_len <= 40);
		for (size_t p = 0; p < body_len;) {
			struct fuse_dirent d;
			memcpy(&d, body + p, sizeof(d));
			const char *nm = (const char *)body + p + FUSE_NAME_OFFSET;
			if (d.namelen == 3 && nm[0] == 'f')
				names[atoi(nm + 1)]++;
			seen++;
			off = d.off;
			p += FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + d.namelen);
		}
	}
	CHECK_EQ_INT(seen, 40 + 4); /* f00..f39, file, dir, ".", ".." */
	for (int i = 0; i < 40; i++)
		CHECK_EQ_INT(names[i], 1);
	/* READDIRPLUS counts a lookup for each entry it returns, except "." and "..". */
	struct fs_share_stats st;
	struct fuse_read_in in = { .fh = (uint64_t)fh, .size = 65536 };
	CHECK_EQ_INT(call(FUSE_READDIRPLUS, 1, &in, sizeof(in)), 0);
	fs_share_stats(S, &st);
	CHECK_EQ_INT(st.nodes, 1 + 42);
	CHECK_EQ_INT(call(FUSE_READDIR, 1, (struct fuse_read_in[]){ { .fh = (uint64_t)fh + 1 } },
			  sizeof(in)),
		     -EBADF);
	teardown();
}

static void test_read_only_share(void)
{
	struct fuse_mkdir_in mk = { .mode = 0755 };
	struct fuse_setattr_in sa = { .valid = FATTR_MODE, .mode = 0777 };
	int64_t f;

	setup(true);
	f = lookup(1, "file", NULL);
	CHECK_EQ_INT(call_name(FUSE_MKDIR, 1, &mk, sizeof(mk), "d"), -EROFS);
	CHECK_EQ_INT(call_name(FUSE_UNLINK, 1, NULL, 0, "file"), -EROFS);
	CHECK_EQ_INT(call(FUSE_SETATTR, (uint64_t)f, &sa, sizeof(sa)), -EROFS);
	CHECK_EQ_INT(open_node(FUSE_OPEN, (uint64_t)f, O_WRONLY), -EROFS);
	CHECK_EQ_INT(open_node(FUSE_OPEN, (uint64_t)f, O_RDONLY | O_TRUNC), -EROFS);
	CHECK(open_node(FUSE_OPEN, (uint64_t)f, O_RDONLY) >= 0);
	teardown();
}

static void test_limits(void)
{
	int64_t f, fh = 0;
	unsigned n = 0;

	setup(false);
	f = lookup(1, "file", NULL);
	while (n <= FS_MAX_HANDLES && (fh = open_node(FUSE_OPEN, (uint64_t)f, O_RDONLY)) >= 0)
		n++;
	CHECK_EQ_INT(n, FS_MAX_HANDLES);
	CHECK_EQ_INT(fh, -EMFILE);
	/* Nodes: one per distinct inode (files cost no descriptor), up to FS_MAX_NODES. */
	char p[160];
	snprintf(p, sizeof(p), "%s/many", share);
	CHECK(mkdir(p, 0755) == 0);
	int64_t d = lookup(1, "many", NULL);
	int64_t r = 0;
	for (unsigned i = 0; i < FS_MAX_NODES; i++) {
		char name[16];
		snprintf(name, sizeof(name), "%u", i);
		write_file(p, name, "");
		if ((r = lookup((uint64_t)d, name, NULL)) < 0)
			break;
	}
	CHECK_EQ_INT(r, -ENFILE);
	struct fs_share_stats st;
	fs_share_stats(S, &st);
	CHECK_EQ_INT(st.nodes, FS_MAX_NODES);
	teardown();
}

/*
 * More files than the descriptor cache holds: descriptors stay bounded, and a node whose
 * descriptor was let go is reached again through its name (also after a rename), but not once
 * that name means another file.
 */
static void test_file_descriptor_cache(void)
{
	enum { N = FS_MAX_FILE_FDS + 200 };
	static int64_t ids[N];
	struct fuse_getattr_in ga = { 0 };
	char p[160], a[200], b[200];
	int64_t d;

	setup(false);
	snprintf(p, sizeof(p), "%s/many", share);
	CHECK(mkdir(p, 0755) == 0);
	d = lookup(1, "many", NULL);
	for (unsigned i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "%u", i);
		write_file(p, name, "");
		ids[i] = lookup((uint64_t)d, name, NULL);
	}
	CHECK(ids[0] > 0 && ids[N - 1] > 0);
	CHECK(count_fds() <= fds_before + (int)FS_MAX_FILE_FDS + 8);
	/* The first ones lost their descriptors first. */
	CHECK_EQ_INT(call(FUSE_GETATTR, (uint64_t)ids[0], &ga, sizeof(ga)), 0);
	CHECK(open_node(FUSE_OPEN, (uint64_t)ids[1], O_RDONLY) >= 0);
	struct fuse_rename_in rn = { .newdir = 1 };
	CHECK_EQ_INT(call3(FUSE_RENAME, (uint64_t)d, &rn, sizeof(rn), "2", 2, "moved", 6), 0);
	for (unsigned i = 3; i < N; i++) /* push ids[2] out of the cache again */
		call(FUSE_GETATTR, (uint64_t)ids[i], &ga, sizeof(ga));
	CHECK_EQ_INT(call(FUSE_GETATTR, (uint64_t)ids[2], &ga, sizeof(ga)), 0);
	/* Replaced behind the server's back: that name is now another inode. */
	snprintf(a, sizeof(a), "%s/3", p);
	snprintf(b, sizeof(b), "%s/3.new", p);
	write_file(p, "3.new", "other");
	CHECK(rename(b, a) == 0);
	for (unsigned i = 4; i < N; i++)
		call(FUSE_GETATTR, (uint64_t)ids[i], &ga, sizeof(ga));
	CHECK_EQ_INT(call(FUSE_GETATTR, (uint64_t)ids[3], &ga, sizeof(ga)), -ESTALE);
	CHECK(count_fds() <= fds_before + (int)FS_MAX_FILE_FDS + 8);
	teardown();
}

static void test_xattrs_user_namespace_only(void)
{
	struct {
		uint32_t size, flags;
	} sx = { .size = 2 };
	struct fuse_getxattr_in gx = { .size = 100 };
	int64_t f;

	setup(false);
	f = lookup(1, "file", NULL);
	int r = call3(FUSE_SETXATTR, (uint64_t)f, &sx, sizeof(sx), "user.a", 7, "v1", 2);
	if (r == -EOPNOTSUPP) {
		printf("skipped: %s has no user.* xattrs (tmpfs before Linux 6.6)\n", top);
		teardown();
		return;
	}
	CHECK_EQ_INT(r, 0);
	CHECK_EQ_INT(call3(FUSE_SETXATTR, (uint64_t)f, &sx, sizeof(sx), "trusted.a", 10, "v1", 2),
		     -EOPNOTSUPP);
	CHECK_EQ_INT(call3(FUSE_SETXATTR, (uint64_t)f, &sx, sizeof(sx), "security.a", 11, "v1", 2),
		     -EOPNOTSUPP);
	CHECK_EQ_INT(call3(FUSE_SETXATTR, (uint64_t)f, &sx, sizeof(sx), "system.posix_acl_access",
			   24, "v1", 2),
		     -EOPNOTSUPP);
	CHECK_EQ_INT(call_name(FUSE_REMOVEXATTR, (uint64_t)f, NULL, 0, "trusted.a"), -EOPNOTSUPP);
	sx.size = 3; /* more than the body holds */
	CHECK_EQ_INT(call3(FUSE_SETXATTR, (uint64_t)f, &sx, sizeof(sx), "user.b", 7, "v1", 2),
		     -EINVAL);
	CHECK_EQ_INT(call_name(FUSE_GETXATTR, (uint64_t)f, &gx, sizeof(gx), "user.a"), 0);
	CHECK_EQ_MEM(body, body_len, "v1", 2);
	CHECK_EQ_INT(call_name(FUSE_GETXATTR, (uint64_t)f, &gx, sizeof(gx), "trusted.a"), -ENODATA);
	gx.size = 1;
	CHECK_EQ_INT(call_name(FUSE_GETXATTR, (uint64_t)f, &gx, sizeof(gx), "user.a"), -ERANGE);
	gx.size = 100;
	CHECK_EQ_INT(call(FUSE_LISTXATTR, (uint64_t)f, &gx, sizeof(gx)), 0);
	CHECK_EQ_MEM(body, body_len, "user.a", 7);
	CHECK_EQ_INT(call_name(FUSE_REMOVEXATTR, (uint64_t)f, NULL, 0, "user.a"), 0);
	teardown();
}

static void test_link_and_rename(void)
{
	struct fuse_link_in li;
	struct fuse_rename2_in rn = { .newdir = 1, .flags = RENAME_NOREPLACE };
	struct fuse_entry_out e;
	int64_t f, d;

	setup(false);
	f = lookup(1, "file", NULL);
	d = lookup(1, "dir", NULL);
	li.oldnodeid = (uint64_t)f;
	CHECK_EQ_INT(call_name(FUSE_LINK, (uint64_t)d, &li, sizeof(li), "hard"), 0);
	memcpy(&e, body, sizeof(e));
	CHECK_EQ_INT(e.nodeid, f);
	CHECK_EQ_INT(e.attr.nlink, 2);
	li.oldnodeid = (uint64_t)d;
	CHECK_EQ_INT(call_name(FUSE_LINK, 1, &li, sizeof(li), "dirlink"), -EPERM);
	CHECK_EQ_INT(call3(FUSE_RENAME2, 1, &rn, sizeof(rn), "file", 5, "dir", 4), -EEXIST);
	rn.flags = RENAME_WHITEOUT;
	CHECK_EQ_INT(call3(FUSE_RENAME2, 1, &rn, sizeof(rn), "file", 5, "x", 2), -EINVAL);
	rn.flags = 0;
	rn.newdir = (uint64_t)d;
	CHECK_EQ_INT(call3(FUSE_RENAME2, 1, &rn, sizeof(rn), "file", 5, "moved", 6), 0);
	CHECK_EQ_INT(call3(FUSE_RENAME2, 1, &rn, sizeof(rn), "dir", 4, "..", 3), -EINVAL);
	/* The node follows its new name: it still opens. */
	CHECK(open_node(FUSE_OPEN, (uint64_t)f, O_RDONLY) >= 0);
	teardown();
}

/* ACCESS, STATFS, FSYNC/FSYNCDIR, FLUSH, and handles used as the wrong kind. */
static void test_access_statfs_sync(void)
{
	struct fuse_access_in ac = { .mask = R_OK | W_OK };
	struct fuse_fsync_in fs = { 0 };
	struct fuse_flush_in fl = { 0 };
	struct fuse_statfs_out so;
	int64_t f, fh, dh;

	setup(false);
	f = lookup(1, "file", NULL);
	CHECK_EQ_INT(call(FUSE_ACCESS, (uint64_t)f, &ac, sizeof(ac)), 0);
	CHECK_EQ_INT(call(FUSE_STATFS, 1, NULL, 0), 0);
	memcpy(&so, body, sizeof(so));
	CHECK(body_len == sizeof(so) && so.st.bsize > 0 && so.st.namelen == 255);
	fh = open_node(FUSE_OPEN, (uint64_t)f, O_RDWR);
	dh = open_node(FUSE_OPENDIR, 1, O_RDONLY);
	CHECK(fh >= 0 && dh >= 0);
	fs.fh = fl.fh = (uint64_t)fh;
	fs.fsync_flags = FUSE_FSYNC_FDATASYNC;
	CHECK_EQ_INT(call(FUSE_FSYNC, (uint64_t)f, &fs, sizeof(fs)), 0);
	CHECK_EQ_INT(call(FUSE_FLUSH, (uint64_t)f, &fl, sizeof(fl)), 0);
	CHECK_EQ_INT(call(FUSE_FSYNCDIR, 1, &fs, sizeof(fs)), -EBADF); /* a file handle */
	fs.fh = (uint64_t)dh;
	CHECK_EQ_INT(call(FUSE_FSYNCDIR, 1, &fs, sizeof(fs)), 0);
	CHECK_EQ_INT(call(FUSE_FSYNC, 1, &fs, sizeof(fs)), -EBADF); /* a directory handle */
	struct fuse_read_in rd = { .fh = (uint64_t)dh, .size = 10 };
	CHECK_EQ_INT(call(FUSE_READ, 1, &rd, sizeof(rd)), -EBADF);
	teardown();
	setup(true);
	f = lookup(1, "file", NULL);
	CHECK_EQ_INT(call(FUSE_ACCESS, (uint64_t)f, &ac, sizeof(ac)), -EROFS);
	ac.mask = R_OK;
	CHECK_EQ_INT(call(FUSE_ACCESS, (uint64_t)f, &ac, sizeof(ac)), 0);
	teardown();
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_init_negotiation);
	CHECK_RUN(test_malformed_headers);
	CHECK_RUN(test_names_are_single_components);
	CHECK_RUN(test_lookup_forget_and_stale_ids);
	CHECK_RUN(test_symlinks_never_followed);
	CHECK_RUN(test_swapped_directory);
	CHECK_RUN(test_create_write_read);
	CHECK_RUN(test_readdir_paging);
	CHECK_RUN(test_read_only_share);
	CHECK_RUN(test_limits);
	CHECK_RUN(test_file_descriptor_cache);
	CHECK_RUN(test_xattrs_user_namespace_only);
	CHECK_RUN(test_link_and_rename);
	CHECK_RUN(test_access_statfs_sync);
	return check_summary();
}
