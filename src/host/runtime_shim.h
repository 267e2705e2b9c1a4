/* SPDX-License-Identifier: MIT */
/*
 * The container's pid-file process ("shim"): a host process, forked by `create`, that holds the
 * stdio the engine handed `create` (or, with a terminal, the slave of a PTY whose master went to
 * the console socket), runs the sandbox (session.h) on its own loop, and exits with the
 * workload's status, so an engine that waits for the pid in the pid file (conmon, the
 * containerd shim; both subreapers) sees the workload end. QEMU dies with it (parent-death
 * signal): `kill -9` of this process leaves no VM.
 *
 * create -> the sandbox boots (or restores a template) and the bind-mounted files are copied
 * in; then state.json says "created", `create` hears "ok" on notify_fd and writes the pid file.
 * "start" on shim.sock runs the process; "kill SIG" signals it (or, before start, ends the
 * container); its end is written to state.json ("stopped", the status) before the VM goes.
 */
#ifndef MATCHLOCK_RUNTIME_SHIM_H
#define MATCHLOCK_RUNTIME_SHIM_H

#include "runtime_config.h"
#include "runtime_state.h"
#include "session.h"

/*
 * Run the container in this (freshly forked) process. spec is taken over; cfg gives the
 * terminal, the netns and the files; st is the state to keep in dir (its pid and sandbox are
 * filled here). The first words on notify_fd are "ok" or why the create failed; notify_fd is
 * closed then. Returns the exit status for this process.
 */
int runtime_shim_main(struct sandbox_spec *spec, const struct runtime_config *cfg,
		      struct rt_state *st, const char *dir, const char *console_socket,
		      int notify_fd);

/*
 * A PTY for a process with a terminal: the master goes to the engine over console_socket
 * (SCM_RIGHTS, as runc does), the slave (raw: the guest's terminal does the line discipline)
 * to *slave. Returns 0 or -errno with err.
 */
int runtime_shim_open_pty(const char *console_socket, int *slave, char *err, size_t errn);

#endif
