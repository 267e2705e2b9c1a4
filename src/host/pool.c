/* SPDX-License-Identifier: MIT */
/* Pre-started sandboxes without a daemon: pool.h says how the pieces fit. */
#define _GNU_SOURCE
#include "pool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arch.h"
#include "cli.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/util.h"
#include "control.h"
#include "disk.h"
#include "launch.h"
#include "session.h"

#define POOL_SOCK "pool.sock" /* in a standby's sandbox directory */
#define POOL_STARTING_GRACE_S 60 /* a starting entry its process has not filled yet */
#define POOL_RM_WAIT_MS 20000 /* pool rm waits this long for its standbys to stop */
/*
 * A replacement waits for the start that claimed to end (its process to exit: `run -- CMD`), at
 * most this long (run -d, rpc): on a machine of few cores, restoring it meanwhile would slow the
 * very start the pool is for.
 */
#define POOL_REFILL_DELAY_MS 2000

/* ---- paths and entries ----------------------------------------------------------------------- */

static bool key_ok(const char *key)
{
	return strlen(key) == POOL_KEY_LEN && strspn(key, "0123456789abcdef") == POOL_KEY_LEN;
}

/* <state>/pools/<key>[/sub]; keys come from users (pool rm): only our own shape is a path. */
static int pool_path(const char *key, const char *sub, char *out, size_t n)
{
	char state[4096];
	if (key && !key_ok(key))
		return -EINVAL;
	int r = paths_state_dir(state, sizeof(state));
	if (r < 0)
		return r;
	if (snprintf(out, n, "%s/pools%s%s%s%s", state, key ? "/" : "", key ? key : "",
		     sub ? "/" : "", sub ? sub : "") >= (int)n)
		return -ENAMETOOLONG;
	return 0;
}

int pool_key_of(const char *template_path, char key[POOL_KEY_LEN + 1])
{
	const char *base = template_path ? strrchr(template_path, '/') : NULL;
	base = base ? base + 1 : template_path;
	if (!base || strlen(base) < POOL_KEY_LEN)
		return -EINVAL;
	snprintf(key, POOL_KEY_LEN + 1, "%.*s", POOL_KEY_LEN, base);
	return key_ok(key) ? 0 : -EINVAL;
}

static bool id_ok(const char *id)
{
	return !strncmp(id, "vm-", 3) && strlen(id) <= 15 && strlen(id) > 3 &&
	       strspn(id + 3, "0123456789abcdef") == strlen(id + 3);
}

/*
 * Does the process that started at start still run? A zombie does not: a standby is nobody's
 * child, and whoever reaps orphans here may take its time.
 */
static bool proc_running(int pid, uint64_t start)
{
	char path[64], stat[512];
	if (pid <= 0 || !start || proc_start_time(pid) != start)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, stat, sizeof(stat) - 1);
	close(fd);
	stat[n > 0 ? n : 0] = 0;
	const char *p = strrchr(stat, ')');
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* An entry names its process: "PID START". */
static int entry_write(const char *path)
{
	char tmp[4400], text[64];
	int pid = getpid();
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	snprintf(text, sizeof(text), "%d %llu\n", pid, (unsigned long long)proc_start_time(pid));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = write_all(fd, text, strlen(text));
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

/* The entry's process if it still runs, else 0 (-1: not filled in yet). */
static int entry_pid(const char *path)
{
	char text[64] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	int pid = 0;
	unsigned long long start = 0;
	if (n <= 0 || sscanf(text, "%d %llu", &pid, &start) != 2)
		return -1;
	return proc_running(pid, start) ? pid : 0;
}

/* A standby whose process is gone: its directory and record go too. */
static void standby_clean(struct state *st, const char *id)
{
	char dir[4200];
	struct sb_record rec;
	if (!id_ok(id) || control_dir(id, dir, sizeof(dir)) < 0)
		return;
	if (st && state_get(st, id, &rec) == 0) {
		bool alive = proc_running(rec.pid, rec.pid_start);
		state_record_fini(&rec);
		if (alive)
			return; /* it ends itself, and cleans up */
		state_delete(st, id);
	}
	rm_rf(dir);
}

/* ---- the conf -------------------------------------------------------------------------------- */

int pool_last_error(const char *key, char *out, size_t n)
{
	char path[4400];
	out[0] = 0;
	if (pool_path(key, "error", path, sizeof(path)) < 0)
		return -EINVAL;
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	if (!fgets(out, (int)n, f))
		out[0] = 0;
	fclose(f);
	out[strcspn(out, "\n")] = 0;
	return out[0] ? 0 : -ENOENT;
}

int pool_conf_read(const char *key, struct pool_conf *c)
{
	char path[4400], line[700];
	if (pool_path(key, "conf", path, sizeof(path)) < 0)
		return -EINVAL;
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	*c = (struct pool_conf){ .cpus = 1, .memory_mb = 512 };
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char *v = strchr(line, ' ');
		if (!v)
			continue;
		*v++ = 0;
		if (!strcmp(line, "image"))
			snprintf(c->image, sizeof(c->image), "%s", v);
		else if (!strcmp(line, "cpus"))
			c->cpus = strtod(v, NULL);
		else if (!strcmp(line, "memory_mb"))
			c->memory_mb = strtoll(v, NULL, 10);
		else if (!strcmp(line, "disk_size_mb"))
			c->disk_size_mb = strtoll(v, NULL, 10);
		else if (!strcmp(line, "accel"))
			snprintf(c->accel, sizeof(c->accel), "%s", v);
		else if (!strcmp(line, "platform"))
			snprintf(c->platform, sizeof(c->platform), "%s", v);
		else if (!strcmp(line, "size"))
			c->size = (unsigned)strtoul(v, NULL, 10);
	}
	fclose(f);
	if (c->size > POOL_MAX_SIZE)
		c->size = POOL_MAX_SIZE;
	return c->image[0] ? 0 : -EINVAL;
}

static int conf_write(const char *key, const struct pool_conf *c)
{
	char path[4400], tmp[4500];
	int r = pool_path(key, "conf", path, sizeof(path));
	if (r < 0)
		return r;
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, getpid());
	FILE *f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f,
		"image %s\ncpus %g\nmemory_mb %lld\ndisk_size_mb %lld\naccel %s\nplatform %s\nsize "
		"%u\n",
		c->image, c->cpus, c->memory_mb, c->disk_size_mb, c->accel[0] ? c->accel : "auto",
		c->platform, c->size);
	r = fclose(f) == 0 && rename(tmp, path) == 0 ? 0 : -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

/* The spec a standby of c starts from: the shape, nothing else. */
static int conf_spec(const struct pool_conf *c, struct sandbox_spec *sp)
{
	if (sandbox_spec_init(sp) < 0)
		return -ENOMEM;
	sp->cpus = c->cpus;
	sp->memory_mb = c->memory_mb;
	sp->has_disk_size = c->disk_size_mb > 0;
	sp->disk_size_mb = c->disk_size_mb;
	sp->lifetime = LIFETIME_CLIENT;
	sp->rm = 1;
	sp->no_pool = true;
	if (spec_strdup(&sp->image, c->image) < 0 ||
	    (c->accel[0] && spec_strdup(&sp->accel, c->accel) < 0) ||
	    (c->platform[0] && spec_strdup(&sp->platform, c->platform) < 0)) {
		sandbox_spec_fini(sp);
		return -ENOMEM;
	}
	return 0;
}

/* ---- counting and refilling --------------------------------------------------------------------
 */

typedef void (*entry_fn)(struct state *st, const char *key, const char *sub, const char *name,
			 int pid, void *opaque);

/* Call fn for each entry of <pool>/sub (pid: entry_pid's). */
static void entries_each(struct state *st, const char *key, const char *sub, entry_fn fn,
			 void *opaque)
{
	char dir[4400];
	if (pool_path(key, sub, dir, sizeof(dir)) < 0)
		return;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp"))
			continue;
		char p[4700];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		fn(st, key, sub, e->d_name, entry_pid(p), opaque);
	}
	if (d)
		closedir(d);
}

struct tally {
	unsigned ready, starting;
	int pids[2 * POOL_MAX_SIZE + 8];
	char ids[POOL_MAX_SIZE + 8][16];
	unsigned npids, nids;
};

static void entry_tally(struct state *st, const char *key, const char *sub, const char *name,
			int pid, void *opaque)
{
	struct tally *t = opaque;
	char p[4400], path[4700];
	pool_path(key, sub, p, sizeof(p));
	snprintf(path, sizeof(path), "%s/%s", p, name);
	bool ready = !strcmp(sub, "ready");
	if (pid < 0 && !ready) {
		/* Not filled in yet: its process is starting, unless that was long ago. */
		struct stat sb;
		if (stat(path, &sb) == 0 && time(NULL) - sb.st_mtime < POOL_STARTING_GRACE_S) {
			t->starting++;
			return;
		}
	}
	if (pid <= 0) {
		unlink(path);
		if (ready)
			standby_clean(st, name);
		return;
	}
	if (ready) {
		t->ready++;
		if (t->nids < ARRAY_SIZE(t->ids))
			snprintf(t->ids[t->nids++], sizeof(t->ids[0]), "%s", name);
	} else {
		t->starting++;
	}
	if (t->npids < ARRAY_SIZE(t->pids))
		t->pids[t->npids++] = pid;
}

/*
 * A claim whose process died between taking an entry and taking the VM (claimed/ID.PID), or a
 * retirement that did not finish (claimed/ID.rm): the standby goes back to ready/, or is stopped,
 * or, gone already, is cleaned.
 */
static void entry_recover(struct state *st, const char *key, const char *sub, const char *name,
			  int pid, void *opaque)
{
	(void)opaque;
	char dir[4400], path[4700], back[4700], id[16];
	const char *dot = strrchr(name, '.');
	if (!dot || dot - name >= (int)sizeof(id))
		return;
	snprintf(id, sizeof(id), "%.*s", (int)(dot - name), name);
	int claimer = atoi(dot + 1);
	if (!id_ok(id) || (claimer > 0 && proc_running(claimer, proc_start_time(claimer))))
		return; /* its claim is under way */
	pool_path(key, sub, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(back, sizeof(back), "%s/../ready/%s", dir, id);
	if (pid > 0 && claimer > 0 && rename(path, back) == 0)
		return;
	if (pid > 0)
		kill(pid, SIGTERM);
	unlink(path);
	if (pid <= 0)
		standby_clean(st, id);
}

void pool_count(struct state *st, const char *key, unsigned *ready, unsigned *starting)
{
	struct tally t = { 0 };
	entries_each(st, key, "claimed", entry_recover, NULL);
	entries_each(st, key, "ready", entry_tally, &t);
	entries_each(st, key, "starting", entry_tally, &t);
	*ready = t.ready;
	*starting = t.starting;
}

/*
 * Start `matchlock pool __standby KEY TOKEN [CLAIMER]`, detached (no daemon: it ends with its
 * standby); claimer: the pid it waits for (POOL_REFILL_DELAY_MS), 0 for none.
 */
static int standby_spawn(const char *key, pid_t claimer)
{
	char token[12], path[4400], name[32], who[16];
	snprintf(who, sizeof(who), "%d", (int)claimer);
	cli_new_id(token);
	snprintf(name, sizeof(name), "starting/%s", token + 3);
	if (pool_path(key, name, path, sizeof(path)) < 0)
		return -EINVAL;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	close(fd);
	pid_t pid = fork();
	if (pid < 0) {
		unlink(path);
		return -errno;
	}
	if (pid == 0) {
		/* Twice: the standby is nobody's child, so nobody has to reap it. */
		if (fork() != 0)
			_exit(0);
		setsid();
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		for (int sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		close_range(3, ~0u, 0);
		execl("/proc/self/exe", "matchlock", "pool", "__standby", key, token + 3, who,
		      (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return 0;
}

/* Retire a ready standby: take its entry (no claim can get it then) and ask it to stop. */
static int standby_retire(const char *key, const char *id, int pid)
{
	char from[4400], to[4400], sub[64];
	snprintf(sub, sizeof(sub), "ready/%s", id);
	if (pool_path(key, sub, from, sizeof(from)) < 0)
		return -EINVAL;
	snprintf(sub, sizeof(sub), "claimed/%s.rm", id);
	pool_path(key, sub, to, sizeof(to));
	if (rename(from, to) < 0)
		return -errno; /* claimed meanwhile */
	kill(pid, SIGTERM);
	unlink(to);
	return 0;
}

/* Bring the pool to its size: start what is missing, retire what is too much. */
static void pool_refill(struct state *st, const char *key, pid_t claimer)
{
	char lockp[4400];
	struct pool_conf c;
	if (pool_path(key, "lock", lockp, sizeof(lockp)) < 0 || pool_conf_read(key, &c) < 0)
		return;
	int lk = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lk < 0 || flock(lk, LOCK_EX) < 0) {
		if (lk >= 0)
			close(lk);
		return;
	}
	struct tally t = { 0 };
	entries_each(st, key, "claimed", entry_recover, NULL);
	entries_each(st, key, "ready", entry_tally, &t);
	unsigned nready_pids = t.npids;
	entries_each(st, key, "starting", entry_tally, &t);
	for (unsigned have = t.ready + t.starting; have < c.size; have++)
		if (standby_spawn(key, claimer) < 0)
			break;
	for (unsigned i = 0; i < t.nids && i < nready_pids && t.ready + t.starting > c.size; i++)
		if (standby_retire(key, t.ids[i], t.pids[i]) == 0)
			t.ready--;
	close(lk);
}

/* ---- claiming -------------------------------------------------------------------------------- */

/* The standby's handoff: "PID NEXT_ID PEER_LAST_ID" and SANDBOX_VM_FDS fds. */
static int vm_recv(int fd, struct sandbox_vm *vm)
{
	char text[128];
	struct iovec iov = { .iov_base = text, .iov_len = sizeof(text) - 1 };
	union {
		char buf[CMSG_SPACE(SANDBOX_VM_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int k = poll(&p, 1, POOL_HANDOFF_MS);
	if (k <= 0)
		return k == 0 ? -ETIMEDOUT : -errno;
	ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : -errno;
	int fds[SANDBOX_VM_FDS], nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int m = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < m; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (nfds < SANDBOX_VM_FDS)
				fds[nfds++] = f;
			else
				close(f);
		}
	}
	text[n] = 0;
	int pid = 0;
	unsigned next = 0, peer = 0;
	if (nfds != SANDBOX_VM_FDS || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    sscanf(text, "%d %u %u", &pid, &next, &peer) != 3 || pid <= 0) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		return -EPROTO;
	}
	*vm = (struct sandbox_vm){ .qemu_pid = pid,
				   .link = fds[0],
				   .con = fds[1],
				   .qerr = fds[2],
				   .qmp = fds[3],
				   .pidfd = fds[4],
				   .fs = fds[5],
				   .next_id = next,
				   .peer_last_id = peer };
	return 0;
}

static int vm_send(int fd, const struct sandbox_vm *vm)
{
	char text[128];
	int fds[SANDBOX_VM_FDS] = { vm->link, vm->con, vm->qerr, vm->qmp, vm->pidfd, vm->fs };
	int n = snprintf(text, sizeof(text), "%d %u %u", (int)vm->qemu_pid, vm->next_id,
			 vm->peer_last_id);
	struct iovec iov = { .iov_base = text, .iov_len = (size_t)n };
	union {
		char buf[CMSG_SPACE(SANDBOX_VM_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr mh = { .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(c), fds, sizeof(fds));
	ssize_t k;
	do
		k = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (k < 0 && errno == EINTR);
	return k < 0 ? -errno : 0;
}

/* Take one standby's VM over (its entry is ours already, renamed to claimed). */
static int standby_take(const char *id, struct pool_claim *c)
{
	if (!id_ok(id) || control_dir(id, c->dir, sizeof(c->dir)) < 0)
		return -EINVAL;
	int fd = control_connect_named(c->dir, POOL_SOCK);
	if (fd < 0)
		return fd;
	int r = vm_recv(fd, &c->vm);
	if (r < 0) {
		close(fd);
		return r;
	}
	snprintf(c->id, sizeof(c->id), "%.15s", id);
	snprintf(c->disk, sizeof(c->disk), "%s/" DISK_FILE, c->dir);
	c->lease_fd = fd;
	char sock[4400];
	snprintf(sock, sizeof(sock), "%s/" POOL_SOCK, c->dir);
	unlink(sock);
	return 0;
}

int pool_claim(struct state *st, const char *template_path, double cpus, struct pool_claim *c)
{
	char key[POOL_KEY_LEN + 1], dir[4400];
	struct pool_conf conf;
	if (pool_key_of(template_path, key) < 0 || pool_path(key, "ready", dir, sizeof(dir)) < 0)
		return -ENOENT;
	/*
	 * The template knows whole CPUs; a fractional quota is part of the identity a standby has
	 * applied already, and a claim without one would not undo it.
	 */
	if (pool_conf_read(key, &conf) < 0 || fabs(conf.cpus - cpus) > 1e-9)
		return -ENOENT;
	DIR *d = opendir(dir);
	if (!d)
		return -ENOENT;
	int r = -ENOENT;
	struct dirent *e;
	for (int tries = 0; r < 0 && tries < POOL_MAX_SIZE && (e = readdir(d));) {
		if (!id_ok(e->d_name))
			continue;
		char from[4700], to[4700];
		snprintf(from, sizeof(from), "%s/%s", dir, e->d_name);
		snprintf(to, sizeof(to), "%s/../claimed/%s.%d", dir, e->d_name, getpid());
		/* The one atomic step: whoever renames the entry owns the standby. */
		if (rename(from, to) < 0)
			continue;
		tries++;
		int pid = entry_pid(to);
		r = pid > 0 ? standby_take(e->d_name, c) : -ESRCH;
		unlink(to);
		if (r < 0) {
			debug("pool: standby %s skipped: %s", e->d_name, strerror(-r));
			standby_clean(st, e->d_name);
		}
	}
	closedir(d);
	pool_refill(st, key, getpid());
	return r;
}

/* ---- pool set, rm, ls, gc -------------------------------------------------------------------- */

int pool_keys(char keys[][POOL_KEY_LEN + 1], int max)
{
	char dir[4400];
	int n = 0;
	if (pool_path(NULL, NULL, dir, sizeof(dir)) < 0)
		return 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && n < max && (e = readdir(d)))
		if (key_ok(e->d_name))
			snprintf(keys[n++], POOL_KEY_LEN + 1, "%s", e->d_name);
	if (d)
		closedir(d);
	return n;
}

int pool_set(struct pool_conf *conf, char *key, char *err, size_t errn)
{
	struct sandbox_spec sp;
	struct oci_image_config cfg;
	struct launch L;
	char disk[4200], why[300];
	int r = conf_spec(conf, &sp);
	if (r < 0) {
		snprintf(err, errn, "out of memory");
		return r;
	}
	r = sandbox_spec_check(&sp, err, errn);
	/* The platform a run would default to now ($MATCHLOCK_PLATFORM, else the host's). */
	enum guest_arch arch = arch_host();
	if (r == 0 && sp.platform)
		arch_parse(sp.platform, &arch, why, sizeof(why));
	sandbox_spec_fini(&sp);
	if (r < 0)
		return r;
	snprintf(conf->platform, sizeof(conf->platform), "%s", arch_platform(arch));
	if ((r = oci_image_prepare(conf->image, arch_table[arch].oci, disk, sizeof(disk), &cfg, err,
				   errn)) < 0)
		return r;
	oci_config_fini(&cfg);
	if ((r = launch_prepare(&L, NULL, arch, conf->accel[0] ? conf->accel : NULL, err, errn)) <
	    0)
		return r;
	snprintf(L.disk, sizeof(L.disk), "%s", disk);
	/* The machine part of the shape, as session_boot makes it: the template names the pool. */
	struct sandbox_config sc = {
		.cpus = (unsigned)ceil(conf->cpus),
		.memory_mb = (unsigned)conf->memory_mb,
		.scratch = "",
		.scratch_mb = conf->disk_size_mb > 0 ? conf->disk_size_mb : DISK_DEFAULT_MB,
	};
	launch_config(&L, &sc);
	if (!sc.template_path || pool_key_of(sc.template_path, key) < 0) {
		snprintf(err, errn, "a pool needs snapshots (MATCHLOCK_NO_SNAPSHOT is set)");
		return -EINVAL;
	}
	static const char *const subs[] = { "ready", "starting", "claimed" };
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++) {
		char p[4400];
		pool_path(key, subs[i], p, sizeof(p));
		if ((r = mkdir_p(p, 0700)) < 0) {
			snprintf(err, errn, "cannot create %s: %s", p, strerror(-r));
			return r;
		}
	}
	if ((r = conf_write(key, conf)) < 0) {
		snprintf(err, errn, "cannot write the pool's configuration: %s", strerror(-r));
		return r;
	}
	struct state *st;
	if (state_open(&st, err, errn) < 0)
		return -EIO;
	pool_refill(st, key, 0);
	state_close(st);
	return 0;
}

static void entry_stop(struct state *st, const char *key, const char *sub, const char *name,
		       int pid, void *opaque)
{
	(void)st;
	struct tally *t = opaque;
	if (pid <= 0)
		return;
	if (!strcmp(sub, "ready") && standby_retire(key, name, pid) < 0)
		return; /* claimed meanwhile: it is somebody's sandbox now */
	if (strcmp(sub, "ready"))
		kill(pid, SIGTERM);
	if (t->npids < ARRAY_SIZE(t->pids))
		t->pids[t->npids++] = pid;
	if (!strcmp(sub, "ready") && t->nids < ARRAY_SIZE(t->ids))
		snprintf(t->ids[t->nids++], sizeof(t->ids[0]), "%s", name);
}

int pool_remove(struct state *st, const char *key, char *err, size_t errn)
{
	char conf[4400], gone[4400], dir[4400];
	if (pool_path(key, "conf", conf, sizeof(conf)) < 0) {
		snprintf(err, errn, "pool %.64s: no such pool (see 'matchlock pool ls')", key);
		return -ENOENT;
	}
	pool_path(key, "conf.gone", gone, sizeof(gone));
	pool_path(key, NULL, dir, sizeof(dir));
	/* First: no refill starts another one, no standby publishes itself. */
	if (rename(conf, gone) < 0 && errno != ENOENT) {
		snprintf(err, errn, "pool %s: %s", key, strerror(errno));
		return -errno;
	}
	if (access(dir, F_OK) < 0) {
		snprintf(err, errn, "pool %.64s: no such pool (see 'matchlock pool ls')", key);
		return -ENOENT;
	}
	char lockp[4400];
	pool_path(key, "lock", lockp, sizeof(lockp));
	int lk = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lk >= 0)
		flock(lk, LOCK_EX);
	struct tally t = { 0 };
	entries_each(st, key, "claimed", entry_recover, NULL);
	entries_each(st, key, "starting", entry_stop, &t);
	entries_each(st, key, "ready", entry_stop, &t);
	uint64_t until = now_ns() + POOL_RM_WAIT_MS * 1000000ull;
	for (unsigned i = 0; i < t.npids; i++)
		while (kill(t.pids[i], 0) == 0 && now_ns() < until)
			usleep(20000);
	for (unsigned i = 0; i < t.nids; i++)
		standby_clean(st, t.ids[i]);
	if (lk >= 0)
		close(lk);
	rm_rf(dir);
	return 0;
}

int pool_remove_image(struct state *st, const char *ref)
{
	char keys[POOL_MAX_POOLS][POOL_KEY_LEN + 1], err[300];
	int n = pool_keys(keys, POOL_MAX_POOLS), removed = 0;
	for (int i = 0; i < n; i++) {
		struct pool_conf c;
		if (pool_conf_read(keys[i], &c) == 0 && !strcmp(c.image, ref) &&
		    pool_remove(st, keys[i], err, sizeof(err)) == 0)
			removed++;
	}
	return removed;
}

int pool_gc(struct state *st)
{
	char keys[POOL_MAX_POOLS][POOL_KEY_LEN + 1], err[300];
	int n = pool_keys(keys, POOL_MAX_POOLS), cleaned = 0;
	for (int i = 0; i < n; i++) {
		struct pool_conf c;
		if (pool_conf_read(keys[i], &c) < 0) {
			/* A pool rm that did not finish. */
			if (pool_remove(st, keys[i], err, sizeof(err)) == 0)
				cleaned++;
			continue;
		}
		unsigned ready, starting;
		pool_count(st, keys[i], &ready, &starting);
	}
	return cleaned;
}

/* ---- the standby --------------------------------------------------------------------------- */

struct standby {
	struct session s;
	struct loop loop;
	char key[POOL_KEY_LEN + 1];
	char starting[4400], ready[4400];
	bool started, warm, stop;
	int start_r;
	struct watch sig_w, listen_w;
};

static void standby_error(const char *key, const char *what)
{
	char path[4400];
	if (pool_path(key, "error", path, sizeof(path)) == 0) {
		FILE *f = fopen(path, "we");
		if (f) {
			fprintf(f, "%s\n", what);
			fclose(f);
		}
	}
}

static void on_standby_started(struct session *s, int r, const char *err, void *opaque)
{
	(void)s;
	struct standby *b = opaque;
	b->started = true;
	b->start_r = r;
	if (r < 0 && r != -ECANCELED) /* a cancel is pool rm's or a signal's, not a failure */
		standby_error(b->key, err);
}

static void on_standby_signal(struct watch *w, uint32_t events)
{
	(void)events;
	struct standby *b = w->obj;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGWINCH)
			continue;
		b->stop = true;
		if (!b->started)
			session_cancel(&b->s);
	}
}

static void warm_output(struct sandbox_exec *x, int chan, const uint8_t *p, size_t n)
{
	(void)chan;
	(void)p;
	sandbox_exec_consumed(x, n);
}

static void warm_done(struct sandbox_exec *x, int status, const char *err)
{
	(void)status;
	(void)err;
	*(bool *)sandbox_exec_opaque(x) = true;
}

/* After the handoff: become QEMU's holder, with nothing of the standby's left in memory. */
static void standby_become_holder(int lease, int pidfd)
{
	int l = fcntl(lease, F_DUPFD, 16), p = fcntl(pidfd, F_DUPFD, 16);
	if (l < 0 || p < 0 || dup2(l, 3) < 0 || dup2(p, 4) < 0)
		_exit(1); /* QEMU dies with us (its parent-death signal): the claimer falls back */
	close_range(5, ~0u, 0);
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	execl("/proc/self/exe", "matchlock", "pool", "__hold", "3", "4", (char *)NULL);
	_exit(1);
}

static void on_standby_claim(struct watch *w, uint32_t events)
{
	(void)events;
	struct standby *b = w->obj;
	int c = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return;
	if (!control_peer_allowed(c)) { /* as the control socket: the owner (or root) only */
		close(c);
		return;
	}
	struct sandbox_vm vm;
	/*
	 * A failed sandbox is never handed out: the claimer sees the close and skips us. QEMU's
	 * end may be waiting in this very batch of events: ask its pidfd now.
	 */
	struct pollfd qemu = { .fd = sandbox_pidfd(b->s.sb), .events = POLLIN };
	if (sandbox_failure(b->s.sb) || poll(&qemu, 1, 0) != 0 ||
	    sandbox_release_vm(b->s.sb, &vm) < 0) {
		close(c);
		return;
	}
	if (vm_send(c, &vm) < 0) {
		/* The VM is out of our sandbox: it can only end, with this process. */
		b->stop = true;
		close(c);
		return;
	}
	standby_become_holder(c, vm.pidfd);
}

/* Publish the standby (unless the pool went away meanwhile). */
static int standby_publish(struct standby *b)
{
	char conf[4400], name[64];
	pool_path(b->key, "conf", conf, sizeof(conf));
	snprintf(name, sizeof(name), "ready/%s", b->s.L.id);
	pool_path(b->key, name, b->ready, sizeof(b->ready));
	if (access(conf, F_OK) < 0)
		return -ENOENT;
	int r = entry_write(b->ready);
	if (r == 0) {
		unlink(b->starting);
		char errp[4400];
		if (pool_path(b->key, "error", errp, sizeof(errp)) == 0)
			unlink(errp); /* the last failure is over */
	}
	return r;
}

static void standby_stopped(struct session *s, void *opaque)
{
	(void)s;
	*(bool *)opaque = true;
}

/* Wait until the claimer's process ended, at most POOL_REFILL_DELAY_MS. */
static void standby_delay(pid_t claimer)
{
	int fd = claimer > 0 ? (int)syscall(SYS_pidfd_open, claimer, 0) : -1;
	if (fd < 0)
		return;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (poll(&p, 1, POOL_REFILL_DELAY_MS) < 0 && errno == EINTR)
		;
	close(fd);
}

int pool_standby_main(const char *key, const char *token, pid_t claimer)
{
	struct standby *b = calloc(1, sizeof(*b));
	struct pool_conf conf;
	struct sandbox_spec spec;
	char err[1024] = "", name[64];
	if (!b || !key_ok(key) || strspn(token, "0123456789abcdef") != strlen(token) ||
	    strlen(token) > 16)
		return EXIT_MATCHLOCK;
	snprintf(b->key, sizeof(b->key), "%s", key);
	snprintf(name, sizeof(name), "starting/%s", token);
	pool_path(key, name, b->starting, sizeof(b->starting));
	if (access(b->starting, F_OK) < 0 || entry_write(b->starting) < 0)
		return EXIT_MATCHLOCK;
	standby_delay(claimer);
	log_set_quiet(1);
	signal(SIGPIPE, SIG_IGN);
	int sigfd = cli_signalfd();
	if (pool_conf_read(key, &conf) < 0 || conf_spec(&conf, &spec) < 0 ||
	    loop_init(&b->loop) < 0 || sigfd < 0) {
		unlink(b->starting);
		return EXIT_MATCHLOCK;
	}
	watch_init(&b->sig_w, sigfd, on_standby_signal, b);
	loop_watch(&b->loop, &b->sig_w, EPOLLIN);
	int r = session_start(&b->s, &spec, &b->loop, on_standby_started, b, err, sizeof(err));
	if (r < 0)
		standby_error(key, err);
	while (r == 0 && !b->started)
		loop_run_once(&b->loop, 0);
	struct session *s = &b->s;
	char got[POOL_KEY_LEN + 1] = "";
	if (r == 0 && b->start_r == 0 &&
	    (pool_key_of(s->sc.template_path, got) < 0 || strcmp(got, key))) {
		/* The image's tag moved, or the machine changed: this shape is not the pool's. */
		standby_error(key, "the image or the machine changed since 'pool set': set the "
				   "pool again");
		b->stop = true;
	}
	if (r == 0 && b->start_r == 0 && !b->stop) {
		/* The first command: the translation cache warms up here, not in the user's. */
		static char *argv[] = { "true", NULL };
		struct exec_request req = { .argv = argv, .env = env_vector(&s->env) };
		static const struct exec_ops ops = { .output = warm_output, .done = warm_done };
		if (!sandbox_exec_start(s->sb, &req, &ops, &b->warm, err, sizeof(err)))
			b->warm = true;
		while (!b->warm && !b->stop && !s->sup.stop && !sandbox_failure(s->sb))
			loop_run_once(&b->loop, 0);
		int fd = control_listen_named(s->L.dir, POOL_SOCK, err, sizeof(err));
		if (fd < 0 || standby_publish(b) < 0) {
			b->stop = true;
			if (fd >= 0)
				close(fd);
		} else {
			watch_init(&b->listen_w, fd, on_standby_claim, b);
			loop_watch(&b->loop, &b->listen_w, EPOLLIN);
		}
		while (!b->stop && !s->sup.stop && !sandbox_failure(s->sb))
			loop_run_once(&b->loop, 0);
		/* Ours still, unless a claim or a pool rm took it. */
		if (b->ready[0])
			unlink(b->ready);
		bool done = false;
		session_stop(s, NULL, standby_stopped, &done);
		while (s->sb && !done)
			loop_run_once(&b->loop, 0);
	}
	unlink(b->starting);
	session_fini(s);
	return 0;
}

int pool_hold_main(int lease, int pidfd)
{
	/* Our fate is the lease's: a signal meant for the standby we were must not end QEMU. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	struct pollfd p[2] = { { .fd = lease, .events = POLLIN },
			       { .fd = pidfd, .events = POLLIN } };
	for (;;) {
		int k = poll(p, 2, -1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 || p[1].revents)
			break;
		if (p[0].revents) {
			char c;
			if (recv(lease, &c, 1, MSG_DONTWAIT) > 0)
				continue;
			/* The sandbox's supervisor is gone: so is the sandbox. */
			syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
			p[0].fd = -1;
		}
	}
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	return 0;
}
