/* SPDX-License-Identifier: MIT */
/* matchlock: the CLI entry point. Dispatches to one function per verb. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <signal.h>

#include "cli.h"
#include "common/log.h"

#ifndef MATCHLOCK_VERSION
#define MATCHLOCK_VERSION "0.1.0-dev"
#endif

static const char usage[] =
    "usage: matchlock COMMAND [ARGS...]\n"
    "\n"
    "Run untrusted code in a disposable micro-VM with a closed network.\n"
    "\n"
    "Commands:\n"
    "  run        create a sandbox and run a command in it (-d: keep it running)\n"
    "  exec       run a command in a running sandbox\n"
    "  list, ls   list sandboxes (--running)\n"
    "  get        a sandbox's record as JSON; inspect: with history and paths\n"
    "  log        a sandbox's log (-f to follow)\n"
    "  kill       stop a sandbox (--all: every running one)\n"
    "  rm         remove a stopped sandbox (--stopped: all of them); prune: the same\n"
    "  gc         clean up after crashed sandboxes\n"
    "  allow-list add|delete ID HOSTS   change a running sandbox's allowed hosts\n"
    "  port-forward ID [LOCAL:]REMOTE   forward a host port into a running sandbox\n"
    "  cp         copy files between the host and a running sandbox (ID:PATH)\n"
    "  diff       list (--apply: keep) what a sandbox changed in its overlay mounts\n"
    "  rpc        serve one sandbox as JSON-RPC 2.0 on stdin/stdout (for the SDKs)\n"
    "  pull       download an image into the local store\n"
    "  build      build a Dockerfile with Buildah, RUN steps in micro-VMs, into the store\n"
    "  image      list, remove, import and collect images (ls|rm|import|gc)\n"
    "  volume     create, list and remove named volumes (create|ls|rm)\n"
    "  diagnose   check that this host can run sandboxes, and why (not)\n"
    "  oci        the OCI runtime (runc's command line) for Podman, containerd, Docker\n"
    "  version    print the version\n"
    "\n"
    "Run 'matchlock COMMAND --help' for a command's flags.\n";

int cli_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	if (!s || !*s || *s == '-')
		return -EINVAL;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int cli_parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes"))
		*out = true;
	else if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

int cli_signalfd(void)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGWINCH);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	return signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
}

void cli_new_id(char out[12])
{
	unsigned char r[4];
	if (getrandom(r, sizeof(r), 0) != sizeof(r)) {
		unsigned long x = (unsigned long)random();
		memcpy(r, &x, sizeof(r));
	}
	snprintf(out, 12, "vm-%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
}

int main(int argc, char **argv)
{
	log_init("matchlock");
	/* Secrets will live in this process: keep it out of core dumps and ptrace by others. */
	prctl(PR_SET_DUMPABLE, 0);

	if (argc < 2) {
		fputs(usage, stderr);
		return EXIT_MATCHLOCK;
	}
	const char *verb = argv[1];
	/* An engine calling us as its OCI runtime (runc's global flags and verbs). */
	if (cli_is_oci(argc - 1, argv + 1))
		return cmd_oci(argc, argv);
	if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(verb, "version") || !strcmp(verb, "--version")) {
		printf("matchlock %s\n", MATCHLOCK_VERSION);
		return 0;
	}
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} verbs[] = {
		{ "run", cmd_run },
		{ "exec", cmd_exec },
		{ "list", cmd_list },
		{ "ls", cmd_list },
		{ "get", cmd_get },
		{ "inspect", cmd_inspect },
		{ "kill", cmd_kill },
		{ "rm", cmd_rm },
		{ "prune", cmd_prune },
		{ "gc", cmd_gc },
		{ "log", cmd_log },
		{ "diagnose", cmd_diagnose },
		{ "rpc", cmd_rpc },
		{ "allow-list", cmd_allow_list },
		{ "port-forward", cmd_port_forward },
		{ "cp", cmd_cp },
		{ "diff", cmd_diff },
		{ "pull", cmd_pull },
		{ "image", cmd_image },
		{ "volume", cmd_volume },
		{ "pool", cmd_pool },
		{ "oci", cmd_oci },
		{ "build", cmd_build },
	};
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(verb, verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	error("'%s' is not a matchlock command (see 'matchlock --help')", verb);
	return EXIT_MATCHLOCK;
}
