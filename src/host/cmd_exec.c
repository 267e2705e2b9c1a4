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

struct exec_cli {
	bool in, tty;
	const char *cwd, *user;
	unsigned long timeout;
	char *env[MSG_MAX_ENV + 2]; /* the -e entries and TERM, NULL-terminated */
	size_t envc;
};

/* -e KEY=VALUE, or KEY (its value here, or nothing when unset). */
static int exec_env_flag(struct exec_cli *o, const char *arg, char *err, size_t errn)
{
	if (!arg[0] || arg[0] == '=') {
		snprintf(err, errn, "-e %s: expected KEY=VALUE or KEY", arg);
		return -1;
	}
	if (o->envc >= MSG_MAX_ENV) {
		snprintf(err, errn, "more than %d -e flags", MSG_MAX_ENV);
		return -1;
	}
	const char *here = strchr(arg, '=') ? NULL : getenv(arg);
	if (!strchr(arg, '=') && !here)
		return 0; /* KEY alone and not set here: nothing to pass */
	if (here ? asprintf(&o->env[o->envc], "%s=%s", arg, here) < 0
		 : !(o->env[o->envc] = strdup(arg))) {
		o->env[o->envc] = NULL;
		snprintf(err, errn, "out of memory");
		return -1;
	}
	o->envc++;
	return 0;
}

/* Returns 0 with optind at ID, 1 for --help (printed), -1 with err. */
static int exec_flags(int argc, char **argv, struct exec_cli *o, char *err, size_t errn)
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
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+itw:u:e:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			o->in = true;
			break;
		case 't':
			o->tty = true;
			break;
		case 'w':
			o->cwd = optarg;
			break;
		case 'u':
			o->user = optarg;
			break;
		case 'e':
			if (exec_env_flag(o, optarg, err, errn) < 0)
				return -1;
			break;
		case 'T':
			if (cli_parse_uint(optarg, 1, 86400u * 365, &o->timeout) < 0) {
				snprintf(err, errn, "--timeout %s: expected whole seconds >= 1",
					 optarg);
				return -1;
			}
			break;
		case 'h':
			fputs(exec_usage, stdout);
			return 1;
		default:
			snprintf(err, errn,
				 "%s: unknown flag or missing value (see 'matchlock exec --help')",
				 argv[optind - 1]);
			return -1;
		}
	}
	if (optind >= argc) {
		snprintf(err, errn, "usage: matchlock exec [FLAGS] ID -- COMMAND [ARG...]");
		return -1;
	}
	return 0;
}

/* Ctrl-C and window size changes go to the sandbox's supervisor. */
static void exec_forward_signals(int fd, int sigfd)
{
	struct signalfd_siginfo si;
	struct winsize ws;
	while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGWINCH && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
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

/*
 * The process runs on our own fds (passed to the supervisor); wait for its end, forwarding
 * signals. Returns its status, or EXIT_MATCHLOCK with err.
 */
static int exec_wait(int fd, int sigfd, const char *id, char *err, size_t errn)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = sigfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return EXIT_MATCHLOCK;
		if (p[1].revents & POLLIN)
			exec_forward_signals(fd, sigfd);
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		uint8_t msg[4096];
		int rfds[3], nrfds = 0;
		ssize_t n = control_recv(fd, msg, sizeof(msg), rfds, &nrfds);
		for (int i = 0; i < nrfds; i++)
			close(rfds[i]);
		if (n <= 0) {
			snprintf(err, errn, "sandbox %s stopped while the command ran", id);
			return EXIT_MATCHLOCK;
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
			snprintf(err, errn, "%s", text);
			return (int)(code & 0xff);
		}
		if (type == CTRL_FAIL) {
			snprintf(err, errn, "%s",
				 text[0] ? text : "the sandbox refused the request");
			return EXIT_MATCHLOCK;
		}
	}
}

int cmd_exec(int argc, char **argv)
{
	struct exec_cli o = { 0 };
	struct buf req = { 0 };
	char err[1024] = "", id[32];
	int fd = -1, status = EXIT_MATCHLOCK;
	int k = exec_flags(argc, argv, &o, err, sizeof(err));
	if (k != 0) {
		status = k > 0 ? 0 : status;
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
				  .env = o.env,
				  .cwd = o.cwd,
				  .user = o.user,
				  .stdin_on = o.in,
				  .tty = o.tty,
				  .timeout_s = (unsigned)o.timeout };
	struct winsize ws;
	if (o.tty) {
		if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row) {
			x.rows = ws.ws_row;
			x.cols = ws.ws_col;
		}
		if (getenv("TERM") && asprintf(&o.env[o.envc], "TERM=%s", getenv("TERM")) >= 0)
			o.envc++;
	}
	o.env[o.envc] = NULL;
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
	if (o.tty && o.in && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios t = saved;
		cfmakeraw(&t);
		raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
	}
	int fds[3] = { STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO };
	if (control_send(fd, &req, fds, 3) < 0)
		snprintf(err, sizeof(err), "sandbox %s: %s", id, strerror(errno));
	else
		status = exec_wait(fd, sigfd, id, err, sizeof(err));
	if (raw)
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved);
	if (sigfd >= 0)
		close(sigfd);
out:
	if (fd >= 0)
		close(fd);
	buf_fini(&req);
	for (size_t i = 0; i < o.envc; i++)
		free(o.env[i]);
	if (*err)
		error("%s", err);
	return status;
}
