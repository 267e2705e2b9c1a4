/* SPDX-License-Identifier: MIT */
/*
 * matchlock as an OCI runtime: the runc command line, as `matchlock oci VERB ...` or straight
 * after runc's global flags (`matchlock --root R --log F --log-format json create ...`), which is
 * how Podman (conmon), containerd's runc shim, Docker and Buildah call the binary given as their
 * runtime. The bundle becomes one sandbox spec (runtime_config.c, then sandbox_spec_check);
 * the container is a host process holding the sandbox (runtime_shim.c); its directory under the
 * runtime root holds what the verbs need (runtime_state.c). Errors are one line on stderr and,
 * with --log, a line in that file (JSON with --log-format json), and a non-zero status; a
 * failed create leaves nothing behind.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common/log.h"
#include "common/util.h"
#include "control.h"
#include "proto/exec_req.h"
#include "proto/msg.h"
#include "runtime_config.h"
#include "runtime_shim.h"
#include "runtime_state.h"
#include "session.h"
#include "state.h"

#ifndef MATCHLOCK_VERSION
#define MATCHLOCK_VERSION "0.1.0-dev"
#endif
#define OCI_DELETE_WAIT_MS 15000 /* the shim's clean end after "kill 9" */
#define OCI_POLICY_FILE "/etc/matchlock/oci-policy.json"

static const char oci_usage[] =
    "usage: matchlock oci [GLOBAL FLAGS] COMMAND [ARGS...]\n"
    "       matchlock [GLOBAL FLAGS] COMMAND [ARGS...]   (as an engine's --runtime)\n"
    "\n"
    "matchlock as an OCI runtime (the runc command line): each container is a micro-VM.\n"
    "\n"
    "Global flags: --root DIR, --log FILE, --log-format text|json, --systemd-cgroup, --debug,\n"
    "              --policy FILE (the operator's network policy; default " OCI_POLICY_FILE ",\n"
    "              or $MATCHLOCK_OCI_POLICY; without one: sealed, annotations honoured)\n"
    "Commands:\n"
    "  create --bundle DIR --pid-file F [--console-socket S] ID\n"
    "  start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID\n"
    "  exec --process F [--tty] [--console-socket S] [--detach] [--pid-file F] ID\n"
    "  ps [--format table|json] ID | list [--format table|json] [-q] | features\n";

/* The global flags. */
static struct {
	char root[PATH_MAX];
	const char *log;
	bool json, debug;
	const char *policy;
} G;

/* One line into the --log file, in its format. */
static void oci_log(const char *level, const char *msg)
{
	if (!G.log)
		return;
	FILE *f = fopen(G.log, "ae");
	if (!f)
		return;
	char ts[64];
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	size_t k = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + k, sizeof(ts) - k, ".%09ldZ", now.tv_nsec);
	if (G.json) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "level", level, "msg", msg, "time", ts);
		char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (line)
			fprintf(f, "%s\n", line);
		free(line);
		json_decref(o);
	} else {
		fprintf(f, "time=\"%s\" level=%s msg=\"%s\"\n", ts, level, msg);
	}
	fclose(f);
}

static int oci_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int oci_fail(const char *fmt, ...)
{
	char msg[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "matchlock: %s\n", msg);
	oci_log("error", msg);
	return 1;
}

static void oci_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void oci_debug(const char *fmt, ...)
{
	if (!G.debug)
		return;
	char msg[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	oci_log("debug", msg);
}

/* The container's directory, and its state; an error printed when it does not exist. */
static int oci_open(const char *id, char *dir, size_t n, struct rt_state *st)
{
	int r = rt_container_dir(G.root, id, dir, n);
	if (r == -EINVAL)
		return oci_fail("invalid container ID %.140s: letters, digits, '_', '.', '+', "
				"'-' (at most %d)",
				id, RT_ID_MAX);
	if (r < 0 || (r = rt_state_read(dir, st)) == -ENOENT)
		return oci_fail("container %s does not exist", id);
	if (r < 0)
		return oci_fail("container %s is still being created", id);
	return 0;
}

/* Write a pid file the way runc does: whole or not at all. */
static int write_pid_file(const char *path, int pid)
{
	char tmp[PATH_MAX + 16], text[32];
	snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, getpid());
	int n = snprintf(text, sizeof(text), "%d", pid);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int r = write_all(fd, text, (size_t)n);
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

/* Run the hooks of kind; with fatal false a failure is logged as a warning. Returns 0 or 1. */
static int oci_hooks(const struct rt_state *st, const char *kind, bool fatal)
{
	if (!st->hooks_json)
		return 0;
	json_t *o = rt_state_json(st);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL, err[600];
	json_decref(o);
	int r = text ? runtime_hooks_run(st->hooks_json, kind, text, err, sizeof(err)) : -ENOMEM;
	free(text);
	if (r < 0 && fatal)
		return oci_fail("%s", r == -ENOMEM ? "out of memory" : err);
	if (r < 0) {
		fprintf(stderr, "matchlock: warning: %s\n", err);
		oci_log("warning", err);
	}
	return 0;
}

/*
 * What a child we forked says on its notice pipe before it closes it: "ok", or one line of
 * error (empty when it died first). Closes fd. forked: false when the fork itself failed.
 */
static void child_notice(int fd, bool forked, char *msg, size_t n)
{
	size_t got = 0;
	ssize_t k;
	while (forked && got + 1 < n &&
	       ((k = read(fd, msg + got, n - 1 - got)) > 0 || (k < 0 && errno == EINTR)))
		got += k > 0 ? (size_t)k : 0;
	close(fd);
	msg[got] = 0;
}

/* What a sandbox is made from, out of the bundle's reading; err as sandbox_spec_check says. */
static int oci_spec(struct runtime_config *c, const struct runtime_policy *pol,
		    struct sandbox_spec *sp, char *err, size_t errn)
{
	int r = sandbox_spec_init(sp);
	if (r < 0)
		return r;
	r = spec_strdup(&sp->rootfs, c->root);
	/* An engine mounts a fresh overlay of the image per container: same files, new inodes. */
	sp->rootfs_stable_key = true;
	sp->writes_host_files = true; /* the container's changes go back to root.path */
	r = r ?: spec_strdup(&sp->user, c->user);
	r = r ?: spec_strdup(&sp->workdir, c->cwd);
	r = r ?: spec_strdup(&sp->hostname, c->hostname);
	r = r ?: env_copy(&sp->env, &c->env);
	if (r == 0 && !(sp->entrypoint = spec_strv_dup(c->args)))
		r = -ENOMEM;
	for (unsigned i = 0; r == 0 && i < c->nmounts; i++) {
		struct spec_mount *m = &sp->mounts[sp->nmounts++];
		r = spec_strdup(&m->host, c->mounts[i].host);
		r = r ?: spec_strdup(&m->guest, c->mounts[i].guest);
		r = r ?: spec_strdup(&m->mode, c->mounts[i].ro ? "ro" : "rw");
	}
	for (unsigned i = 0; r == 0 && i < pol->nupstream_ca; i++)
		r = spec_strdup(&sp->upstream_ca[sp->nupstream_ca++], pol->upstream_ca[i]);
	if (r < 0) {
		snprintf(err, errn, "out of memory");
		return r;
	}
	if (c->memory_mb)
		sp->memory_mb = c->memory_mb;
	if (c->cpus > 0)
		sp->cpus = c->cpus;
	*sp->policy = *c->policy;
	secrets_clear(sp->secrets);
	free(sp->secrets);
	sp->secrets = c->secrets; /* moved: the values exist once */
	c->secrets = NULL;
	sp->lifetime = LIFETIME_CLIENT;
	sp->rm = 1;
	char why[900];
	if ((r = sandbox_spec_check(sp, why, sizeof(why))) < 0)
		snprintf(err, errn, "config.json: %s", why);
	return r;
}

static int oci_policy(struct runtime_policy *pol, char *err, size_t errn)
{
	const char *path = G.policy ? G.policy : getenv("MATCHLOCK_OCI_POLICY");
	if (!path && access(OCI_POLICY_FILE, F_OK) == 0)
		path = OCI_POLICY_FILE;
	if (!path) {
		runtime_policy_default(pol);
		return 0;
	}
	return runtime_policy_load(path, pol, err, errn);
}

static int oci_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bundle", required_argument, NULL, 'b' },
		{ "pid-file", required_argument, NULL, 'P' },
		{ "console-socket", required_argument, NULL, 'C' },
		{ "preserve-fds", required_argument, NULL, 'F' },
		{ "no-pivot", no_argument, NULL, 'n' },
		{ "no-new-keyring", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *bundle = ".", *pid_file = NULL, *console = NULL;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+b:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			bundle = optarg;
			break;
		case 'P':
			pid_file = optarg;
			break;
		case 'C':
			console = optarg;
			break;
		case 'F':
			if (strcmp(optarg, "0"))
				return oci_fail("create: --preserve-fds %s: passing extra fds into "
						"the VM is not supported",
						optarg);
			break;
		case 'n':
		case 'k':
			break;
		case 'h':
			fputs(oci_usage, stdout);
			return 0;
		default:
			return oci_fail("create: unknown flag %s", argv[optind - 1]);
		}
	}
	if (optind + 1 != argc)
		return oci_fail("create: expected one container ID (create --bundle DIR ID)");
	const char *id = argv[optind];
	char dir[PATH_MAX], abs_bundle[PATH_MAX], err[1200] = "", *text = NULL;
	if (rt_container_dir(G.root, id, dir, sizeof(dir)) < 0)
		return oci_fail("invalid container ID %.140s: letters, digits, '_', '.', '+', '-' "
				"(at most %d)",
				id, RT_ID_MAX);
	if (!realpath(bundle, abs_bundle))
		return oci_fail("bundle %s: %s", bundle, strerror(errno));
	char cfgpath[PATH_MAX + 16];
	snprintf(cfgpath, sizeof(cfgpath), "%s/config.json", abs_bundle);
	int n = read_file_str(cfgpath, RT_CONFIG_MAX + 1, &text);
	if (n < 0)
		return oci_fail("%s: %s", cfgpath, strerror(-n));
	struct runtime_policy pol = { 0 };
	struct runtime_config cfg;
	struct sandbox_spec spec = { 0 };
	int r = oci_policy(&pol, err, sizeof(err));
	r = r ?: runtime_config_parse(text, (size_t)n, abs_bundle, &pol, &cfg, err, sizeof(err));
	free(text);
	if (r < 0) {
		runtime_policy_fini(&pol);
		return oci_fail("%s", err);
	}
	struct rt_state st = { .exit_code = -1, .status = RT_CREATED };
	snprintf(st.id, sizeof(st.id), "%s", id);
	snprintf(st.oci_version, sizeof(st.oci_version), "%s", cfg.oci_version);
	snprintf(st.bundle, sizeof(st.bundle), "%s", abs_bundle);
	snprintf(st.rootfs, sizeof(st.rootfs), "%s", cfg.root);
	st.annotations_json = cfg.annotations_json;
	st.hooks_json = cfg.hooks_json;
	for (unsigned i = 0; i < cfg.secrets->n && i < RT_MAX_SECRET_NAMES; i++)
		snprintf(st.secret_names[st.nsecret_names++], sizeof(st.secret_names[0]), "%s",
			 cfg.secrets->s[i].name);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	st.created_ns = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
	int status = 1;
	if (cfg.terminal && !console) {
		oci_fail("config.json: process.terminal is true: --console-socket is required");
		goto out;
	}
	if (oci_spec(&cfg, &pol, &spec, err, sizeof(err)) < 0) {
		oci_fail("%s", err);
		goto out;
	}
	if (mkdir_p(G.root, 0700) < 0) {
		oci_fail("runtime root %s: %s", G.root, strerror(errno));
		goto out;
	}
	if (mkdir(dir, 0700) < 0) {
		if (errno == EEXIST)
			oci_fail("container with id %s already exists", id);
		else
			oci_fail("%s: %s", dir, strerror(errno));
		goto out;
	}
	int notify[2];
	if (pipe2(notify, O_CLOEXEC) < 0) {
		oci_fail("pipe: %s", strerror(errno));
		rm_rf(dir);
		goto out;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(notify[0]);
		_exit(runtime_shim_main(&spec, &cfg, &st, dir, console, notify[1]));
	}
	close(notify[1]);
	char msg[1200];
	child_notice(notify[0], pid > 0, msg, sizeof(msg));
	if (pid < 0 || strcmp(msg, "ok") != 0) {
		if (pid > 0)
			waitpid(pid, NULL, 0);
		rm_rf(dir);
		oci_fail("%s", pid < 0	? strerror(errno)
			       : msg[0] ? msg
					: "the container's process died while creating it");
		goto out;
	}
	oci_debug("created %s: pid %d", id, (int)pid);
	if (pid_file && (r = write_pid_file(pid_file, pid)) < 0) {
		kill(pid, SIGKILL);
		oci_fail("--pid-file %s: %s", pid_file, strerror(-r));
		goto out;
	}
	status = 0;
out:
	st.annotations_json = st.hooks_json = NULL; /* cfg's */
	sandbox_spec_fini(&spec);
	runtime_config_fini(&cfg);
	runtime_policy_fini(&pol);
	return status;
}

static int oci_start(int argc, char **argv)
{
	if (argc != 2)
		return oci_fail("start: expected one container ID");
	char dir[PATH_MAX], err[800];
	struct rt_state st;
	if (oci_open(argv[1], dir, sizeof(dir), &st))
		return 1;
	enum rt_status now = rt_state_status(&st);
	if (now != RT_CREATED)
		rt_state_fini(&st);
	if (now == RT_STOPPED)
		return oci_fail("cannot start a container that has stopped");
	if (now == RT_RUNNING)
		return oci_fail("cannot start an already running container");
	if (rt_shim_call(dir, "start", err, sizeof(err)) < 0) {
		rt_state_fini(&st);
		return oci_fail("start %s: %s", argv[1], err);
	}
	/* poststart: after the process started; a failure is a warning (runtime-spec). */
	st.status = RT_RUNNING;
	oci_hooks(&st, "poststart", false);
	rt_state_fini(&st);
	return 0;
}

static void print_json(json_t *o)
{
	char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(o);
}

static int oci_state(int argc, char **argv)
{
	if (argc != 2)
		return oci_fail("state: expected one container ID");
	char dir[PATH_MAX];
	struct rt_state st;
	if (oci_open(argv[1], dir, sizeof(dir), &st))
		return 1;
	print_json(rt_state_json(&st));
	rt_state_fini(&st);
	return 0;
}

static int oci_kill(int argc, char **argv)
{
	int all = 0, i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--all") || !strcmp(argv[i], "-a"))
			all = 1;
		else
			return oci_fail("kill: unknown flag %s", argv[i]);
	}
	if (i >= argc || argc - i > 2)
		return oci_fail("kill: expected a container ID and a signal");
	int sig = i + 1 < argc ? runtime_signal_parse(argv[i + 1]) : SIGTERM;
	if (sig < 0)
		return oci_fail("kill: unknown signal %s", argv[i + 1]);
	char dir[PATH_MAX], err[800], cmd[64];
	struct rt_state st;
	if (oci_open(argv[i], dir, sizeof(dir), &st))
		return 1;
	enum rt_status now = rt_state_status(&st);
	rt_state_fini(&st);
	if (now == RT_STOPPED)
		return oci_fail("container not running");
	snprintf(cmd, sizeof(cmd), "kill %d %d", sig, all);
	if (rt_shim_call(dir, cmd, err, sizeof(err)) < 0)
		return oci_fail("kill %s: %s", argv[i], err);
	return 0;
}

/* Wait (bounded) for the shim to be gone. */
static bool wait_gone(const struct rt_state *st, int ms)
{
	for (int waited = 0; waited < ms; waited += 20) {
		if (!rt_pid_alive(st->pid, st->pid_start))
			return true;
		usleep(20000);
	}
	return !rt_pid_alive(st->pid, st->pid_start);
}

/* The matchlock sandbox of a shim that was killed: its record and directory. */
static void drop_sandbox(const char *sbid)
{
	struct state *db;
	char err[256], sbdir[4200];
	struct sb_record r;
	if (!sbid[0] || state_open(&db, err, sizeof(err)) < 0)
		return;
	if (state_get(db, sbid, &r) == 0) {
		if (!strcmp(r.id, sbid) && !state_supervisor_alive(&r)) {
			if (control_dir(r.id, sbdir, sizeof(sbdir)) == 0)
				rm_rf(sbdir);
			state_delete(db, r.id);
		}
		state_record_fini(&r);
	}
	state_close(db);
}

static int oci_delete(int argc, char **argv)
{
	bool force = false;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--force") || !strcmp(argv[i], "-f"))
			force = true;
		else
			return oci_fail("delete: unknown flag %s", argv[i]);
	}
	if (i + 1 != argc)
		return oci_fail("delete: expected one container ID");
	char dir[PATH_MAX], err[800];
	struct rt_state st;
	if (rt_container_dir(G.root, argv[i], dir, sizeof(dir)) == 0 && force &&
	    access(dir, F_OK) < 0)
		return 0;
	if (oci_open(argv[i], dir, sizeof(dir), &st))
		return 1;
	enum rt_status now = rt_state_status(&st);
	if (now == RT_RUNNING && !force) {
		rt_state_fini(&st);
		return oci_fail("cannot delete container %s that is not stopped: running "
				"(use --force)",
				argv[i]);
	}
	if (now != RT_STOPPED) {
		/* The shim ends cleanly on SIGKILL for the workload; a shim that does not is
		 * killed itself (QEMU dies with it). */
		if (rt_shim_call(dir, "kill 9 1", err, sizeof(err)) < 0 ||
		    !wait_gone(&st, OCI_DELETE_WAIT_MS)) {
			kill(st.pid, SIGKILL);
			wait_gone(&st, 5000);
		}
	}
	drop_sandbox(st.sandbox);
	st.status = RT_STOPPED;
	oci_hooks(&st, "poststop", false);
	rt_state_fini(&st);
	if (rm_rf(dir) < 0 && access(dir, F_OK) == 0)
		return oci_fail("delete %s: removing %s: %s", argv[i], dir, strerror(errno));
	return 0;
}

static int oci_ps(int argc, char **argv)
{
	bool json = false;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *f = NULL;
		if (!strcmp(argv[i], "--format") || !strcmp(argv[i], "-f"))
			f = i + 1 < argc ? argv[++i] : "";
		else if (!strncmp(argv[i], "--format=", 9))
			f = argv[i] + 9;
		else
			return oci_fail("ps: unknown flag %s", argv[i]);
		if (strcmp(f, "json") && strcmp(f, "table"))
			return oci_fail("ps: --format %s: expected table or json", f);
		json = !strcmp(f, "json");
	}
	if (i + 1 != argc)
		return oci_fail("ps: expected one container ID");
	char dir[PATH_MAX];
	struct rt_state st;
	if (oci_open(argv[i], dir, sizeof(dir), &st))
		return 1;
	bool alive = rt_state_status(&st) != RT_STOPPED;
	if (json)
		printf(alive ? "[%d]\n" : "[]\n", st.pid);
	else
		printf(alive ? "PID\n%d\n" : "PID\n", st.pid);
	rt_state_fini(&st);
	return 0;
}

static int oci_list(int argc, char **argv)
{
	bool json = false, quiet = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"))
			quiet = true;
		else if ((!strcmp(argv[i], "--format") || !strcmp(argv[i], "-f")) && i + 1 < argc)
			json = !strcmp(argv[++i], "json");
		else if (!strncmp(argv[i], "--format=", 9))
			json = !strcmp(argv[i] + 9, "json");
		else
			return oci_fail("list: unknown argument %s", argv[i]);
	}
	json_t *arr = json_array();
	DIR *d = opendir(G.root);
	struct dirent *e;
	if (!json && !quiet)
		printf("%-24s %-8s %-10s %-40s %s\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
	while (d && (e = readdir(d))) {
		char dir[PATH_MAX];
		struct rt_state st;
		if (e->d_name[0] == '.' ||
		    rt_container_dir(G.root, e->d_name, dir, sizeof(dir)) < 0 ||
		    rt_state_read(dir, &st) < 0)
			continue;
		json_t *o = rt_state_json(&st);
		if (quiet) {
			printf("%s\n", st.id);
		} else if (!json) {
			char created[64];
			rt_rfc3339(st.created_ns, created, sizeof(created));
			enum rt_status now = rt_state_status(&st);
			printf("%-24s %-8d %-10s %-40s %s\n", st.id, now == RT_STOPPED ? 0 : st.pid,
			       rt_status_names[now], st.bundle, created);
		}
		if (o)
			json_array_append_new(arr, o);
		rt_state_fini(&st);
	}
	if (d)
		closedir(d);
	if (json)
		print_json(arr);
	else
		json_decref(arr);
	return 0;
}

/* What this runtime reads (runtime-spec features.md), for engines that ask. */
static int oci_features(void)
{
	json_t *o = json_pack(
	    "{s:s, s:s, s:[s,s,s,s], s:[s,s,s,s,s,s], s:{s:[s,s,s,s,s,s,s,s], s:{s:b}},"
	    " s:{s:s, s:s, s:s, s:s, s:s, s:s}}",
	    "ociVersionMin", "1.0.0", "ociVersionMax", RT_SPEC_VERSION, "hooks", "prestart",
	    "createRuntime", "poststart", "poststop", "mountOptions", "bind", "rbind", "ro", "rw",
	    "nosuid", "nodev", "linux", "namespaces", "pid", "network", "mount", "ipc", "uts",
	    "user", "cgroup", "time", "cgroup", "v2", 0, "annotations", "run.matchlock.allow-hosts",
	    "host globs the container may reach (comma-separated)", "run.matchlock.add-hosts",
	    "NAME:IP pins (comma-separated)", "run.matchlock.allow-private-ips",
	    "true: allowed names may resolve to private addresses", "run.matchlock.no-network",
	    "true: no DNS and no egress at all", "run.matchlock.secret-env",
	    "VAR@HOST[,HOST][;...]: the guest sees a placeholder, HOST gets the value in flight",
	    "run.matchlock.runtime", "matchlock");
	print_json(o);
	return 0;
}

/* ---- exec ---------------------------------------------------------------------------------- */

/*
 * Wait for the end of a process started over the control socket, forwarding SIGTERM/SIGINT as
 * an interrupt and the terminal's size. Returns its status (125: the sandbox went away).
 */
static int exec_wait_exit(int fd, int tty)
{
	int sigfd = cli_signalfd();
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = sigfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return EXIT_MATCHLOCK;
		struct signalfd_siginfo si;
		while ((p[1].revents & POLLIN) && read(sigfd, &si, sizeof(si)) == sizeof(si)) {
			struct winsize ws;
			if (si.ssi_signo == SIGWINCH && tty >= 0 &&
			    ioctl(tty, TIOCGWINSZ, &ws) == 0) {
				struct buf b = { 0 };
				buf_put_u16(&b, CTRL_RESIZE);
				msg_put_u16(&b, T_ROWS, ws.ws_row);
				msg_put_u16(&b, T_COLS, ws.ws_col);
				control_send(fd, &b, NULL, 0);
				buf_fini(&b);
			} else if (si.ssi_signo != SIGWINCH && si.ssi_signo != SIGHUP) {
				control_simple(fd, CTRL_INTERRUPT, 0, NULL);
			}
		}
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		uint8_t msg[4096];
		int rfds[3], nrfds = 0;
		ssize_t n = control_recv(fd, msg, sizeof(msg), rfds, &nrfds);
		for (int i = 0; i < nrfds; i++)
			close(rfds[i]);
		if (n <= 0)
			return EXIT_MATCHLOCK;
		struct rd r = rd_make(msg, (size_t)n);
		uint16_t type = rd_u16(&r), tag;
		struct rd v;
		uint32_t code = EXIT_MATCHLOCK;
		while (msg_next(&r, &tag, &v) > 0)
			if (tag == T_EXIT_CODE)
				msg_get_u32(&v, &code);
		if (type == CTRL_EXIT || type == CTRL_FAIL)
			return type == CTRL_EXIT ? (int)(code & 0xff) : EXIT_MATCHLOCK;
	}
}

/*
 * The exec'd process, on this side: its stdio (or a PTY for the console socket) handed to the
 * sandbox's supervisor with the request. "ok" (or why not) goes to notify_fd once it is sent.
 */
static int exec_run(const struct rt_state *st, struct exec_request *req, const char *console,
		    int notify_fd)
{
	char err[800] = "";
	int fd = control_connect(st->sandbox), tty = -1, status = EXIT_MATCHLOCK;
	struct buf b = { 0 };
	if (fd < 0) {
		snprintf(err, sizeof(err), "container %s is not running", st->id);
		goto out;
	}
	int fds[3] = { STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO };
	if (req->tty) {
		if (!console) {
			snprintf(err, sizeof(err), "exec: a terminal needs --console-socket");
			goto out;
		}
		if (runtime_shim_open_pty(console, &tty, err, sizeof(err)) < 0)
			goto out;
		setsid();
		ioctl(tty, TIOCSCTTY, 0);
		struct winsize ws;
		if (ioctl(tty, TIOCGWINSZ, &ws) == 0 && ws.ws_row) {
			req->rows = ws.ws_row;
			req->cols = ws.ws_col;
		}
		fds[0] = fds[1] = fds[2] = tty;
	}
	buf_put_u16(&b, CTRL_EXEC);
	if (exec_request_encode(req, &b) < 0 || buf_used(&b) > CONTROL_MAX_MSG) {
		snprintf(err, sizeof(err), "exec: the process is too large to send");
		goto out;
	}
	if (control_send(fd, &b, fds, 3) < 0) {
		snprintf(err, sizeof(err), "container %s: %s", st->id, strerror(errno));
		goto out;
	}
	if (notify_fd >= 0) {
		(void)!write(notify_fd, "ok", 2);
		close(notify_fd);
		notify_fd = -1;
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		for (int i = 0; null >= 0 && i < 3; i++)
			dup2(null, i);
	}
	status = exec_wait_exit(fd, tty);
out:
	if (notify_fd >= 0) {
		(void)!write(notify_fd, err, strlen(err));
		close(notify_fd);
	} else if (err[0]) {
		oci_fail("%s", err);
	}
	buf_fini(&b);
	if (fd >= 0)
		close(fd);
	if (tty >= 0)
		close(tty);
	return status;
}

static int oci_exec(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "process", required_argument, NULL, 'p' },
		{ "tty", no_argument, NULL, 't' },
		{ "console-socket", required_argument, NULL, 'C' },
		{ "detach", no_argument, NULL, 'd' },
		{ "pid-file", required_argument, NULL, 'P' },
		{ "cwd", required_argument, NULL, 'w' },
		{ "env", required_argument, NULL, 'e' },
		{ "user", required_argument, NULL, 'u' },
		{ "preserve-fds", required_argument, NULL, 'F' },
		{ "no-new-privs", no_argument, NULL, 'N' },
		{ "process-label", required_argument, NULL, 'L' },
		{ "apparmor", required_argument, NULL, 'A' },
		{ "cap", required_argument, NULL, 'c' },
		{ 0 },
	};
	const char *process = NULL, *console = NULL, *pid_file = NULL, *cwd = NULL, *user = NULL;
	bool tty = false, detach = false;
	struct env extra = { 0 };
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+p:tde:u:c:", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			process = optarg;
			break;
		case 't':
			tty = true;
			break;
		case 'C':
			console = optarg;
			break;
		case 'd':
			detach = true;
			break;
		case 'P':
			pid_file = optarg;
			break;
		case 'w':
			cwd = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'e':
			if (env_set(&extra, optarg) < 0) {
				env_fini(&extra);
				return oci_fail("exec: --env %s: expected KEY=VALUE", optarg);
			}
			break;
		case 'F':
			if (strcmp(optarg, "0")) {
				env_fini(&extra);
				return oci_fail("exec: --preserve-fds is not supported");
			}
			break;
		case 'N':
		case 'L':
		case 'A':
		case 'c':
			break;
		default:
			env_fini(&extra);
			return oci_fail("exec: unknown flag %s", argv[optind - 1]);
		}
	}
	if (optind >= argc || (!process && optind + 1 >= argc)) {
		env_fini(&extra);
		return oci_fail("exec: expected a container ID and --process FILE or a command");
	}
	const char *id = argv[optind];
	char dir[PATH_MAX], err[1200];
	struct rt_state st;
	struct runtime_config p = { 0 };
	if (oci_open(id, dir, sizeof(dir), &st)) {
		env_fini(&extra);
		return 1;
	}
	int status = 1;
	if (process) {
		char *text = NULL;
		int n = read_file_str(process, RT_CONFIG_MAX + 1, &text);
		if (n < 0) {
			oci_fail("exec: --process %s: %s", process, strerror(-n));
			goto out;
		}
		int r = runtime_process_parse(text, (size_t)n, &p, err, sizeof(err));
		free(text);
		if (r < 0) {
			oci_fail("exec: %s", err);
			goto out;
		}
	} else {
		if (!(p.args = spec_strv_dup(argv + optind + 1))) {
			oci_fail("out of memory");
			goto out;
		}
		snprintf(p.user, sizeof(p.user), "%s", user ? user : "0:0");
		p.terminal = tty;
	}
	if (rt_state_status(&st) != RT_RUNNING) {
		oci_fail("cannot exec in a stopped container");
		goto out;
	}
	size_t bad;
	if (env_merge(&p.env, env_vector(&extra), &bad) < 0) {
		oci_fail("exec: --env: too large");
		goto out;
	}
	/* A secret's real value stays out of the VM here too: the sandbox adds its placeholder. */
	struct env clean = { 0 };
	char **vec = env_vector(&p.env);
	for (size_t i = 0; vec[i]; i++) {
		bool secret = false;
		for (unsigned k = 0; k < st.nsecret_names; k++) {
			size_t nl = strlen(st.secret_names[k]);
			secret |= !strncmp(vec[i], st.secret_names[k], nl) && vec[i][nl] == '=';
		}
		if (!secret)
			env_set(&clean, vec[i]);
	}
	struct exec_request req = {
		.argv = p.args,
		.env = env_vector(&clean),
		.cwd = cwd ? cwd : p.cwd,
		.user = p.user,
		.stdin_on = true,
		.tty = p.terminal || tty,
	};
	memcpy(req.rlimits, p.rlimits, sizeof(req.rlimits));
	req.nrlimits = p.nrlimits;
	if (!detach) {
		status = exec_run(&st, &req, console, -1);
		env_fini(&clean);
		goto out;
	}
	int notify[2];
	if (pipe2(notify, O_CLOEXEC) < 0) {
		oci_fail("pipe: %s", strerror(errno));
		env_fini(&clean);
		goto out;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(notify[0]);
		_exit(exec_run(&st, &req, console, notify[1]));
	}
	close(notify[1]);
	char msg[1200];
	child_notice(notify[0], pid > 0, msg, sizeof(msg));
	env_fini(&clean);
	if (pid < 0 || strcmp(msg, "ok")) {
		if (pid > 0)
			waitpid(pid, NULL, 0);
		oci_fail("exec: %s", pid < 0 ? strerror(errno) : msg[0] ? msg : "failed");
		goto out;
	}
	int r = pid_file ? write_pid_file(pid_file, pid) : 0;
	if (r < 0) {
		kill(pid, SIGKILL);
		oci_fail("--pid-file %s: %s", pid_file, strerror(-r));
		goto out;
	}
	status = 0;
out:
	env_fini(&extra);
	runtime_config_fini(&p);
	rt_state_fini(&st);
	return status;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static bool is_global_flag(const char *a)
{
	static const char *const flags[] = { "--root",		 "--log",   "--log-format",
					     "--systemd-cgroup", "--debug", "--rootless",
					     "--criu",		 "--policy" };
	for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
		size_t n = strlen(flags[i]);
		if (!strncmp(a, flags[i], n) && (a[n] == 0 || a[n] == '='))
			return true;
	}
	return false;
}

bool cli_is_oci(int argc, char **argv)
{
	static const char *const only_oci[] = { "create", "start",  "state", "delete", "features",
						"ps",	  "update", "pause", "resume" };
	if (argc < 1)
		return false;
	const char *v = argv[0];
	if (is_global_flag(v))
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(only_oci); i++)
		if (!strcmp(v, only_oci[i]))
			return true;
	int positional = 0;
	bool oci_flag = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-') {
			positional++;
			continue;
		}
		oci_flag |= !strncmp(a, "--process", 9) || !strncmp(a, "--pid-file", 10) ||
			    !strncmp(a, "--console-socket", 16) || !strcmp(a, "--detach") ||
			    !strcmp(a, "-d") || !strncmp(a, "--format", 8) || !strcmp(a, "-q");
	}
	/* runc's `kill ID SIGNAL` against matchlock's `kill ID`; `exec --process` and
	 * `list --format` against matchlock's own exec and list. */
	return (!strcmp(v, "kill") && positional >= 2) ||
	       ((!strcmp(v, "exec") || !strcmp(v, "list")) && oci_flag);
}

/* The global flags, up to the verb; returns the verb's index or -1 (printed why). */
static int parse_globals(int argc, char **argv)
{
	int i = 0;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i], *eq = strchr(a, '=');
		char name[32];
		snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
		bool takes = !strcmp(name, "--root") || !strcmp(name, "--log") ||
			     !strcmp(name, "--log-format") || !strcmp(name, "--criu") ||
			     !strcmp(name, "--rootless") || !strcmp(name, "--policy");
		const char *val = eq ? eq + 1 : NULL;
		if (takes && !val) {
			if (i + 1 >= argc) {
				oci_fail("%s needs a value", name);
				return -1;
			}
			val = argv[++i];
		}
		if (!strcmp(name, "--root")) {
			snprintf(G.root, sizeof(G.root), "%s", val);
		} else if (!strcmp(name, "--log")) {
			G.log = val;
		} else if (!strcmp(name, "--log-format")) {
			if (strcmp(val, "json") && strcmp(val, "text")) {
				oci_fail("--log-format %s: expected text or json", val);
				return -1;
			}
			G.json = !strcmp(val, "json");
		} else if (!strcmp(name, "--policy")) {
			G.policy = val;
		} else if (!strcmp(name, "--debug")) {
			G.debug = true;
		} else if (!strcmp(name, "--systemd-cgroup") || !strcmp(name, "--criu") ||
			   !strcmp(name, "--rootless")) {
			/* No cgroup of the engine's to manage (the VM is the boundary); no CRIU. */
		} else if (!strcmp(name, "--version") || !strcmp(name, "-v")) {
			return i;
		} else if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
			return i;
		} else {
			oci_fail("unknown global flag %s", a);
			return -1;
		}
	}
	if (i >= argc) {
		fputs(oci_usage, stderr);
		return -1;
	}
	return i;
}

int cmd_oci(int argc, char **argv)
{
	int i = parse_globals(argc - 1, argv + 1);
	if (i < 0)
		return 1;
	if (!G.root[0] && rt_root_default(G.root, sizeof(G.root)) < 0)
		return oci_fail("the runtime root: path too long");
	char **av = argv + 1 + i;
	int ac = argc - 1 - i;
	const char *verb = av[0];
	oci_debug("%s", verb);
	if (!strcmp(verb, "--version") || !strcmp(verb, "-v") || !strcmp(verb, "version")) {
		printf("matchlock version %s\nspec: %s\n", MATCHLOCK_VERSION, RT_SPEC_VERSION);
		return 0;
	}
	if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help")) {
		fputs(oci_usage, stdout);
		return 0;
	}
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} verbs[] = {
		{ "create", oci_create }, { "start", oci_start },   { "state", oci_state },
		{ "kill", oci_kill },	  { "delete", oci_delete }, { "exec", oci_exec },
		{ "ps", oci_ps },	  { "list", oci_list },
	};
	if (!strcmp(verb, "features"))
		return oci_features();
	for (size_t k = 0; k < ARRAY_SIZE(verbs); k++)
		if (!strcmp(verb, verbs[k].name))
			return verbs[k].fn(ac, av);
	return oci_fail("%s: not supported by matchlock's OCI runtime (see 'matchlock oci --help')",
			verb);
}
