/* SPDX-License-Identifier: MIT */
/* QEMU's jail and the supervisor's: jail.h says what each holds. */
#define _GNU_SOURCE
#include "jail.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/magic.h>
#include <linux/securebits.h>

#include "common/log.h"
#include "common/util.h"

#define JAIL_NS_FLAGS \
	(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWCGROUP)
#define JAIL_MAX_BINDS 16
#define CGROUP_ROOT "/sys/fs/cgroup"

bool jail_enabled(void)
{
	const char *e = getenv("MATCHLOCK_NO_JAIL");
	return !(e && *e && strcmp(e, "0") != 0);
}

/* ---- in the child -------------------------------------------------------------------------- */

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = write_all(fd, s, strlen(s));
	close(fd);
	return r;
}

/* A one-line reason on errfd, then out: the parent reports it. */
static noreturn void child_die(int errfd, const char *what, int e)
{
	dprintf(errfd, "QEMU's jail: %s: %s", what, strerror(e));
	_exit(127);
}

/* Something to bind into the new root: an fd opened before the old root is hidden. */
struct bind {
	int fd;
	const char *path; /* where, inside the new root (the same as outside) */
	bool dir;
};

/* mkdir -p of path's parent inside root, then an empty file or dir at path to mount on. */
static int make_target(const char *root, const char *path, bool dir)
{
	char full[4400];
	if (snprintf(full, sizeof(full), "%s%s", root, path) >= (int)sizeof(full))
		return -ENAMETOOLONG;
	char *slash = strrchr(full, '/');
	if (slash && slash != full) {
		*slash = 0;
		int r = mkdir_p(full, 0755);
		*slash = '/';
		if (r < 0)
			return r;
	}
	if (dir)
		return mkdir(full, 0755) < 0 && errno != EEXIST ? -errno : 0;
	int fd = open(full, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

/*
 * Bind b at its path under root, read-only. A mount made in a user namespace keeps the flags it
 * inherited locked (nosuid, nodev, noexec, atime): the read-only remount repeats them.
 */
static int bind_ro(const char *root, const struct bind *b)
{
	char src[64], dst[4400];
	snprintf(src, sizeof(src), "/proc/self/fd/%d", b->fd);
	snprintf(dst, sizeof(dst), "%s%s", root, b->path);
	int r = make_target(root, b->path, b->dir);
	if (r < 0)
		return r;
	if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
		return -errno;
	struct statvfs sv;
	if (statvfs(dst, &sv) < 0)
		return -errno;
	static const struct {
		unsigned long st, ms;
	} keep[] = { { ST_NOSUID, MS_NOSUID },	       { ST_NODEV, MS_NODEV },
		     { ST_NOEXEC, MS_NOEXEC },	       { ST_NOATIME, MS_NOATIME },
		     { ST_NODIRATIME, MS_NODIRATIME }, { ST_RELATIME, MS_RELATIME } };
	unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID;
	for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
		if (sv.f_flag & keep[i].st)
			flags |= keep[i].ms;
	return mount(NULL, dst, NULL, flags, NULL) < 0 ? -errno : 0;
}

/* /bin, /lib, ... : the same symlink into /usr (merged /usr), or the directory bound. */
static int add_top(const char *root, const char *path, struct bind *b, unsigned *nb)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return 0;
	if (S_ISLNK(st.st_mode)) {
		char to[256], at[4400];
		ssize_t k = readlink(path, to, sizeof(to) - 1);
		if (k < 0)
			return -errno;
		to[k] = 0;
		snprintf(at, sizeof(at), "%s%s", root, path);
		return symlink(to, at) < 0 ? -errno : 0;
	}
	if (*nb >= JAIL_MAX_BINDS)
		return -E2BIG;
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	b[(*nb)++] = (struct bind){ .fd = fd, .path = path, .dir = S_ISDIR(st.st_mode) };
	return 0;
}

/*
 * A file QEMU only reads, our descriptor fd: its bind source (the same file, found by the path
 * the kernel gives for fd) as b, to be bound at /.ro/FD. 0 when there is nothing to protect: a
 * memfd (a private copy), or a file QEMU's identity (ours now, with the namespace's powers
 * only) neither owns nor may write -- root's files, for a QEMU root started. Else -errno with
 * what in *what.
 */
static int ro_source(int fd, struct bind *b, char *path, size_t n, const char **what)
{
	char link[64];
	struct stat want, got;
	*what = "a file QEMU reads";
	if (fcntl(fd, F_GET_SEALS) >= 0)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if (fstat(fd, &want) < 0)
		return -errno;
	if (want.st_uid != geteuid() && access(link, W_OK) < 0)
		return 0;
	ssize_t k = readlink(link, path, n - 1);
	if (k < 0)
		return -errno;
	path[k] = 0;
	*what = path;
	if (!S_ISREG(want.st_mode) || path[0] != '/')
		return -EINVAL;
	int src = open(path, O_PATH | O_CLOEXEC);
	if (src < 0)
		return -errno; /* removed while we start (the kernel says "PATH (deleted)") */
	if (fstat(src, &got) < 0 || got.st_dev != want.st_dev || got.st_ino != want.st_ino) {
		close(src);
		return -ESTALE; /* replaced while we start */
	}
	b->fd = src;
	b->dir = false;
	return 1;
}

/*
 * The new root: a tmpfs with what QEMU needs and nothing else, made read-only; then the old
 * root is detached. Every source is opened before the tmpfs hides anything. The files QEMU
 * only reads (jc->ro_fds) are swapped for the same files through read-only bind mounts.
 */
static void child_mounts(const struct jail_config *jc, int errfd)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		child_die(errfd, "making mounts private", errno);
	struct bind b[JAIL_MAX_BINDS];
	unsigned nb = 0;
	const char *files[] = { "/etc/ld.so.cache",
				"/dev/null",
				"/dev/zero",
				"/dev/urandom",
				"/dev/random",
				jc->kvm ? "/dev/kvm" : NULL,
				jc->exe };
	int fd = open("/usr", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		child_die(errfd, "/usr", errno);
	b[nb++] = (struct bind){ .fd = fd, .path = "/usr", .dir = true };
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		if (!files[i] || (i == ARRAY_SIZE(files) - 1 && !strncmp(files[i], "/usr/", 5)))
			continue;
		fd = open(files[i], O_PATH | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && i < 5)
			continue; /* a host without one: QEMU does without it */
		if (fd < 0)
			child_die(errfd, files[i], errno);
		b[nb++] = (struct bind){ .fd = fd, .path = files[i] };
	}
	struct bind ro[JAIL_MAX_RO_FDS];
	char ro_paths[JAIL_MAX_RO_FDS][32], where[4200];
	int ro_fd[JAIL_MAX_RO_FDS]; /* which of our descriptors each becomes */
	unsigned nro = 0;
	for (unsigned i = 0; i < jc->nro_fds && i < JAIL_MAX_RO_FDS; i++) {
		const char *what;
		int r = ro_source(jc->ro_fds[i], &ro[nro], where, sizeof(where), &what);
		if (r < 0)
			child_die(errfd, what, -r);
		if (r == 0)
			continue;
		snprintf(ro_paths[nro], sizeof(ro_paths[nro]), "/.ro/%d", jc->ro_fds[i]);
		ro[nro].path = ro_paths[nro];
		ro_fd[nro++] = jc->ro_fds[i];
	}
	/* The tmpfs goes over /tmp (any directory would do: nothing under it is used). */
	const char *root = "/tmp";
	if (mount("matchlock", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "mode=0755,size=64k,nr_inodes=256") < 0)
		child_die(errfd, "tmpfs root", errno);
	static const char *const tops[] = { "/bin", "/sbin", "/lib", "/lib64", "/lib32" };
	for (size_t i = 0; i < ARRAY_SIZE(tops); i++) {
		int r = add_top(root, tops[i], b, &nb);
		if (r < 0)
			child_die(errfd, tops[i], -r);
	}
	for (unsigned i = 0; i < nb; i++) {
		int r = bind_ro(root, &b[i]);
		if (r < 0)
			child_die(errfd, b[i].path, -r);
		close(b[i].fd);
	}
	for (unsigned i = 0; i < nro; i++) {
		int r = bind_ro(root, &ro[i]);
		close(ro[i].fd);
		snprintf(where, sizeof(where), "%s%s", root, ro[i].path);
		int v = r < 0 ? r : open(where, O_RDONLY | O_CLOEXEC);
		if (v < 0)
			child_die(errfd, "a read-only view of a file QEMU reads",
				  r < 0 ? -r : errno);
		if (dup3(v, ro_fd[i], O_CLOEXEC) < 0)
			child_die(errfd, "a read-only view of a file QEMU reads", errno);
		close(v);
	}
	/* Our own /proc: the VMM's fds by path (/proc/self/fd/N), and only its own process. */
	char proc[64];
	snprintf(proc, sizeof(proc), "%s/proc", root);
	if (mkdir(proc, 0555) < 0 ||
	    mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		child_die(errfd, "mounting /proc", errno);
	if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
		child_die(errfd, "pivot_root", errno);
	if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		child_die(errfd, "detaching the old root", errno);
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL) < 0)
		child_die(errfd, "read-only root", errno);
}

/* Lower a limit, never raise one: a tighter limit the user set stays. */
static void rlimit_lower(int res, rlim_t v)
{
	struct rlimit rl;
	if (getrlimit(res, &rl) < 0)
		return;
	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > v)
		rl.rlim_max = v;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > rl.rlim_max)
		rl.rlim_cur = rl.rlim_max;
	setrlimit(res, &rl);
}

static void child_limits(const struct jail_config *jc)
{
	rlimit_lower(RLIMIT_CORE, 0); /* guest memory never lands in a core file */
	rlimit_lower(RLIMIT_NOFILE, JAIL_NOFILE);
	rlimit_lower(RLIMIT_NPROC, JAIL_NPROC);
	rlimit_lower(RLIMIT_MEMLOCK, 64 << 10);
	rlimit_lower(RLIMIT_AS, ((rlim_t)jc->memory_mb + JAIL_AS_EXTRA_MB) << 20);
}

/*
 * No capability now or after exec, in whatever user namespace we are: the bounding set emptied,
 * root's exec rules off for good (securebits), no ambient set, no_new_privs. In the user
 * namespace QEMU stays "root" there -- uid 0 mapped to an unprivileged uid -- with nothing.
 */
static void child_drop_caps(int errfd, bool userns, uid_t uid, gid_t gid)
{
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno == EINVAL)
			break;
	if (prctl(PR_SET_SECUREBITS,
		  SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
		      SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
		      SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
		  0, 0, 0) < 0)
		child_die(errfd, "securebits", errno);
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (!userns) {
		/* Root without user namespaces: an unprivileged identity, the plain way. */
		if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
		    setresuid(uid, uid, uid) < 0)
			child_die(errfd, "dropping to an unprivileged identity", errno);
	}
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capset, &h, d) < 0)
		child_die(errfd, "dropping capabilities", errno);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_die(errfd, "no_new_privs", errno);
}

/* ---- cgroup v2 ----------------------------------------------------------------------------- */

/* A word of a space-separated list (cgroup.subtree_control): "cpu" is not "cpuset". */
static bool has_word(const char *list, const char *w)
{
	size_t n = strlen(w);
	for (const char *p = list; (p = strstr(p, w)); p += n)
		if ((p == list || p[-1] == ' ') && (!p[n] || p[n] == ' ' || p[n] == '\n'))
			return true;
	return false;
}

/*
 * Where sandbox cgroups go: next to our own cgroup (a cgroup with processes in it cannot hand
 * controllers to children), or under it when ours is the root of what we see. Usable only when
 * it is writable and hands memory, pids and cpu to its children. Returns 0 with the directory,
 * or -errno with why.
 */
static int cgroup_base(char *out, size_t n, char *why, size_t whyn)
{
	struct statfs sf;
	if (statfs(CGROUP_ROOT, &sf) < 0 || sf.f_type != CGROUP2_SUPER_MAGIC) {
		snprintf(why, whyn, "no cgroup v2 hierarchy at " CGROUP_ROOT);
		return -ENOENT;
	}
	_cleanup_free_ char *self = NULL;
	int r = read_file_str("/proc/self/cgroup", 65536, &self);
	char *line = r < 0 ? NULL : !strncmp(self, "0::", 3) ? self : strstr(self, "\n0::");
	if (line && line != self)
		line++;
	if (!line) {
		snprintf(why, whyn, "no cgroup v2 entry in /proc/self/cgroup");
		return -ENOENT;
	}
	line += 3;
	line[strcspn(line, "\n")] = 0;
	if (snprintf(out, n, CGROUP_ROOT "%s", line) >= (int)n)
		return -ENAMETOOLONG;
	/* Our cgroup's parent ("/a/b" -> "/a", "/a" and "/" -> the root). */
	*strrchr(out, '/') = 0;
	char path[4400];
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", out);
	_cleanup_free_ char *ctl = NULL;
	if (read_file_str(path, 4096, &ctl) < 0)
		ctl = NULL;
	bool all = ctl && has_word(ctl, "memory") && has_word(ctl, "pids") && has_word(ctl, "cpu");
	if (!all) {
		/* Ours to enable only where nothing runs (the root); elsewhere this fails. */
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		all = fd >= 0 && write(fd, "+memory +pids +cpu", 18) == 18;
		if (fd >= 0)
			close(fd);
	}
	if (!all) {
		snprintf(why, whyn, "memory, pids and cpu are not delegated to %s", out);
		return -EPERM;
	}
	snprintf(path, sizeof(path), "%s/cgroup.procs", out);
	if (access(out, W_OK) < 0 || access(path, W_OK) < 0) {
		snprintf(why, whyn, "%s is not writable by us (no delegation)", out);
		return -EACCES;
	}
	snprintf(why, whyn, "%s", out);
	return 0;
}

static int cgroup_write(const char *dir, const char *file, const char *val)
{
	char path[4500];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = write_all(fd, val, strlen(val));
	close(fd);
	return r;
}

static int cgroup_path(const char *name, char *out, size_t n)
{
	static char base[4200];
	static int have; /* 0 unknown, 1 yes, -1 no */
	char why[4400];
	if (!have) {
		have = cgroup_base(base, sizeof(base), why, sizeof(why)) == 0 ? 1 : -1;
		debug("jail: cgroup limits: %s", have > 0 ? base : why);
	}
	if (have < 0 || !name)
		return -ENOENT;
	return snprintf(out, n, "%s/matchlock-%s", base, name) >= (int)n ? -ENAMETOOLONG : 0;
}

/* The sandbox's cgroup with its limits, and pid in it; -errno (and nothing left) if not. */
static int cgroup_join(const struct jail_config *jc, pid_t pid)
{
	char dir[4400], v[64];
	int r = cgroup_path(jc->name, dir, sizeof(dir));
	if (r < 0)
		return r;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	snprintf(v, sizeof(v), "%llu",
		 ((unsigned long long)jc->memory_mb + JAIL_MEM_EXTRA_MB) << 20);
	r = cgroup_write(dir, "memory.max", v);
	if (r == 0) {
		snprintf(v, sizeof(v), "%u", JAIL_PIDS_MAX);
		r = cgroup_write(dir, "pids.max", v);
	}
	if (r == 0) {
		snprintf(v, sizeof(v), "%u 100000", (jc->cpus ? jc->cpus : 1) * 100000);
		r = cgroup_write(dir, "cpu.max", v);
	}
	if (r == 0) {
		snprintf(v, sizeof(v), "%d", pid);
		r = cgroup_write(dir, "cgroup.procs", v);
	}
	if (r < 0) {
		debug("jail: cgroup %s: %s", dir, strerror(-r));
		rmdir(dir);
	}
	return r;
}

void jail_cgroup_remove(const char *name)
{
	char dir[4400];
	if (cgroup_path(name, dir, sizeof(dir)) == 0 && rmdir(dir) < 0 && errno != ENOENT)
		debug("jail: removing %s: %s", dir, strerror(errno));
}

/* ---- the parent's side --------------------------------------------------------------------- */

static char unjailed_why[160]; /* why the last child ran without its jail */

int jail_readable_fd(int fd)
{
	struct stat st;
	if (!jail_enabled() || geteuid() != 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (st.st_mode & S_IROTH) || st.st_uid == JAIL_UID)
		return fd;
	int m = memfd_create("matchlock-boot-file", MFD_CLOEXEC);
	if (m < 0)
		return -errno;
	off_t off = 0;
	while (off < st.st_size) {
		ssize_t n = sendfile(m, fd, &off, (size_t)(st.st_size - off));
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			close(m);
			return -e;
		}
	}
	close(fd);
	return m;
}

int jail_share_file(int fd)
{
	struct stat st;
	if (!jail_enabled() || geteuid() != 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_uid == JAIL_UID)
		return 0;
	return fchown(fd, JAIL_UID, (gid_t)-1) < 0 ? -errno : 0;
}

/*
 * The child's identity, seen from outside: our own uid and gid as a normal user (the only map
 * we may write), JAIL_UID as root, with /dev/kvm's group when QEMU needs it. Inside it is 0.
 */
struct jail_ids {
	uid_t uid;
	gid_t gid;
	bool self_map; /* a normal user: the child writes its own maps (see child_main) */
};

static void jail_ids(const struct jail_config *jc, struct jail_ids *id)
{
	struct stat st;
	id->self_map = geteuid() != 0;
	id->uid = id->self_map ? geteuid() : JAIL_UID;
	id->gid = id->self_map				  ? getegid()
		  : jc->kvm && stat("/dev/kvm", &st) == 0 ? st.st_gid
							  : JAIL_UID;
}

/* Write the maps of who ("self" in the child, the child's PID in the parent). */
static int map_ids(const char *who, const struct jail_ids *id)
{
	char path[64], map[64];
	int r = 0;
	if (id->self_map) {
		/* Unprivileged maps need setgroups off for good. */
		snprintf(path, sizeof(path), "/proc/%s/setgroups", who);
		r = write_str(path, "deny");
	}
	snprintf(path, sizeof(path), "/proc/%s/uid_map", who);
	snprintf(map, sizeof(map), "0 %u 1\n", id->uid);
	if (r == 0)
		r = write_str(path, map);
	snprintf(path, sizeof(path), "/proc/%s/gid_map", who);
	snprintf(map, sizeof(map), "0 %u 1\n", id->gid);
	return r < 0 ? r : write_str(path, map);
}

/* fork() into new namespaces: the child returns 0 like fork's, as PID 1 of its namespace. */
static pid_t clone_ns(unsigned long flags)
{
	return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
}

/* In the child: wait for the go, build the jail, hand over to run(). */
static noreturn void child_main(const struct jail_config *jc, const struct jail_ids *id,
				bool jailed, bool userns, int sync_r, int errfd,
				void (*run)(void *, int), void *arg)
{
	char go;
	if (read(sync_r, &go, 1) != 1 || go != 'g')
		_exit(1); /* the parent gave up, or died */
	if (jailed) {
		/*
		 * A normal user's child writes its own maps. Its /proc files are root's while it
		 * is not dumpable (main() made us so), so it is dumpable for the three writes only:
		 * it still holds a copy of our memory, secrets included, until it execs.
		 */
		int r = 0;
		if (userns && id->self_map) {
			r = prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0 ? -errno : map_ids("self", id);
			prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
		}
		if (r < 0)
			child_die(errfd, "writing its uid and gid maps", -r);
		/*
		 * Become the namespace's uid 0: as root our own ids are not mapped in it (QEMU's
		 * are JAIL_UID's), and files made in the new root need an owner it knows.
		 */
		if (userns && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
			child_die(errfd, "taking the mapped identity", errno);
		if (userns && setgroups(0, NULL) < 0 && errno != EPERM)
			child_die(errfd, "setgroups", errno);
		if (sethostname("matchlock", 9) < 0)
			child_die(errfd, "sethostname", errno);
		child_mounts(jc, errfd);
		child_limits(jc);
		child_drop_caps(errfd, userns, id->uid, id->gid);
	} else {
		child_limits(jc);
		prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	}
	/*
	 * Die with the supervisor, even if it is SIGKILLed: set last, as a change of identity
	 * clears it. The parent holds sync's far end until we exec: a hang-up means it is gone.
	 */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct pollfd p = { .fd = sync_r, .events = POLLIN };
	if (poll(&p, 1, 0) > 0 && (p.revents & POLLHUP))
		_exit(1);
	run(arg, errfd);
	_exit(127);
}

pid_t jail_spawn(const struct jail_config *jc, void (*run)(void *arg, int errfd), void *arg,
		 char *err, size_t errn)
{
	static bool warned;
	int sync[2] = { -1, -1 }, ep[2] = { -1, -1 };
	if (pipe2(sync, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0) {
		int e = errno;
		snprintf(err, errn, "pipe: %s", strerror(e));
		for (int i = 0; i < 2; i++) {
			if (sync[i] >= 0)
				close(sync[i]);
		}
		return -e;
	}
	bool jailed = jail_enabled(), userns = jailed;
	struct jail_ids id;
	jail_ids(jc, &id);
	pid_t pid = -1;
	if (jailed)
		pid = clone_ns(JAIL_NS_FLAGS | CLONE_NEWUSER);
	if (pid < 0 && jailed && geteuid() == 0) {
		userns = false; /* root: the same namespaces, and a real unprivileged identity */
		pid = clone_ns(JAIL_NS_FLAGS);
	}
	if (pid < 0 && jailed) {
		snprintf(unjailed_why, sizeof(unjailed_why), "cannot create namespaces: %s",
			 strerror(errno));
		if (!warned)
			warn("QEMU runs without its jail: %s; see matchlock diagnose",
			     unjailed_why);
		warned = true;
		jailed = userns = false;
	}
	if (pid < 0)
		pid = fork();
	if (pid == 0) {
		close(sync[1]);
		close(ep[0]);
		child_main(jc, &id, jailed, userns, sync[0], ep[1], run, arg);
	}
	int e = errno;
	close(sync[0]);
	close(ep[1]);
	if (pid < 0) {
		snprintf(err, errn, "fork: %s", strerror(e));
		close(sync[1]);
		close(ep[0]);
		return -e;
	}
	char who[16];
	snprintf(who, sizeof(who), "%d", pid);
	int r = userns && !id.self_map ? map_ids(who, &id) : 0;
	if (r < 0)
		snprintf(err, errn, "QEMU's jail: writing its uid and gid maps: %s", strerror(-r));
	if (r == 0 && jailed && jc->name)
		cgroup_join(jc, pid); /* where delegated; without, the rlimits still hold */
	if (r == 0 && write(sync[1], "g", 1) != 1)
		r = -errno;
	/* The child's reason, or EOF once it has exec'd. */
	char why[512];
	size_t got = 0;
	ssize_t n;
	while (
	    r == 0 && got + 1 < sizeof(why) &&
	    ((n = read(ep[0], why + got, sizeof(why) - 1 - got)) > 0 || (n < 0 && errno == EINTR)))
		got += n > 0 ? (size_t)n : 0;
	close(sync[1]);
	close(ep[0]);
	if (r == 0 && got) {
		why[got] = 0;
		snprintf(err, errn, "%s", why);
		r = -EPERM;
	}
	if (r < 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		if (jailed)
			jail_cgroup_remove(jc->name);
		return r;
	}
	return pid;
}

/* ---- diagnose ------------------------------------------------------------------------------ */

/* In a jail, we are PID 1 of our own namespace; run unjailed (the fallback), we are not. */
static void probe_run(void *arg, int errfd)
{
	(void)arg;
	if (getpid() != 1)
		dprintf(errfd, "%s", unjailed_why[0] ? unjailed_why : "not in a PID namespace");
	_exit(getpid() == 1 ? 0 : 3);
}

void jail_probe(struct jail_probe *p)
{
	memset(p, 0, sizeof(*p));
	p->enabled = jail_enabled();
	/* The real thing, with a child that exits at once. */
	struct jail_config jc = { .exe = "/usr/bin/true", .memory_mb = 64, .cpus = 1 };
	char err[300] = "";
	pid_t pid = p->enabled ? jail_spawn(&jc, probe_run, NULL, err, sizeof(err)) : -1;
	int status = 1;
	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	p->namespaces = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	snprintf(
	    p->ns_detail, sizeof(p->ns_detail), "%s",
	    !p->enabled ? "off (MATCHLOCK_NO_JAIL is set)"
	    : p->namespaces
		? "user, mount, pid, net, ipc, uts, cgroup namespaces; rlimits; no capabilities"
		: err);
	char base[4200];
	p->cgroup =
	    cgroup_base(base, sizeof(base), p->cgroup_detail, sizeof(p->cgroup_detail)) == 0;
	/* The supervisor's filter, loaded for real in a child that then exits. */
	pid = fork();
	if (pid == 0)
		_exit(jail_supervisor_seal(NULL) < 0 ? 1 : getpid() > 0 ? 0 : 2);
	status = 1;
	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	p->seccomp = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	const char *mode = getenv("MATCHLOCK_SECCOMP");
	snprintf(p->seccomp_detail, sizeof(p->seccomp_detail), "%s",
		 !p->seccomp ? "the allow-list cannot be loaded (no seccomp filters?)"
		 : mode && !strcmp(mode, "off") ? "off (MATCHLOCK_SECCOMP=off)"
						: "allow-list loads (seccomp filter mode 2)");
}
