/* SPDX-License-Identifier: MIT */
/*
 * matchlock kill, rm, prune, gc, log: ending sandboxes and cleaning up after them, including
 * what a crashed supervisor left behind.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pool.h"
#include "disk.h"
#include "common/log.h"
#include "common/util.h"
#include "control.h"
#include "common/paths.h"
#include "proto/msg.h"
#include "snapshot.h"
#include "state.h"

#define KILL_WAIT_MS 30000

static struct state *open_state(void)
{
	char err[512];
	struct state *st;
	if (state_open(&st, err, sizeof(err)) < 0) {
		error("%s", err);
		return NULL;
	}
	return st;
}

static bool is_live(const struct sb_record *r)
{
	return r->status == ST_RUNNING || r->status == ST_CREATING || r->status == ST_STOPPING;
}

/* Ask the supervisor to stop and wait until it has; kill it if it does not answer. */
static int kill_one(struct state *st, struct sb_record *r)
{
	bool answered = false;
	int fd = control_connect(r->id);
	if (fd >= 0 && control_simple(fd, CTRL_STOP, 0, NULL) == 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, KILL_WAIT_MS) > 0) {
			uint8_t msg[256];
			int fds[3], nfds;
			answered = control_recv(fd, msg, sizeof(msg), fds, &nfds) > 0;
		}
		close(fd);
	} else if (fd >= 0) {
		close(fd);
	}
	/* The supervisor answers once the sandbox has stopped and its end is recorded; a
	 * `matchlock rpc` serving other sandboxes goes on running, and must. */
	struct sb_record now;
	if (answered && state_get(st, r->id, &now) == 0) {
		bool ended = !is_live(&now);
		state_record_fini(&now);
		if (ended)
			return 0;
	}
	/* Whatever the socket said: the supervisor must be gone now, or we end it. */
	for (int i = 0; i < 100 && state_supervisor_alive(r); i++)
		usleep(20000);
	if (state_supervisor_alive(r)) {
		warn("%s: the supervisor did not stop; killing it", r->id);
		kill(r->pid, SIGKILL); /* QEMU dies with it (parent-death signal) */
		for (int i = 0; i < 100 && state_supervisor_alive(r); i++)
			usleep(20000);
		state_set_status(st, r->id, ST_STOPPED, "killed");
	}
	return 0;
}

int cmd_kill(int argc, char **argv)
{
	bool all = argc == 2 && !strcmp(argv[1], "--all");
	if (argc != 2 || (argv[1][0] == '-' && !all)) {
		fputs("usage: matchlock kill ID|--all\n", stderr);
		return 1;
	}
	struct state *st = open_state();
	if (!st)
		return 1;
	int status = 0;
	if (all) {
		struct sb_record *list;
		size_t n;
		if (state_list(st, &list, &n) == 0) {
			for (size_t i = 0; i < n; i++) {
				state_reconcile(st, &list[i]);
				if (is_live(&list[i]) && kill_one(st, &list[i]) == 0)
					printf("%s\n", list[i].id);
			}
			state_free_list(list, n);
		}
	} else {
		struct sb_record r;
		int k = state_get(st, argv[1], &r);
		if (k < 0) {
			error(k == -EEXIST ? "%s matches more than one sandbox" : "no sandbox %s",
			      argv[1]);
			status = 1;
		} else {
			state_reconcile(st, &r);
			if (!is_live(&r)) {
				error("sandbox %s is not running (%s)", r.id,
				      sb_status_names[r.status]);
				status = 1;
			} else if (kill_one(st, &r) == 0) {
				printf("%s\n", r.id);
			}
			state_record_fini(&r);
		}
	}
	state_close(st);
	return status;
}

static int remove_one(struct state *st, const struct sb_record *r)
{
	char dir[4200];
	if (control_dir(r->id, dir, sizeof(dir)) == 0)
		rm_rf(dir);
	return state_delete(st, r->id);
}

/* rm ID | rm --stopped | prune: drop records and directories of sandboxes that are not live. */
static int remove_stopped(bool quiet_if_none)
{
	(void)quiet_if_none;
	struct state *st = open_state();
	if (!st)
		return 1;
	struct sb_record *list;
	size_t n;
	if (state_list(st, &list, &n) < 0) {
		state_close(st);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		state_reconcile(st, &list[i]);
		if (!is_live(&list[i]) && remove_one(st, &list[i]) == 0)
			printf("%s\n", list[i].id);
	}
	state_free_list(list, n);
	state_close(st);
	return 0;
}

int cmd_rm(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--stopped"))
		return remove_stopped(false);
	if (argc < 2 || argv[1][0] == '-') {
		fputs("usage: matchlock rm ID [ID...] | --stopped\n", stderr);
		return 1;
	}
	struct state *st = open_state();
	if (!st)
		return 1;
	int status = 0;
	for (int i = 1; i < argc; i++) {
		struct sb_record r;
		int k = state_get(st, argv[i], &r);
		if (k < 0) {
			error(k == -EEXIST ? "%s matches more than one sandbox" : "no sandbox %s",
			      argv[i]);
			status = 1;
			continue;
		}
		state_reconcile(st, &r);
		if (is_live(&r)) {
			error("sandbox %s is %s: stop it first (matchlock kill %s)", r.id,
			      sb_status_names[r.status], r.id);
			status = 1;
		} else if (remove_one(st, &r) == 0) {
			printf("%s\n", r.id);
		}
		state_record_fini(&r);
	}
	state_close(st);
	return status;
}

int cmd_prune(int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fputs("usage: matchlock prune\n", stderr);
		return 1;
	}
	return remove_stopped(true);
}

/*
 * gc: reconcile records with reality. Supervisors that died are marked crashed and their
 * sockets removed; directories no record owns are deleted; half-written root disks and
 * staging directories of processes that no longer exist are deleted.
 */
int cmd_gc(int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fputs("usage: matchlock gc\n", stderr);
		return 1;
	}
	struct state *st = open_state();
	if (!st)
		return 1;
	unsigned crashed = 0, dirs = 0, temps = 0;
	struct sb_record *list;
	size_t n = 0;
	if (state_list(st, &list, &n) < 0)
		list = NULL;
	for (size_t i = 0; i < n; i++) {
		if (state_reconcile(st, &list[i]))
			crashed++;
		if (!is_live(&list[i])) {
			char dir[4200], sock[4300];
			control_dir(list[i].id, dir, sizeof(dir));
			snprintf(sock, sizeof(sock), "%s/control.sock", dir);
			unlink(sock);
			/* A crashed supervisor's writable disk: nothing can use it any more. */
			snprintf(sock, sizeof(sock), "%s/" DISK_FILE, dir);
			unlink(sock);
		}
	}
	char state[4096], sbroot[4200];
	paths_state_dir(state, sizeof(state));
	snprintf(sbroot, sizeof(sbroot), "%s/sandboxes", state);
	DIR *d = opendir(sbroot);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.') {
			/* A disk whose detached unlink did not happen (session.c). */
			size_t len = strlen(e->d_name);
			char p[4500];
			snprintf(p, sizeof(p), "%s/%s", sbroot, e->d_name);
			if (len > 10 && !strcmp(e->d_name + len - 10, ".disk-gone") &&
			    unlink(p) == 0)
				temps++;
			continue;
		}
		bool owned = false;
		for (size_t i = 0; i < n && !owned; i++)
			owned = !strcmp(list[i].id, e->d_name);
		if (!owned) {
			char p[4500];
			snprintf(p, sizeof(p), "%s/%s", sbroot, e->d_name);
			if (rm_rf(p) == 0)
				dirs++;
		}
	}
	if (d)
		closedir(d);
	state_free_list(list, n);

	char cache[4096], rdir[4200];
	paths_cache_dir(cache, sizeof(cache));
	snprintf(rdir, sizeof(rdir), "%s/rootfs", cache);
	d = opendir(rdir);
	while (d && (e = readdir(d))) {
		/* <key>.ext4.tmp.<pid> and .stage.XXXXXX are ours while their writer lives. */
		const char *tmp = strstr(e->d_name, ".tmp.");
		bool stage = !strncmp(e->d_name, ".stage.", 7);
		if (!tmp && !stage)
			continue;
		char p[4500];
		snprintf(p, sizeof(p), "%s/%s", rdir, e->d_name);
		if (tmp) {
			int pid = atoi(tmp + 5);
			if (pid > 0 && kill(pid, 0) == 0)
				continue;
		} else {
			struct stat sst;
			/* A staging dir in use is young; an hour-old one is abandoned. */
			if (stat(p, &sst) == 0 && time(NULL) - sst.st_mtime < 3600)
				continue;
		}
		if (rm_rf(p) == 0)
			temps++;
	}
	if (d)
		closedir(d);
	int pools = pool_gc(st);
	state_close(st);
	int snaps = snapshot_gc();
	if (pools)
		printf("gc: %d unfinished pool removal(s) completed\n", pools);
	printf("gc: %u crashed sandbox(es) marked, %u orphaned director(ies), %u temporary file(s) "
	       "and "
	       "%d stale snapshot(s) removed\n",
	       crashed, dirs, temps, snaps);
	return 0;
}

int cmd_log(int argc, char **argv)
{
	bool follow = false;
	const char *idarg = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--follow"))
			follow = true;
		else if (argv[i][0] != '-' && !idarg)
			idarg = argv[i];
		else {
			fputs("usage: matchlock log ID [-f]\n", stderr);
			return 1;
		}
	}
	if (!idarg) {
		fputs("usage: matchlock log ID [-f]\n", stderr);
		return 1;
	}
	struct state *st = open_state();
	if (!st)
		return 1;
	struct sb_record r;
	int k = state_get(st, idarg, &r);
	if (k < 0) {
		error(k == -EEXIST ? "%s matches more than one sandbox" : "no sandbox %s", idarg);
		state_close(st);
		return 1;
	}
	char dir[4200], path[4300];
	control_dir(r.id, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/log", dir);
	/* log.1 (if the log was rotated) then log, as one stream. */
	struct log_reader *lr = log_reader_open(path);
	if (!lr) {
		error("sandbox %s has no log (%s)", r.id, strerror(errno));
		state_record_fini(&r);
		state_close(st);
		return 1;
	}
	char buf[65536];
	for (;;) {
		ssize_t n;
		while ((n = log_reader_read(lr, buf, sizeof(buf))) > 0)
			if (write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
				goto done;
		if (!follow)
			break;
		/* Follow until the supervisor is gone, then print what it wrote last. */
		state_reconcile(st, &r);
		if (!state_supervisor_alive(&r)) {
			while ((n = log_reader_read(lr, buf, sizeof(buf))) > 0)
				write_all(STDOUT_FILENO, buf, (size_t)n);
			break;
		}
		usleep(100000);
	}
done:
	log_reader_free(lr);
	state_record_fini(&r);
	state_close(st);
	return 0;
}
