/* SPDX-License-Identifier: MIT */
/* The container's pid-file process (runtime_shim.h). */
#define _GNU_SOURCE
#include "runtime_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common/log.h"
#include "common/util.h"
#include "exec_stdio.h"
#include "jail.h"
#include "proto/msg.h"
#include "proto/tree.h"

#define SHIM_CMD_WAIT_MS 2000 /* a client that connected has its command on the way */
#define SHIM_STATUS_FAILED 255 /* the sandbox broke under the workload */
#define SHIM_HOOK_STATE_MAX (1 << 20) /* the state the hooks read (annotations and all) */
/* Where the guest keeps the root's overlay upper: what the container wrote (agent/mount.c). */
#define GUEST_ROOT_UPPER "/run/matchlock/disk/root/upper"

struct shim {
	struct session s;
	const struct runtime_config *cfg;
	struct rt_state *st;
	const char *dir;
	int io[3]; /* the workload's stdin, stdout, stderr (ours to close) */
	int tty; /* the PTY slave (also in io[]), or -1 */
	int listen_fd;
	struct watch listen_w, sig_w;
	struct exec_stdio *proc;
	bool proc_ran; /* start ran the process: its changes go back to root.path */
	bool started_cb, ended;
	int start_r, status;
	bool file_done;
	int file_status;
	char file_err[256];
	struct tree_unpack *wb; /* the write-back in progress */
	int wb_r;
};

static void shim_say(int fd, const char *word)
{
	if (fd >= 0)
		(void)!write(fd, word, strlen(word));
}

static void shim_record(struct shim *sh, enum rt_status status)
{
	sh->st->status = status;
	if (rt_state_write(sh->dir, sh->st) < 0)
		warn("%s: cannot write the container's state", sh->dir);
}

static void on_started(struct session *s, int r, const char *err, void *opaque)
{
	(void)s;
	(void)err;
	struct shim *sh = opaque;
	sh->started_cb = true;
	sh->start_r = r;
}

/* The workload is over: its status is ours. */
static void shim_end(struct shim *sh, int status)
{
	if (sh->ended)
		return;
	sh->ended = true;
	sh->status = status;
	sh->st->exit_code = status;
	shim_record(sh, RT_STOPPED);
}

static void on_proc_done(struct exec_stdio *e, int status, const char *err, void *opaque)
{
	(void)e;
	struct shim *sh = opaque;
	sh->proc = NULL;
	if (err && status != 0)
		warn("%s", err);
	shim_end(sh, status < 0 ? SHIM_STATUS_FAILED : status);
}

static void winsize_of(int fd, uint16_t *rows, uint16_t *cols)
{
	struct winsize ws;
	if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

/* "start": run the process on the engine's stdio. */
static int shim_start_proc(struct shim *sh, char *err, size_t errn)
{
	if (sh->ended) {
		snprintf(err, errn, "cannot start a container that has stopped");
		return -EINVAL;
	}
	if (sh->st->status != RT_CREATED) {
		snprintf(err, errn, "cannot start an already running container");
		return -EINVAL;
	}
	if (sh->cfg->pod_sandbox) {
		shim_record(sh, RT_RUNNING);
		return 0;
	}
	struct session *s = &sh->s;
	struct exec_request req = {
		.argv = s->argv,
		.env = env_vector(&s->env),
		.cwd = s->workdir,
		.user = s->user,
		.stdin_on = true,
		.tty = sh->tty >= 0,
	};
	memcpy(req.rlimits, sh->cfg->rlimits, sizeof(req.rlimits));
	req.nrlimits = sh->cfg->nrlimits;
	winsize_of(sh->tty, &req.rows, &req.cols);
	sh->proc = exec_stdio_start(s->sb, s->loop, &req, sh->io[0], sh->io[1], sh->io[2],
				    on_proc_done, sh, err, errn);
	if (!sh->proc)
		return -EIO;
	sh->proc_ran = true;
	shim_record(sh, RT_RUNNING);
	return 0;
}

/* A signal for the workload; before start, one that would end a process ends the container. */
static void shim_signal(struct shim *sh, int sig)
{
	if (sh->proc) {
		exec_stdio_signal(sh->proc, sig);
		return;
	}
	if (sig != SIGCHLD && sig != SIGWINCH && sig != SIGURG && sig != SIGCONT)
		shim_end(sh, 128 + sig);
}

static void shim_command(struct shim *sh, const char *cmd, char *ans, size_t n)
{
	char err[600] = "";
	int sig = 0, all = 0;
	if (!strcmp(cmd, "start")) {
		if (shim_start_proc(sh, err, sizeof(err)) == 0) {
			snprintf(ans, n, "ok");
			return;
		}
	} else if (sscanf(cmd, "kill %d %d", &sig, &all) == 2 && sig > 0 && sig < NSIG) {
		if (!sh->ended) {
			shim_signal(sh, sig);
			snprintf(ans, n, "ok");
			return;
		}
		snprintf(err, sizeof(err), "container not running");
	} else {
		snprintf(err, sizeof(err), "unknown command");
	}
	snprintf(ans, n, "error: %s", err);
}

/* One command per connection; only the owner can connect (the directory is 0700). */
static void on_listen(struct watch *w, uint32_t events)
{
	(void)events;
	struct shim *sh = w->obj;
	int c;
	while ((c = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		char cmd[128], ans[700];
		struct pollfd p = { .fd = c, .events = POLLIN };
		ssize_t k =
		    poll(&p, 1, SHIM_CMD_WAIT_MS) > 0 ? recv(c, cmd, sizeof(cmd) - 1, 0) : -1;
		if (k > 0) {
			cmd[k] = 0;
			shim_command(sh, cmd, ans, sizeof(ans));
			(void)!send(c, ans, strlen(ans), MSG_NOSIGNAL);
		}
		close(c);
	}
}

/* Signals sent to this process go to the workload; a window-size change to its terminal. */
static void on_signal(struct watch *w, uint32_t events)
{
	(void)events;
	struct shim *sh = w->obj;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGWINCH) {
			uint16_t rows = 0, cols = 0;
			winsize_of(sh->tty, &rows, &cols);
			if (sh->proc)
				exec_stdio_resize(sh->proc, rows, cols);
		} else if (si.ssi_signo != SIGHUP) {
			/* SIGHUP: the engine closed the terminal's master; the workload sees EOF.
			 */
			shim_signal(sh, (int)si.ssi_signo);
		}
	}
}

static void on_file_done(struct exec_stdio *e, int status, const char *err, void *opaque)
{
	(void)e;
	struct shim *sh = opaque;
	sh->file_done = true;
	sh->file_status = status;
	snprintf(sh->file_err, sizeof(sh->file_err), "%s", err ? err : "");
}

/* The files bound in by the engine (/etc/hosts, /etc/hostname, ...): copies, made now. */
static int shim_copy_files(struct shim *sh, char *err, size_t errn)
{
	for (unsigned i = 0; i < sh->cfg->nfiles; i++) {
		const struct rt_mount *f = &sh->cfg->files[i];
		int fd = open(f->host, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			snprintf(err, errn, "mount of %.200s: %s", f->host, strerror(errno));
			return -errno;
		}
		struct file_request fr = { .op = SVC_FILE_WRITE, .path = f->guest, .mode = 0644 };
		sh->file_done = false;
		struct exec_stdio *e = exec_stdio_start_file(sh->s.sb, sh->s.loop, &fr, fd,
							     on_file_done, sh, err, errn);
		while (e && !sh->file_done)
			loop_run_once(sh->s.loop, 0);
		close(fd);
		if (!e)
			return -EIO;
		if (sh->file_status != 0) {
			snprintf(err, errn, "copying %.200s to %.200s in the guest: %s", f->host,
				 f->guest, sh->file_err[0] ? sh->file_err : "failed");
			return -EIO;
		}
	}
	return 0;
}

/*
 * Files the guest writes for itself, never the container's: the resolver, host names and the
 * sandbox CA (agent/net.c, trust.c), and the copies of the engine's bound files.
 */
static bool writeback_skip(void *opaque, const char *path)
{
	static const char *const own[] = { "etc/hosts",		"etc/hostname",
					   "etc/resolv.conf",	GUEST_CA_FILE + 1,
					   GUEST_CA_BUNDLE + 1, "etc/ssl/certs/ca-certificates.crt",
					   "etc/ssl/cert.pem",	"etc/pki/tls/certs/ca-bundle.crt" };
	const struct shim *sh = opaque;
	for (size_t i = 0; i < ARRAY_SIZE(own); i++)
		if (!strcmp(path, own[i]))
			return true;
	for (unsigned i = 0; i < sh->cfg->nfiles; i++)
		if (!strcmp(path, sh->cfg->files[i].guest + 1))
			return true;
	return false;
}

static void wb_output(struct sandbox_exec *x, int chan, const uint8_t *p, size_t n)
{
	struct shim *sh = sandbox_exec_opaque(x);
	if (chan == EXEC_STDOUT && sh->wb_r == 0)
		sh->wb_r = tree_unpack_feed(sh->wb, p, n);
	sandbox_exec_consumed(x, n);
}

static void wb_done(struct sandbox_exec *x, int status, const char *err)
{
	struct shim *sh = sandbox_exec_opaque(x);
	if (status != 0 && sh->wb_r == 0) {
		snprintf(sh->wb->err, sizeof(sh->wb->err), "%s", err ? err : "the guest failed");
		sh->wb_r = status < 0 ? status : -EIO;
	}
	sh->file_done = true;
}

/*
 * What the container changed in its root goes back to root.path before the VM goes, as a
 * runc container's writes would be there (Buildah commits that directory after a RUN step):
 * the guest packs its overlay upper (whiteouts as deletions), we apply it beneath root.path.
 * Returns 0 or -errno (warned).
 */
static int shim_write_back(struct shim *sh)
{
	static const struct exec_ops ops = { .output = wb_output, .done = wb_done };
	struct file_request fr = { .op = SVC_TREE_PACK,
				   .path = GUEST_ROOT_UPPER,
				   .flags = TREE_OVERLAY };
	char err[300];
	if (!sh->s.sb || sandbox_failure(sh->s.sb))
		return -EIO;
	if (!(sh->wb = calloc(1, sizeof(*sh->wb))))
		return -ENOMEM;
	int r = tree_unpack_init(sh->wb, sh->cfg->root, "", TREE_APPLY);
	sh->wb->skip = writeback_skip;
	sh->wb->skip_opaque = sh;
	sh->wb_r = 0;
	sh->file_done = false;
	struct sandbox_exec *x =
	    r < 0 ? NULL : sandbox_file_start(sh->s.sb, &fr, &ops, sh, err, sizeof(err));
	while (x && !sh->file_done)
		loop_run_once(sh->s.loop, 0);
	if (r == 0 && !x) {
		snprintf(sh->wb->err, sizeof(sh->wb->err), "%s", err);
		r = -EIO;
	}
	r = r ?: sh->wb_r;
	r = r ?: tree_unpack_finish(sh->wb);
	if (r < 0)
		warn("writing the container's changes back to %s: %s", sh->cfg->root, sh->wb->err);
	tree_unpack_fini(sh->wb);
	free(sh->wb);
	sh->wb = NULL;
	return r;
}

/* The command socket, in the container's directory. */
static int shim_listen(struct shim *sh, char *err, size_t errn)
{
	struct sockaddr_un a;
	int dirfd;
	if (rt_sock_addr(sh->dir, &dirfd, &a) < 0) {
		snprintf(err, errn, "%s: %s", sh->dir, strerror(errno));
		return -EIO;
	}
	unlinkat(dirfd, RT_SHIM_SOCK, 0);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0) {
		snprintf(err, errn, "the container's socket in %s: %s", sh->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		close(dirfd);
		return -EIO;
	}
	close(dirfd);
	sh->listen_fd = fd;
	watch_init(&sh->listen_w, fd, on_listen, sh);
	loop_watch(sh->s.loop, &sh->listen_w, EPOLLIN);
	return 0;
}

/* Hand the PTY master to the engine: SCM_RIGHTS on the console socket, as runc does. */
static int send_console(const char *path, int master, const char *name, char *err, size_t errn)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (snprintf(a.sun_path, sizeof(a.sun_path), "%s", path) >= (int)sizeof(a.sun_path)) {
		snprintf(err, errn, "--console-socket %.200s: path too long", path);
		return -ENAMETOOLONG;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		snprintf(err, errn, "--console-socket %.200s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = (void *)name, .iov_len = strlen(name) };
	struct msghdr m = { .msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof(int));
	int r = sendmsg(fd, &m, MSG_NOSIGNAL) < 0 ? -EIO : 0;
	if (r < 0)
		snprintf(err, errn, "--console-socket %.200s: %s", path, strerror(errno));
	close(fd);
	return r;
}

int runtime_shim_open_pty(const char *console_socket, int *slave_out, char *err, size_t errn)
{
	int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	char name[64];
	if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
	    ptsname_r(master, name, sizeof(name)) != 0) {
		snprintf(err, errn, "allocating a terminal: %s", strerror(errno));
		if (master >= 0)
			close(master);
		return -EIO;
	}
	int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct termios t;
	if (slave < 0 || tcgetattr(slave, &t) < 0) {
		snprintf(err, errn, "opening the terminal %s: %s", name, strerror(errno));
		close(master);
		if (slave >= 0)
			close(slave);
		return -EIO;
	}
	cfmakeraw(&t);
	tcsetattr(slave, TCSANOW, &t);
	int r = send_console(console_socket, master, name, err, errn);
	close(master);
	if (r < 0) {
		close(slave);
		return r;
	}
	*slave_out = slave;
	return 0;
}

/*
 * The workload's stdio: a fresh PTY (raw on our side: the guest's own terminal does the line
 * discipline) whose slave is our controlling terminal, so a resize by the engine reaches us as
 * SIGWINCH; or the fds we were given. Ours become /dev/null, so neither our messages nor the
 * VM's helpers write into the container's streams.
 */
static int shim_stdio(struct shim *sh, const char *console_socket, char *err, size_t errn)
{
	if (sh->cfg->terminal) {
		int r = runtime_shim_open_pty(console_socket, &sh->tty, err, errn);
		if (r < 0)
			return r;
		ioctl(sh->tty, TIOCSCTTY, 0);
		sh->io[0] = sh->tty;
		sh->io[1] = fcntl(sh->tty, F_DUPFD_CLOEXEC, 3);
		sh->io[2] = fcntl(sh->tty, F_DUPFD_CLOEXEC, 3);
	} else {
		for (int i = 0; i < 3; i++)
			sh->io[i] = fcntl(i, F_DUPFD_CLOEXEC, 3);
	}
	if (sh->io[0] < 0 || sh->io[1] < 0 || sh->io[2] < 0) {
		snprintf(err, errn, "the container's stdio: %s", strerror(errno));
		return -EIO;
	}
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	for (int i = 0; null >= 0 && i < 3; i++)
		dup2(null, i);
	if (null > 2)
		close(null);
	return 0;
}

/*
 * The prestart and createRuntime hooks run on the host with the runtime's privileges, as
 * runc's do (Docker's libnetwork-setkey is /proc/DOCKERD/exe: exec'ing it takes root's ptrace
 * access to dockerd). This process cannot run them: as a supervisor it drops root's
 * capabilities before the VM boots and is sealed once it runs, forks forbidden (jail.h). So a
 * helper forked before either, which never sees the guest, runs them when told: it reads the
 * state (NUL-terminated: a write end closed without it means we are gone), runs the hooks and
 * answers with "" or the reason they failed, then exits.
 */
struct hook_runner {
	pid_t pid; /* 0: no hooks to run */
	int to, from; /* the state to it, its answer from it */
};

static void hook_runner_child(const char *hooks_json, int in, int out)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	/* Nothing of ours but its two pipes: neither create's pipe nor the container's stdio. */
	int lo = in < out ? in : out, hi = in < out ? out : in;
	close_range(3, (unsigned)lo - 1, 0);
	close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
	close_range((unsigned)hi + 1, ~0u, 0);
	char *state = malloc(SHIM_HOOK_STATE_MAX);
	size_t n = 0;
	ssize_t k = 1;
	while (state && n < SHIM_HOOK_STATE_MAX &&
	       (k = read(in, state + n, SHIM_HOOK_STATE_MAX - n)) != 0) {
		if (k < 0 && errno != EINTR)
			break;
		n += k > 0 ? (size_t)k : 0;
	}
	if (!state || k != 0 || n == 0 || state[n - 1] != 0)
		_exit(EXIT_FAILURE); /* no complete state: the runtime is gone, nothing to run */
	char why[1024] = "";
	int r = runtime_hooks_run(hooks_json, "prestart", state, why, sizeof(why));
	r = r ?: runtime_hooks_run(hooks_json, "createRuntime", state, why, sizeof(why));
	if (r < 0 && !why[0])
		snprintf(why, sizeof(why), "running the hooks: %s", strerror(-r));
	(void)!write_all(out, why, strlen(why));
	_exit(r < 0 ? EXIT_FAILURE : EXIT_SUCCESS);
}

/* Fork the helper (nothing when the container has no hooks); 0 or -errno with err. */
static int hook_runner_start(struct hook_runner *hr, const char *hooks_json, char *err, size_t errn)
{
	*hr = (struct hook_runner){ .to = -1, .from = -1 };
	if (!hooks_json)
		return 0;
	int to[2] = { -1, -1 }, from[2] = { -1, -1 };
	if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0) {
		snprintf(err, errn, "starting the hooks' runner: %s", strerror(errno));
		for (int i = 0; i < 2; i++)
			if (to[i] >= 0)
				close(to[i]);
		return -EIO;
	}
	hr->pid = fork();
	if (hr->pid == 0)
		hook_runner_child(hooks_json, to[0], from[1]);
	close(to[0]);
	close(from[1]);
	if (hr->pid < 0) {
		snprintf(err, errn, "starting the hooks' runner: %s", strerror(errno));
		close(to[1]);
		close(from[0]);
		hr->pid = 0;
		return -EIO;
	}
	hr->to = to[1];
	hr->from = from[0];
	return 0;
}

/* Have the helper run the hooks with state; 0, or -EIO with err (the failing hook). */
static int hook_runner_run(struct hook_runner *hr, const char *state, char *err, size_t errn)
{
	if (!hr->pid)
		return 0;
	int r = write_all(hr->to, state, strlen(state) + 1) < 0 ? -EIO : 0;
	close(hr->to);
	hr->to = -1;
	char why[1024];
	size_t n = 0;
	ssize_t k;
	while (n < sizeof(why) - 1 && (k = read(hr->from, why + n, sizeof(why) - 1 - n)) != 0) {
		if (k < 0 && errno != EINTR)
			break;
		n += k > 0 ? (size_t)k : 0;
	}
	why[n] = 0;
	int st = 0;
	while (waitpid(hr->pid, &st, 0) < 0 && errno == EINTR)
		;
	hr->pid = 0;
	close(hr->from);
	hr->from = -1;
	if (r == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	snprintf(err, errn, "%s", why[0] ? why : "the hooks' runner failed");
	return -EIO;
}

/* A start that failed before the hooks: the helper finds its pipe closed and exits. */
static void hook_runner_fini(struct hook_runner *hr)
{
	if (hr->to >= 0)
		close(hr->to);
	if (hr->from >= 0)
		close(hr->from);
	if (hr->pid > 0)
		while (waitpid(hr->pid, NULL, 0) < 0 && errno == EINTR)
			;
	*hr = (struct hook_runner){ .to = -1, .from = -1 };
}

/* Egress leaves through the pod's network: the supervisor's sockets are made in it. */
static int shim_join_netns(const char *path, char *err, size_t errn)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		snprintf(err, errn, "joining the network namespace %.200s: %s", path,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

int runtime_shim_main(struct sandbox_spec *spec, const struct runtime_config *cfg,
		      struct rt_state *st, const char *dir, const char *console_socket,
		      int notify_fd)
{
	struct shim sh = {
		.cfg = cfg, .st = st, .dir = dir, .io = { -1, -1, -1 }, .tty = -1, .listen_fd = -1
	};
	char err[1024] = "";
	int status = EXIT_FAILURE;
	struct hook_runner hooks = { .to = -1, .from = -1 };
	setsid();
	log_set_quiet(1);
	if (cfg->netns && shim_join_netns(cfg->netns, err, sizeof(err)) < 0)
		goto out;
	if (shim_stdio(&sh, console_socket, err, sizeof(err)) < 0)
		goto out;
	if (hook_runner_start(&hooks, cfg->hooks_json, err, sizeof(err)) < 0)
		goto out;
	if (cfg->pod_sandbox) {
		/* No VM: a loop for the command socket and the signals is all it needs. */
		sh.s.sigfd = cli_signalfd();
		if (sh.s.sigfd < 0 || loop_init(&sh.s.own_loop) < 0) {
			snprintf(err, sizeof(err), "setting up: %s", strerror(errno));
			goto out;
		}
		sh.s.loop = &sh.s.own_loop;
	} else {
		if (session_start(&sh.s, spec, NULL, on_started, &sh, err, sizeof(err)) < 0)
			goto out;
		while (!sh.started_cb)
			loop_run_once(sh.s.loop, 0);
		if (sh.start_r < 0) {
			snprintf(err, sizeof(err), "%s", sh.s.err);
			goto out;
		}
		if (shim_copy_files(&sh, err, sizeof(err)) < 0)
			goto out;
	}
	if (shim_listen(&sh, err, sizeof(err)) < 0)
		goto out;
	st->pid = getpid();
	st->pid_start = proc_start_time(st->pid);
	snprintf(st->sandbox, sizeof(st->sandbox), "%s", sh.s.L.id);
	st->exit_code = -1;
	shim_record(&sh, RT_CREATED);
	/* The runtime's hooks (Docker's network key, say) see the machine ready, not started. */
	json_t *sj = rt_state_json(st);
	char *state_text = sj ? json_dumps(sj, JSON_COMPACT) : NULL;
	json_decref(sj);
	int hr = state_text ? hook_runner_run(&hooks, state_text, err, sizeof(err)) : -ENOMEM;
	free(state_text);
	if (hr < 0) {
		if (hr == -ENOMEM)
			snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	/*
	 * The VM's supervisor was sealed when its sandbox came up (session.c); the pod's sandbox,
	 * which has no VM, starts no process either from here on: the same allow-list (jail.h).
	 */
	int sr = cfg->pod_sandbox ? jail_supervisor_seal(NULL) : 0;
	if (sr < 0)
		warn("the pod sandbox runs without its seccomp allow-list: %s", strerror(-sr));
	shim_say(notify_fd, "ok");
	close(notify_fd);
	notify_fd = -1;
	watch_init(&sh.sig_w, sh.s.sigfd, on_signal, &sh);
	loop_watch(sh.s.loop, &sh.sig_w, EPOLLIN);
	while (!sh.ended) {
		const char *failure = sh.s.sb ? sandbox_failure(sh.s.sb) : NULL;
		if (failure && !sh.proc) {
			warn("%s", failure);
			shim_end(&sh, SHIM_STATUS_FAILED);
			break;
		}
		loop_run_once(sh.s.loop, 0);
	}
	status = sh.status;
	loop_unwatch(sh.s.loop, &sh.sig_w);
	if (sh.proc_ran)
		shim_write_back(&sh);
out:
	hook_runner_fini(&hooks);
	if (notify_fd >= 0) {
		shim_say(notify_fd, err[0] ? err : "the container could not be created");
		close(notify_fd);
	}
	if (sh.proc)
		exec_stdio_abort(sh.proc);
	if (sh.listen_fd >= 0) {
		loop_unwatch(sh.s.loop, &sh.listen_w);
		close(sh.listen_fd);
		char path[PATH_MAX + 32];
		snprintf(path, sizeof(path), "%s/" RT_SHIM_SOCK, dir);
		unlink(path);
	}
	if (cfg->pod_sandbox) {
		if (sh.s.loop)
			loop_fini(&sh.s.own_loop);
		if (sh.s.sigfd > 0)
			close(sh.s.sigfd);
		sandbox_spec_fini(spec);
	} else {
		session_fini(&sh.s);
	}
	for (int i = 0; i < 3; i++)
		if (sh.io[i] >= 0)
			close(sh.io[i]);
	return status;
}
