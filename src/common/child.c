/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

char *const *child_env(void)
{
	static char path[sizeof("PATH=") + CHILD_PATH_MAX];
	static char lang[] = "LANG=C";
	static char *env[] = { path, lang, NULL };
	if (!path[0]) {
		const char *p = getenv("PATH");
		if (!p || !*p || strlen(p) > CHILD_PATH_MAX)
			p = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
		snprintf(path, sizeof(path), "PATH=%s", p);
	}
	return env;
}

int child_run(char *const argv[], bool with_stderr, char *out, size_t outn)
{
	return child_run_env(argv, NULL, with_stderr, out, outn);
}

int child_run_env(char *const argv[], const char *extra, bool with_stderr, char *out, size_t outn)
{
	char *const *base = child_env();
	char *env[4] = { base[0], base[1], (char *)extra, NULL };
	int pfd[2];
	if (outn == 0 || pipe2(pfd, O_CLOEXEC) < 0)
		return outn == 0 ? -EINVAL : -errno;
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(pfd[0]);
		close(pfd[1]);
		return -e;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || dup2(null, 0) < 0 || dup2(pfd[1], 1) < 0 ||
		    dup2(with_stderr ? pfd[1] : null, 2) < 0)
			_exit(127);
		execvpe(argv[0], argv, env);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	size_t len = 0;
	ssize_t k;
	char sink[512];
	/* Read to EOF so the child never blocks on a full pipe; keep only what fits. */
	while ((k = read(pfd[0], len < outn - 1 ? out + len : sink,
			 len < outn - 1 ? outn - 1 - len : sizeof(sink))) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break;
		if (len < outn - 1)
			len += (size_t)k;
	}
	out[len] = 0;
	close(pfd[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return status;
}

void child_wipe_env_value(const void *value, size_t n)
{
	if (n == 0)
		return;
	for (char **e = environ; e && *e; e++) {
		char *eq = strchr(*e, '=');
		if (eq && strlen(eq + 1) == n && !memcmp(eq + 1, value, n))
			explicit_bzero(eq + 1, n);
	}
}
