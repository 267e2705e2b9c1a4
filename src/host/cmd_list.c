/* SPDX-License-Identifier: MIT */
/* matchlock list|ls [--running], get ID, inspect ID: what sandboxes exist and in what state. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "disk.h"
#include "common/jsonw.h"
#include "common/log.h"
#include "control.h"
#include "state.h"

static void fmt_time(int64_t t, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int cmd_list(int argc, char **argv)
{
	bool running = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--running")) {
			running = true;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			puts("usage: matchlock list [--running]\n\nList sandboxes: ID STATUS IMAGE "
			     "CREATED PID.");
			return 0;
		} else {
			error("list: unknown flag %s", argv[i]);
			return 1;
		}
	}
	char err[512];
	struct state *st;
	if (state_open(&st, err, sizeof(err)) < 0) {
		error("%s", err);
		return 1;
	}
	struct sb_record *list;
	size_t n;
	if (state_list(st, &list, &n) < 0) {
		error("cannot read the sandbox records");
		state_close(st);
		return 1;
	}
	printf("%-12s %-9s %-40s %-20s %s\n", "ID", "STATUS", "IMAGE", "CREATED", "PID");
	for (size_t i = 0; i < n; i++) {
		struct sb_record *r = &list[i];
		state_reconcile(st, r);
		if (running && r->status != ST_RUNNING)
			continue;
		char created[32];
		fmt_time(r->created, created, sizeof(created));
		bool live =
		    r->status == ST_RUNNING || r->status == ST_CREATING || r->status == ST_STOPPING;
		char pid[16] = "-";
		if (live)
			snprintf(pid, sizeof(pid), "%d", r->pid);
		/*
		 * A long path or reference keeps its end, the part that tells images apart; a
		 * control character in it is shown escaped, never sent to the terminal.
		 */
		char image[44], safe[4 * sizeof(r->image)];
		size_t len = log_sanitize(safe, sizeof(safe), r->image);
		if (len > 40)
			snprintf(image, sizeof(image), "...%.37s", safe + len - 37);
		else
			snprintf(image, sizeof(image), "%.40s", safe);
		printf("%-12s %-9s %-40s %-20s %s\n", r->id, sb_status_names[r->status], image,
		       created, pid);
	}
	state_free_list(list, n);
	state_close(st);
	return 0;
}

/* get (summary) and inspect (with history and paths) print one JSON object. */
static int show(int argc, char **argv, bool detailed)
{
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: matchlock %s ID\n", detailed ? "inspect" : "get");
		return argc == 2 && !strcmp(argv[1], "--help") ? 0 : 1;
	}
	char err[512];
	struct state *st;
	if (state_open(&st, err, sizeof(err)) < 0) {
		error("%s", err);
		return 1;
	}
	struct sb_record r;
	int k = state_get(st, argv[1], &r);
	if (k < 0) {
		error(k == -EEXIST ? "%s matches more than one sandbox" : "no sandbox %s", argv[1]);
		state_close(st);
		return 1;
	}
	state_reconcile(st, &r);
	char created[32];
	fmt_time(r.created, created, sizeof(created));
	struct buf b = { 0 };
	jsonw_raw(&b, "{");
	jsonw_kv_str(&b, 1, "id", r.id);
	jsonw_kv_str(&b, 0, "status", sb_status_names[r.status]);
	jsonw_kv_str(&b, 0, "image", r.image);
	jsonw_kv_str(&b, 0, "created", created);
	jsonw_kv_int(&b, 0, "pid", r.pid);
	jsonw_kv_raw(&b, 0, "config", r.config ? r.config : "null");
	jsonw_kv_str(&b, 0, "error", r.error[0] ? r.error : NULL);
	if (detailed) {
		char dir[4200], path[4300];
		char *hist = NULL;
		control_dir(r.id, dir, sizeof(dir));
		jsonw_kv_str(&b, 0, "state_dir", dir);
		snprintf(path, sizeof(path), "%s/log", dir);
		jsonw_kv_str(&b, 0, "log_path", path);
		snprintf(path, sizeof(path), "%s/control.sock", dir);
		jsonw_kv_str(&b, 0, "control_socket", path);
		/* The writable disk while the sandbox has one: where, and what its writes take. */
		struct stat ds;
		snprintf(path, sizeof(path), "%s/" DISK_FILE, dir);
		bool disk = stat(path, &ds) == 0;
		jsonw_kv_str(&b, 0, "disk_path", disk ? path : NULL);
		if (disk)
			jsonw_kv_int(&b, 0, "disk_used_mb", (long long)ds.st_blocks * 512 >> 20);
		if (state_history_json(st, r.id, &hist) == 0)
			jsonw_kv_raw(&b, 0, "history", hist);
		free(hist);
	}
	jsonw_raw(&b, "}\n");
	fwrite(buf_head(&b), 1, buf_used(&b), stdout);
	buf_fini(&b);
	state_record_fini(&r);
	state_close(st);
	return 0;
}

int cmd_get(int argc, char **argv)
{
	return show(argc, argv, false);
}
int cmd_inspect(int argc, char **argv)
{
	return show(argc, argv, true);
}
