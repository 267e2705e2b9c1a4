/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness for the file server (fs_share_handle) on a real temporary share. Each input
 * is a sequence of requests against a freshly built tree (files, a directory, symlinks pointing
 * out of the share by absolute and relative paths), after INIT. The first byte's bit 0 makes the
 * share read-only; then records (tests/fuzz/fuzz_fs.h):
 *
 *   u8 op     bits 0-5: the FUSE opcode; FUZZ_FS_BAD_LEN: the header's len is off by one;
 *             FUZZ_FS_RAW_NODE: the next byte is the nodeid itself, not a learned one
 *   u8 node   which learned node id (from entry replies) the request is for
 *   u8 patch  0: none; FUZZ_FS_PATCH_NODE|i: the body's first 8 bytes become learned node i
 *             (LINK's oldnodeid, RENAME's newdir); else the first 8 bytes become learned fh i
 *   u16 len   little-endian body length, then the body
 *
 * Beyond "no crash, no leak", it aborts when a reply is malformed (length, unique, an error
 * outside -4095..-1 with a body), a reply carries the canary of the file outside the share, the
 * node or handle counts pass their maxima, or anything outside the share changed: the outside
 * file's content, the outside folder's entries, or the temp directory's entries.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "fs/fhooks.h"
#include "fs/share.h"
#include "fuzz_fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CANARY_LEN 24
#define NLEARN 16

/*
 * The outside file's content: random per process, so a corpus cannot carry it, and searched for
 * without memmem (which libFuzzer intercepts and would add to its dictionary).
 */
static char canary[CANARY_LEN + 1];
static bool input_has_canary; /* the input itself could have written it into the share */
static char top[64];
static int top_fd = -1;
static uint64_t nodes[NLEARN], fhs[NLEARN];
static unsigned nnodes, nfhs;
static uint8_t req[FS_MAX_REQUEST + 64];

static void die(const char *what)
{
	fprintf(stderr, "fuzz_fs: %s\n", what);
	abort();
}

static void write_at(int dirfd, const char *name, const char *text)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die("writing the tree");
	close(fd);
}

static void cleanup(void);

static bool has_canary(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + CANARY_LEN <= n; i++) {
		size_t k = 0;
		while (k < CANARY_LEN && p[i + k] == (uint8_t)canary[k])
			k++;
		if (k == CANARY_LEN)
			return true;
	}
	return false;
}

/* The temp directory: outside/secret (the canary) and, per input, a fresh share/. */
static void make_top(void)
{
	uint8_t rnd[CANARY_LEN / 2];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd))
		die("/dev/urandom");
	close(fd);
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(canary + 2 * i, 3, "%02x", rnd[i]);
	/* Each input rebuilds the tree: on tmpfs that is several times faster than on a disk. */
	snprintf(top, sizeof(top), "/dev/shm/fuzz-fs.XXXXXX");
	if (!mkdtemp(top)) {
		snprintf(top, sizeof(top), "/tmp/fuzz-fs.XXXXXX");
		if (!mkdtemp(top))
			die("mkdtemp");
	}
	atexit(cleanup);
	top_fd = open(top, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (top_fd < 0 || mkdirat(top_fd, "outside", 0755) < 0)
		die("top");
	int out = openat(top_fd, "outside", O_PATH | O_DIRECTORY | O_CLOEXEC);
	write_at(out, "secret", canary);
	close(out);
}

/*
 * Give every directory of the tree at dirfd/name mode 0700 again (the input may have chmodded
 * them to 0 with SETATTR), so that a harness not running as root can remove it.
 */
static void unlock_tree(int dirfd, const char *name, int depth)
{
	struct stat st;
	struct dirent *e;
	DIR *d;
	int fd;

	if (depth <= 0 || fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISDIR(st.st_mode))
		return;
	fchmodat(dirfd, name, 0700, 0); /* a directory, just checked: nothing to follow */
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlock_tree(fd, e->d_name, depth - 1);
	closedir(d);
}

static void cleanup(void)
{
	if (top_fd >= 0)
		unlock_tree(top_fd, "share", RM_MAX_DEPTH);
	rm_rf(top);
}

static void make_share(void)
{
	char abs[128];
	int s;

	unlock_tree(top_fd, "share", RM_MAX_DEPTH);
	if (rm_tree_at(top_fd, "share", RM_MAX_DEPTH) < 0 || mkdirat(top_fd, "share", 0755) < 0)
		die("share");
	s = openat(top_fd, "share", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (s < 0 || mkdirat(s, "dir", 0755) < 0)
		die("share fd");
	write_at(s, "file", "inside");
	write_at(s, "dir/inner", "inner");
	snprintf(abs, sizeof(abs), "%s/outside/secret", top);
	if (symlinkat(abs, s, "abs") < 0 || symlinkat("../outside/secret", s, "rel") < 0 ||
	    symlinkat("../outside", s, "updir") < 0 || symlinkat("/", s, "root") < 0)
		die("symlinks");
	close(s);
}

/* Exactly the entries named (a NULL-terminated list), in any order. */
static bool dir_is(const char *path, const char *const *names)
{
	DIR *d = opendir(path);
	struct dirent *e;
	unsigned n = 0, want = 0;

	if (!d)
		return false;
	while (names[want])
		want++;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		bool known = false;
		for (unsigned i = 0; i < want; i++)
			known |= !strcmp(e->d_name, names[i]);
		if (!known)
			fprintf(stderr, "fuzz_fs: unexpected %s/%s\n", path, e->d_name);
		n += known;
		n += !known * 1000;
	}
	closedir(d);
	return n == want;
}

static void check_outside(void)
{
	static const char *const top_names[] = { "share", "outside", NULL };
	static const char *const out_names[] = { "secret", NULL };
	char p[128], *s = NULL;

	if (!dir_is(top, top_names))
		die("the temp directory changed");
	snprintf(p, sizeof(p), "%s/outside", top);
	if (!dir_is(p, out_names))
		die("the outside folder changed");
	snprintf(p, sizeof(p), "%s/outside/secret", top);
	if (read_file_str(p, 256, &s) < 0 || strcmp(s, canary))
		die("the outside file changed");
	free(s);
}

static void learn(uint32_t opcode, const uint8_t *body, size_t n)
{
	uint64_t v;

	if ((opcode == FUSE_LOOKUP || opcode == FUSE_MKDIR || opcode == FUSE_MKNOD ||
	     opcode == FUSE_SYMLINK || opcode == FUSE_LINK || opcode == FUSE_CREATE) &&
	    n >= sizeof(struct fuse_entry_out)) {
		memcpy(&v, body, 8);
		if (v)
			nodes[nnodes++ % NLEARN] = v;
	}
	if ((opcode == FUSE_OPEN || opcode == FUSE_OPENDIR) && n >= 8) {
		memcpy(&v, body, 8);
		fhs[nfhs++ % NLEARN] = v;
	}
	if (opcode == FUSE_CREATE && n >= sizeof(struct fuse_entry_out) + 8) {
		memcpy(&v, body + sizeof(struct fuse_entry_out), 8);
		fhs[nfhs++ % NLEARN] = v;
	}
}

/* Send one request and check the shape of what came back. */
static void send_one(struct fs_share *s, struct buf *out, const uint8_t *req_bytes, size_t n,
		     const struct fuse_in_header *h)
{
	struct fuse_out_header oh;

	buf_consume(out, buf_used(out));
	/* What file hooks are told about it (fs/fhooks.h): read only, never a crash. */
	struct fs_opinfo info;
	if (fs_share_describe(s, req_bytes, n, &info) == 0 && info.ops &&
	    (info.path[0] != '/' || (info.is_write && info.data_off + info.data_len > n)))
		die("fs_share_describe told a path that is not absolute, or data past the request");
	if (fs_share_handle(s, req_bytes, n, out) < 0) {
		if (n >= sizeof(*h))
			die("a request with a header was refused without a reply");
		return;
	}
	if (buf_used(out) == 0) {
		if (h->opcode != FUSE_FORGET && h->opcode != FUSE_BATCH_FORGET &&
		    h->opcode != FUSE_INTERRUPT)
			die("no reply");
		return;
	}
	if (buf_used(out) < sizeof(oh))
		die("short reply");
	memcpy(&oh, buf_head(out), sizeof(oh));
	if (oh.len != buf_used(out) || oh.len > FS_MAX_REPLY + sizeof(oh) || oh.unique != h->unique)
		die("reply header");
	if (oh.error > 0 || oh.error < -4095 || (oh.error && oh.len != sizeof(oh)))
		die("reply error");
	if (!input_has_canary && has_canary(buf_head(out), buf_used(out)))
		die("the outside file was read");
	if (!oh.error)
		learn(h->opcode, buf_head(out) + sizeof(oh), oh.len - sizeof(oh));
}

static void init(struct fs_share *s, struct buf *out)
{
	struct fuse_init_in in = {
		.major = 7, .minor = 37, .max_readahead = 1 << 17, .flags = ~0u
	};
	struct fuse_in_header h = { .len = sizeof(h) + sizeof(in),
				    .opcode = FUSE_INIT,
				    .unique = 1 };

	memcpy(req, &h, sizeof(h));
	memcpy(req + sizeof(h), &in, sizeof(in));
	send_one(s, out, req, h.len, &h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fs_share_opts o = { .read_only = size && (data[0] & 1) };
	struct fs_share_stats st;
	struct fs_share *s;
	struct buf out = { 0 };
	char share[96];
	uint64_t unique = 1;

	if (top_fd < 0)
		make_top();
	input_has_canary = has_canary(data, size);
	make_share();
	snprintf(share, sizeof(share), "%s/share", top);
	if (fs_share_open(share, &o, &s) < 0)
		die("fs_share_open");
	nodes[0] = FUSE_ROOT_ID;
	nnodes = 1;
	nfhs = 0;
	init(s, &out);
	for (size_t off = 1; off + FUZZ_FS_RECORD_HEAD <= size;) {
		uint8_t op = data[off], node = data[off + 1], patch = data[off + 2];
		size_t len = (size_t)data[off + 3] | (size_t)data[off + 4] << 8;
		off += FUZZ_FS_RECORD_HEAD;
		if (len > size - off)
			len = size - off;
		if (len > FS_MAX_REQUEST - sizeof(struct fuse_in_header))
			len = FS_MAX_REQUEST - sizeof(struct fuse_in_header);
		struct fuse_in_header h = {
			.len = (uint32_t)(sizeof(h) + len) + !!(op & FUZZ_FS_BAD_LEN),
			.opcode = op & FUZZ_FS_OPCODE,
			.unique = ++unique,
			.nodeid = (op & FUZZ_FS_RAW_NODE)
				      ? node
				      : nodes[node % (nnodes < NLEARN ? nnodes : NLEARN)],
		};
		memcpy(req, &h, sizeof(h));
		memcpy(req + sizeof(h), data + off, len);
		if (patch && len >= 8) {
			uint64_t v =
			    (patch & FUZZ_FS_PATCH_NODE)
				? nodes[patch % (nnodes < NLEARN ? nnodes : NLEARN)]
				: (nfhs ? fhs[patch % (nfhs < NLEARN ? nfhs : NLEARN)] : patch);
			memcpy(req + sizeof(h), &v, 8);
		}
		off += len;
		send_one(s, &out, req, sizeof(h) + len, &h);
	}
	fs_share_stats(s, &st);
	if (st.nodes > FS_MAX_NODES || st.handles > FS_MAX_HANDLES)
		die("past a maximum");
	fs_share_close(s);
	buf_fini(&out);
	check_outside();
	return 0;
}
