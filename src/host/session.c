/* SPDX-License-Identifier: MIT */
/*
 * The sandbox spec, its one validator, and the one start and stop every entry point uses
 * (session.h says who calls what and the phases).
 */
#define _GNU_SOURCE
#include "arch.h"
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "disk.h"
#include "jail.h"
#include "spec_hooks.h"
#include "common/jsonw.h"
#include "common/log.h"
#include "common/util.h"
#include "pool.h"
#include "portfwd.h"
#include "rootfs.h"
#include "snapshot.h"

/* ---- the spec ---------------------------------------------------------------------------- */

int sandbox_spec_init(struct sandbox_spec *spec)
{
	*spec = (struct sandbox_spec){ .cpus = 1, .memory_mb = 512, .rm = -1 };
	spec->policy = calloc(1, sizeof(*spec->policy));
	spec->secrets = calloc(1, sizeof(*spec->secrets));
	spec->hooks = spec_hooks_new();
	spec->fhooks = spec_fhooks_new();
	/* Docker's DOCKER_DEFAULT_PLATFORM: every entry point's default guest architecture. */
	const char *platform = getenv("MATCHLOCK_PLATFORM");
	if (!spec->policy || !spec->secrets || !spec->hooks || !spec->fhooks ||
	    (platform && *platform && spec_strdup(&spec->platform, platform) < 0)) {
		sandbox_spec_fini(spec);
		return -ENOMEM;
	}
	return 0;
}

void spec_strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

char **spec_strv_dup(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	char **d = calloc(n + 1, sizeof(*d));
	for (size_t i = 0; d && i < n; i++) {
		if (!(d[i] = strdup(v[i]))) {
			spec_strv_free(d);
			return NULL;
		}
	}
	return d;
}

int spec_strdup(char **field, const char *value)
{
	char *copy = value ? strdup(value) : NULL;
	if (value && !copy)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

void sandbox_spec_fini(struct sandbox_spec *spec)
{
	free(spec->image);
	free(spec->rootfs);
	env_fini(&spec->env);
	free(spec->user);
	free(spec->workdir);
	spec_strv_free(spec->entrypoint);
	spec_strv_free(spec->cmd);
	free(spec->hostname);
	free(spec->policy);
	secrets_clear(spec->secrets);
	free(spec->secrets);
	hooks_free(spec->hooks);
	fhooks_free(spec->fhooks);
	for (unsigned i = 0; i < spec->nupstream_ca; i++)
		free(spec->upstream_ca[i]);
	free(spec->address);
	for (unsigned i = 0; i < spec->nmounts; i++) {
		free(spec->mounts[i].host);
		free(spec->mounts[i].guest);
		free(spec->mounts[i].mode);
	}
	free(spec->accel);
	free(spec->platform);
	memset(spec, 0, sizeof(*spec));
}

/* ---- the validator ----------------------------------------------------------------------- */

/* How each entry point spells a field: every message ends with both, so it reads the same. */
struct spec_field {
	const char *flag; /* the CLI's */
	const char *key; /* the RPC's, NULL when it has none */
};

static const struct spec_field F_CPUS = { "--cpus", "resources.cpus" };
static const struct spec_field F_MEMORY = { "--memory", "resources.memory_mb" };
static const struct spec_field F_DISK = { "--disk-size", "resources.disk_size_mb" };
static const struct spec_field F_TIMEOUT = { "--timeout", "resources.timeout_seconds" };
static const struct spec_field F_HOSTNAME = { "--hostname", "network.hostname" };
static const struct spec_field F_ROOTFS = { "--rootfs", "image" };
static const struct spec_field F_SECRETS = { "--secret with --no-network",
					     "network.secrets with network.no_network" };
static const struct spec_field F_UPSTREAM_CA = { "--upstream-ca", "network.upstream_ca" };
static const struct spec_field F_MOUNTS = { "-v", "mounts" };
static const struct spec_field F_MOUNT_HOST = { "-v HOST:GUEST", "mounts[].host" };
static const struct spec_field F_MOUNT_GUEST = { "-v HOST:GUEST", "mounts[].guest" };
static const struct spec_field F_MOUNT_MODE = { "-v HOST:GUEST:MODE", "mounts[].mode" };
static const struct spec_field F_ACCEL = { "--accel", "MATCHLOCK_ACCEL" };
static const struct spec_field F_PLATFORM = { "--platform or MATCHLOCK_PLATFORM", "platform" };
static const struct spec_field F_ROOTFS_IMAGE = { "--rootfs with --image", NULL };

static int refuse(char *err, size_t errn, const struct spec_field *f, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(char *err, size_t errn, const struct spec_field *f, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(err, errn, "%s (%s%s%s)", what, f->flag, f->key ? ", " : "", f->key ? f->key : "");
	return -EINVAL;
}

void sandbox_spec_unsupported(char *err, size_t errn, const char *name)
{
	snprintf(err, errn, "%.64s: not supported by this version of matchlock", name);
}

static bool hostname_ok(const char *h)
{
	size_t n = strlen(h);
	return n && n <= 63 &&
	       strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") == n;
}

/* Absolute, and nothing to normalise: no empty, "." or ".." component, no trailing '/'. */
static bool guest_path_normal(const char *p)
{
	if (p[0] != '/')
		return false;
	for (const char *c = p + 1;;) {
		size_t n = strcspn(c, "/");
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (!c[n])
			return true;
		c += n + 1;
	}
}

/* Is p at or under dir (both normalised)? */
static bool path_under(const char *p, const char *dir)
{
	size_t n = strlen(dir);
	return !strncmp(p, dir, n) && (p[n] == 0 || p[n] == '/');
}

/*
 * Guest paths the sandbox needs for itself: the pseudo-filesystems, and /run/matchlock where
 * overlay mounts keep their layers (so /run itself, which would hide it, too).
 */
static bool guest_path_reserved(const char *p)
{
	static const char *const reserved[] = { "/proc", "/dev", "/sys", "/run/matchlock" };
	for (size_t i = 0; i < ARRAY_SIZE(reserved); i++)
		if (path_under(p, reserved[i]))
			return true;
	return !strcmp(p, "/run");
}

/* A named volume ("@NAME"): a valid name of a volume that exists, mode ro or rw. */
static int volume_check(const struct spec_mount *m, char *err, size_t errn)
{
	char path[4400];
	struct stat st;
	const char *name = m->host + 1;
	if (volume_path(name, path, sizeof(path)) < 0)
		return refuse(err, errn, &F_MOUNT_HOST,
			      "volume %.80s: expected a name of 1-%d letters, digits, '_', '.' or "
			      "'-' (not first)",
			      name, VOLUME_NAME_MAX);
	if (stat(path, &st) < 0)
		return refuse(err, errn, &F_MOUNT_HOST, "volume %.80s: %s", name,
			      errno == ENOENT ? "no such volume (matchlock volume create NAME)"
					      : strerror(errno));
	if (m->mode && strcmp(m->mode, "ro") && strcmp(m->mode, "rw"))
		return refuse(err, errn, &F_MOUNT_MODE,
			      "volume %.80s: mode %.32s: expected ro or rw", name, m->mode);
	return 0;
}

static int mounts_check(const struct sandbox_spec *s, char *err, size_t errn)
{
	struct stat st;
	unsigned nvolumes = 0;
	if (s->nmounts > SPEC_MAX_MOUNTS)
		return refuse(err, errn, &F_MOUNTS, "%u host folders: at most %d", s->nmounts,
			      SPEC_MAX_MOUNTS);
	for (unsigned i = 0; i < s->nmounts; i++) {
		const struct spec_mount *m = &s->mounts[i];
		if (!m->host || !*m->host)
			return refuse(err, errn, &F_MOUNT_HOST, "mount %u: no host folder given",
				      i);
		if (m->host[0] == '@') {
			if (++nvolumes > SANDBOX_MAX_VOLUMES)
				return refuse(err, errn, &F_MOUNT_HOST, "volumes: at most %d",
					      SANDBOX_MAX_VOLUMES);
			if (volume_check(m, err, errn) < 0)
				return -EINVAL;
		} else if (stat(m->host, &st) < 0)
			return refuse(err, errn, &F_MOUNT_HOST, "host folder %.256s: %s", m->host,
				      strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			return refuse(err, errn, &F_MOUNT_HOST,
				      "host folder %.256s: not a directory", m->host);
		if (!m->guest || !*m->guest)
			return refuse(err, errn, &F_MOUNT_GUEST,
				      "host folder %.256s: no guest path given", m->host);
		if (m->guest[0] != '/')
			return refuse(
			    err, errn, &F_MOUNT_GUEST,
			    "guest path %.256s: expected an absolute path like /workspace",
			    m->guest);
		if (!strcmp(m->guest, "/") || guest_path_reserved(m->guest))
			return refuse(err, errn, &F_MOUNT_GUEST,
				      "guest path %.256s: reserved (/, /proc, /dev, /sys, /run and "
				      "/run/matchlock cannot be mounted over)",
				      m->guest);
		if (strlen(m->guest) > SPEC_MOUNT_PATH_MAX || !guest_path_normal(m->guest))
			return refuse(
			    err, errn, &F_MOUNT_GUEST,
			    "guest path %.256s: expected a normalised path (no //, . or .. "
			    "components, no trailing /, at most %d characters)",
			    m->guest, SPEC_MOUNT_PATH_MAX);
		for (unsigned j = 0; j < i; j++) {
			const struct spec_mount *o = &s->mounts[j];
			if (!strcmp(o->guest, m->guest))
				return refuse(err, errn, &F_MOUNT_GUEST,
					      "guest path %.256s: two host folders mounted on it",
					      m->guest);
			/*
			 * The guest mounts volumes before host folders: a folder over a volume
			 * would hide it.
			 */
			bool mv = m->host[0] == '@', ov = o->host[0] == '@';
			if (mv != ov &&
			    path_under(mv ? m->guest : o->guest, mv ? o->guest : m->guest))
				return refuse(err, errn, &F_MOUNT_GUEST,
					      "guest path %.256s: a volume cannot be under a host "
					      "folder's path %.256s",
					      mv ? m->guest : o->guest, mv ? o->guest : m->guest);
		}
		if (m->mode && m->host[0] != '@' && sandbox_mount_mode_parse(m->mode) < 0)
			return refuse(err, errn, &F_MOUNT_MODE,
				      "mount mode %.32s: expected ro, rw or overlay", m->mode);
	}
	return 0;
}

/*
 * A volume for the sandbox's life: its lock (shared for ro, exclusive for rw: volume_lock) is
 * held until the sandbox ends (session_release_volumes), so no other sandbox writes it and
 * `volume rm` refuses meanwhile. A detached supervisor inherits it across the fork.
 */
static int session_hold_volume(struct session *s, const struct spec_mount *m, char *err,
			       size_t errn)
{
	unsigned i = s->nvolumes;
	bool ro = m->mode && !strcmp(m->mode, "ro");
	struct stat st;
	int fd = volume_lock(m->host + 1, !ro, err, errn);
	if (fd < 0)
		return fd == -ENOMEM ? fd : -EINVAL;
	s->volume_fds[i] = fd;
	s->nvolumes++;
	volume_path(m->host + 1, s->volume_paths[i], sizeof(s->volume_paths[i]));
	if (fstat(fd, &st) < 0) {
		snprintf(err, errn, "volume %s: %s", m->host + 1, strerror(errno));
		return -EIO;
	}
	s->volumes[i] = (struct sandbox_volume){
		.name = m->host + 1,
		.path = s->volume_paths[i],
		.guest = m->guest,
		.size_mb = (long long)(st.st_size >> 20),
		.ro = ro,
	};
	return 0;
}

/*
 * The checked mounts as the sandbox takes them: each host folder resolved to an absolute path
 * now (a relative one means the caller's working directory, whatever happens later).
 */
static int session_resolve_mounts(struct session *s, char *err, size_t errn)
{
	struct sandbox_spec *sp = &s->spec;
	unsigned k = 0;
	for (unsigned i = 0; i < sp->nmounts; i++) {
		struct spec_mount *m = &sp->mounts[i];
		if (m->host[0] == '@') {
			int r = session_hold_volume(s, m, err, errn);
			if (r < 0)
				return r;
			continue;
		}
		char *abs = realpath(m->host, NULL);
		if (!abs) {
			snprintf(err, errn, "host folder %.256s: %s", m->host, strerror(errno));
			return errno == ENOMEM ? -ENOMEM : -EINVAL;
		}
		free(m->host);
		m->host = abs;
		s->mounts[k++] = (struct sandbox_mount){
			.host = m->host,
			.guest = m->guest,
			.mode = m->mode ? sandbox_mount_mode_parse(m->mode) : MOUNT_OVERLAY,
		};
	}
	return 0;
}

int sandbox_spec_check(const struct sandbox_spec *s, char *err, size_t errn)
{
	struct stat st;
	/* !(x >= min) also refuses NaN. */
	if (!(s->cpus >= SPEC_CPUS_MIN) || s->cpus > SPEC_CPUS_MAX)
		return refuse(err, errn, &F_CPUS, "cpus %g: expected a number from %g to %d",
			      s->cpus, SPEC_CPUS_MIN, SPEC_CPUS_MAX);
	if (s->memory_mb < SPEC_MEMORY_MIN_MB || s->memory_mb > SPEC_MEMORY_MAX_MB)
		return refuse(err, errn, &F_MEMORY, "memory %lld MB: expected %d to %d MB",
			      s->memory_mb, SPEC_MEMORY_MIN_MB, SPEC_MEMORY_MAX_MB);
	if (s->has_timeout && (s->timeout_s < 1 || s->timeout_s > SPEC_TIMEOUT_MAX_S))
		return refuse(err, errn, &F_TIMEOUT,
			      "timeout %lld s: expected whole seconds from 1 to %lld", s->timeout_s,
			      SPEC_TIMEOUT_MAX_S);
	if (s->has_disk_size && (s->disk_size_mb < DISK_MIN_MB || s->disk_size_mb > DISK_MAX_MB))
		return refuse(err, errn, &F_DISK, "disk size %lld MB: expected %d to %lld MB",
			      s->disk_size_mb, DISK_MIN_MB, DISK_MAX_MB);
	if (mounts_check(s, err, errn) < 0)
		return -EINVAL;
	if (s->hostname && !hostname_ok(s->hostname))
		return refuse(err, errn, &F_HOSTNAME,
			      "hostname %.64s: use 1-63 letters, digits, '-' or '.'", s->hostname);
	if (s->accel && strcmp(s->accel, "auto") && strcmp(s->accel, "kvm") &&
	    strcmp(s->accel, "tcg"))
		return refuse(err, errn, &F_ACCEL, "accelerator %.32s: expected auto, kvm or tcg",
			      s->accel);
	enum guest_arch arch;
	char why[200];
	if (s->platform && arch_parse(s->platform, &arch, why, sizeof(why)) < 0)
		return refuse(err, errn, &F_PLATFORM, "%s", why);
	if (s->rootfs && s->image)
		return refuse(err, errn, &F_ROOTFS_IMAGE,
			      "a root filesystem and an image cannot be combined");
	if (s->rootfs && stat(s->rootfs, &st) < 0)
		return refuse(err, errn, &F_ROOTFS, "root filesystem %.256s: %s", s->rootfs,
			      strerror(errno));
	if (s->secrets && s->secrets->n && s->policy && s->policy->no_network)
		return refuse(err, errn, &F_SECRETS, "secrets cannot be combined with no network");
	for (unsigned i = 0; i < s->nupstream_ca; i++)
		if (access(s->upstream_ca[i], R_OK) < 0)
			return refuse(err, errn, &F_UPSTREAM_CA, "upstream CA %.256s: %s",
				      s->upstream_ca[i], strerror(errno));
	return 0;
}

/* ---- start ------------------------------------------------------------------------------- */

/* The record's config: what `get` shows. Names only for env; secrets as "<redacted>". */
static char *session_config_json(const struct session *s)
{
	const struct sandbox_spec *sp = &s->spec;
	struct buf b = { 0 };
	char cpus[32];
	snprintf(cpus, sizeof(cpus), "%g",
		 s->sc.cpu_milli ? s->sc.cpu_milli / 1000.0 : (double)s->sc.cpus);
	jsonw_raw(&b, "{");
	jsonw_kv_str(&b, 1, "rootfs", sp->rootfs);
	jsonw_kv_str(&b, 0, "image", sp->image);
	jsonw_kv_str(&b, 0, "hostname", s->sc.hostname ? s->sc.hostname : s->sc.id);
	jsonw_kv_raw(&b, 0, "cpus", cpus);
	jsonw_kv_int(&b, 0, "memory_mb", s->sc.memory_mb);
	jsonw_kv_int(&b, 0, "disk_size_mb", s->sc.scratch_mb);
	jsonw_kv_int(&b, 0, "timeout_seconds", sp->has_timeout ? sp->timeout_s : 0);
	jsonw_kv_str(&b, 0, "accel", accel_names[s->sc.accel]);
	jsonw_kv_str(&b, 0, "platform", arch_platform(s->sc.arch));
	jsonw_kv_bool(&b, 0, "detached", sp->lifetime == LIFETIME_DETACHED);
	jsonw_raw(&b, ",\"command\":[");
	for (size_t i = 0; s->argv && s->argv[i]; i++) {
		if (i)
			jsonw_raw(&b, ",");
		jsonw_str(&b, s->argv[i]);
	}
	jsonw_raw(&b, "],\"env\":[");
	for (size_t i = 0; i < s->env.n; i++) {
		/* Values can be credentials: record the names only. */
		char key[256];
		snprintf(key, sizeof(key), "%.*s", (int)strcspn(s->env.v[i], "="), s->env.v[i]);
		if (i)
			jsonw_raw(&b, ",");
		jsonw_str(&b, key);
	}
	/* Secrets: names and hosts; the value is never recorded anywhere. */
	jsonw_raw(&b, "],\"secrets\":{");
	for (unsigned i = 0; sp->secrets && i < sp->secrets->n; i++) {
		const struct secret *sec = &sp->secrets->s[i];
		if (i)
			jsonw_raw(&b, ",");
		jsonw_str(&b, sec->name);
		jsonw_raw(&b, ":{\"value\":\"<redacted>\",\"hosts\":[");
		for (unsigned j = 0; j < sec->nhosts; j++) {
			if (j)
				jsonw_raw(&b, ",");
			jsonw_str(&b, sec->hosts[j]);
		}
		jsonw_raw(&b, "]}");
	}
	jsonw_raw(&b, "},\"mounts\":[");
	for (unsigned i = 0; i < s->sc.nmounts; i++) {
		jsonw_raw(&b, i ? ",{" : "{");
		jsonw_kv_str(&b, 1, "host", s->mounts[i].host);
		jsonw_kv_str(&b, 0, "guest", s->mounts[i].guest);
		jsonw_kv_str(&b, 0, "mode", sandbox_mount_mode_names[s->mounts[i].mode]);
		jsonw_raw(&b, "}");
	}
	for (unsigned i = 0; i < s->nvolumes; i++) {
		char host[VOLUME_NAME_MAX + 2];
		snprintf(host, sizeof(host), "@%s", s->volumes[i].name);
		jsonw_raw(&b, i || s->sc.nmounts ? ",{" : "{");
		jsonw_kv_str(&b, 1, "host", host);
		jsonw_kv_str(&b, 0, "guest", s->volumes[i].guest);
		jsonw_kv_str(&b, 0, "mode", s->volumes[i].ro ? "ro" : "rw");
		jsonw_kv_int(&b, 0, "size_mb", s->volumes[i].size_mb);
		jsonw_raw(&b, "}");
	}
	jsonw_raw(&b, "]}");
	if (buf_put_u8(&b, 0) < 0) {
		buf_fini(&b);
		return NULL;
	}
	return (char *)b.p;
}

/*
 * The process defaults, Docker's rules: Entrypoint + (the spec's cmd, else Cmd), where the
 * spec's entrypoint replaces Entrypoint and drops Cmd; the image's Env lies under the spec's
 * layers; the spec's user and working dir win over User and WorkingDir.
 */
static int session_apply_image(struct session *s, const char *what, char *err, size_t errn)
{
	struct sandbox_spec *sp = &s->spec;
	struct oci_image_config view = s->image;
	if (sp->entrypoint) {
		view.entrypoint = sp->entrypoint;
		view.cmd = NULL;
	}
	static char *none[] = { NULL };
	if (!(s->argv = oci_config_argv(&view, NULL, sp->cmd ? sp->cmd : none))) {
		snprintf(err, errn, "out of memory");
		return -ENOMEM;
	}
	/* The image's Env is strictly KEY=VALUE: a bare KEY must not pick up our environment. */
	size_t bad = 0;
	int k = env_merge(&s->env, s->image.env, &bad);
	if (k < 0) {
		snprintf(err, errn, "image %.256s: Env[%zu]: %s", what, bad, env_strerror(k));
	} else if ((k = env_merge(&s->env, env_vector(&sp->env), &bad)) < 0) {
		snprintf(err, errn, "env %.64s: %s", env_vector(&sp->env)[bad], env_strerror(k));
	}
	if (k < 0)
		return k == -ENOMEM ? k : -EINVAL;
	s->user = sp->user ? sp->user : s->image.user;
	s->workdir = sp->workdir ? sp->workdir : s->image.workdir;
	return 0;
}

/* ---- the phases ---------------------------------------------------------------------------- */

static void session_boot(struct session *s);
static bool session_from_pool(struct session *s);
static int session_disk(struct session *s);
static int session_record(struct session *s);
static void session_launch(struct session *s);
static void session_prepared(struct session *s, const char *disk);
static int session_prepare(struct session *s);

/*
 * The end of a start: tell the waiting parent of a detached supervisor, then the caller. The
 * session is not touched after started() returns (it may free it).
 */
static void session_started(struct session *s, int r)
{
	if (r < 0 && !s->err[0])
		snprintf(s->err, sizeof(s->err), "%s", strerror(-r));
	if (s->notify_fd >= 0) {
		/* The waiting caller prints our first words: "ok ID", or why not. */
		char word[sizeof(s->err) + 32];
		snprintf(word, sizeof(word), r < 0 ? "%s" : "ok %s", r < 0 ? s->err : s->L.id);
		(void)!write(s->notify_fd, word, strlen(word));
		close(s->notify_fd);
		s->notify_fd = -1;
	}
	if (s->sigfd >= 0 && s->phase != SESSION_STOPPED)
		loop_unwatch(s->loop, &s->sig_w); /* the caller decides what signals mean now */
	session_started_fn fn = s->started;
	s->started = NULL;
	if (fn)
		fn(s, r, s->err, s->started_opaque);
}

static void session_on_abort_stopped(struct session *s, void *opaque)
{
	session_started(s, (int)(intptr_t)opaque);
}

/*
 * Unlinking a disk the guest wrote takes 30-70 ms here (its page cache and extents are freed
 * before unlink returns), which every start would wait for. Where the supervisor may still
 * fork (not sealed by jail_supervisor_seal: rpc), the disk is moved out of the
 * sandbox's directory at once (to <state>/sandboxes/.ID.disk-gone, which gc sweeps) and a
 * detached grandchild unlinks it. Returns 0 or -1 with errno, as unlink.
 */
static int disk_unlink_detached(const char *path)
{
	char aside[4400];
	const char *slash = strrchr(path, '/');
	if (!slash || slash == path)
		return unlink(path);
	const char *id = slash;
	while (id > path && id[-1] != '/')
		id--;
	snprintf(aside, sizeof(aside), "%.*s.%.*s.disk-gone", (int)(id - path), path,
		 (int)(slash - id), id);
	if (rename(path, aside) < 0)
		return unlink(path);
	pid_t pid = fork();
	if (pid == 0) {
		/* None of our fds: a caller reading our stdout to its end must not wait for it. */
		close_range(0, ~0u, 0);
		if (fork() == 0)
			unlink(aside);
		_exit(0);
	}
	if (pid < 0)
		return unlink(aside);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return 0;
}

/* The writable disk goes with the sandbox, whether or not its record and directory stay. */
static void session_drop_disk(struct session *s)
{
	if (s->disk_path[0] &&
	    (s->sealed ? unlink(s->disk_path) : disk_unlink_detached(s->disk_path)) < 0 &&
	    errno != ENOENT)
		warn("cannot remove the sandbox's disk %s: %s", s->disk_path, strerror(errno));
	s->disk_path[0] = 0;
}

/* The volumes' locks: another sandbox may take them the moment this one is recorded gone. */
static void session_release_volumes(struct session *s)
{
	for (unsigned i = 0; i < s->nvolumes; i++) {
		if (s->volume_fds[i] >= 0)
			close(s->volume_fds[i]);
		s->volume_fds[i] = -1;
	}
}

/*
 * A start that failed at any phase: stop what runs, leave a "failed" record (or none, when the
 * sandbox is removed at its end), remove a directory nothing refers to, then report r.
 */
static void session_fail(struct session *s, int r)
{
	if (s->sb) {
		session_stop(s, s->err, session_on_abort_stopped, (void *)(intptr_t)r);
		return;
	}
	session_drop_disk(s);
	session_release_volumes(s);
	if (s->have_record && !s->rm)
		state_set_status(s->st, s->L.id, ST_FAILED, s->err);
	if (s->made_dir && (s->rm || !s->have_record)) {
		rm_rf(s->L.dir);
		if (s->have_record)
			state_delete(s->st, s->L.id);
		s->made_dir = false;
	}
	s->phase = SESSION_STOPPED;
	session_started(s, r);
}

/* ---- PREPARING: the root disk, in a worker when it is not ready ---------------------------- */

#define WORKER_OUT_MAX 8192 /* the worker's answer: "ok\nPATH" or one line of error */

/* The guest's architecture (the spec was checked: a platform given is a valid one). */
static enum guest_arch spec_arch(const struct sandbox_spec *sp)
{
	enum guest_arch a = arch_host();
	char why[200];
	if (sp->platform)
		arch_parse(sp->platform, &a, why, sizeof(why));
	return a;
}

/* What the worker runs: pull, unpack and build an image, or build a root filesystem's disk. */
static int session_make_disk(const struct sandbox_spec *sp, char *disk, size_t n, char *err,
			     size_t errn)
{
	if (sp->rootfs)
		return rootfs_prepare_flags(
		    sp->rootfs, sp->rootfs_stable_key ? ROOTFS_KEY_STABLE : 0, disk, n, err, errn);
	struct oci_image_config cfg;
	int r =
	    oci_image_prepare(sp->image, arch_table[spec_arch(sp)].oci, disk, n, &cfg, err, errn);
	if (r == 0)
		oci_config_fini(&cfg);
	return r;
}

static void session_on_worker(struct watch *w, uint32_t events)
{
	(void)events;
	struct session *s = w->obj;
	char tmp[4096];
	ssize_t n = read(w->fd, tmp, sizeof(tmp));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		if (buf_used(&s->worker_out) + (size_t)n <= WORKER_OUT_MAX)
			buf_append(&s->worker_out, tmp, (size_t)n);
		return;
	}
	/* EOF: the worker is done (or was killed). */
	loop_unwatch(s->loop, w);
	close(w->fd);
	w->fd = -1;
	int status = 0;
	while (waitpid(s->worker, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(status))
		oci_sweep_writer(s->worker); /* killed half-way: its temp files stay otherwise */
	s->worker = 0;
	buf_put_u8(&s->worker_out, 0);
	const char *said = s->worker_out.bad ? "" : (const char *)buf_head(&s->worker_out);
	char disk[sizeof(s->L.disk)] = "";
	if (!strncmp(said, "ok\n", 3))
		snprintf(disk, sizeof(disk), "%s", said + 3);
	else if (s->interrupted || s->phase == SESSION_STOPPED)
		snprintf(s->err, sizeof(s->err), "%s",
			 s->interrupted ? "interrupted while preparing the image" : "cancelled");
	else
		snprintf(s->err, sizeof(s->err), "%s",
			 *said ? said : "preparing the root disk failed (the worker died)");
	buf_fini(&s->worker_out);
	if (!disk[0]) {
		session_fail(s, s->interrupted || s->phase == SESSION_STOPPED ? -ECANCELED : -EIO);
		return;
	}
	/* The worker built it: the store has it now (a local lookup, no network). */
	char again[sizeof(s->L.disk)];
	int r = s->spec.image
		    ? oci_image_open(s->spec.image, arch_table[spec_arch(&s->spec)].oci, again,
				     sizeof(again), &s->image, s->err, sizeof(s->err))
		    : 0;
	if (r == -EAGAIN)
		snprintf(s->err, sizeof(s->err), "image %s: removed from the store while starting",
			 s->spec.image);
	if (r < 0) {
		session_fail(s, -EIO);
		return;
	}
	session_prepared(s, disk);
}

/*
 * A child process, so that a pull of gigabytes (and the parsing of everything a registry and an
 * archive say) never stalls the loop that serves the caller's other sandboxes. It leaves its
 * result in the content-addressed store and says where the disk is.
 */
static int session_worker_start(struct session *s)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(s->err, sizeof(s->err), "pipe: %s", strerror(errno));
		return -errno;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(s->err, sizeof(s->err), "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -EAGAIN;
	}
	if (pid == 0) {
		/* Its own process group: a cancel kills the helpers it runs (tar, mke2fs) too. */
		setpgid(0, 0);
		/* And it dies with us, even if we are SIGKILLed: nobody would read its answer. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		sigset_t all;
		sigfillset(&all);
		sigprocmask(SIG_UNBLOCK, &all, NULL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		/*
		 * Nothing of the caller's: not its protocol on stdin/stdout, not other sandboxes'
		 * links and sockets (which would stay open as long as a slow pull runs).
		 */
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
		}
		close_range(3, (unsigned)p[1] - 1, 0);
		close_range((unsigned)p[1] + 1, ~0u, 0);
		char disk[4200], err[1024] = "";
		char out[sizeof(disk) + 8];
		int r = session_make_disk(&s->spec, disk, sizeof(disk), err, sizeof(err));
		snprintf(out, sizeof(out), r < 0 ? "%s" : "ok\n%s", r < 0 ? err : disk);
		_exit(write_all(p[1], out, strlen(out)) < 0 || r < 0);
	}
	setpgid(pid, pid);
	close(p[1]);
	fd_set_nonblock(p[0], 1);
	s->worker = pid;
	watch_init(&s->worker_w, p[0], session_on_worker, s);
	loop_watch(s->loop, &s->worker_w, EPOLLIN);
	return 0;
}

static void session_worker_kill(struct session *s)
{
	if (s->worker > 0)
		kill(-s->worker, SIGKILL);
}

/*
 * Phase PREPARING: a root disk that is ready (an image pulled and built before, the common case)
 * is opened here at once; anything else goes to the worker.
 */
static int session_prepare(struct session *s)
{
	struct sandbox_spec *sp = &s->spec;
	if (!sp->rootfs && !sp->image && spec_strdup(&sp->image, OCI_DEFAULT_IMAGE) < 0)
		return -ENOMEM;
	s->phase = SESSION_PREPARING;
	if (sp->image) {
		char disk[sizeof(s->L.disk)];
		s->err[0] = 0;
		int r = oci_image_open(sp->image, arch_table[spec_arch(sp)].oci, disk, sizeof(disk),
				       &s->image, s->err, sizeof(s->err));
		if (r == 0) {
			session_prepared(s, disk);
			return 0;
		}
		if (r != -EAGAIN)
			return -EIO;
	}
	return session_worker_start(s);
}

/*
 * Phase PREPARED (the disk is ready, s->image holds an image's config): the command and
 * environment, the accelerator and guest files, an ID and its directory; then the boot.
 */
static void session_prepared(struct session *s, const char *disk)
{
	struct sandbox_spec *sp = &s->spec;
	const char *what = sp->rootfs ? sp->rootfs : sp->image;
	char *err = s->err;
	size_t errn = sizeof(s->err);
	int r = session_apply_image(s, what, err, errn);
	if (r < 0) {
		session_fail(s, r);
		return;
	}
	if (!s->argv[0] && sp->lifetime == LIFETIME_COMMAND) {
		snprintf(err, errn, "no command given (matchlock run [FLAGS] -- COMMAND [ARG...])");
		session_fail(s, -EINVAL);
		return;
	}
	if ((r = launch_prepare(&s->L, NULL, spec_arch(sp), sp->accel, err, errn)) < 0) {
		session_fail(s, r == -ENOMEM || r == -EINVAL ? r : -EIO);
		return;
	}
	snprintf(s->L.disk, sizeof(s->L.disk), "%s", disk);
	if (sp->no_snapshot)
		s->L.snapshots = false;
	if ((r = launch_make_dir(&s->L, err, errn)) < 0) {
		session_fail(s, r);
		return;
	}
	s->made_dir = true;
	s->phase = SESSION_PREPARED;
	session_boot(s);
}

/* ---- detaching, signals -------------------------------------------------------------------- */

/*
 * LIFETIME_DETACHED: the supervisor becomes a child in its own session, with no terminal; the
 * caller's process waits until the child says the sandbox runs ("ok ID") or why not. Returns
 * SESSION_DETACHED in the caller's process, 0 in the child, -errno if either part failed.
 */
static int session_detach(struct session *s, char *err, size_t errn)
{
	int notify[2];
	if (pipe2(notify, O_CLOEXEC) < 0) {
		snprintf(err, errn, "pipe: %s", strerror(errno));
		return -errno;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errn, "fork: %s", strerror(errno));
		close(notify[0]);
		close(notify[1]);
		return -EAGAIN;
	}
	if (pid > 0) {
		close(notify[1]);
		char msg[1200];
		size_t got = 0;
		ssize_t n;
		while (got + 1 < sizeof(msg) &&
		       ((n = read(notify[0], msg + got, sizeof(msg) - 1 - got)) > 0 ||
			(n < 0 && errno == EINTR)))
			got += n > 0 ? (size_t)n : 0;
		close(notify[0]);
		msg[got] = 0;
		if (!strncmp(msg, "ok ", 3)) {
			snprintf(s->L.id, sizeof(s->L.id), "%.*s", (int)sizeof(s->L.id) - 1,
				 msg + 3);
			return SESSION_DETACHED;
		}
		snprintf(err, errn, "%s", got ? msg : "the sandbox supervisor died while starting");
		int ws;
		waitpid(pid, &ws, 0);
		return -EIO;
	}
	close(notify[0]);
	s->notify_fd = notify[1];
	s->detached = true;
	setsid();
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		close(null);
	}
	log_set_quiet(1);
	return 0;
}

static void on_start_signal(struct watch *w, uint32_t events)
{
	(void)events;
	struct session *s = w->obj;
	struct signalfd_siginfo si;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo != SIGWINCH && !s->interrupted) {
			s->interrupted = (int)si.ssi_signo;
			session_cancel(s);
		}
	}
}

/* The loop the sandbox runs on: the caller's, or our own with the process's signals. */
static int session_loop(struct session *s, struct loop *l, char *err, size_t errn)
{
	if (l) {
		s->loop = l;
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	s->sigfd = cli_signalfd();
	if (s->sigfd < 0 || loop_init(&s->own_loop) < 0) {
		snprintf(err, errn, "setting up: %s", strerror(errno));
		return -errno;
	}
	s->loop = &s->own_loop;
	watch_init(&s->sig_w, s->sigfd, on_start_signal, s);
	loop_watch(s->loop, &s->sig_w, EPOLLIN);
	return 0;
}

/* ---- BOOTING, RUNNING ---------------------------------------------------------------------- */

/* Phase RUNNING: the control socket (so `matchlock kill` reaches it) and the port forwards. */
static int session_serve(struct session *s, char *err, size_t errn)
{
	struct sandbox_spec *sp = &s->spec;
	unsigned lifetime =
	    sp->lifetime == LIFETIME_COMMAND || !sp->has_timeout ? 0 : (unsigned)sp->timeout_s;
	int r = supervisor_start(&s->sup, s->loop, s->sb, s->L.dir, lifetime, err, errn);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < sp->npublish; i++) {
		uint16_t bound;
		r = portfwd_add(&s->sup.pf, sp->address, sp->publish[i].local,
				sp->publish[i].remote, &bound, err, errn);
		if (r < 0)
			return r;
	}
	state_set_status(s->st, s->L.id, ST_RUNNING, NULL);
	s->phase = SESSION_RUNNING;
	return 0;
}

static void session_on_booted(struct sandbox *sb, int r, const char *why, void *opaque)
{
	struct session *s = opaque;
	if (r < 0) {
		snprintf(s->err, sizeof(s->err), "%s",
			 r == -ECANCELED && s->interrupted ? "interrupted while booting" : why);
		session_fail(s, r);
		return;
	}
	s->sb = sb;
	r = session_serve(s, s->err, sizeof(s->err));
	if (r < 0) {
		session_fail(s, r);
		return;
	}
	/*
	 * A supervisor of one sandbox starts no process from here on: seal it (jail.h). One that
	 * serves a caller's loop (`rpc`) starts more VMs and image workers, so it cannot be.
	 */
	if (s->loop == &s->own_loop) {
		bool files = s->spec.nmounts || s->spec.writes_host_files;
		enum jail_caps c = files ? JAIL_CAPS_SEALED_FOLDERS : JAIL_CAPS_SEALED;
		if ((r = jail_supervisor_drop_caps(c, sandbox_vmm_pid(sb))) < 0)
			warn("the supervisor keeps root's capabilities: %s", strerror(-r));
		if ((r = jail_supervisor_seal(s->L.dir)) < 0)
			warn("the supervisor runs without its seccomp allow-list: %s",
			     strerror(-r));
	}
	s->sealed = s->loop == &s->own_loop && r >= 0;
	session_started(s, 0);
}

/* Phase BOOTING: the record, then the VM (with launch's fallbacks), driven by the loop. */
static void session_boot(struct session *s)
{
	struct sandbox_spec *sp = &s->spec;
	char *err = s->err;
	size_t errn = sizeof(s->err);
	/* Only now: an SQLite connection must never cross a fork (a worker, a detach). */
	int r = s->st ? 0 : state_open(&s->st, err, errn);
	if (r < 0) {
		session_fail(s, r);
		return;
	}
	if (sp->policy->no_network && (sp->policy->nrules || sp->policy->npins))
		warn("no network: the allowed hosts and added hosts are ignored");
	s->sc = (struct sandbox_config){
		.cpus = (unsigned)ceil(sp->cpus),
		.cpu_milli = (unsigned)lround(sp->cpus * 1000),
		.memory_mb = (unsigned)sp->memory_mb,
		.hostname = sp->hostname,
		.policy = sp->policy,
		.secrets = sp->secrets,
		.upstream_ca = sp->upstream_ca,
		.net_event = sp->net_event,
		.net_opaque = sp->net_opaque,
		.hooks = sp->hooks,
		.fhooks = sp->fhooks,
		.file_event = sp->file_event,
		.mounts = s->mounts,
		.nmounts = sp->nmounts - s->nvolumes,
		.scratch = s->disk_path,
		.scratch_mb = sp->has_disk_size ? sp->disk_size_mb : DISK_DEFAULT_MB,
		.volumes = s->volumes,
		.nvolumes = s->nvolumes,
	};
	if (s->sc.cpu_milli % 1000 == 0)
		s->sc.cpu_milli = 0; /* whole CPUs need no quota */
	launch_config(&s->L, &s->sc);
	if (session_from_pool(s))
		return;
	if ((r = session_disk(s)) == 0 && (r = session_record(s)) == 0)
		session_launch(s);
	else
		session_fail(s, r);
}

/* The writable disk: a copy of the template's when there is one to restore. */
static int session_disk(struct session *s)
{
	char *err = s->err;
	size_t errn = sizeof(s->err);
	/*
	 * The writable disk: a few ms (a sparse copy; disk.h), mke2fs once per size. Restoring a
	 * template needs the disk its guest had; a template without one is useless (a save copies
	 * the disk first, so it is not one being saved): dropped, this boot saves a new one.
	 */
	char from[4400];
	const char *tpl = s->sc.template_path;
	bool restore =
	    tpl && snapshot_usable(tpl) && snapshot_scratch_path(tpl, from, sizeof(from)) == 0;
	if (tpl && !restore && access(tpl, F_OK) == 0)
		snapshot_drop(tpl);
	int r = disk_make(s->L.dir, s->sc.scratch_mb, restore ? from : NULL, s->disk_path,
			  sizeof(s->disk_path), err, errn);
	if (r < 0)
		s->disk_path[0] = 0;
	return r == -ENOMEM || r >= 0 ? r : -EIO;
}

/* The state record: the sandbox exists for `ls` from here on. */
static int session_record(struct session *s)
{
	struct sandbox_spec *sp = &s->spec;
	struct sb_record rec = { .status = ST_CREATING,
				 .created = time(NULL),
				 .pid = getpid(),
				 .pid_start = proc_start_time(getpid()) };
	snprintf(rec.id, sizeof(rec.id), "%s", s->L.id);
	snprintf(rec.image, sizeof(rec.image), "%s", sp->rootfs ? sp->rootfs : sp->image);
	rec.config = session_config_json(s);
	int r = rec.config ? state_insert(s->st, &rec) : -ENOMEM;
	free(rec.config);
	if (r < 0) {
		snprintf(s->err, sizeof(s->err), "cannot record the sandbox: %s", strerror(-r));
		return r;
	}
	s->have_record = true;
	return 0;
}

/* The disk is made (a worker building an image needed root's all): the rest is less. */
static void session_drop_caps(struct session *s)
{
	int r;
	if (s->loop == &s->own_loop && (r = jail_supervisor_drop_caps(JAIL_CAPS_LAUNCH, 0)) < 0)
		warn("the supervisor keeps root's capabilities: %s", strerror(-r));
}

/* The VM: restored from the template or booted, with launch's fallbacks. */
static void session_launch(struct session *s)
{
	s->phase = SESSION_BOOTING;
	session_drop_caps(s);
	int r = launch_boot(&s->L, &s->sc, s->loop, session_on_booted, s, s->err, sizeof(s->err));
	if (r < 0)
		session_fail(s, r);
}

/* A standby that could not take this sandbox's identity: start as if there were no pool. */
static void session_on_pool_booted(struct sandbox *sb, int r, const char *why, void *opaque)
{
	struct session *s = opaque;
	s->L.booting = NULL;
	if (r == 0 || r == -ECANCELED || r == -EINVAL) {
		session_on_booted(sb, r, why, s);
		return;
	}
	debug("pool: the standby failed (%s); starting from the template", why);
	session_drop_disk(s);
	if ((r = session_disk(s)) == 0)
		session_launch(s);
	else
		session_fail(s, r);
}

/*
 * A pool's standby of this shape (pool.h), if there is one: this sandbox takes its ID,
 * directory, disk and VM, and pushes its own identity as a restore does. Returns false when the
 * start goes on without a pool.
 */
static bool session_from_pool(struct session *s)
{
	struct sandbox_spec *sp = &s->spec;
	struct pool_claim c;
	if (sp->no_pool || !s->sc.template_path || sp->nmounts ||
	    pool_claim(s->st, s->sc.template_path, sp->cpus, &c) < 0)
		return false;
	rm_rf(s->L.dir); /* made for an ID of our own, still empty */
	snprintf(s->L.id, sizeof(s->L.id), "%s", c.id);
	snprintf(s->L.dir, sizeof(s->L.dir), "%s", c.dir);
	snprintf(s->disk_path, sizeof(s->disk_path), "%s", c.disk);
	state_delete(s->st, c.id); /* the standby's record: ours now */
	int r = session_record(s);
	if (r == 0) {
		s->phase = SESSION_BOOTING;
		session_drop_caps(s);
		s->L.booting = sandbox_adopt(&s->sc, s->loop, &c.vm, c.lease_fd,
					     session_on_pool_booted, s, s->err, sizeof(s->err));
		r = s->L.booting ? 0 : -EIO;
	} else {
		sandbox_vm_close(&c.vm);
		close(c.lease_fd);
	}
	if (r < 0)
		session_fail(s, r);
	return true;
}

/* ---- start ------------------------------------------------------------------------------- */

static void session_on_kick(struct timer *t)
{
	struct session *s = t->obj;
	int r = session_prepare(s);
	if (r < 0)
		session_fail(s, r);
}

int session_start(struct session *s, struct sandbox_spec *spec, struct loop *l,
		  session_started_fn started, void *opaque, char *err, size_t errn)
{
	*s = (struct session){ .spec = *spec,
			       .sigfd = -1,
			       .notify_fd = -1,
			       .sup.listen_w.fd = -1,
			       .worker_w.fd = -1 };
	memset(spec, 0, sizeof(*spec));
	struct sandbox_spec *sp = &s->spec;
	s->rm = sp->rm < 0 ? sp->lifetime == LIFETIME_COMMAND : sp->rm > 0;
	int r = sandbox_spec_check(sp, err, errn);
	/* A secret's hosts are allowed automatically. */
	if (r == 0 && secrets_allow_hosts(sp->secrets, sp->policy) < 0) {
		snprintf(err, errn, "secrets: too many allowed hosts (at most %d)",
			 POLICY_MAX_RULES);
		r = -EINVAL;
	}
	if (r == 0)
		r = session_resolve_mounts(s, err, errn);
	if (r == 0 && sp->lifetime == LIFETIME_DETACHED && !l &&
	    (r = session_detach(s, err, errn)) == SESSION_DETACHED)
		return r;
	if (r == 0)
		r = session_loop(s, l, err, errn);
	if (r < 0) {
		s->phase = SESSION_STOPPED;
		return r;
	}
	s->started = started;
	s->started_opaque = opaque;
	/* Every phase runs from the loop, so started() never runs before this returns. */
	s->kick = (struct timer){ .fn = session_on_kick, .obj = s };
	loop_timer_set(s->loop, &s->kick, s->loop->now);
	return 0;
}

void session_cancel(struct session *s)
{
	if (!s->started)
		return;
	if (s->phase == SESSION_NEW) {
		loop_timer_cancel(s->loop, &s->kick);
		snprintf(s->err, sizeof(s->err), "%s",
			 s->interrupted ? "interrupted while starting" : "cancelled");
		session_fail(s, -ECANCELED);
	} else if (s->phase == SESSION_PREPARING && s->worker > 0) {
		s->phase = SESSION_STOPPED; /* the worker's end reports it: see session_on_worker */
		session_worker_kill(s);
	} else if (s->phase == SESSION_BOOTING) {
		launch_cancel(&s->L, s->interrupted ? "interrupted while booting" : "cancelled");
	}
}

/* ---- stop -------------------------------------------------------------------------------- */

/* The sandbox is gone: record its end, answer `kill`, remove what s->rm says. */
static void session_ended(struct session *s)
{
	session_release_volumes(s);
	state_set_status(s->st, s->L.id, s->failure[0] ? ST_FAILED : ST_STOPPED,
			 s->failure[0] ? s->failure : NULL);
	supervisor_finish(&s->sup);
	s->phase = SESSION_STOPPED;
	session_drop_disk(s);
	if (s->rm && s->made_dir) {
		rm_rf(s->L.dir);
		state_delete(s->st, s->L.id);
		s->made_dir = false;
	}
}

static void session_on_sb_stopped(const struct sandbox_times *t, void *opaque)
{
	struct session *s = opaque;
	s->times = *t;
	s->sb = NULL;
	session_ended(s);
	session_stopped_fn fn = s->stopped;
	s->stopped = NULL;
	if (fn)
		fn(s, s->stopped_opaque);
}

void session_stop(struct session *s, const char *failure, session_stopped_fn stopped, void *opaque)
{
	if (!s->sb || s->phase == SESSION_STOPPING)
		return;
	const char *f = failure && *failure ? failure : sandbox_failure(s->sb);
	snprintf(s->failure, sizeof(s->failure), "%s", f ? f : "");
	state_set_status(s->st, s->L.id, ST_STOPPING, NULL);
	s->phase = SESSION_STOPPING;
	s->stopped = stopped;
	s->stopped_opaque = opaque;
	sandbox_stop(s->sb, session_on_sb_stopped, s);
}

void session_fini(struct session *s)
{
	if (s->sb) {
		/* Still running, or stopping: no time for grace now. */
		if (s->phase != SESSION_STOPPING) {
			const char *f = sandbox_failure(s->sb);
			snprintf(s->failure, sizeof(s->failure), "%s", f ? f : "");
		}
		sandbox_kill(s->sb, &s->times);
		s->sb = NULL;
		session_ended(s);
	}
	if (s->L.booting) {
		sandbox_kill(s->L.booting, NULL);
		s->L.booting = NULL;
	}
	if (s->worker > 0) {
		session_worker_kill(s);
		while (waitpid(s->worker, NULL, 0) < 0 && errno == EINTR)
			;
		oci_sweep_writer(s->worker);
	}
	if (s->worker_w.obj && s->worker_w.fd >= 0) { /* set up by session_worker_start */
		loop_unwatch(s->loop, &s->worker_w);
		close(s->worker_w.fd);
	}
	buf_fini(&s->worker_out);
	if (s->loop)
		loop_timer_cancel(s->loop, &s->kick);
	if (s->started && (s->have_record || s->made_dir)) {
		/* A start abandoned half-way: leave what a failed start leaves. */
		snprintf(s->err, sizeof(s->err), "abandoned while starting");
		s->started = NULL;
		session_fail(s, -ECANCELED);
	}
	if (s->notify_fd >= 0)
		close(s->notify_fd);
	session_drop_disk(s); /* a start abandoned before the record (no session_fail) */
	session_release_volumes(s);
	if (s->sigfd >= 0 && s->loop)
		loop_unwatch(s->loop, &s->sig_w);
	if (s->loop == &s->own_loop)
		loop_fini(&s->own_loop);
	if (s->sigfd >= 0)
		close(s->sigfd);
	state_close(s->st);
	free(s->argv);
	env_fini(&s->env);
	oci_config_fini(&s->image);
	sandbox_spec_fini(&s->spec);
	memset(s, 0, sizeof(*s));
	s->sigfd = s->notify_fd = s->worker_w.fd = -1;
}
