/* SPDX-License-Identifier: MIT */
/*
 * matchlock exec ID [-i] [-t] [-w DIR] [-u USER] [-e K=V] -- COMMAND...: run a process in a
 * running sandbox. Our stdin/stdout/stderr are handed to the sandbox's supervisor over its
 * control socket, so output flows straight to where ours points; we stay to forward Ctrl-C and
 * window-size changes, and exit with the process's status (125 for our own errors).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "common/log.h"
#include "common/util.h"
#include "control.h"
#include "proto/exec_req.h"
#include "proto/msg.h"
#include "state.h"

static const char exec_usage[] =
    "usage: matchlock exec [FLAGS] ID [--] COMMAND [ARG...]\n"
    "\n"
    "Run COMMAND in the running sandbox ID (or a unique prefix of it).\n"
    "\n"
    "  -i, --interactive      stream stdin to the command\n"
    "  -t, --tty              allocate a pseudo-terminal\n"
    "  -w, --workdir DIR      working directory\n"
    "  -u, --user USER[:GROUP]  user to run as\n"
    "  -e, --env KEY[=VALUE]  environment variable (KEY alone: take ours)\n"
    "      --timeout S        kill the command after S seconds (exit 124)\n";

/* Connect to a sandbox by ID or prefix, explaining failures the way a user needs them. */
int cli_connect_sandbox(const char *idarg, char *id, size_t idn, char *err, size_t errn)
{
	int fd = control_connect(idarg);
	if (fd >= 0) {
		snprintf(id, idn, "%s", idarg);
		return fd;
	}
	struct state *st;
	if (state_open(&st, err, errn) < 0)
		return -EIO;
	struct sb_record r;
	int k = state_get(st, idarg, &r);
	if (k == -EEXIST) {
		snprintf(err, errn, "%s matches more than one sandbox: use more of the ID", idarg);
	} else if (k < 0) {
		snprintf(err, errn, "no sandbox %s (see 'matchlock list')", idarg);
	} else {
		snprintf(id, idn, "%s", r.id);
		state_reconcile(st, &r);
		fd = r.status == ST_RUNNING ? control_connect(r.id) : -ESRCH;
		if (fd < 0)
			snprintf(err, errn, "sandbox %s is not running (%s)", r.id,
				 sb_status_names[r.status]);
		state_record_fini(&r);
	}
	state_close(st);
	return fd >= 0 ? fd : -ESRCH;
}

int cmd_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "interactive", no_argument, NULL, 'i' },
		{ "tty", no_argument, NULL, 't' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' },
		{ "env", required_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool in = false, tty = false;
	const char *cwd = NULL, *user = NULL;
	unsigned long timeout = 0;
	struct buf req = { 0 };
	char err[1024] = "", id[32];
	char *env[MSG_MAX_ENV + 2]; /* the -e entries and TERM, NULL-terminated */
	size_t envc = 0;
	int c, fd = -1, status = EXIT_MATCHLOCK;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+itw:u:e:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			in = true;
			break;
		case 't':
			tty = true;
			break;
		case 'w':
			cwd = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'e':
			if (!optarg[0] || optarg[0] == '=') {
				snprintf(err, sizeof(err), "-e %s: expected KEY=VALUE or KEY",
					 optarg);
				goto out;
			}
			if (envc >= MSG_MAX_ENV) {
				snprintf(err, sizeof(err), "more than %d -e flags", MSG_MAX_ENV);
				goto out;
			}
			if (strchr(optarg, '='))
				env[envc] = strdup(optarg);
			else if (getenv(optarg) &&
				 asprintf(&env[envc], "%s=%s", optarg, getenv(optarg)) < 0)
				env[envc] = NULL;
			else if (!getenv(optarg))
				break; /* KEY alone and not set here: nothing to pass */
			if (!env[envc]) {
				snprintf(err, sizeof(err), "out of memory");
				goto out;
			}
			envc++;
			break;
		case 'T':
			if (cli_parse_uint(optarg, 1, 86400u * 365, &timeout) < 0) {
				snprintf(err, sizeof(err),
					 "--timeout %s: expected whole seconds >= 1", optarg);
				goto out;
			}
			break;
		case 'h':
			fputs(exec_usage, stdout);
			status = 0;
			goto out;
		default:
			snprintf(err, sizeof(err),
				 "%s: unknown flag or missing value (see 'matchlock exec --help')",
				 argv[optind - 1]);
			goto out;
		}
	}
	if (optind >= argc) {
		snprintf(err, sizeof(err), "usage: matchlock exec [FLAGS] ID -- COMMAND [ARG...]");
		goto out;
	}
	const char *idarg = argv[optind++];
	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	if (optind >= argc) {
		snprintf(err, sizeof(err),
			 "no command given (matchlock exec ID -- COMMAND [ARG...])");
		goto out;
	}
	struct exec_request x = { .argv = argv + optind,
				  .env = env,
				  .cwd = cwd,
				  .user = user,
				  .stdin_on = in,
				  .tty = tty,
				  .timeout_s = (unsigned)timeout };
	struct winsize ws;
	if (tty) {
		if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row) {
			x.rows = ws.ws_row;
			x.cols = ws.ws_col;
		}
		if (getenv("TERM") && asprintf(&env[envc], "TERM=%s", getenv("TERM")) >= 0)
			envc++;
	}
	env[envc] = NULL;
	buf_put_u16(&req, CTRL_EXEC);
	if (exec_request_encode(&x, &req) < 0) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	if (buf_used(&req) > CONTROL_MAX_MSG) {
		snprintf(err, sizeof(err), "command line and environment too large");
		goto out;
	}

	fd = cli_connect_sandbox(idarg, id, sizeof(id), err, sizeof(err));
	if (fd < 0)
		goto out;

	int sigfd = cli_signalfd();

	struct termios saved;
	bool raw = false;
	if (tty && in && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios t = saved;
		cfmakeraw(&t);
		raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
	}
	int fds[3] = { STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO };
	if (control_send(fd, &req, fds, 3) < 0) {
		snprintf(err, sizeof(err), "sandbox %s: %s", id, strerror(errno));
		goto restore;
	}
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = sigfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGWINCH &&
				    ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
					struct buf b = { 0 };
					buf_put_u16(&b, CTRL_RESIZE);
					msg_put_u16(&b, T_ROWS, ws.ws_row);
					msg_put_u16(&b, T_COLS, ws.ws_col);
					control_send(fd, &b, NULL, 0);
					buf_fini(&b);
				} else if (si.ssi_signo != SIGWINCH) {
					control_simple(fd, CTRL_INTERRUPT, 0, NULL);
				}
			}
		}
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		uint8_t msg[4096];
		int rfds[3], nrfds = 0;
		ssize_t n = control_recv(fd, msg, sizeof(msg), rfds, &nrfds);
		for (int i = 0; i < nrfds; i++)
			close(rfds[i]);
		if (n <= 0) {
			snprintf(err, sizeof(err), "sandbox %s stopped while the command ran", id);
			break;
		}
		struct rd r = rd_make(msg, (size_t)n);
		uint16_t type = rd_u16(&r), tag;
		struct rd v;
		char text[600] = "";
		uint32_t code = EXIT_MATCHLOCK;
		while (msg_next(&r, &tag, &v) > 0) {
			char *s = NULL;
			if (tag == T_MESSAGE && msg_dup_str(&v, sizeof(text) - 1, &s) == 0) {
				snprintf(text, sizeof(text), "%s", s);
				free(s);
			} else if (tag == T_EXIT_CODE) {
				msg_get_u32(&v, &code);
			}
		}
		if (type == CTRL_EXIT) {
			status = (int)(code & 0xff);
			snprintf(err, sizeof(err), "%s", text);
			break;
		}
		if (type == CTRL_FAIL) {
			snprintf(err, sizeof(err), "%s",
				 text[0] ? text : "the sandbox refused the request");
			break;
		}
	}
restore:
	if (raw)
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved);
	if (sigfd >= 0)
		close(sigfd);
out:
	if (fd >= 0)
		close(fd);
	buf_fini(&req);
	for (size_t i = 0; i < envc; i++)
		free(env[i]);
	if (*err)
		error("%s", err);
	return status;
}
