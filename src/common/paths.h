/* SPDX-License-Identifier: MIT */
/* Where things live: the cache and state directories, and the guest kernel and initramfs. */
#ifndef MATCHLOCK_PATHS_H
#define MATCHLOCK_PATHS_H

#include <stddef.h>

/* $MATCHLOCK_HOME/cache, else $XDG_CACHE_HOME/matchlock, else ~/.cache/matchlock. */
int paths_cache_dir(char *out, size_t n);
/* $MATCHLOCK_HOME/state, else $XDG_STATE_HOME/matchlock, else ~/.local/state/matchlock. */
int paths_state_dir(char *out, size_t n);
/*
 * Find a file shipped next to the binary (the guest kernel, the initramfs): $ENV_VAR if set,
 * else <dir of the executable>/NAME, else <dir>/../lib/matchlock/NAME. -ENOENT if none exists.
 */
int paths_find_guest_file(const char *env_var, const char *name, char *out, size_t n);

#endif
