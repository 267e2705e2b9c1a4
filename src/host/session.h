/* SPDX-License-Identifier: MIT */
/*
 * One sandbox life cycle for every entry point. `run`, `run -d` and `rpc create` (and later the
 * OCI runtime) translate their input into a struct sandbox_spec and nothing else;
 * sandbox_spec_check() is the one place that says what is wrong with it, in words that are the
 * same whichever way the value came in; session_start() and session_stop() own everything from
 * there: image preparation with Docker's config rules, the state record, the launch (accelerator,
 * snapshot template, boot with its fallbacks), the control socket, port forwards and teardown.
 *
 * Phases (s->phase): NEW -> PREPARING (the root disk: a worker process pulls, unpacks and builds
 * an image that is not local and built yet, so the caller's loop keeps serving meanwhile) ->
 * PREPARED (command and environment decided, state directory made) -> BOOTING (record written,
 * VM starting, driven by the loop) -> RUNNING -> STOPPING -> STOPPED. Nothing here waits inside
 * the loop: a start and a stop each end with a callback, called from the loop.
 */
#ifndef MATCHLOCK_SESSION_H
#define MATCHLOCK_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "launch.h"
#include "common/buf.h"
#include "common/loop.h"
#include "net/mitm.h"
#include "net/policy.h"
#include "net/secrets.h"
#include "oci/oci.h"
#include "proto/env.h"
#include "sandbox.h"
#include "state.h"
#include "supervisor.h"

/* The ranges sandbox_spec_check accepts. */
#define SPEC_CPUS_MIN 0.1
#define SPEC_CPUS_MAX 16
#define SPEC_MEMORY_MIN_MB 64
#define SPEC_MEMORY_MAX_MB 65536
#define SPEC_TIMEOUT_MAX_S (86400LL * 365)
#define SPEC_MAX_PUBLISH 16 /* port forwards given at start (more can be added while running) */
#define SPEC_MAX_MOUNTS SANDBOX_MAX_MOUNTS
#define SPEC_MOUNT_PATH_MAX 1024 /* a guest path's length */
#define SPEC_WORKSPACE "/workspace" /* the guest path of a mount given without one */

/* How long a sandbox lives, and so what its timeout means and whether it is removed at the end. */
enum sandbox_lifetime {
	LIFETIME_COMMAND, /* run: ends with its command; the timeout is the command's (exit 124) */
	LIFETIME_DETACHED, /* run -d: a supervisor of its own until kill or the timeout */
	LIFETIME_CLIENT, /* rpc: until close, the client leaving, kill or the timeout */
};

struct sandbox_port {
	uint16_t local, remote; /* local 0: any free port */
};

/*
 * Everything a sandbox is made from. The spec owns every string and table in it (set strings
 * with spec_strdup; policy and secrets are allocated by sandbox_spec_init). Values are stored
 * as given, wide enough that nothing out of range wraps into range before the check.
 */
struct sandbox_spec {
	/* What it runs: an OCI image reference, or a root filesystem (directory or tarball). */
	char *image, *rootfs;
	bool rootfs_stable_key; /* a rootfs directory keyed without inodes/ctimes (rootfs.h) */
	/*
	 * The caller writes host files of any owner once the sandbox runs (the OCI runtime's
	 * write-back to root.path): a supervisor started by root keeps its file capabilities, as
	 * it does for host folders (jail_supervisor_drop_caps).
	 */
	bool writes_host_files;
	/* Resources. */
	double cpus;
	long long memory_mb;
	bool has_disk_size, has_timeout; /* asked for: the values below count */
	long long disk_size_mb; /* the writable disk (disk.h); DISK_DEFAULT_MB unless asked */
	long long timeout_s;
	/* Lifetime. */
	enum sandbox_lifetime lifetime;
	int rm; /* remove record and directory at the end; -1: only a LIFETIME_COMMAND sandbox */
	/* Process defaults, on top of the image's config (Docker's rules). */
	struct env env; /* layers above the image's Env, already merged in the caller's order */
	char *user, *workdir;
	char **entrypoint; /* NULL: the image's; an empty vector: none */
	char **cmd; /* NULL or empty: the image's Cmd (dropped when entrypoint is given) */
	char *hostname; /* NULL: the sandbox's ID */
	/* Network. */
	struct policy *policy; /* allow-list, add-hosts, private IPs, no network */
	struct secrets *secrets; /* values in memory only; their hosts are allowed at start */
	char *upstream_ca[MITM_MAX_UPSTREAM_CA + 1]; /* NULL-terminated */
	unsigned nupstream_ca;
	struct sandbox_port publish[SPEC_MAX_PUBLISH];
	unsigned npublish;
	char *address; /* where publish listens; NULL: 127.0.0.1 */
	/*
	 * Host folders, as given (-v HOST:GUEST[:MODE], mounts[{host, guest, mode}]); the mode
	 * NULL means overlay. session_start resolves host to an absolute path. A host "@NAME" is
	 * the named volume NAME (disk.h): mode ro or rw, NULL meaning rw.
	 */
	struct spec_mount {
		char *host, *guest, *mode;
	} mounts[SPEC_MAX_MOUNTS];
	unsigned nmounts;
	/* The machine. */
	char *accel; /* auto, kvm or tcg; NULL: auto */
	/* The guest's: linux/amd64 or linux/arm64 (arch.h); $MATCHLOCK_PLATFORM, else the host's.
	 */
	char *platform;
	bool no_snapshot; /* boot cold instead of restoring this machine's template */
	bool no_pool; /* never claim a pool's standby (pool.h), even of this shape */
	/* Who hears every egress decision (may be NULL). */
	net_event_fn net_event;
	void *net_opaque;
	/*
	 * Hook rules (spec_hooks.h; allocated empty by sandbox_spec_init, may change while the
	 * sandbox runs), and who hears file events (with net_opaque; may be NULL).
	 */
	struct hooks *hooks;
	struct fhooks *fhooks;
	void (*file_event)(const struct sandbox_file_event *ev, void *opaque);
};

/* Defaults (1 CPU, 512 MB, rm by lifetime); -ENOMEM. */
int sandbox_spec_init(struct sandbox_spec *spec);
/* Free what the spec owns (secret values are wiped). NULL-safe fields; spec is zeroed. */
void sandbox_spec_fini(struct sandbox_spec *spec);
/* Replace *field by a copy of value (NULL clears it); -ENOMEM. */
int spec_strdup(char **field, const char *value);
/* A NULL-terminated copy of v (strings copied too), or NULL with errno ENOMEM. */
char **spec_strv_dup(char *const *v);
void spec_strv_free(char **v);

/*
 * The one validator. Returns 0, or -EINVAL with one line in err naming the value, what is
 * accepted, and how each entry point spells the field, e.g.
 *   "memory 10 MB: expected 64 to 65536 MB (--memory, resources.memory_mb)".
 * The CLI prints it after "matchlock: " and exits 125; the RPC answers -32602 with it.
 */
int sandbox_spec_check(const struct sandbox_spec *spec, char *err, size_t errn);
/*
 * The same wording for a field an entry point does not know or the server does not implement
 * (the RPC's unknown keys): "NAME: not supported by this version of matchlock".
 */
void sandbox_spec_unsupported(char *err, size_t errn, const char *name);

struct session;
/* A start ended: r == 0 the sandbox runs; else -errno with err (see session_start). */
typedef void (*session_started_fn)(struct session *s, int r, const char *err, void *opaque);
/* A stop ended: the sandbox is gone, its end recorded (s->times filled). */
typedef void (*session_stopped_fn)(struct session *s, void *opaque);

struct session {
	struct sandbox_spec spec; /* taken over by session_start */
	enum {
		SESSION_NEW,
		SESSION_PREPARING,
		SESSION_PREPARED,
		SESSION_BOOTING,
		SESSION_RUNNING,
		SESSION_STOPPING,
		SESSION_STOPPED
	} phase;
	struct launch L; /* L.id and L.dir: the sandbox's identity and directory */
	struct sandbox_config sc;
	struct sandbox_mount mounts[SPEC_MAX_MOUNTS]; /* sc.mounts: the spec's folders, resolved */
	struct sandbox_volume volumes[SANDBOX_MAX_VOLUMES]; /* sc.volumes: the spec's volumes */
	char volume_paths[SANDBOX_MAX_VOLUMES][4400];
	int volume_fds[SANDBOX_MAX_VOLUMES]; /* each volume's lock, held until the sandbox ends */
	unsigned nvolumes;
	char disk_path[4300]; /* the writable disk, removed when the sandbox ends; "" if none */
	struct loop *loop; /* the caller's, or own_loop */
	struct loop own_loop;
	int sigfd; /* own loop only: SIGINT/TERM/HUP/WINCH (cli_signalfd), else -1 */
	struct watch sig_w;
	volatile int interrupted; /* the signal that interrupted the start */
	struct state *st;
	struct sandbox *sb;
	struct supervisor sup;
	/* What every process gets unless it asks otherwise (image config applied). */
	struct oci_image_config image;
	char **argv; /* Entrypoint + Cmd by Docker's rules (borrowed strings); may be empty */
	struct env env; /* the image's Env, then spec.env */
	const char *user, *workdir; /* the spec's, else the image's; may be NULL */
	bool rm; /* spec.rm resolved */
	int notify_fd; /* LIFETIME_DETACHED: the waiting parent's pipe, until the start ends */
	bool made_dir, have_record;
	bool detached; /* this process is a detached supervisor (its stdio is /dev/null) */
	bool sealed; /* its seccomp allow-list is loaded (jail.h): no fork from here on */
	struct sandbox_times times; /* filled when the sandbox stops */
	/* The start in progress. */
	struct timer kick; /* runs the first phase from the loop */
	session_started_fn started;
	void *started_opaque;
	pid_t worker; /* PREPARING: the process preparing the root disk, else 0 */
	struct watch worker_w; /* its result pipe */
	struct buf worker_out; /* what it said (bounded) */
	char err[1024]; /* why the start failed, for started() */
	/* The stop in progress. */
	session_stopped_fn stopped;
	void *stopped_opaque;
	char failure[300]; /* recorded as the reason when the sandbox stops */
};

#define SESSION_DETACHED 1

/*
 * Validate spec, take over its contents (spec is left empty), and start the sandbox on loop l,
 * or on a loop of the session's own when l is NULL (then the session also owns the process's
 * signals: s->sigfd, and SIGINT during the start cancels it). Returns:
 *   0                  starting: started() follows, from the loop (drive s->loop until then);
 *   SESSION_DETACHED   LIFETIME_DETACHED (own loop only), in the caller's process: a child now
 *                      supervises the running sandbox s->L.id (print it and leave);
 *   -EINVAL            bad input (the validator) -- started() is not called;
 *   other -errno       could not begin (err says why) -- started() is not called.
 * started() gets r == 0 when the sandbox runs (s->sb, the control socket, the port forwards), or
 *   -EINVAL            bad input found while preparing (the image's Env, no command);
 *   -ECANCELED         session_cancel() (s->interrupted says which signal, if one did);
 *   other -errno       the sandbox could not be started;
 * with err saying why; then nothing is left running and the record says "failed" unless the
 * sandbox is removed at its end. Call session_fini() in every case; the session is not touched
 * after a callback returns, so the callback itself may call session_fini() (and free s).
 */
int session_start(struct session *s, struct sandbox_spec *spec, struct loop *l,
		  session_started_fn started, void *opaque, char *err, size_t errn);
/* Abandon a start in progress (its worker is killed, its boot stopped); started() follows. */
void session_cancel(struct session *s);
/*
 * Stop a running sandbox: record stopping, power off (bounded grace), record the end (failed
 * with failure, or sandbox_failure(), when either is non-NULL), answer clients waiting for the
 * stop, and remove record and directory when s->rm. stopped() (may be NULL) follows from the
 * loop. Does nothing (and calls nothing) when no sandbox runs or a stop is already under way.
 */
void session_stop(struct session *s, const char *failure, session_stopped_fn stopped, void *opaque);
/*
 * Release everything. A sandbox still running (or stopping) is killed at once, without grace,
 * and recorded as stopped; a start in progress is abandoned without its callback.
 */
void session_fini(struct session *s);

#endif
