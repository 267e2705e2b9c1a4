/* SPDX-License-Identifier: MIT */
/*
 * matchlock run: prepare the root disk, boot a sandbox, run one command with our stdio attached,
 * stop the sandbox, and exit with the command's status. Our own failures exit 125 with one line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "accel.h"
#include "cli.h"
#include "common/log.h"
#include "common/util.h"
#include "paths.h"
#include "rootfs.h"
#include "exec_stdio.h"
#include "loop.h"
#include "sandbox.h"

#define MAX_ENV 4096
#define STR_(x) #x
#define STR(x) STR_(x)

static const char run_usage[] =
	"usage: matchlock run [FLAGS] [--] COMMAND [ARG...]\n"
	"\n"
	"Create a sandbox, run COMMAND in it, remove it. Exit status is the command's\n"
	"(128+N for signal N, 124 on --timeout); matchlock's own errors exit 125.\n"
	"\n"
	"  --rootfs PATH          root filesystem: a directory or a tarball\n"
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
	"      --rm[=BOOL]        remove the sandbox when the command ends (default true)\n"
	"\n"
	"Network (default: nothing is reachable; DNS answers NXDOMAIN, connects are refused):\n"
	"      --allow-host GLOB[,GLOB...]  allow host names: api.x.com, *.x.com (subdomains), *\n"
	"      --add-host NAME:IP  connect to IP for NAME (exempt from the private-address block)\n"
	"      --allow-private-ips  let allowed names resolve to private/loopback addresses\n"
	"      --no-network       no DNS and no egress at all (loopback only)\n";

struct run_opts {
	const char *rootfs;
	bool interactive, tty, rm;
	const char *workdir, *user, *hostname, *accel;
	unsigned cpus, memory_mb, timeout_s;
	char *env[MAX_ENV + 1];
	size_t nenv;
	char *file_env[MAX_ENV + 1];
	size_t nfile_env;
	struct policy *policy;
};

/* Add KEY=VALUE (or KEY, looked up in our environment) to v, replacing an earlier KEY. */
static int env_add(char **v, size_t *n, const char *spec)
{
	const char *eq = strchr(spec, '=');
	size_t klen = eq ? (size_t)(eq - spec) : strlen(spec);
	if (klen == 0)
		return -EINVAL;
	char *entry;
	if (eq) {
		entry = strdup(spec);
	} else {
		char key[256];
		if (klen >= sizeof(key))
			return -EINVAL;
		memcpy(key, spec, klen);
		key[klen] = 0;
		const char *val = getenv(key);
		if (!val)
			return 0; /* like Docker: an unset KEY is left out */
		if (asprintf(&entry, "%s=%s", key, val) < 0)
			entry = NULL;
	}
	if (!entry)
		return -ENOMEM;
	for (size_t i = 0; i < *n; i++) {
		if (!strncmp(v[i], entry, klen + 1)) {
			free(v[i]);
			v[i] = entry;
			return 0;
		}
	}
	if (*n >= MAX_ENV) {
		free(entry);
		return -E2BIG;
	}
	v[(*n)++] = entry;
	v[*n] = NULL;
	return 0;
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
		if ((r = env_add(o->file_env, &o->nfile_env, p)) < 0) {
			snprintf(err, errn, "--env-file %s:%d: invalid entry", path, lineno);
			break;
		}
	}
	free(line);
	fclose(f);
	return r;
}

static void env_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
}

/* Flags that belong to parts of the CLI contract not built yet: refuse them clearly. */
static const char *const not_yet[] = { "image",	      "detach",	     "entrypoint", "secret",
				       "secret-file", "upstream-ca", "publish",	   "address",
				       "volume",      "disk-size" };

enum { OPT_ROOTFS = 256, OPT_ENV_FILE, OPT_HOSTNAME, OPT_CPUS, OPT_MEMORY, OPT_TIMEOUT, OPT_ACCEL,
       OPT_RM, OPT_ALLOW_HOST, OPT_NO_NETWORK, OPT_ALLOW_PRIVATE, OPT_ADD_HOST, OPT_NOT_YET };

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
		{ "image", required_argument, NULL, OPT_NOT_YET },
		{ "detach", no_argument, NULL, OPT_NOT_YET },
		{ "entrypoint", required_argument, NULL, OPT_NOT_YET },
		{ "allow-host", required_argument, NULL, OPT_ALLOW_HOST },
		{ "no-network", no_argument, NULL, OPT_NO_NETWORK },
		{ "allow-private-ips", no_argument, NULL, OPT_ALLOW_PRIVATE },
		{ "add-host", required_argument, NULL, OPT_ADD_HOST },
		{ "secret", required_argument, NULL, OPT_NOT_YET },
		{ "secret-file", required_argument, NULL, OPT_NOT_YET },
		{ "upstream-ca", required_argument, NULL, OPT_NOT_YET },
		{ "publish", required_argument, NULL, OPT_NOT_YET },
		{ "address", required_argument, NULL, OPT_NOT_YET },
		{ "volume", required_argument, NULL, OPT_NOT_YET },
		{ "disk-size", required_argument, NULL, OPT_NOT_YET },
		{ 0 },
	};
	char *env_files[64];
	size_t nenv_files = 0;
	unsigned long v;
	int c, idx;
	(void)not_yet;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+itw:u:e:dp:v:h", longopts, &idx)) != -1) {
		switch (c) {
		case OPT_ROOTFS:
			o->rootfs = optarg;
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
			if (env_add(o->env, &o->nenv, optarg) < 0) {
				snprintf(err, errn, "-e %s: expected KEY=VALUE or KEY", optarg);
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
		case OPT_RM:
			if (optarg && cli_parse_bool(optarg, &o->rm) < 0) {
				snprintf(err, errn, "--rm=%s: expected true or false", optarg);
				return -EINVAL;
			}
			if (!optarg)
				o->rm = true;
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
		case 'h':
			fputs(run_usage, stdout);
			return 1;
		case OPT_NOT_YET:
			snprintf(err, errn, "--%s is not supported by this version yet", longopts[idx].name);
			return -ENOTSUP;
		case 'd':
		case 'p':
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
	for (size_t i = 0; i < o->nenv; i++)
		env_add(o->file_env, &o->nfile_env, o->env[i]);
	*cmd = argv + optind;
	return 0;
}

static void print_timing(const struct sandbox_times *t, uint64_t t0, uint64_t exec_done, uint64_t end)
{
	double ms = 1e-6;
	double to_hello = (double)(t->hello - t0) * ms;
	double guest_hello = (double)t->guest_hello * ms;
	fprintf(stderr,
		"timing: total_ms=%.1f prepare_ms=%.1f vmm_ms=%.1f kernel_ms=%.1f agent_ms=%.1f "
		"ready_ms=%.1f exec_ms=%.1f stop_ms=%.1f\n",
		(double)(end - t0) * ms, (double)(t->spawn - t0) * ms,
		to_hello - guest_hello - (double)(t->spawn - t0) * ms, (double)t->guest_agent_start * ms,
		(double)(t->guest_hello - t->guest_agent_start) * ms, (double)(t->ready - t->hello) * ms,
		(double)(exec_done - t->ready) * ms, (double)(t->stopped - exec_done) * ms);
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

int cmd_run(int argc, char **argv)
{
	struct run_opts o = { .rm = true, .cpus = 1, .memory_mb = 512, .accel = "auto" };
	char err[1024] = "", disk[4200], kernel[4200], initrd[4200], state[4096], sbdir[4200];
	char **cmd = NULL;
	char id[12];
	int status = EXIT_MATCHLOCK, sigfd = -1;
	struct sandbox *sb = NULL;
	struct loop loop = { .epfd = -1 };
	struct watch sig_w;
	bool made_dir = false;
	uint64_t t0 = now_ns();

	o.policy = calloc(1, sizeof(*o.policy));
	if (!o.policy) {
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
	if (!cmd[0]) {
		snprintf(err, sizeof(err), "no command given (matchlock run [FLAGS] -- COMMAND [ARG...])");
		goto out;
	}
	if (!o.rootfs) {
		snprintf(err, sizeof(err), "no root filesystem: pass --rootfs DIR|TARBALL "
					   "(OCI images are not supported by this version yet)");
		goto out;
	}
	if (o.tty && !isatty(STDOUT_FILENO))
		warn("-t: stdout is not a terminal");

	enum accel accel;
	char why[300];
	if (accel_choose(o.accel, &accel, why, sizeof(why)) < 0) {
		snprintf(err, sizeof(err), "%s", why);
		goto out;
	}
	debug("accelerator: %s", why);
	if (paths_find_guest_file("MATCHLOCK_KERNEL", "vmlinux", kernel, sizeof(kernel)) < 0 ||
	    paths_find_guest_file("MATCHLOCK_INITRAMFS", "initramfs.cpio", initrd, sizeof(initrd)) < 0) {
		snprintf(err, sizeof(err), "guest kernel or initramfs not found next to the binary "
					   "(run 'make', or set MATCHLOCK_KERNEL / MATCHLOCK_INITRAMFS)");
		goto out;
	}
	if (rootfs_prepare(o.rootfs, disk, sizeof(disk), err, sizeof(err)) < 0)
		goto out;

	cli_new_id(id);
	if (paths_state_dir(state, sizeof(state)) < 0 ||
	    snprintf(sbdir, sizeof(sbdir), "%s/sandboxes/%s", state, id) >= (int)sizeof(sbdir)) {
		snprintf(err, sizeof(err), "state directory path too long");
		goto out;
	}
	if ((r = mkdir_p(sbdir, 0700)) < 0) {
		snprintf(err, sizeof(err), "cannot create %s: %s", sbdir, strerror(-r));
		goto out;
	}
	made_dir = true;

	const char *bt = getenv("MATCHLOCK_BOOT_TIMEOUT");
	unsigned long boot_timeout = accel == ACCEL_KVM ? 10 : 30;
	if (bt && cli_parse_uint(bt, 1, 3600, &boot_timeout) < 0) {
		snprintf(err, sizeof(err), "MATCHLOCK_BOOT_TIMEOUT=%s: expected seconds", bt);
		goto out;
	}

	/* Signals arrive through the loop from now on: Ctrl-C during boot aborts it cleanly. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGWINCH);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0 || loop_init(&loop) < 0) {
		snprintf(err, sizeof(err), "setting up: %s", strerror(errno));
		goto out;
	}
	watch_init(&sig_w, sigfd, on_boot_signal, NULL);
	loop_watch(&loop, &sig_w, EPOLLIN);

	struct sandbox_config sc = {
		.id = id,
		.state_dir = sbdir,
		.kernel = kernel,
		.initrd = initrd,
		.disk = disk,
		.accel = accel,
		.cpus = o.cpus,
		.memory_mb = o.memory_mb,
		.hostname = o.hostname,
		.boot_timeout_ms = (unsigned)boot_timeout * 1000,
		.policy = o.policy,
	};
	if (o.policy->no_network && (o.policy->nrules || o.policy->npins))
		warn("--no-network: --allow-host and --add-host are ignored");
	sb = sandbox_boot(&sc, &loop, &boot_interrupted, err, sizeof(err));
	if (!sb && errno == ETIMEDOUT && accel == ACCEL_KVM && !strcmp(o.accel, "auto")) {
		/*
		 * Some hypervisors offer a /dev/kvm that looks usable but silently hangs a normal
		 * guest kernel. "auto" must never hang: fall back to TCG once, and say so.
		 */
		warn("KVM did not boot the guest within %lu s; retrying with TCG (--accel tcg skips "
		     "this)", boot_timeout);
		sc.accel = ACCEL_TCG;
		sc.boot_timeout_ms = 30000;
		err[0] = 0;
		sb = sandbox_boot(&sc, &loop, &boot_interrupted, err, sizeof(err));
	}
	if (!sb) {
		if (errno == EINTR) {
			status = 128 + boot_interrupted;
			err[0] = 0;
		}
		goto out;
	}
	loop_unwatch(&loop, &sig_w);

	if (o.tty && getenv("TERM")) {
		char term[300];
		snprintf(term, sizeof(term), "TERM=%s", getenv("TERM"));
		bool have = false;
		for (size_t i = 0; i < o.nfile_env; i++)
			have |= !strncmp(o.file_env[i], "TERM=", 5);
		if (!have)
			env_add(o.file_env, &o.nfile_env, term);
	}
	struct exec_request req = {
		.argv = cmd,
		.env = o.file_env,
		.cwd = o.workdir,
		.user = o.user,
		.stdin_on = o.interactive,
		.tty = o.tty,
		.timeout_s = o.timeout_s,
	};
	r = exec_stdio_run(sb, &loop, &req, STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, sigfd, err,
			   sizeof(err));
	status = r < 0 ? EXIT_MATCHLOCK : r;
	uint64_t t_exec_done = now_ns();
	struct sandbox_times times;
	sandbox_stop(sb, &times);
	sb = NULL;
	if (getenv("MATCHLOCK_TIMING"))
		print_timing(&times, t0, t_exec_done, now_ns());
out:
	if (made_dir && o.rm)
		rm_rf(sbdir);
	if (*err)
		error("%s", err);
	free(o.policy);
	if (loop.epfd >= 0)
		loop_fini(&loop);
	if (sigfd >= 0)
		close(sigfd);
	env_free(o.env, o.nenv);
	env_free(o.file_env, o.nfile_env);
	return status;
}
