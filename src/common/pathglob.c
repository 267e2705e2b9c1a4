/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "pathglob.h"

#include <fnmatch.h>
#include <string.h>

bool pathglob_valid(const char *glob)
{
	size_t n = strnlen(glob, PATHGLOB_MAX + 1);
	if (n == 0 || n > PATHGLOB_MAX || glob[0] != '/')
		return false;
	return !strpbrk(glob, "\r\n");
}

bool pathglob_match(const char *glob, const char *path)
{
	size_t n = strlen(glob);
	if (n >= 3 && !strcmp(glob + n - 3, "/**")) {
		/* The directory itself, or anything beneath it. */
		char dir[PATHGLOB_MAX + 1];
		size_t dl = n - 3;
		if (dl > PATHGLOB_MAX)
			return false;
		memcpy(dir, glob, dl);
		dir[dl] = 0;
		if (dl == 0)
			return path[0] == '/';
		if (fnmatch(dir, path, FNM_PATHNAME) == 0)
			return true;
		/* Match the glob's directory against each prefix of path ending before a '/'. */
		char pre[4096];
		size_t pl = strnlen(path, sizeof(pre));
		if (pl >= sizeof(pre))
			return false;
		memcpy(pre, path, pl + 1);
		for (size_t i = pl; i > 0; i--) {
			if (pre[i] != '/')
				continue;
			pre[i] = 0;
			if (fnmatch(dir, pre, FNM_PATHNAME) == 0)
				return true;
		}
		return false;
	}
	return fnmatch(glob, path, FNM_PATHNAME) == 0;
}
