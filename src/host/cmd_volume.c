/* SPDX-License-Identifier: MIT */
/* matchlock volume create NAME [--size MB] [--json] | ls [--json] | rm NAME: named volumes
 * (disk.h). --json prints what the Go Matchlock's SDKs parse: {name, size, path} per volume. */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/log.h"
#include "disk.h"

static const char volume_usage[] =
    "usage: matchlock volume create NAME [--size MB] [--json]\n"
    "       matchlock volume ls [--json]\n"
    "       matchlock volume rm NAME\n"
    "\n"
    "A volume is an ext4 disk (a sparse file in the cache directory) whose contents outlive\n"
    "sandboxes: attach it with 'matchlock run -v @NAME:/path[:ro|rw]' (default rw). While a\n"
    "sandbox uses it, it cannot be removed, and only one sandbox at a time may write it.\n"
    "--size: 64 to 1048576 MB (default 1024); only what is written takes host space.\n"
    "--json: {name, size, size_mb, path} (create) or an array of them (ls).\n";

static int volume_print(const char *name, long long size_mb, bool in_use, void *opaque)
{
	(void)opaque;
	printf("%-32s %10lld MB  %s\n", name, size_mb, in_use ? "in use" : "-");
	return 0;
}

/* One volume as {name, size ("N.0 MB"), size_mb, path}; NULL: ENOMEM or no path. */
static json_t *volume_json(const char *name, long long size_mb)
{
	char path[4096];
	if (volume_path(name, path, sizeof(path)) < 0)
		return NULL;
	char size[64];
	snprintf(size, sizeof(size), "%lld.0 MB", size_mb);
	return json_pack("{s:s, s:s, s:I, s:s}", "name", name, "size", size, "size_mb",
			 (json_int_t)size_mb, "path", path);
}

static int volume_json_add(const char *name, long long size_mb, bool in_use, void *opaque)
{
	(void)in_use;
	json_t *v = volume_json(name, size_mb);
	return v && !json_array_append_new(opaque, v) ? 0 : -ENOMEM;
}

/* Print j (consumed) as one line of JSON; EXIT_MATCHLOCK if it could not be made. */
static int print_json(json_t *j, const char *what)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!s) {
		error("%s: out of memory", what);
		return EXIT_MATCHLOCK;
	}
	printf("%s\n", s);
	free(s);
	return 0;
}

int cmd_volume(int argc, char **argv)
{
	char err[1024] = "";
	bool as_json = argc > 2 && !strcmp(argv[argc - 1], "--json");
	if (as_json)
		argc--;
	const char *sub = argc > 1 ? argv[1] : "";
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
		fputs(volume_usage, stdout);
		return 0;
	}
	if ((!strcmp(sub, "ls") || !strcmp(sub, "list")) && argc == 2 && as_json) {
		json_t *all = json_array();
		int r = all ? volume_list(volume_json_add, all) : -ENOMEM;
		if (r < 0) {
			json_decref(all);
			error("volume ls: %s", strerror(-r));
			return EXIT_MATCHLOCK;
		}
		return print_json(all, "volume ls");
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
		if (as_json)
			return print_json(volume_json(argv[2], (long long)mb), "volume create");
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
	error("usage: matchlock volume create NAME [--size MB] [--json] | ls [--json] | rm NAME");
	return EXIT_MATCHLOCK;
}
