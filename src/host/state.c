/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "state.h"

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/buf.h"
#include "common/jsonw.h"
#include "common/util.h"
#include "common/paths.h"

const char *const sb_status_names[ST_END] = { "creating", "running", "stopping",
					      "stopped",  "failed",  "crashed" };
STATIC_ASSERT_TABLE(sb_status_names, ST_END);

struct state {
	sqlite3 *db;
};

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS sandboxes ("
    " id TEXT PRIMARY KEY, status TEXT NOT NULL, image TEXT NOT NULL, created INTEGER NOT NULL,"
    " pid INTEGER NOT NULL, pid_start INTEGER NOT NULL, config TEXT, error TEXT);"
    "CREATE TABLE IF NOT EXISTS history ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, sandbox TEXT NOT NULL, at INTEGER NOT NULL,"
    " status TEXT NOT NULL, detail TEXT);"
    "CREATE INDEX IF NOT EXISTS history_sandbox ON history(sandbox);";

static int status_from_name(const char *s)
{
	for (int i = 0; i < ST_END; i++)
		if (s && !strcmp(s, sb_status_names[i]))
			return i;
	return ST_FAILED;
}

int state_open(struct state **out, char *err, size_t errn)
{
	char dir[4096], path[4200];
	int r = paths_state_dir(dir, sizeof(dir));
	if (r == 0)
		r = mkdir_p(dir, 0700);
	if (r < 0) {
		snprintf(err, errn, "state directory %s: %s", dir, strerror(-r));
		return r;
	}
	/* Owner-only, also when made by an older version or under a loose umask. */
	chmod(dir, 0700);
	snprintf(path, sizeof(path), "%s/matchlock.db", dir);
	struct state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	if (sqlite3_open_v2(path, &st->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errn, "cannot open %s: %s", path, sqlite3_errmsg(st->db));
		sqlite3_close(st->db);
		free(st);
		return -EIO;
	}
	chmod(path, 0600); /* before the schema: SQLite gives its -wal and -shm the db's mode */
	sqlite3_busy_timeout(st->db, 10000);
	char *msg = NULL;
	if (sqlite3_exec(st->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errn, "cannot set up %s: %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		sqlite3_close(st->db);
		free(st);
		return -EIO;
	}
	*out = st;
	return 0;
}

void state_close(struct state *st)
{
	if (!st)
		return;
	sqlite3_close(st->db);
	free(st);
}

static int history_add(struct state *st, const char *id, const char *status, const char *detail)
{
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(st->db,
			       "INSERT INTO history(sandbox, at, status, detail) VALUES(?,?,?,?)",
			       -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, (sqlite3_int64)time(NULL));
	sqlite3_bind_text(q, 3, status, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, detail, -1, SQLITE_STATIC);
	int r = sqlite3_step(q) == SQLITE_DONE ? 0 : -EIO;
	sqlite3_finalize(q);
	return r;
}

int state_insert(struct state *st, const struct sb_record *r)
{
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(
		st->db,
		"INSERT INTO sandboxes(id, status, image, created, pid, pid_start, config,"
		" error) VALUES(?,?,?,?,?,?,?,?)",
		-1, &q, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(q, 1, r->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, sb_status_names[r->status], -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, r->image, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, r->created);
	sqlite3_bind_int(q, 5, r->pid);
	sqlite3_bind_int64(q, 6, (sqlite3_int64)r->pid_start);
	sqlite3_bind_text(q, 7, r->config, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 8, r->error[0] ? r->error : NULL, -1, SQLITE_STATIC);
	int k = sqlite3_step(q);
	sqlite3_finalize(q);
	if (k != SQLITE_DONE)
		return k == SQLITE_CONSTRAINT ? -EEXIST : -EIO;
	return history_add(st, r->id, sb_status_names[r->status], NULL);
}

int state_set_status(struct state *st, const char *id, enum sb_status s, const char *detail)
{
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(st->db,
			       "UPDATE sandboxes SET status=?, error=COALESCE(?, error) WHERE id=?",
			       -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(q, 1, sb_status_names[s], -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, detail, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, id, -1, SQLITE_STATIC);
	int k = sqlite3_step(q);
	sqlite3_finalize(q);
	if (k != SQLITE_DONE)
		return -EIO;
	if (sqlite3_changes(st->db) == 0)
		return -ENOENT;
	return history_add(st, id, sb_status_names[s], detail);
}

static void row_to_record(sqlite3_stmt *q, struct sb_record *r)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->id, sizeof(r->id), "%s", (const char *)sqlite3_column_text(q, 0));
	r->status = status_from_name((const char *)sqlite3_column_text(q, 1));
	snprintf(r->image, sizeof(r->image), "%s", (const char *)sqlite3_column_text(q, 2));
	r->created = sqlite3_column_int64(q, 3);
	r->pid = sqlite3_column_int(q, 4);
	r->pid_start = (uint64_t)sqlite3_column_int64(q, 5);
	const char *c = (const char *)sqlite3_column_text(q, 6);
	r->config = c ? strdup(c) : NULL;
	const char *e = (const char *)sqlite3_column_text(q, 7);
	snprintf(r->error, sizeof(r->error), "%s", e ? e : "");
}

#define SELECT_COLS \
	"SELECT id, status, image, created, pid, pid_start, config, error FROM sandboxes"

int state_get(struct state *st, const char *id, struct sb_record *out)
{
	sqlite3_stmt *q;
	if (!*id)
		return -ENOENT;
	/* An exact ID wins; otherwise a prefix must name exactly one sandbox, as in Docker. */
	if (sqlite3_prepare_v2(st->db,
			       SELECT_COLS
			       " WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id != ?1 LIMIT 2",
			       -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	int r = -ENOENT;
	if (sqlite3_step(q) == SQLITE_ROW) {
		row_to_record(q, out);
		r = 0;
		if (strcmp(out->id, id) != 0 && sqlite3_step(q) == SQLITE_ROW) {
			state_record_fini(out);
			r = -EEXIST;
		}
	}
	sqlite3_finalize(q);
	return r;
}

int state_list(struct state *st, struct sb_record **out, size_t *n)
{
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(st->db, SELECT_COLS " ORDER BY created DESC, id", -1, &q, NULL) !=
	    SQLITE_OK)
		return -EIO;
	struct sb_record *list = NULL;
	size_t len = 0, cap = 0;
	int r = 0;
	while (sqlite3_step(q) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			struct sb_record *nl = realloc(list, cap * sizeof(*list));
			if (!nl) {
				r = -ENOMEM;
				break;
			}
			list = nl;
		}
		row_to_record(q, &list[len++]);
	}
	sqlite3_finalize(q);
	*out = list;
	*n = len;
	return r;
}

void state_record_fini(struct sb_record *r)
{
	free(r->config);
	r->config = NULL;
}

void state_free_list(struct sb_record *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		state_record_fini(&list[i]);
	free(list);
}

int state_delete(struct state *st, const char *id)
{
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(st->db, "DELETE FROM sandboxes WHERE id=?", -1, &q, NULL) !=
	    SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	int k = sqlite3_step(q);
	sqlite3_finalize(q);
	if (k != SQLITE_DONE)
		return -EIO;
	if (sqlite3_changes(st->db) == 0)
		return -ENOENT;
	if (sqlite3_prepare_v2(st->db, "DELETE FROM history WHERE sandbox=?", -1, &q, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
		sqlite3_step(q);
		sqlite3_finalize(q);
	}
	return 0;
}

int state_history_json(struct state *st, const char *id, char **json)
{
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(
		st->db, "SELECT at, status, detail FROM history WHERE sandbox=? ORDER BY seq", -1,
		&q, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	struct buf b = { 0 };
	jsonw_raw(&b, "[");
	for (int i = 0; sqlite3_step(q) == SQLITE_ROW; i++) {
		jsonw_raw(&b, i ? ",{" : "{");
		jsonw_kv_int(&b, 1, "at", sqlite3_column_int64(q, 0));
		jsonw_kv_str(&b, 0, "status", (const char *)sqlite3_column_text(q, 1));
		jsonw_kv_str(&b, 0, "detail", (const char *)sqlite3_column_text(q, 2));
		jsonw_raw(&b, "}");
	}
	sqlite3_finalize(q);
	jsonw_raw(&b, "]");
	buf_put_u8(&b, 0);
	*json = (char *)b.p;
	return 0;
}

uint64_t proc_start_time(int pid)
{
	char path[64], *s = NULL;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (pid <= 0 || read_file_str(path, 4096, &s) < 0)
		return 0;
	/* The command name may contain spaces and parentheses: fields start after the last ')'. */
	char *p = strrchr(s, ')');
	uint64_t start = 0;
	for (int field = 2; p && *p; p++) {
		if (*p != ' ')
			continue;
		if (++field == 22) {
			start = strtoull(p + 1, NULL, 10);
			break;
		}
	}
	free(s);
	return start;
}

bool state_supervisor_alive(const struct sb_record *r)
{
	return r->pid > 0 && proc_start_time(r->pid) == r->pid_start && r->pid_start != 0;
}

bool state_reconcile(struct state *st, struct sb_record *r)
{
	if (r->status != ST_CREATING && r->status != ST_RUNNING && r->status != ST_STOPPING)
		return false;
	if (state_supervisor_alive(r))
		return false;
	state_set_status(st, r->id, ST_CRASHED, "the supervisor process is gone");
	r->status = ST_CRASHED;
	snprintf(r->error, sizeof(r->error), "the supervisor process is gone");
	return true;
}
