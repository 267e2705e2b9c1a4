/* SPDX-License-Identifier: MIT */
/* matchlock pull REF, matchlock image ls|rm REF|gc|import TAG < tar: thin wrappers over src/oci. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "arch.h"
#include "cli.h"
#include "snapshot.h"
#include "common/log.h"
#include "oci/oci.h"

static const char pull_usage[] =
    "usage: matchlock pull [--platform linux/amd64|linux/arm64] [--insecure-registry HOST[:PORT]]\n"
    "                      REF\n"
    "\n"
    "Download an image into the local store: of a multi-arch index, the variant for --platform\n"
    "(default: the host's); a tag holds one platform's image, the last one pulled.\n"
    "Plain HTTP is used only for localhost/127.0.0.1 and registries named with\n"
    "--insecure-registry (or $MATCHLOCK_INSECURE_REGISTRY, comma-separated).\n";

static const char image_usage[] =
    "usage: matchlock image ls\n"
    "       matchlock image rm REF|sha256:DIGEST\n"
    "       matchlock image gc\n"
    "       matchlock image import TAG < docker-save-or-oci-layout.tar\n";

int cmd_pull(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "insecure-registry", required_argument, NULL, 'k' },
		{ "platform", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *insecure = NULL;
	enum guest_arch arch = arch_host();
	const char *platform = getenv("MATCHLOCK_PLATFORM");
	char err[1024] = "", digest[72];
	if (platform && *platform && arch_parse(platform, &arch, err, sizeof(err)) < 0) {
		error("MATCHLOCK_PLATFORM: %s", err);
		return EXIT_MATCHLOCK;
	}
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		if (c == 'h') {
			fputs(pull_usage, stdout);
			return 0;
		}
		if (c == 'k') {
			insecure = optarg;
			continue;
		}
		if (c == 'p') {
			if (arch_parse(optarg, &arch, err, sizeof(err)) < 0) {
				error("--platform %s", err);
				return EXIT_MATCHLOCK;
			}
			continue;
		}
		error("%s: unknown flag or missing value (see 'matchlock pull --help')",
		      argv[optind - 1]);
		return EXIT_MATCHLOCK;
	}
	if (optind != argc - 1) {
		error("pull takes exactly one image reference (see 'matchlock pull --help')");
		return EXIT_MATCHLOCK;
	}
	if (oci_pull(argv[optind], insecure, arch_table[arch].oci, digest, err, sizeof(err)) < 0) {
		error("pull %s: %s", argv[optind], err);
		return EXIT_MATCHLOCK;
	}
	printf("%s %s\n", argv[optind], digest);
	return 0;
}

int cmd_image(int argc, char **argv)
{
	char err[1024] = "", digest[72];
	uint64_t freed = 0;
	unsigned n = 0;
	const char *sub = argc > 1 ? argv[1] : "";
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
		fputs(image_usage, stdout);
		return 0;
	}
	if ((!strcmp(sub, "ls") || !strcmp(sub, "list")) && argc == 2) {
		if (oci_image_list(stdout, err, sizeof(err)) < 0)
			goto fail;
		return 0;
	}
	if (!strcmp(sub, "gc") && argc == 2) {
		if (oci_image_gc(&freed, &n, err, sizeof(err)) < 0)
			goto fail;
		printf("removed %u blobs, freed %.1f MB, %d snapshot(s)\n", n, (double)freed / 1e6,
		       snapshot_gc());
		return 0;
	}
	if (!strcmp(sub, "rm") && argc == 3) {
		if (oci_image_rm(argv[2], &freed, &n, err, sizeof(err)) < 0)
			goto fail;
		/* Snapshots of an image's disk go with the disk. */
		int snaps = snapshot_gc();
		printf("untagged %s; removed %u blobs, freed %.1f MB%s\n", argv[2], n,
		       (double)freed / 1e6, snaps ? ", and its snapshot" : "");
		return 0;
	}
	if (!strcmp(sub, "import") && argc == 3) {
		if (isatty(STDIN_FILENO)) {
			snprintf(err, sizeof(err),
				 "import reads the archive from stdin: matchlock image "
				 "import TAG < image.tar");
			goto fail;
		}
		if (oci_image_import(argv[2], STDIN_FILENO, digest, err, sizeof(err)) < 0)
			goto fail;
		printf("%s %s\n", argv[2], digest);
		return 0;
	}
	error("usage: matchlock image ls | rm REF | gc | import TAG < tar");
	return EXIT_MATCHLOCK;
fail:
	error("image %s: %s", sub, err);
	return EXIT_MATCHLOCK;
}
