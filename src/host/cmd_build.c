/* SPDX-License-Identifier: MIT */
/*
 * matchlock build -t TAG [-f FILE] DIR: build a Dockerfile whose RUN steps execute in micro-VMs
 * (Buildah with matchlock as its OCI runtime: `buildah bud --runtime matchlock`), and land the
 * result in matchlock's image store under TAG, ready for `matchlock run --image TAG`. RUN steps
 * have no network (the sealed default); Buildah's own image (localhost/matchlock-build-*) is
 * removed afterwards.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "common/log.h"
#include "common/util.h"
#include "oci/oci.h"

static const char build_usage[] =
    "usage: matchlock build -t TAG [-f DOCKERFILE] DIR\n"
    "\n"
    "Build DIR's Dockerfile with Buildah, every RUN step in a micro-VM (no network), and store\n"
    "the image in matchlock's store as TAG (matchlock run --image TAG).\n";

/* Run argv (a child, our stdio); its exit status, or -errno. */
static int run_wait(char *const argv[])
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execvp(argv[0], argv);
		fprintf(stderr, "matchlock: build: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int cmd_build(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tag", required_argument, NULL, 't' },
		{ "file", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *tag = NULL, *file = NULL;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+t:f:h", opts, NULL)) != -1) {
		if (c == 't')
			tag = optarg;
		else if (c == 'f')
			file = optarg;
		else if (c == 'h') {
			fputs(build_usage, stdout);
			return 0;
		} else {
			fputs(build_usage, stderr);
			return EXIT_MATCHLOCK;
		}
	}
	if (!tag || optind + 1 != argc) {
		fputs(build_usage, stderr);
		return EXIT_MATCHLOCK;
	}
	char self[PATH_MAX], work[64], archive[PATH_MAX], digest[72], err[1024];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		error("build: cannot find the matchlock binary: %s", strerror(errno));
		return EXIT_MATCHLOCK;
	}
	self[n] = 0;
	cli_new_id(work);
	char img[128];
	snprintf(img, sizeof(img), "localhost/matchlock-build-%s:latest", work + 3);
	char *bud[] = { "buildah",
			"bud",
			"--runtime",
			self,
			"--isolation",
			"oci",
			"--network",
			"none",
			"-t",
			img,
			"-f",
			(char *)(file ? file : ""),
			(char *)argv[optind],
			NULL };
	if (!file) { /* Buildah's default Dockerfile/Containerfile lookup */
		bud[10] = (char *)argv[optind];
		bud[11] = NULL;
	}
	int r = run_wait(bud);
	if (r != 0) {
		if (r == 127 || r == -ENOENT)
			error("build: needs buildah (apt-get install buildah)");
		else
			error("build: buildah bud failed (status %d)", r);
		return EXIT_MATCHLOCK;
	}
	snprintf(archive, sizeof(archive), "%s/matchlock-build-%s.tar",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", work + 3);
	char dest[PATH_MAX + 160];
	snprintf(dest, sizeof(dest), "docker-archive:%s:%s", archive, img);
	char *push[] = { "buildah", "push", "--quiet", img, dest, NULL };
	char *rmi[] = { "buildah", "rmi", "--force", img, NULL };
	int status = EXIT_MATCHLOCK;
	if ((r = run_wait(push)) != 0) {
		error("build: buildah push to %s failed (status %d)", archive, r);
		goto out;
	}
	int fd = open(archive, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		error("build: %s: %s", archive, strerror(errno));
		goto out;
	}
	r = oci_image_import(tag, fd, digest, err, sizeof(err));
	close(fd);
	if (r < 0) {
		error("build: %s", err);
		goto out;
	}
	printf("%s %s\n", tag, digest);
	status = 0;
out:
	unlink(archive);
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null >= 0) {
		int saved = dup(STDOUT_FILENO);
		dup2(null, STDOUT_FILENO);
		run_wait(rmi);
		dup2(saved, STDOUT_FILENO);
		close(saved);
		close(null);
	}
	return status;
}
