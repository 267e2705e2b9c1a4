/* SPDX-License-Identifier: MIT */
/* matchlock volume create NAME [--size MB] | ls | rm NAME: named volumes (disk.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "common/log.h"
#include "disk.h"

static const char volume_usage[] =
    "usage: matchlock volume create NAME [--size MB]\n"
    "       matchlock volume ls\n"
    "       matchlock volume rm NAME\n"
    "\n"
    "A volume is an ext4 disk (a sparse file in the cache directory) whose contents outlive\n"
    "sandboxes: attach it with 'matchlock run -v @NAME:/path[:ro|rw]' (default rw). While a\n"
    "sandbox uses it, it cannot be removed, and only one sandbox at a time may write it.\n"
    "--size: 64 to 1048576 MB (default 1024); only what is written takes host space.\n";

static int volume_print(const char *name, long long size_mb, bool in_use, void *opaque)
{
	(void)opaque;
	printf("%-32s %10lld MB  %s\n", name, size_mb, in_use ? "in use" : "-");
	return 0;
}

int cmd_volume(int argc, char **argv)
{
	char err[1024] = "";
	const char *sub = argc > 1 ? argv[1] : "";
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
		fputs(volume_usage, stdout);
		return 0;
	}
	if ((!strcmp(sub, "ls") || !strcmp(sub, "list")) && argc == 2) {
		printf("%-32s %13s  %s\n", "NAME", "SIZE", "USE");
		int r = volume_list(volume_print, NULL);
		if (r < 0) {
			error("volume ls: %s", strerror(-r));
			return EXIT_MATCHLOCK;
		}
		return 0;
	}
	if (!strcmp(sub, "create") && (argc == 3 || (argc == 5 && !strcmp(argv[3], "--size")))) {
		unsigned long mb = VOLUME_DEFAULT_MB;
		if (argc == 5 && cli_parse_uint(argv[4], DISK_MIN_MB, DISK_MAX_MB, &mb) < 0) {
			error("volume size %s: expected %d to %lld MB (--size)", argv[4],
			      DISK_MIN_MB, DISK_MAX_MB);
			return EXIT_MATCHLOCK;
		}
		if (volume_create(argv[2], (long long)mb, err, sizeof(err)) < 0) {
			error("volume create: %s", err);
			return EXIT_MATCHLOCK;
		}
		printf("%s\n", argv[2]);
		return 0;
	}
	if (!strcmp(sub, "rm") && argc == 3) {
		if (volume_remove(argv[2], err, sizeof(err)) < 0) {
			error("volume rm: %s", err);
			return EXIT_MATCHLOCK;
		}
		printf("%s\n", argv[2]);
		return 0;
	}
	error("usage: matchlock volume create NAME [--size MB] | ls | rm NAME");
	return EXIT_MATCHLOCK;
}
