/* SPDX-License-Identifier: MIT */
/*
 * Path globs of hook rules (URL paths and guest file paths): fnmatch(3) with FNM_PATHNAME, so
 * "*" and "?" never cross a "/", plus one extension: a glob ending in "/" followed by "**" matches
 * the directory before it and everything beneath ("/data/" "**" matches "/data" and "/data/a").
 */
#ifndef MATCHLOCK_PATHGLOB_H
#define MATCHLOCK_PATHGLOB_H

#include <stdbool.h>
#include <stddef.h>

#define PATHGLOB_MAX 1024 /* a glob's length */

/* Whether glob is one we accept: starts with "/", at most PATHGLOB_MAX, no NUL/CR/LF. */
bool pathglob_valid(const char *glob);
/* Whether path (NUL-terminated) matches glob. */
bool pathglob_match(const char *glob, const char *path);

#endif
