/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "paths.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *home_dir(void)
{
	const char *h = getenv("HOME");
	if (h && *h)
		return h;
	struct passwd *pw = getpwuid(getuid());
	return pw ? pw->pw_dir : "/";
}

static int dir_from(char *out, size_t n, const char *sub, const char *xdg_var, const char *fallback)
{
	const char *mh = getenv("MATCHLOCK_HOME");
	const char *x = getenv(xdg_var);
	int k;
	if (mh && *mh)
		k = snprintf(out, n, "%s/%s", mh, sub);
	else if (x && *x == '/')
		k = snprintf(out, n, "%s/matchlock", x);
	else
		k = snprintf(out, n, "%s/%s/matchlock", home_dir(), fallback);
	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

int paths_cache_dir(char *out, size_t n)
{
	return dir_from(out, n, "cache", "XDG_CACHE_HOME", ".cache");
}

int paths_state_dir(char *out, size_t n)
{
	return dir_from(out, n, "state", "XDG_STATE_HOME", ".local/state");
}

int paths_find_guest_file(const char *env_var, const char *name, char *out, size_t n)
{
	const char *e = getenv(env_var);
	if (e && *e) {
		if (access(e, R_OK) < 0)
			return -errno;
		snprintf(out, n, "%s", e);
		return 0;
	}
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len < 0)
		return -errno;
	exe[len] = 0;
	const char *dir = dirname(exe);
	const char *const subdirs[] = { "", "/../lib/matchlock" };
	for (size_t i = 0; i < 2; i++) {
		int k = snprintf(out, n, "%s%s/%s", dir, subdirs[i], name);
		if (k > 0 && (size_t)k < n && access(out, R_OK) == 0)
			return 0;
	}
	return -ENOENT;
}
