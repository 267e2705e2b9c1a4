/* SPDX-License-Identifier: MIT */
/*
 * Sandbox records in SQLite (WAL) under the state directory: one row per sandbox and an
 * append-only history of its life-cycle transitions. Safe for concurrent CLI calls (busy
 * timeout). Secrets never reach this file: configs are stored redacted.
 */
#ifndef MATCHLOCK_STATE_H
#define MATCHLOCK_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct state;

enum sb_status { ST_CREATING, ST_RUNNING, ST_STOPPING, ST_STOPPED, ST_FAILED, ST_CRASHED, ST_END };
extern const char *const sb_status_names[ST_END];

struct sb_record {
	char id[16];
	enum sb_status status;
	char image[512]; /* what the sandbox runs: an image reference or a rootfs path */
	int64_t created; /* unix seconds */
	int pid; /* supervisor */
	uint64_t
	    pid_start; /* the supervisor's start time (clock ticks since boot): pid reuse check */
	char *config; /* JSON, redacted; malloc'd, may be NULL */
	char error[512];
};

int state_open(struct state **out, char *err, size_t errn);
void state_close(struct state *st);
int state_insert(struct state *st, const struct sb_record *r);
/* Update the status (and error text, may be NULL) and append a history entry. */
int state_set_status(struct state *st, const char *id, enum sb_status s, const char *detail);
/* Find by exact ID or a unique prefix; -ENOENT, or -EEXIST when the prefix is ambiguous. */
int state_get(struct state *st, const char *id, struct sb_record *out);
/* All records, newest first. Caller frees with state_free_list. */
int state_list(struct state *st, struct sb_record **out, size_t *n);
void state_free_list(struct sb_record *list, size_t n);
void state_record_fini(struct sb_record *r);
int state_delete(struct state *st, const char *id);
/* History of one sandbox as a JSON array. */
int state_history_json(struct state *st, const char *id, char **json);

/* Start time of a process (field 22 of /proc/PID/stat), 0 if it does not exist. */
uint64_t proc_start_time(int pid);
/* Is the record's supervisor still the process that wrote it? */
bool state_supervisor_alive(const struct sb_record *r);
/*
 * A record that claims to be live whose supervisor is gone: mark it crashed (in st and *r).
 * Returns true if it changed.
 */
bool state_reconcile(struct state *st, struct sb_record *r);

#endif
