/* SPDX-License-Identifier: MIT */
/* The CLI verbs (one file each) and what they share. */
#ifndef MATCHLOCK_CLI_H
#define MATCHLOCK_CLI_H

#include <stdbool.h>
#include <stddef.h>

#define EXIT_MATCHLOCK 125 /* matchlock itself failed (Docker's convention) */

int cmd_run(int argc, char **argv);
int cmd_diagnose(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_image(int argc, char **argv);

/* Parse a decimal number in [min, max]; returns 0 or -EINVAL. */
int cli_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out);
/* Parse true/false/1/0/yes/no; -EINVAL otherwise. */
int cli_parse_bool(const char *s, bool *out);
/* "vm-" + 8 random hex digits. */
void cli_new_id(char out[12]);

#endif
