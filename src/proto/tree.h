/* SPDX-License-Identifier: MIT */
/*
 * The tree stream: a directory tree (or one file or symlink) as a sequence of records, the way
 * `matchlock cp` and overlay diffs move trees between host and guest. Both ends pack it
 * (tree_pack_*: a walk, pulled in chunks as flow control allows) and unpack it (tree_unpack_*:
 * pushed in chunks of any size, memory bounded by TREE_MAX_HEADER). The reader treats its input
 * as hostile: a path is relative, made of ordinary names (no "", ".", ".." component), at most
 * TREE_MAX_DEPTH deep, and every write lands beneath the destination (openat2 RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS for parents, *at calls that never follow a final symlink), so neither a
 * name nor a symlink the stream itself created can make the writer leave it.
 *
 *   stream := record* end
 *   record := u32 LE header length (<= TREE_MAX_HEADER), TLVs (proto/msg.h), then for a file
 *             exactly T_SIZE bytes of content
 *   TLVs:     T_KIND (u8, enum tree_kind), T_PATH ("" for the root, then "a", "a/b", ...),
 *             T_MODE (permission bits), T_TIME_NS (mtime), T_SIZE (file), T_LINK (symlink
 *             target), T_OPAQUE (u8, a directory that replaces what was there: overlay)
 *
 * The first record is the root; only a directory root has more. A writer sends a directory
 * before its entries (depth first); modes and times of directories are set once their entries
 * are written. TREE_DELETE (a name removed: an overlay whiteout) is accepted only by an unpack
 * with TREE_APPLY.
 */
#ifndef MATCHLOCK_TREE_H
#define MATCHLOCK_TREE_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/buf.h"

#define TREE_MAX_HEADER 9000 /* two strings of MSG_MAX_STR and the small fields */
#define TREE_MAX_DEPTH 128 /* directories inside one another, both ways */
#define TREE_MAX_PATH 4096 /* a record's relative path (MSG_MAX_STR) */

enum tree_kind { TREE_FILE = 1, TREE_DIR, TREE_SYMLINK, TREE_DELETE, TREE_END };

/* Flags of a pack (and of SVC_TREE_PACK's T_FLAGS). */
enum {
	TREE_OVERLAY = 1, /* the tree is an overlayfs upper: whiteouts and opaque dirs */
	TREE_NO_DATA = 2, /* names and kinds only: every file is sent with size 0 */
	TREE_UPPER = 4, /* SVC_TREE_PACK: T_SHARE names an overlay mount; pack its upper */
};
/* Flags of an unpack (and of SVC_TREE_UNPACK's T_FLAGS). */
enum {
	TREE_CONTENTS = 1, /* `cp SRC/. DEST`: a directory's entries go into DEST itself */
	TREE_APPLY = 2, /* overlay changes onto DEST (implies TREE_CONTENTS): deletions too */
};

/* One record as the reader hands it on; strings live until the next record. */
struct tree_entry {
	uint8_t kind;
	bool opaque;
	const char *path;
	const char *link;
	uint32_t mode;
	uint64_t mtime_ns, size;
};

/* ---- reading: the checked parser ---- */

struct tree_parse_ops {
	int (*entry)(void *o, const struct tree_entry *e);
	int (*data)(void *o, const uint8_t *p, size_t n); /* a file's content, in pieces */
	int (*file_end)(void *o); /* after a file's last byte */
};

struct tree_parser {
	unsigned state; /* length, header, data, ended */
	bool allow_delete;
	uint8_t root_kind; /* 0 until the root is read */
	uint8_t len_bytes[4];
	unsigned len_got;
	uint32_t hdr_len, hdr_got;
	uint64_t data_left;
	uint64_t records;
	uint8_t hdr[TREE_MAX_HEADER];
	char path[TREE_MAX_PATH + 1], link[TREE_MAX_PATH + 1];
};

void tree_parse_init(struct tree_parser *p, bool allow_delete);
/*
 * Feed n bytes (any split). Callbacks run for each complete item; a callback's error (or
 * -EPROTO for a malformed stream) is returned and the parser must not be fed again.
 */
int tree_parse_feed(struct tree_parser *p, const uint8_t *b, size_t n,
		    const struct tree_parse_ops *ops, void *o);
/* 0 once the end record was read, else -EPROTO (the stream was cut short). */
int tree_parse_done(const struct tree_parser *p);

/* ---- writing a walk ---- */

struct tree_pack_dir {
	DIR *d;
	size_t path_len; /* of this directory's relative path in tree_pack.path */
};

struct tree_pack {
	unsigned flags;
	int fd; /* the file being sent */
	uint64_t data_left;
	bool done, ended;
	unsigned depth;
	struct tree_pack_dir dirs[TREE_MAX_DEPTH];
	struct buf out; /* a header not yet handed out */
	char path[TREE_MAX_PATH + 1];
	char err[TREE_MAX_PATH + 100];
};

/* Start walking path (not followed if it is a symlink); -errno with p->err. */
int tree_pack_open(struct tree_pack *p, const char *path, unsigned flags);
/* Up to cap bytes of the stream: > 0, 0 after the end record, or -errno with p->err set. */
ssize_t tree_pack_read(struct tree_pack *p, uint8_t *out, size_t cap);
void tree_pack_close(struct tree_pack *p);

/* ---- unpacking into a destination ---- */

struct tree_unpack_dir {
	size_t path_len; /* of its relative path in tree_unpack.cur */
	uint32_t mode;
	uint64_t mtime_ns;
};

struct tree_unpack {
	struct tree_parser parser;
	unsigned flags;
	char *dest; /* as the user gave it */
	char *src_base; /* the source's last name (docker cp: DEST/NAME when DEST is a dir) */
	int parent_fd; /* the directory receiving the root */
	char top[256]; /* the root's name in parent_fd, "" = parent_fd itself */
	int root_fd; /* a directory root once created: every later write is beneath it */
	int fd; /* the file being written */
	unsigned depth;
	bool root_meta; /* set the root's mode and time (not for `cp SRC/. DEST`) */
	struct tree_unpack_dir dirs[TREE_MAX_DEPTH + 1];
	char cur[TREE_MAX_PATH + 1];
	uint32_t file_mode;
	uint64_t file_mtime;
	char err[TREE_MAX_PATH + 200];
	/*
	 * Optional, set after tree_unpack_init: a non-directory record whose relative path this
	 * returns true for is passed over (its content read and dropped), e.g. the files a
	 * sandbox writes for itself when its changes go back to a host folder.
	 */
	bool (*skip)(void *opaque, const char *path);
	void *skip_opaque;
	bool skipping; /* the current record is being passed over */
};

/*
 * Unpack into dest following `docker cp` (the root's kind decides, once it arrives):
 * DEST an existing directory receives SRC_BASE (or SRC's entries with TREE_CONTENTS); else DEST
 * is created or replaced (a directory is never replaced by a file). -errno with u->err.
 */
int tree_unpack_init(struct tree_unpack *u, const char *dest, const char *src_base, unsigned flags);
int tree_unpack_feed(struct tree_unpack *u, const uint8_t *p, size_t n);
/* After the last byte: sets the remaining directories' modes and times; -errno with u->err. */
int tree_unpack_finish(struct tree_unpack *u);
void tree_unpack_fini(struct tree_unpack *u);

/* The last name of a source path ("a/b/" -> "b"); *contents set for "a/." ("cp SRC/."). */
int tree_src_base(const char *src, char *base, size_t n, bool *contents);

#endif
