/* SPDX-License-Identifier: MIT */
/*
 * matchlock run: translate the flags into a sandbox spec, start it (session.h), run one command
 * with our stdio attached (or, with -d, leave a supervisor serving it), stop it, and exit with
 * the command's status. Our own failures exit 125 with one line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/child.h"
#include "cli.h"
#include "common/log.h"
#include "common/util.h"
#include "exec_stdio.h"
#include "portfwd.h"
#include "session.h"
#include "spec_hooks.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char run_usage[] =
    "usage: matchlock run [FLAGS] [--] COMMAND [ARG...]\n"
    "\n"
    "Create a sandbox, run COMMAND in it, remove it. Exit status is the command's\n"
    "(128+N for signal N, 124 on --timeout); matchlock's own errors exit 125.\n"
    "\n"
    "  --image REF            OCI image (local tag or registry reference; default: the\n"
    "                         Debian-based image built by 'make default-image')\n"
    "  --entrypoint CMD       replace the image's Entrypoint (and drop its Cmd)\n"
    "  --rootfs PATH          root filesystem: a directory or a tarball (instead of an image)\n"
    "  -i, --interactive      stream stdin to the command\n"
    "  -t, --tty              allocate a pseudo-terminal (use -it in a terminal)\n"
    "  -w, --workdir DIR      working directory in the sandbox (created if missing)\n"
    "  -u, --user USER[:GROUP]  user to run as (name or uid, resolved in the sandbox)\n"
    "  -e, --env KEY[=VALUE]  set an environment variable (KEY alone: take ours)\n"
    "      --env-file FILE    read KEY=VALUE lines; -e wins over files\n"
    "      --hostname NAME    the sandbox's host name (default: its ID)\n"
    "      --cpus N           virtual CPUs (default 1)\n"
    "      --memory MB        guest memory (default 512)\n"
    "      --timeout S        kill the command after S seconds and exit 124\n"
    "      --accel auto|kvm|tcg  accelerator (auto never picks one that cannot boot)\n"
    "      --platform linux/amd64|linux/arm64  the guest's architecture (default: the\n"
    "                         host's; another one runs emulated)\n"
    "      --no-snapshot      boot cold instead of restoring this machine's saved snapshot\n"
    "  -v, --volume HOST[:GUEST][:MODE]  show host folder HOST at GUEST (default: the\n"
    "                         workspace); MODE overlay (default: the sandbox writes its own\n"
    "                         copy, HOST stays unchanged), rw (writes go to HOST) or ro\n"
    "      --workspace GUEST  the guest path of a -v without one (default /workspace)\n"
    "  -d, --detach           start the sandbox (and COMMAND, if given, in the background),\n"
    "                         print its ID and return; it runs until 'matchlock kill ID'\n"
    "      --rm[=BOOL]        remove the sandbox when it stops (default: true, false with -d)\n"
    "\n"
    "Network (default: nothing is reachable; DNS answers NXDOMAIN, connects are refused):\n"
    "      --allow-host GLOB[,GLOB...]  allow host names: api.x.com, *.x.com (subdomains), *\n"
    "      --add-host NAME:IP  connect to IP for NAME (exempt from the private-address block)\n"
    "      --allow-private-ips  let allowed names resolve to private/loopback addresses\n"
    "      --no-network       no DNS and no egress at all (loopback only)\n"
    "  -p, --publish [LOCAL:]REMOTE  forward a host port to a port in the sandbox\n"
    "      --address IP       where -p listens (default 127.0.0.1)\n"
    "      --secret NAME[=VALUE]@HOST[,HOST...]  the guest sees $NAME=SANDBOX_SECRET_...; HTTPS\n"
    "                         requests to HOST get the real value in flight (VALUE defaults\n"
    "                         to $NAME here); HOST is allowed automatically\n"
    "      --secret-file NAME=PATH@HOST[,HOST...]  the same, the value read from PATH\n"
    "      --secret aws@HOST[,HOST...]  an AWS credential ($AWS_ACCESS_KEY_ID,\n"
    "                         $AWS_SECRET_ACCESS_KEY, $AWS_SESSION_TOKEN): the guest gets\n"
    "                         placeholders, the proxy signs its SigV4 requests again\n"
    "      --secret-file aws[:PROFILE]=PATH@HOST[,HOST...]  the same from an AWS\n"
    "                         credentials file\n"
    "      --upstream-ca FILE  also trust the CAs in FILE (PEM) for upstream HTTPS\n"
    "      --hooks FILE       hook rules on HTTPS requests and host-folder file operations\n"
    "                         (JSON {network, files}; see spec/cli.md)\n";

/* What only the CLI has: how it attaches to the sandbox. The rest goes into the spec. */
struct run_opts {
	struct sandbox_spec spec;
	bool interactive, tty;
	struct env env_flags; /* -e, put on top of the --env-file layers */
	const char *volumes[SPEC_MAX_MOUNTS]; /* -v as given, split once --workspace is known */
	unsigned nvolumes;
	const char *workspace;
};

/*
 * Add KEY=VALUE (or KEY, looked up in our environment) to e, replacing an earlier KEY. Returns
 * env_set's result (0 too when KEY alone is unset here: like Docker, it is left out).
 */
static int env_add(struct env *e, const char *spec)
{
	if (strchr(spec, '='))
		return env_set(e, spec);
	if (!*spec)
		return -EINVAL;
	const char *val = getenv(spec);
	return val ? env_set_kv(e, spec, val) : 0;
}

static int env_file_load(struct env *e, const char *path, char *err, size_t errn)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errn, "--env-file %s: %s", path, strerror(errno));
		return -errno;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0, r = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			continue;
		if ((r = env_add(e, p)) < 0) {
			snprintf(err, errn, "--env-file %s:%d: %s", path, lineno, env_strerror(r));
			break;
		}
	}
	free(line);
	fclose(f);
	return r;
}

/*
 * A number for a resource flag, kept wide: the range is the validator's business (session.h),
 * so the CLI and the RPC refuse the same values with the same words.
 */
static int parse_count(const char *flag, const char *arg, long long *out, char *err, size_t errn)
{
	unsigned long v;
	if (cli_parse_uint(arg, 0, LLONG_MAX, &v) < 0) {
		snprintf(err, errn, "%s %s: expected a whole number", flag, arg);
		return -EINVAL;
	}
	*out = (long long)v;
	return 0;
}

enum {
	OPT_IMAGE = 240,
	OPT_ENTRYPOINT,
	OPT_ROOTFS = 256,
	OPT_ENV_FILE,
	OPT_HOSTNAME,
	OPT_CPUS,
	OPT_MEMORY,
	OPT_TIMEOUT,
	OPT_ACCEL,
	OPT_PLATFORM,
	OPT_RM,
	OPT_ALLOW_HOST,
	OPT_NO_NETWORK,
	OPT_ALLOW_PRIVATE,
	OPT_ADD_HOST,
	OPT_ADDRESS,
	OPT_NO_SNAPSHOT,
	OPT_SECRET,
	OPT_SECRET_FILE,
	OPT_UPSTREAM_CA,
	OPT_HOOKS,
	OPT_DISK_SIZE,
	OPT_WORKSPACE
};

/*
 * -v HOST[:GUEST][:MODE] into a spec mount. Split at the colons from the right: three or more
 * parts are HOST:GUEST:MODE (HOST may hold colons), two are HOST:MODE when the second names a
 * mode, else HOST:GUEST; a missing or empty GUEST is the workspace. Whether the parts are
 * acceptable is the validator's call. -ENOMEM.
 */
static int volume_split(const char *arg, const char *workspace, struct spec_mount *m)
{
	char *a = strdup(arg);
	if (!a)
		return -ENOMEM;
	char *mode = NULL, *guest = NULL, *c = strrchr(a, ':');
	if (c) {
		*c = 0;
		char *c2 = strrchr(a, ':');
		if (c2) {
			*c2 = 0;
			guest = c2 + 1;
			mode = c + 1;
		} else if (sandbox_mount_mode_parse(c + 1) >= 0) {
			mode = c + 1;
		} else {
			guest = c + 1;
		}
	}
	int k = spec_strdup(&m->host, a);
	k = k ?: spec_strdup(&m->guest, guest && *guest ? guest : workspace);
	k = k ?: spec_strdup(&m->mode, mode);
	free(a);
	return k;
}

/* One flag into the spec (or the attach options). Returns 0, 1 for --help, or -errno with err. */
static int parse_flag(int c, const char *arg, struct run_opts *o, char *err, size_t errn)
{
	struct sandbox_spec *sp = &o->spec;
	int k = 0;
	switch (c) {
	case OPT_ROOTFS:
		return spec_strdup(&sp->rootfs, arg);
	case OPT_IMAGE:
		return spec_strdup(&sp->image, arg);
	case OPT_ENTRYPOINT: {
		/* Docker's --entrypoint is one program; "" clears the image's. */
		char *one[2] = { (char *)arg, NULL };
		spec_strv_free(sp->entrypoint);
		sp->entrypoint = spec_strv_dup(*arg ? one : one + 1);
		return sp->entrypoint ? 0 : -ENOMEM;
	}
	case 'i':
		o->interactive = true;
		return 0;
	case 't':
		o->tty = true;
		return 0;
	case 'w':
		return spec_strdup(&sp->workdir, arg);
	case 'u':
		return spec_strdup(&sp->user, arg);
	case 'e':
		if ((k = env_add(&o->env_flags, arg)) < 0)
			snprintf(err, errn, "-e %.64s: %s", arg,
				 k == -EINVAL ? "expected KEY=VALUE or KEY" : env_strerror(k));
		return k;
	case OPT_HOSTNAME:
		return spec_strdup(&sp->hostname, arg);
	case OPT_CPUS: {
		char *end;
		sp->cpus = strtod(arg, &end);
		if (end == arg || *end) {
			snprintf(err, errn, "--cpus %s: expected a number", arg);
			return -EINVAL;
		}
		return 0;
	}
	case OPT_MEMORY:
		return parse_count("--memory", arg, &sp->memory_mb, err, errn);
	case OPT_TIMEOUT:
		sp->has_timeout = true;
		return parse_count("--timeout", arg, &sp->timeout_s, err, errn);
	case OPT_DISK_SIZE:
		sp->has_disk_size = true;
		return parse_count("--disk-size", arg, &sp->disk_size_mb, err, errn);
	case 'v':
		if (o->nvolumes >= SPEC_MAX_MOUNTS) {
			snprintf(err, errn, "too many -v flags (at most %d)", SPEC_MAX_MOUNTS);
			return -EINVAL;
		}
		o->volumes[o->nvolumes++] = arg;
		return 0;
	case OPT_WORKSPACE:
		o->workspace = arg;
		return 0;
	case OPT_ACCEL:
		return spec_strdup(&sp->accel, arg);
	case OPT_PLATFORM:
		return spec_strdup(&sp->platform, arg);
	case OPT_RM: {
		bool b = true;
		if (arg && cli_parse_bool(arg, &b) < 0) {
			snprintf(err, errn, "--rm=%s: expected true or false", arg);
			return -EINVAL;
		}
		sp->rm = b;
		return 0;
	}
	case 'd':
		sp->lifetime = LIFETIME_DETACHED;
		return 0;
	case OPT_ALLOW_HOST:
		if ((k = policy_add_list(sp->policy, arg)) < 0)
			snprintf(err, errn, "--allow-host %s: %s", arg,
				 k == -ENOSPC ? "too many rules (at most " STR(POLICY_MAX_RULES) ")"
					      : "expected host names or globs like api.x.com, "
						"*.x.com or *, separated by commas");
		return k;
	case OPT_NO_NETWORK:
		sp->policy->no_network = true;
		return 0;
	case OPT_ALLOW_PRIVATE:
		sp->policy->allow_private = true;
		return 0;
	case OPT_ADD_HOST:
		if ((k = policy_pin(sp->policy, arg)) < 0)
			snprintf(
			    err, errn, "--add-host %s: %s", arg,
			    k == -ENOSPC
				? "too many names (at most " STR(POLICY_MAX_PINS) ")"
				: "expected NAME:IP, e.g. db.internal:10.0.0.5 or v6.test:[::1]");
		return k;
	case OPT_SECRET:
	case OPT_SECRET_FILE:
		if (secrets_parse_flag(sp->secrets, arg, c == OPT_SECRET_FILE, err, errn) < 0)
			return -EINVAL;
		if (c == OPT_SECRET) {
			/* Hide an inline VALUE from /proc/PID/cmdline of this long-lived process.
			 */
			char *eq = strchr(arg, '='), *at = strrchr(arg, '@');
			if (eq && at && eq < at)
				memset(eq + 1, '*', (size_t)(at - eq - 1));
		}
		return 0;
	case OPT_UPSTREAM_CA:
		if (sp->nupstream_ca >= MITM_MAX_UPSTREAM_CA) {
			snprintf(err, errn, "too many --upstream-ca files (at most %d)",
				 MITM_MAX_UPSTREAM_CA);
			return -EINVAL;
		}
		return spec_strdup(&sp->upstream_ca[sp->nupstream_ca++], arg);
	case OPT_HOOKS:
		return spec_hooks_load(sp->hooks, sp->fhooks, arg, err, errn);
	case 'p': {
		struct sandbox_port *pp = &sp->publish[sp->npublish];
		if (sp->npublish >= SPEC_MAX_PUBLISH ||
		    portfwd_parse(arg, &pp->local, &pp->remote) < 0) {
			snprintf(err, errn, "-p %s: expected [LOCAL:]REMOTE ports (at most %d)",
				 arg, SPEC_MAX_PUBLISH);
			return -EINVAL;
		}
		sp->npublish++;
		return 0;
	}
	case OPT_ADDRESS:
		return spec_strdup(&sp->address, arg);
	case OPT_NO_SNAPSHOT:
		sp->no_snapshot = true;
		return 0;
	case 'h':
		fputs(run_usage, stdout);
		return 1;
	}
	return -EINVAL;
}

static int parse_args(int argc, char **argv, struct run_opts *o, char *err, size_t errn)
{
	static const struct option longopts[] = {
		{ "rootfs", required_argument, NULL, OPT_ROOTFS },
		{ "interactive", no_argument, NULL, 'i' },
		{ "tty", no_argument, NULL, 't' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' },
		{ "env", required_argument, NULL, 'e' },
		{ "env-file", required_argument, NULL, OPT_ENV_FILE },
		{ "hostname", required_argument, NULL, OPT_HOSTNAME },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "accel", required_argument, NULL, OPT_ACCEL },
		{ "platform", required_argument, NULL, OPT_PLATFORM },
		{ "rm", optional_argument, NULL, OPT_RM },
		{ "help", no_argument, NULL, 'h' },
		{ "image", required_argument, NULL, OPT_IMAGE },
		{ "detach", no_argument, NULL, 'd' },
		{ "entrypoint", required_argument, NULL, OPT_ENTRYPOINT },
		{ "allow-host", required_argument, NULL, OPT_ALLOW_HOST },
		{ "no-network", no_argument, NULL, OPT_NO_NETWORK },
		{ "allow-private-ips", no_argument, NULL, OPT_ALLOW_PRIVATE },
		{ "add-host", required_argument, NULL, OPT_ADD_HOST },
		{ "secret", required_argument, NULL, OPT_SECRET },
		{ "secret-file", required_argument, NULL, OPT_SECRET_FILE },
		{ "upstream-ca", required_argument, NULL, OPT_UPSTREAM_CA },
		{ "hooks", required_argument, NULL, OPT_HOOKS },
		{ "publish", required_argument, NULL, 'p' },
		{ "address", required_argument, NULL, OPT_ADDRESS },
		{ "no-snapshot", no_argument, NULL, OPT_NO_SNAPSHOT },
		{ "volume", required_argument, NULL, 'v' },
		{ "workspace", required_argument, NULL, OPT_WORKSPACE },
		{ "disk-size", required_argument, NULL, OPT_DISK_SIZE },
		{ 0 },
	};
	char *env_files[64];
	size_t nenv_files = 0;
	int c, k;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+itw:u:e:dp:v:h", longopts, NULL)) != -1) {
		if (c == OPT_ENV_FILE) {
			if (nenv_files >= ARRAY_SIZE(env_files)) {
				snprintf(err, errn, "too many --env-file flags");
				return -EINVAL;
			}
			env_files[nenv_files++] = optarg;
			continue;
		}
		if (c == '?' || c == ':') {
			if (optopt && optopt != '?')
				snprintf(err, errn, "-%c: %s (see 'matchlock run --help')", optopt,
					 strchr("wuepv", optopt) ? "needs a value"
								 : "unknown flag");
			else
				snprintf(err, errn, "%s: unknown flag (see 'matchlock run --help')",
					 argv[optind - 1]);
			return -EINVAL;
		}
		if ((k = parse_flag(c, optarg, o, err, errn)) != 0) {
			if (k == -ENOMEM)
				snprintf(err, errn, "out of memory");
			return k;
		}
	}
	for (size_t i = 0; i < nenv_files; i++)
		if (env_file_load(&o->spec.env, env_files[i], err, errn) < 0)
			return -EINVAL;
	/* Files first, then -e on top. */
	size_t bad;
	if ((k = env_merge(&o->spec.env, env_vector(&o->env_flags), &bad)) < 0) {
		snprintf(err, errn, "-e %.64s: %s", env_vector(&o->env_flags)[bad],
			 env_strerror(k));
		return -EINVAL;
	}
	for (unsigned i = 0; i < o->nvolumes; i++) {
		if (volume_split(o->volumes[i], o->workspace ? o->workspace : SPEC_WORKSPACE,
				 &o->spec.mounts[i]) < 0) {
			snprintf(err, errn, "out of memory");
			return -ENOMEM;
		}
		o->spec.nmounts = i + 1;
	}
	if (!(o->spec.cmd = spec_strv_dup(argv + optind))) {
		snprintf(err, errn, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static void print_timing(const struct sandbox_times *t, uint64_t t0, uint64_t exec_done,
			 uint64_t end)
{
	double ms = 1e-6;
	double to_hello = (double)(t->hello - t0) * ms;
	double guest_hello = (double)t->guest_hello * ms;
	fprintf(
	    stderr,
	    "timing: total_ms=%.1f prepare_ms=%.1f vmm_ms=%.1f kernel_ms=%.1f agent_ms=%.1f "
	    "ready_ms=%.1f exec_ms=%.1f stop_ms=%.1f restored=%d snapshot_ms=%llu\n",
	    (double)(end - t0) * ms, (double)(t->spawn - t0) * ms,
	    to_hello - guest_hello - (double)(t->spawn - t0) * ms,
	    (double)t->guest_agent_start * ms, (double)(t->guest_hello - t->guest_agent_start) * ms,
	    (double)(t->ready - t->hello) * ms, (double)(exec_done - t->ready) * ms,
	    (double)(t->stopped - exec_done) * ms, t->restored, (unsigned long long)t->snapshot_ms);
}

/*
 * `run` drives its own loop: these are the only places that wait in it. Every component (boot,
 * exec, stop) reports its end through a callback that sets a flag.
 */
struct run_wait {
	bool done;
	int r;
};

static void on_run_started(struct session *s, int r, const char *err, void *opaque)
{
	(void)s;
	(void)err;
	struct run_wait *w = opaque;
	w->done = true;
	w->r = r;
}

static void on_run_stopped(struct session *s, void *opaque)
{
	(void)s;
	((struct run_wait *)opaque)->done = true;
}

static void run_stop(struct session *s)
{
	struct run_wait w = { 0 };
	session_stop(s, NULL, on_run_stopped, &w);
	while (s->sb && !w.done)
		loop_run_once(s->loop, 0);
}

/* A detached command's output, read from a pipe into the sandbox log (capped; log.h). */
static void on_bg_output(struct watch *w, uint32_t events)
{
	(void)events;
	struct session *s = w->obj;
	char buf[16384];
	ssize_t n = read(w->fd, buf, sizeof(buf));
	if (n > 0 && s->sb)
		sandbox_log_write(s->sb, buf, (size_t)n);
	else if (n == 0 || (errno != EAGAIN && errno != EINTR))
		loop_watch(s->loop, w, 0);
}

/* A detached supervisor stops its sandbox on SIGTERM/SIGINT/SIGHUP. */
static void on_detached_signal(struct watch *w, uint32_t events)
{
	(void)events;
	struct supervisor *sup = w->obj;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si))
		if (si.ssi_signo != SIGWINCH)
			sup->stop = true;
}

/*
 * run -d: the command (if any) in the background, its output into the sandbox log through a
 * pipe we read (so it passes the log's cap like the console); then serve until kill, a signal,
 * the lifetime or a failure.
 */
static void run_detached(struct session *s, struct exec_request *req)
{
	int bg_pipe[2] = { -1, -1 };
	struct watch bg_w, sig_w;
	char err[512];
	if (req->argv[0]) {
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (null < 0 || pipe2(bg_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
			warn("background command: %s", strerror(errno));
		} else {
			watch_init(&bg_w, bg_pipe[0], on_bg_output, s);
			loop_watch(s->loop, &bg_w, EPOLLIN);
			if (!exec_stdio_start(s->sb, s->loop, req, null, bg_pipe[1], bg_pipe[1],
					      NULL, NULL, err, sizeof(err)))
				warn("background command: %s", err);
		}
		/* exec_stdio keeps using the fds until the process ends: they live as long as we
		 * do. */
	}
	watch_init(&sig_w, s->sigfd, on_detached_signal, &s->sup);
	loop_watch(s->loop, &sig_w, EPOLLIN);
	while (!s->sup.stop && !sandbox_failure(s->sb))
		loop_run_once(s->loop, 0);
	loop_unwatch(s->loop, &sig_w);
	if (bg_pipe[0] >= 0)
		loop_unwatch(s->loop, &bg_w);
	run_stop(s);
	for (int i = 0; i < 2; i++)
		if (bg_pipe[i] >= 0)
			close(bg_pipe[i]);
}

int cmd_run(int argc, char **argv)
{
	struct run_opts o = { 0 };
	struct session s = { .sigfd = -1, .notify_fd = -1 };
	char err[1024] = "";
	int status = EXIT_MATCHLOCK;
	uint64_t t0 = now_ns();

	if (sandbox_spec_init(&o.spec) < 0) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	int r = parse_args(argc, argv, &o, err, sizeof(err));
	if (r == 1)
		status = 0;
	if (r != 0)
		goto out;
	/*
	 * The values now live in the spec only: wipe them from our environment block, which
	 * /proc/PID/environ of this process (the supervisor, also after -d) would otherwise show.
	 */
	for (unsigned i = 0; i < o.spec.secrets->n; i++)
		child_wipe_env_value(o.spec.secrets->s[i].value, o.spec.secrets->s[i].vlen);
	bool detach = o.spec.lifetime == LIFETIME_DETACHED;
	if (detach && (o.interactive || o.tty)) {
		snprintf(err, sizeof(err),
			 "-d cannot be combined with -i or -t (use matchlock exec -it)");
		goto out;
	}
	if (o.tty && !isatty(STDOUT_FILENO))
		warn("-t: stdout is not a terminal");

	struct run_wait started = { 0 };
	r = session_start(&s, &o.spec, NULL, on_run_started, &started, err, sizeof(err));
	if (r == SESSION_DETACHED) {
		printf("%s\n", s.L.id);
		status = 0;
	}
	if (r != 0)
		goto out;
	while (!started.done)
		loop_run_once(s.loop, 0);
	if ((r = started.r) < 0) {
		snprintf(err, sizeof(err), "%s", s.err);
		if (r == -ECANCELED && s.interrupted)
			status = 128 + s.interrupted;
		goto out;
	}

	if (o.tty && getenv("TERM")) {
		char term[300];
		snprintf(term, sizeof(term), "TERM=%s", getenv("TERM"));
		bool have = false;
		for (size_t i = 0; i < s.env.n; i++)
			have |= !strncmp(s.env.v[i], "TERM=", 5);
		if (!have)
			env_set(&s.env, term); /* past a bound, the command runs without TERM */
	}
	struct exec_request req = {
		.argv = s.argv,
		.env = env_vector(&s.env),
		.cwd = s.workdir,
		.user = s.user,
		.stdin_on = o.interactive,
		.tty = o.tty,
		.timeout_s = detach || !s.spec.has_timeout ? 0 : (unsigned)s.spec.timeout_s,
	};
	if (detach) {
		run_detached(&s, &req);
		status = 0;
		goto out;
	}
	struct exec_fg fg;
	r = exec_fg_start(&fg, s.sb, s.loop, &req, s.sigfd, err, sizeof(err));
	while (r == 0 && !fg.done && !s.sup.stop)
		loop_run_once(s.loop, 0);
	if (r == 0)
		r = exec_fg_finish(&fg);
	status = r < 0 ? EXIT_MATCHLOCK : r;
	uint64_t t_exec_done = now_ns();
	const char *failure = sandbox_failure(s.sb);
	if (failure && !err[0])
		snprintf(err, sizeof(err), "%s", failure);
	run_stop(&s);
	if (getenv("MATCHLOCK_TIMING"))
		print_timing(&s.times, t0, t_exec_done, now_ns());
out:
	if (*err && !s.detached)
		error("%s", err);
	session_fini(&s);
	sandbox_spec_fini(&o.spec);
	env_fini(&o.env_flags);
	return status;
}
