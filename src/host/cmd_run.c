/* SPDX-License-Identifier: MIT */
/*
 * matchlock run: prepare the root disk, boot a sandbox, run one command with our stdio attached,
 * stop the sandbox, and exit with the command's status. Our own failures exit 125 with one line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "accel.h"
#include "common/child.h"
#include "cli.h"
#include "common/log.h"
#include "common/util.h"
#include "common/paths.h"
#include "rootfs.h"
#include "common/jsonw.h"
#include "control.h"
#include "exec_stdio.h"
#include "launch.h"
#include "oci/oci.h"
#include "common/loop.h"
#include "net/mitm.h"
#include "net/secrets.h"
#include "sandbox.h"
#include "proto/env.h"
#include "state.h"
#include "supervisor.h"

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
	"      --no-snapshot      boot cold instead of restoring this machine's saved snapshot\n"
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
	"      --upstream-ca FILE  also trust the CAs in FILE (PEM) for upstream HTTPS\n";

struct run_opts {
	const char *rootfs, *image, *entrypoint;
	bool interactive, tty, detach;
	int rm; /* -1: default (true, false with -d) */
	const char *workdir, *user, *hostname, *accel;
	unsigned cpus, cpu_milli, memory_mb, timeout_s;
	struct env env; /* -e */
	struct env file_env; /* the image's Env, then --env-file, then -e: what the command gets */
	struct policy *policy;
	uint16_t publish[16][2]; /* -p: local, remote */
	size_t npublish;
	const char *address; /* --address for -p */
	bool no_snapshot;
	struct secrets *secrets;
	char *upstream_ca[MITM_MAX_UPSTREAM_CA + 1];
	unsigned nupstream_ca;
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

static int env_file_load(struct run_opts *o, const char *path, char *err, size_t errn)
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
		if ((r = env_add(&o->file_env, p)) < 0) {
			snprintf(err, errn, "--env-file %s:%d: %s", path, lineno, env_strerror(r));
			break;
		}
	}
	free(line);
	fclose(f);
	return r;
}

/* Flags that belong to parts of the CLI contract not built yet: refuse them clearly. */
static const char *const not_yet[] = { "volume", "disk-size" };

enum { OPT_IMAGE = 240, OPT_ENTRYPOINT, OPT_ROOTFS = 256, OPT_ENV_FILE, OPT_HOSTNAME, OPT_CPUS,
       OPT_MEMORY, OPT_TIMEOUT, OPT_ACCEL, OPT_RM, OPT_ALLOW_HOST, OPT_NO_NETWORK, OPT_ALLOW_PRIVATE,
       OPT_ADD_HOST, OPT_ADDRESS, OPT_NO_SNAPSHOT, OPT_SECRET, OPT_SECRET_FILE, OPT_UPSTREAM_CA,
       OPT_NOT_YET };

static int parse_args(int argc, char **argv, struct run_opts *o, char ***cmd, char *err, size_t errn)
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
		{ "publish", required_argument, NULL, 'p' },
		{ "address", required_argument, NULL, OPT_ADDRESS },
		{ "no-snapshot", no_argument, NULL, OPT_NO_SNAPSHOT },
		{ "volume", required_argument, NULL, OPT_NOT_YET },
		{ "disk-size", required_argument, NULL, OPT_NOT_YET },
		{ 0 },
	};
	char *env_files[64];
	size_t nenv_files = 0;
	unsigned long v;
	int c, idx, k;
	(void)not_yet;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+itw:u:e:dp:v:h", longopts, &idx)) != -1) {
		switch (c) {
		case OPT_ROOTFS:
			o->rootfs = optarg;
			break;
		case OPT_IMAGE:
			o->image = optarg;
			break;
		case OPT_ENTRYPOINT:
			o->entrypoint = optarg;
			break;
		case 'i':
			o->interactive = true;
			break;
		case 't':
			o->tty = true;
			break;
		case 'w':
			o->workdir = optarg;
			break;
		case 'u':
			o->user = optarg;
			break;
		case 'e':
			if ((k = env_add(&o->env, optarg)) < 0) {
				snprintf(err, errn, "-e %.64s: %s", optarg,
					 k == -EINVAL ? "expected KEY=VALUE or KEY" : env_strerror(k));
				return -EINVAL;
			}
			break;
		case OPT_ENV_FILE:
			if (nenv_files >= ARRAY_SIZE(env_files)) {
				snprintf(err, errn, "too many --env-file flags");
				return -EINVAL;
			}
			env_files[nenv_files++] = optarg;
			break;
		case OPT_HOSTNAME:
			if (!*optarg || strlen(optarg) > 63 || strspn(optarg, "abcdefghijklmnopqrstuvwxyz"
				"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != strlen(optarg)) {
				snprintf(err, errn, "--hostname %s: use 1-63 letters, digits, '-' or '.'", optarg);
				return -EINVAL;
			}
			o->hostname = optarg;
			break;
		case OPT_CPUS: {
			char *end;
			double d = strtod(optarg, &end);
			if (*end || !(d > 0) || d > 16) {
				snprintf(err, errn, "--cpus %s: expected a number from 0.1 to 16", optarg);
				return -EINVAL;
			}
			o->cpus = (unsigned)ceil(d);
			o->cpu_milli = (unsigned)lround(d * 1000);
			if (o->cpu_milli % 1000 == 0)
				o->cpu_milli = 0; /* whole CPUs need no quota */
			break;
		}
		case OPT_MEMORY:
			if (cli_parse_uint(optarg, 64, 65536, &v) < 0) {
				snprintf(err, errn, "--memory %s: expected megabytes from 64 to 65536", optarg);
				return -EINVAL;
			}
			o->memory_mb = (unsigned)v;
			break;
		case OPT_TIMEOUT:
			if (cli_parse_uint(optarg, 1, 86400 * 365, &v) < 0) {
				snprintf(err, errn, "--timeout %s: expected whole seconds >= 1", optarg);
				return -EINVAL;
			}
			o->timeout_s = (unsigned)v;
			break;
		case OPT_ACCEL:
			o->accel = optarg;
			break;
		case OPT_RM: {
			bool b = true;
			if (optarg && cli_parse_bool(optarg, &b) < 0) {
				snprintf(err, errn, "--rm=%s: expected true or false", optarg);
				return -EINVAL;
			}
			o->rm = b;
			break;
		}
		case 'd':
			o->detach = true;
			break;
		case OPT_ALLOW_HOST: {
			int e = policy_add_list(o->policy, optarg);
			if (e < 0) {
				snprintf(err, errn, "--allow-host %s: %s", optarg, e == -ENOSPC
					 ? "too many rules (at most " STR(POLICY_MAX_RULES) ")"
					 : "expected host names or globs like api.x.com, *.x.com or *, "
					   "separated by commas");
				return -EINVAL;
			}
			break;
		}
		case OPT_NO_NETWORK:
			o->policy->no_network = true;
			break;
		case OPT_ALLOW_PRIVATE:
			o->policy->allow_private = true;
			break;
		case OPT_ADD_HOST: {
			int e = policy_pin(o->policy, optarg);
			if (e < 0) {
				snprintf(err, errn, "--add-host %s: %s", optarg, e == -ENOSPC
					 ? "too many names (at most " STR(POLICY_MAX_PINS) ")"
					 : "expected NAME:IP, e.g. db.internal:10.0.0.5 or v6.test:[::1]");
				return -EINVAL;
			}
			break;
		}
		case OPT_SECRET:
		case OPT_SECRET_FILE:
			if (secrets_parse_flag(o->secrets, optarg, c == OPT_SECRET_FILE, err, errn) < 0)
				return -EINVAL;
			if (c == OPT_SECRET) {
				/* Hide an inline VALUE from /proc/PID/cmdline of this long-lived process. */
				char *eq = strchr(optarg, '='), *at = strrchr(optarg, '@');
				if (eq && at && eq < at)
					memset(eq + 1, '*', (size_t)(at - eq - 1));
			}
			break;
		case OPT_UPSTREAM_CA:
			if (o->nupstream_ca >= MITM_MAX_UPSTREAM_CA) {
				snprintf(err, errn, "too many --upstream-ca files (at most %d)", MITM_MAX_UPSTREAM_CA);
				return -EINVAL;
			}
			if (access(optarg, R_OK) < 0) {
				snprintf(err, errn, "--upstream-ca %s: %s", optarg, strerror(errno));
				return -EINVAL;
			}
			o->upstream_ca[o->nupstream_ca++] = optarg;
			break;
		case 'h':
			fputs(run_usage, stdout);
			return 1;
		case OPT_NOT_YET:
			snprintf(err, errn, "--%s is not supported by this version yet", longopts[idx].name);
			return -ENOTSUP;
		case 'p':
			if (o->npublish >= ARRAY_SIZE(o->publish) ||
			    portfwd_parse(optarg, &o->publish[o->npublish][0], &o->publish[o->npublish][1]) < 0) {
				snprintf(err, errn, "-p %s: expected [LOCAL:]REMOTE ports (at most %zu)", optarg,
					 ARRAY_SIZE(o->publish));
				return -EINVAL;
			}
			o->npublish++;
			break;
		case OPT_ADDRESS:
			o->address = optarg;
			break;
		case OPT_NO_SNAPSHOT:
			o->no_snapshot = true;
			break;
		case 'v':
			snprintf(err, errn, "-%c is not supported by this version yet", c);
			return -ENOTSUP;
		default:
			if (optopt && optopt != '?')
				snprintf(err, errn, "-%c: %s (see 'matchlock run --help')", optopt,
					 strchr("wue", optopt) ? "needs a value" : "unknown flag");
			else
				snprintf(err, errn, "%s: unknown flag (see 'matchlock run --help')",
					 argv[optind - 1]);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < nenv_files; i++)
		if (env_file_load(o, env_files[i], err, errn) < 0)
			return -EINVAL;
	/* Files first, then -e on top. */
	size_t bad;
	if ((k = env_merge(&o->file_env, env_vector(&o->env), &bad)) < 0) {
		snprintf(err, errn, "-e %.64s: %s", env_vector(&o->env)[bad], env_strerror(k));
		return -EINVAL;
	}
	*cmd = argv + optind;
	return 0;
}

static struct oci_image_config image_cfg;

/*
 * --image (or the default image): prepare its root disk, then apply its config with Docker's
 * rules: Entrypoint + (our args, else Cmd), --entrypoint replaces Entrypoint and drops Cmd; the
 * image's Env lies under --env-file and -e; -u/-w win over User/WorkingDir.
 */
static int run_image_apply(struct run_opts *o, char ***cmd, char ***argv_out, char *disk, size_t n,
			   char *err, size_t errn)
{
	const char *ref = o->image ? o->image : OCI_DEFAULT_IMAGE;
	if (oci_image_prepare(ref, disk, n, &image_cfg, err, errn) < 0)
		return -EINVAL;
	if (!(*argv_out = oci_config_argv(&image_cfg, o->entrypoint, *cmd)))
		return -ENOMEM;
	*cmd = *argv_out;
	/* The image's Env is strictly KEY=VALUE: a bare KEY must not pick up our environment. */
	struct env merged = { 0 };
	size_t bad = 0;
	int k = env_merge(&merged, image_cfg.env, &bad);
	if (k < 0) {
		snprintf(err, errn, "image %s: Env[%zu]: %s", ref, bad, env_strerror(k));
	} else if ((k = env_merge(&merged, env_vector(&o->file_env), &bad)) < 0) {
		snprintf(err, errn, "--env-file/-e %.64s: %s", env_vector(&o->file_env)[bad], env_strerror(k));
	}
	if (k < 0) {
		env_fini(&merged);
		return k;
	}
	env_fini(&o->file_env);
	o->file_env = merged;
	if (!o->user)
		o->user = image_cfg.user;
	if (!o->workdir)
		o->workdir = image_cfg.workdir;
	return 0;
}

static void print_timing(const struct sandbox_times *t, uint64_t t0, uint64_t exec_done, uint64_t end)
{
	double ms = 1e-6;
	double to_hello = (double)(t->hello - t0) * ms;
	double guest_hello = (double)t->guest_hello * ms;
	fprintf(stderr,
		"timing: total_ms=%.1f prepare_ms=%.1f vmm_ms=%.1f kernel_ms=%.1f agent_ms=%.1f "
		"ready_ms=%.1f exec_ms=%.1f stop_ms=%.1f restored=%d snapshot_ms=%llu\n",
		(double)(end - t0) * ms, (double)(t->spawn - t0) * ms,
		to_hello - guest_hello - (double)(t->spawn - t0) * ms, (double)t->guest_agent_start * ms,
		(double)(t->guest_hello - t->guest_agent_start) * ms, (double)(t->ready - t->hello) * ms,
		(double)(exec_done - t->ready) * ms, (double)(t->stopped - exec_done) * ms, t->restored,
		(unsigned long long)t->snapshot_ms);
}

static volatile int boot_interrupted;

static void on_boot_signal(struct watch *w, uint32_t events)
{
	(void)events;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si))
		if (si.ssi_signo != SIGWINCH)
			boot_interrupted = (int)si.ssi_signo;
}

/* A detached command's output, read from a pipe into the sandbox log (capped; log.h). */
static void on_bg_output(struct watch *w, uint32_t events)
{
	(void)events;
	char buf[16384];
	ssize_t n = read(w->fd, buf, sizeof(buf));
	if (n > 0)
		log_file_write(buf, (size_t)n);
	else if (n == 0 || (errno != EAGAIN && errno != EINTR))
		loop_watch(w->obj, w, 0);
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

/* The record's config: what `get` shows. Secrets will appear here only as "<redacted>". */
static char *config_json(const struct run_opts *o, const struct sandbox_config *sc, char **cmd)
{
	struct buf b = { 0 };
	char cpus[32];
	snprintf(cpus, sizeof(cpus), "%g", sc->cpu_milli ? sc->cpu_milli / 1000.0 : (double)sc->cpus);
	jsonw_raw(&b, "{");
	jsonw_kv_str(&b, 1, "rootfs", o->rootfs);
	jsonw_kv_str(&b, 0, "image", o->rootfs ? NULL : o->image ? o->image : OCI_DEFAULT_IMAGE);
	jsonw_kv_str(&b, 0, "hostname", sc->hostname ? sc->hostname : sc->id);
	jsonw_kv_raw(&b, 0, "cpus", cpus);
	jsonw_kv_int(&b, 0, "memory_mb", sc->memory_mb);
	jsonw_kv_int(&b, 0, "timeout_seconds", o->timeout_s);
	jsonw_kv_str(&b, 0, "accel", accel_names[sc->accel]);
	jsonw_kv_bool(&b, 0, "detached", o->detach);
	jsonw_raw(&b, ",\"command\":[");
	for (size_t i = 0; cmd && cmd[i]; i++) {
		if (i)
			jsonw_raw(&b, ",");
		jsonw_str(&b, cmd[i]);
	}
	jsonw_raw(&b, "],\"env\":[");
	for (size_t i = 0; i < o->file_env.n; i++) {
		if (i)
			jsonw_raw(&b, ",");
		/* Values can be credentials: record the names only. */
		char key[256];
		snprintf(key, sizeof(key), "%.*s", (int)strcspn(o->file_env.v[i], "="), o->file_env.v[i]);
		jsonw_str(&b, key);
	}
	/* Secrets: names and hosts; the value is never recorded anywhere. */
	jsonw_raw(&b, "],\"secrets\":{");
	for (unsigned i = 0; o->secrets && i < o->secrets->n; i++) {
		const struct secret *s = &o->secrets->s[i];
		if (i)
			jsonw_raw(&b, ",");
		jsonw_str(&b, s->name);
		jsonw_raw(&b, ":{\"value\":\"<redacted>\",\"hosts\":[");
		for (unsigned j = 0; j < s->nhosts; j++) {
			if (j)
				jsonw_raw(&b, ",");
			jsonw_str(&b, s->hosts[j]);
		}
		jsonw_raw(&b, "]}");
	}
	jsonw_raw(&b, "}}");
	buf_put_u8(&b, 0);
	return (char *)b.p;
}

int cmd_run(int argc, char **argv)
{
	struct run_opts o = { .rm = -1, .cpus = 1, .memory_mb = 512, .accel = "auto" };
	char err[1024] = "";
	char **cmd = NULL, **image_argv = NULL;
	char disk[4200];
	struct launch L;
	int status = EXIT_MATCHLOCK, sigfd = -1, notify[2] = { -1, -1 };
	struct sandbox *sb = NULL;
	struct state *st = NULL;
	struct loop loop = { .epfd = -1 };
	struct supervisor sup = { .listen_w.fd = -1 };
	struct watch sig_w, bg_w;
	int bg_pipe[2] = { -1, -1 }; /* a detached command's output, on its way to the log */
	struct sandbox_times times;
	bool made_dir = false, have_record = false, detached_child = false;
	char failure[300] = "";
	uint64_t t0 = now_ns(), t_exec_done = 0;

	o.policy = calloc(1, sizeof(*o.policy));
	o.secrets = calloc(1, sizeof(*o.secrets));
	if (!o.policy || !o.secrets) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	int r = parse_args(argc, argv, &o, &cmd, err, sizeof(err));
	if (r == 1) {
		status = 0;
		goto out;
	}
	if (r < 0)
		goto out;
	/*
	 * The values now live in o.secrets only: wipe them from our environment block, which
	 * /proc/PID/environ of this process (the supervisor, also after -d) would otherwise show.
	 */
	for (unsigned i = 0; i < o.secrets->n; i++)
		child_wipe_env_value(o.secrets->s[i].value, o.secrets->s[i].vlen);
	if (o.secrets->n && o.policy->no_network) {
		snprintf(err, sizeof(err), "--secret cannot be combined with --no-network");
		goto out;
	}
	if (secrets_allow_hosts(o.secrets, o.policy) < 0) {
		snprintf(err, sizeof(err), "--secret: too many allowed hosts (at most " STR(POLICY_MAX_RULES) ")");
		goto out;
	}
	if (o.rm < 0)
		o.rm = !o.detach; /* a detached sandbox stays listed after kill, until rm or prune */
	if (o.rootfs && (o.image || o.entrypoint)) {
		snprintf(err, sizeof(err), "--rootfs cannot be combined with --image or --entrypoint");
		goto out;
	}
	if (!o.rootfs && run_image_apply(&o, &cmd, &image_argv, disk, sizeof(disk), err, sizeof(err)) < 0)
		goto out;
	if (!cmd[0] && !o.detach) {
		snprintf(err, sizeof(err), "no command given (matchlock run [FLAGS] -- COMMAND [ARG...])");
		goto out;
	}
	if (o.detach && (o.interactive || o.tty)) {
		snprintf(err, sizeof(err), "-d cannot be combined with -i or -t (use matchlock exec -it)");
		goto out;
	}
	if (o.tty && !isatty(STDOUT_FILENO))
		warn("-t: stdout is not a terminal");

	if (launch_prepare(&L, o.rootfs, o.accel, err, sizeof(err)) < 0)
		goto out;
	if (!o.rootfs)
		snprintf(L.disk, sizeof(L.disk), "%s", disk);
	if (o.no_snapshot)
		L.snapshots = false;
	if (launch_make_dir(&L, err, sizeof(err)) < 0)
		goto out;
	made_dir = true;
	const char *id = L.id, *sbdir = L.dir;

	if (o.detach) {
		/*
		 * The supervisor becomes a child in its own session; we wait until it says the
		 * sandbox is ready (or why not), print the ID and leave it running.
		 */
		if (pipe2(notify, O_CLOEXEC) < 0) {
			snprintf(err, sizeof(err), "pipe: %s", strerror(errno));
			goto out;
		}
		pid_t pid = fork();
		if (pid < 0) {
			snprintf(err, sizeof(err), "fork: %s", strerror(errno));
			goto out;
		}
		if (pid > 0) {
			close(notify[1]);
			notify[1] = -1;
			char msg[1024];
			ssize_t n = read(notify[0], msg, sizeof(msg) - 1);
			msg[n > 0 ? n : 0] = 0;
			if (n > 0 && !strncmp(msg, "ok", 2)) {
				printf("%s\n", id);
				status = 0;
			} else {
				snprintf(err, sizeof(err), "%s", n > 0 ? msg : "the sandbox supervisor died while starting");
				int ws;
				waitpid(pid, &ws, 0);
			}
			made_dir = false; /* the supervisor owns it now */
			goto out;
		}
		detached_child = true;
		close(notify[0]);
		notify[0] = -1;
		setsid();
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
			close(null);
		}
		log_set_quiet(1);
	}

	/* Opened only now: an SQLite connection must never cross a fork. */
	if (state_open(&st, err, sizeof(err)) < 0)
		goto out;

	/* Signals arrive through the loop from now on: Ctrl-C during boot aborts it cleanly. */
	signal(SIGPIPE, SIG_IGN);
	sigfd = cli_signalfd();
	if (sigfd < 0 || loop_init(&loop) < 0) {
		snprintf(err, sizeof(err), "setting up: %s", strerror(errno));
		goto out;
	}
	watch_init(&sig_w, sigfd, on_boot_signal, NULL);
	loop_watch(&loop, &sig_w, EPOLLIN);

	struct sandbox_config sc = {
		.cpus = o.cpus,
		.cpu_milli = o.cpu_milli,
		.memory_mb = o.memory_mb,
		.hostname = o.hostname,
		.policy = o.policy,
		.secrets = o.secrets,
		.upstream_ca = o.upstream_ca,
	};
	launch_config(&L, &sc);
	if (o.policy->no_network && (o.policy->nrules || o.policy->npins))
		warn("--no-network: --allow-host and --add-host are ignored");
	struct sb_record rec = { .status = ST_CREATING, .created = time(NULL), .pid = getpid(),
				 .pid_start = proc_start_time(getpid()) };
	snprintf(rec.id, sizeof(rec.id), "%s", id);
	snprintf(rec.image, sizeof(rec.image), "%s", o.rootfs ? o.rootfs : o.image ? o.image : OCI_DEFAULT_IMAGE);
	rec.config = config_json(&o, &sc, cmd);
	r = state_insert(st, &rec);
	free(rec.config);
	if (r < 0) {
		snprintf(err, sizeof(err), "cannot record the sandbox: %s", strerror(-r));
		goto out;
	}
	have_record = true;

	sb = launch_boot(&L, &sc, &loop, &boot_interrupted, err, sizeof(err));
	if (!sb) {
		if (errno == EINTR) {
			status = 128 + boot_interrupted;
			snprintf(err, sizeof(err), "interrupted while booting");
		}
		state_set_status(st, id, ST_FAILED, err);
		goto out;
	}
	loop_unwatch(&loop, &sig_w);
	if (supervisor_start(&sup, &loop, sb, sbdir, o.detach ? o.timeout_s : 0, err, sizeof(err)) < 0) {
		snprintf(failure, sizeof(failure), "%s", err);
		goto stop;
	}
	for (size_t i = 0; i < o.npublish; i++) {
		uint16_t bound;
		if (portfwd_add(&sup.pf, o.address, o.publish[i][0], o.publish[i][1], &bound, err,
				sizeof(err)) < 0) {
			snprintf(failure, sizeof(failure), "%s", err);
			goto stop;
		}
	}
	state_set_status(st, id, ST_RUNNING, NULL);

	if (o.tty && getenv("TERM")) {
		char term[300];
		snprintf(term, sizeof(term), "TERM=%s", getenv("TERM"));
		bool have = false;
		for (size_t i = 0; i < o.file_env.n; i++)
			have |= !strncmp(o.file_env.v[i], "TERM=", 5);
		if (!have)
			env_set(&o.file_env, term); /* past a bound, the command runs without TERM */
	}
	struct exec_request req = {
		.argv = cmd,
		.env = env_vector(&o.file_env),
		.cwd = o.workdir,
		.user = o.user,
		.stdin_on = o.interactive,
		.tty = o.tty,
		.timeout_s = o.detach ? 0 : o.timeout_s,
	};
	if (o.detach) {
		(void)!write(notify[1], "ok", 2);
		close(notify[1]);
		notify[1] = -1;
		if (cmd[0]) {
			/*
			 * The command runs in the background; its output goes to the sandbox log
			 * through a pipe we read, so it passes the log's cap like the console.
			 */
			int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
			if (null < 0 || pipe2(bg_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
				warn("background command: %s", strerror(errno));
			} else {
				watch_init(&bg_w, bg_pipe[0], on_bg_output, &loop);
				loop_watch(&loop, &bg_w, EPOLLIN);
				if (!exec_stdio_start(sb, &loop, &req, null, bg_pipe[1], bg_pipe[1], NULL,
						      NULL, err, sizeof(err)))
					warn("background command: %s", err);
			}
			err[0] = 0;
			/* exec_stdio keeps using the fds until the process ends: they live as long as us. */
		}
		watch_init(&sig_w, sigfd, on_detached_signal, &sup);
		loop_watch(&loop, &sig_w, EPOLLIN);
		while (!sup.stop && !sandbox_failure(sb))
			loop_run_once(&loop, 0);
		loop_unwatch(&loop, &sig_w);
		status = 0;
	} else {
		r = exec_stdio_run(sb, &loop, &req, sigfd, &sup.stop, err, sizeof(err));
		status = r < 0 ? EXIT_MATCHLOCK : r;
	}
	t_exec_done = now_ns();
	if (sandbox_failure(sb)) {
		snprintf(failure, sizeof(failure), "%s", sandbox_failure(sb));
		if (!err[0])
			snprintf(err, sizeof(err), "%s", failure);
	}
stop:
	state_set_status(st, id, ST_STOPPING, NULL);
	sandbox_stop(sb, &times);
	sb = NULL;
	/* Record the end before answering whoever asked for it (kill waits for our answer). */
	state_set_status(st, id, failure[0] ? ST_FAILED : ST_STOPPED, failure[0] ? failure : NULL);
	supervisor_finish(&sup);
	if (getenv("MATCHLOCK_TIMING") && !o.detach)
		print_timing(&times, t0, t_exec_done, now_ns());
out:
	if (notify[1] >= 0 && *err)
		(void)!write(notify[1], err, strlen(err));
	if (made_dir && o.rm > 0) {
		rm_rf(L.dir);
		if (have_record && st)
			state_delete(st, L.id);
	}
	if (*err && !detached_child)
		error("%s", err);
	free(o.policy);
	secrets_clear(o.secrets);
	free(o.secrets);
	if (bg_pipe[0] >= 0)
		loop_unwatch(&loop, &bg_w);
	if (loop.epfd >= 0)
		loop_fini(&loop);
	for (int i = 0; i < 2; i++)
		if (bg_pipe[i] >= 0)
			close(bg_pipe[i]);
	if (sigfd >= 0)
		close(sigfd);
	state_close(st);
	env_fini(&o.env);
	env_fini(&o.file_env);
	free(image_argv);
	oci_config_fini(&image_cfg);
	return status;
}
