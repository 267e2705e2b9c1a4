/* SPDX-License-Identifier: MIT */
/* matchlock pool set|ls|rm: pre-started sandboxes (pool.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/log.h"
#include "pool.h"
#include "session.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char pool_usage[] =
    "usage: matchlock pool set --image REF [--cpus N] [--memory MB] [--disk-size MB]\n"
    "                          [--accel auto|kvm|tcg] --size N\n"
    "       matchlock pool ls\n"
    "       matchlock pool rm POOL|--image REF|--all\n"
    "\n"
    "A pool keeps N sandboxes of one shape started and waiting, so that 'run', 'run -d' and\n"
    "'rpc create' of that shape (same image, cpus, memory, disk size and accelerator, no -v)\n"
    "take one instead of starting a VM: each claim gets its own identity (host name, clock,\n"
    "entropy, network, CA, secrets, environment) and starts a replacement in the background.\n"
    "There is no daemon: standbys are detached processes like 'run -d', shown by 'ls'.\n"
    "--size: 1 to " STR(POOL_MAX_SIZE) "; setting a pool again changes its size.\n"
				       "'run --no-pool' never takes a standby.\n";

enum { OPT_IMAGE = 256, OPT_CPUS, OPT_MEMORY, OPT_DISK, OPT_ACCEL, OPT_SIZE, OPT_ALL };

static int pool_set_cmd(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "image", required_argument, NULL, OPT_IMAGE },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "disk-size", required_argument, NULL, OPT_DISK },
		{ "accel", required_argument, NULL, OPT_ACCEL },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ 0 },
	};
	struct pool_conf c = { .cpus = 1, .memory_mb = 512 };
	char err[1024] = "", key[POOL_KEY_LEN + 1];
	bool have_size = false;
	unsigned long v;
	char *end;
	int o;
	opterr = 0;
	optind = 1;
	while ((o = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (o) {
		case OPT_IMAGE:
			snprintf(c.image, sizeof(c.image), "%s", optarg);
			break;
		case OPT_CPUS:
			c.cpus = strtod(optarg, &end);
			if (end == optarg || *end) {
				error("pool set: --cpus %s: expected a number", optarg);
				return EXIT_MATCHLOCK;
			}
			break;
		case OPT_MEMORY:
		case OPT_DISK:
			if (cli_parse_uint(optarg, 0, LLONG_MAX, &v) < 0) {
				error("pool set: %s %s: expected a whole number",
				      o == OPT_MEMORY ? "--memory" : "--disk-size", optarg);
				return EXIT_MATCHLOCK;
			}
			*(o == OPT_MEMORY ? &c.memory_mb : &c.disk_size_mb) = (long long)v;
			break;
		case OPT_ACCEL:
			snprintf(c.accel, sizeof(c.accel), "%.7s", optarg);
			break;
		case OPT_SIZE:
			if (cli_parse_uint(optarg, 1, POOL_MAX_SIZE, &v) < 0) {
				error("pool set: size %s: expected 1 to %d standbys (--size)",
				      optarg, POOL_MAX_SIZE);
				return EXIT_MATCHLOCK;
			}
			c.size = (unsigned)v;
			have_size = true;
			break;
		default:
			error("pool set: %s: unknown flag or missing value (see 'matchlock pool "
			      "--help')",
			      argv[optind - 1]);
			return EXIT_MATCHLOCK;
		}
	}
	if (optind < argc || !c.image[0] || !have_size) {
		error("pool set: expected --image REF and --size N (see 'matchlock pool --help')");
		return EXIT_MATCHLOCK;
	}
	if (pool_set(&c, key, err, sizeof(err)) < 0) {
		error("pool set: %s", err);
		return EXIT_MATCHLOCK;
	}
	printf("%s\n", key);
	return 0;
}

static int pool_ls_cmd(void)
{
	char keys[POOL_MAX_POOLS][POOL_KEY_LEN + 1], err[300];
	struct state *st;
	if (state_open(&st, err, sizeof(err)) < 0) {
		error("pool ls: %s", err);
		return EXIT_MATCHLOCK;
	}
	int n = pool_keys(keys, POOL_MAX_POOLS);
	printf("%-12s %-32s %5s %8s %5s %6s %9s\n", "POOL", "IMAGE", "CPUS", "MEMORY", "SIZE",
	       "READY", "STARTING");
	for (int i = 0; i < n; i++) {
		struct pool_conf c;
		unsigned ready, starting;
		if (pool_conf_read(keys[i], &c) < 0)
			continue;
		pool_count(st, keys[i], &ready, &starting);
		char img[2100];
		log_sanitize(img, sizeof(img), c.image);
		printf("%-12.12s %-32s %5g %5lld MB %5u %6u %9u\n", keys[i], img, c.cpus,
		       c.memory_mb, c.size, ready, starting);
		char why[300], safe[1200];
		if (pool_last_error(keys[i], why, sizeof(why)) == 0) {
			log_sanitize(safe, sizeof(safe),
				     why); /* it may quote a guest or an image */
			printf("%12s last start failed: %s\n", "", safe);
		}
	}
	state_close(st);
	return 0;
}

/* Does pool key match `pool rm ARG` (--all, --image REF, or a key's first digits)? */
static bool rm_match(const char *key, bool by_image, const char *arg)
{
	struct pool_conf c;
	if (by_image)
		return pool_conf_read(key, &c) == 0 && !strcmp(c.image, arg);
	if (!strcmp(arg, "--all"))
		return true;
	return strlen(arg) >= 4 && !strncmp(key, arg, strlen(arg));
}

static int pool_rm_cmd(int argc, char **argv)
{
	char keys[POOL_MAX_POOLS][POOL_KEY_LEN + 1], err[1024] = "";
	struct state *st;
	if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[2], "--image")) ||
	    (argc == 3 && !strcmp(argv[2], "--image"))) {
		error("usage: matchlock pool rm POOL|--image REF|--all");
		return EXIT_MATCHLOCK;
	}
	if (state_open(&st, err, sizeof(err)) < 0) {
		error("pool rm: %s", err);
		return EXIT_MATCHLOCK;
	}
	int n = pool_keys(keys, POOL_MAX_POOLS), removed = 0, matched = 0, status = 0;
	const char *arg = argv[argc - 1];
	bool by_image = argc == 4;
	for (int i = 0; i < n; i++)
		matched += rm_match(keys[i], by_image, arg);
	if (!by_image && strcmp(arg, "--all") && matched > 1) {
		error("pool rm: %s: more than one pool starts so (give more digits)", arg);
		status = EXIT_MATCHLOCK;
	}
	for (int i = 0; !status && i < n; i++) {
		if (!rm_match(keys[i], by_image, arg))
			continue;
		if (pool_remove(st, keys[i], err, sizeof(err)) < 0) {
			error("pool rm: %s", err);
			status = EXIT_MATCHLOCK;
			continue;
		}
		printf("%s\n", keys[i]);
		removed++;
	}
	state_close(st);
	if (!status && !removed && strcmp(arg, "--all")) {
		error("pool rm: %.64s: no such pool (see 'matchlock pool ls')", arg);
		status = EXIT_MATCHLOCK;
	}
	return status;
}

int cmd_pool(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
		fputs(pool_usage, stdout);
		return 0;
	}
	if (!strcmp(sub, "set"))
		return pool_set_cmd(argc - 1, argv + 1);
	if ((!strcmp(sub, "ls") || !strcmp(sub, "list")) && argc == 2)
		return pool_ls_cmd();
	if (!strcmp(sub, "rm"))
		return pool_rm_cmd(argc, argv);
	/* Ours, not the user's: a standby's life, and QEMU's holder after a handoff (pool.h). */
	if (!strcmp(sub, "__standby") && argc == 5)
		return pool_standby_main(argv[2], argv[3], (pid_t)atoi(argv[4]));
	if (!strcmp(sub, "__hold") && argc == 4)
		return pool_hold_main(atoi(argv[2]), atoi(argv[3]));
	error("usage: matchlock pool set --image REF [...] --size N | ls | rm POOL|--image "
	      "REF|--all");
	return EXIT_MATCHLOCK;
}
