/* SPDX-License-Identifier: MIT */
/* The CLI verbs (one file each) and what they share. */
#ifndef MATCHLOCK_CLI_H
#define MATCHLOCK_CLI_H

#include <stdbool.h>
#include <stddef.h>

#define EXIT_MATCHLOCK 125 /* matchlock itself failed (Docker's convention) */

int cmd_run(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_kill(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_log(int argc, char **argv);
int cmd_diagnose(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_volume(int argc, char **argv);
int cmd_rpc(int argc, char **argv);
int cmd_allow_list(int argc, char **argv);
int cmd_port_forward(int argc, char **argv);
int cmd_cp(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_pool(int argc, char **argv);
/* The OCI runtime (cmd_oci.c): argv[0] is "oci" or the program, then runc's flags and verb. */
int cmd_oci(int argc, char **argv);
/* matchlock build -t TAG DIR: Buildah with matchlock as its runtime, into the store. */
int cmd_build(int argc, char **argv);
/*
 * Do these arguments (after the program name) follow runc's command line rather than
 * matchlock's? Engines call the runtime binary with runc's global flags and verbs.
 */
bool cli_is_oci(int argc, char **argv);

/*
 * Connect to the control socket of a running sandbox given by ID or unique prefix; the full ID
 * goes to id. Returns the fd, or a negative value with a reason in err.
 */
int cli_connect_sandbox(const char *idarg, char *id, size_t idn, char *err, size_t errn);

/* Parse a decimal number in [min, max]; returns 0 or -EINVAL. */
int cli_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out);
/* Parse true/false/1/0/yes/no; -EINVAL otherwise. */
int cli_parse_bool(const char *s, bool *out);
/*
 * Block SIGINT, SIGTERM, SIGHUP and SIGWINCH and return a non-blocking signalfd for them: the
 * verbs that wait on a sandbox handle these through their loop (Ctrl-C, window size).
 */
int cli_signalfd(void);
/* "vm-" + 8 random hex digits. */
void cli_new_id(char out[12]);

#endif
