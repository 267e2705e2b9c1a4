/* SPDX-License-Identifier: MIT */
/*
 * File hooks on host folders: rules on the guest's file operations, applied by the file service
 * before a request reaches the host (phase "before": allow, block, ask an SDK callback, or let
 * an SDK callback rewrite what a write writes) and reported after it (phase "after": a file
 * event). A rule names operations and a path glob (common/pathglob.h) over guest paths (the
 * mount's guest path joined with the path inside the share). The first matching "before" rule
 * decides; every matching "after" rule's name goes with the event.
 *
 * fs_share_describe tells what a raw FUSE request would do (its operations and paths) without
 * doing it; fhooks_write_rewrite makes the request that writes other bytes instead.
 * Pure code: the parser is fuzzed with the network rules' (tests/fuzz/fuzz_hooks.c).
 */
#ifndef MATCHLOCK_FS_FHOOKS_H
#define MATCHLOCK_FS_FHOOKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/hookask.h"
#include "fs/share.h"

#define FHOOKS_MAX_RULES 64
#define FHOOKS_NAME_MAX 64
#define FHOOKS_PATH_MAX 4096

enum fhook_op {
	FH_READ = 1 << 0, /* open for reading */
	/*
	 * open for writing or truncating, write, truncate, allocate; and a rename or a hard link
	 * (either name): both change what a path holds
	 */
	FH_WRITE = 1 << 1,
	FH_CREATE = 1 << 2, /* a new file, device node, symlink or hard link */
	FH_MKDIR = 1 << 3,
	FH_REMOVE = 1 << 4, /* unlink, rmdir */
	FH_RENAME = 1 << 5, /* either name */
	FH_SETATTR = 1 << 6, /* chmod, chown, utimes (a truncate is a write) */
	FH_OPS_ALL = (1 << 7) - 1
};
#define FH_NOPS 7
extern const char *const fhook_op_names[FH_NOPS]; /* by bit: "read", "write", ... */

enum fhook_action {
	FH_ALLOW,
	FH_BLOCK,
	FH_CALLBACK, /* the SDK says allow or block */
	FH_REWRITE, /* writes: the SDK returns the bytes written instead */
	FH_EVENT, /* phase after: report it */
	FH_ACTION_END
};
extern const char *const fhook_action_names[FH_ACTION_END];

struct fhook_rule {
	char name[FHOOKS_NAME_MAX + 1];
	bool after;
	unsigned ops; /* enum fhook_op bits */
	char *path; /* glob, or NULL: every path */
	enum fhook_action action;
};

struct fhooks {
	unsigned n;
	struct fhook_rule *rule;
	uint32_t gen;
	unsigned timeout_ms;
	const struct hook_asker *asker; /* NULL: callback and rewrite rules refuse */
};

/* A JSON array of rules; 0, -EINVAL (err names the rule and the field) or -ENOMEM. */
int fhooks_parse(const json_t *rules, struct fhooks **out, char *err, size_t errn);
int fhooks_parse_text(const uint8_t *p, size_t n, struct fhooks **out, char *err, size_t errn);
void fhooks_free(struct fhooks *h);
void fhooks_replace(struct fhooks *h, struct fhooks *fresh);
json_t *fhooks_json(const struct fhooks *h);

/* What one FUSE request does: its operations, its paths (inside the share, from "/"). */
struct fs_opinfo {
	unsigned ops; /* 0: nothing hooks look at */
	const char *op; /* the word for events ("write", "create", ...) */
	/* path2: a rename's target, a hard link's existing name */
	char path[FHOOKS_PATH_MAX], path2[FHOOKS_PATH_MAX];
	uint64_t unique;
	/* FUSE_WRITE: where the data lies in the request */
	bool is_write;
	uint64_t offset;
	size_t data_off, data_len;
};
/* Fill *info for request req[0..n) (never changes the share). -errno if it cannot be told. */
int fs_share_describe(struct fs_share *s, const uint8_t *req, size_t n, struct fs_opinfo *info);

/* The first "before" rule matching ops on guest path p (or p2), or NULL. */
const struct fhook_rule *fhooks_before(const struct fhooks *h, unsigned ops, const char *p,
				       const char *p2);
/* The first "after" rule matching, or NULL. */
const struct fhook_rule *fhooks_after(const struct fhooks *h, unsigned ops, const char *p,
				      const char *p2);
/*
 * A FUSE_WRITE request like req but writing data[0..dn) at the same offset, into out.
 * -EPROTO if req is not a write, -ENOMEM.
 */
int fhooks_write_rewrite(const uint8_t *req, size_t n, const uint8_t *data, size_t dn,
			 struct buf *out);

#endif
