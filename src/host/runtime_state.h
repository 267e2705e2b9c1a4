/* SPDX-License-Identifier: MIT */
/*
 * The OCI runtime's containers on the host: one directory per container under the runtime root
 * (--root), holding state.json (written only by the container's pid-file process, the "shim",
 * runtime_shim.c) and shim.sock, the shim's command socket (SOCK_SEQPACKET, one text command per
 * packet: "start", "kill SIG ALL"; answered "ok" or "error: WHY"). The directory is the
 * container's existence: made by `create` (mkdir: a duplicate ID fails there), removed by
 * `delete`. Whether the container still runs is whether its shim is alive.
 */
#ifndef MATCHLOCK_RUNTIME_STATE_H
#define MATCHLOCK_RUNTIME_STATE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define RT_SPEC_VERSION "1.2.0" /* the newest runtime-spec this runtime reads */
#define RT_ID_MAX 128 /* a container ID: letters, digits, '_', '.', '+', '-' */
#define RT_MAX_SECRET_NAMES 16
#define RT_SHIM_SOCK "shim.sock"
#define RT_STATE_FILE "state.json"

enum rt_status { RT_CREATED, RT_RUNNING, RT_STOPPED, RT_STATUS_END };
extern const char *const rt_status_names[RT_STATUS_END];

struct rt_state {
	char id[RT_ID_MAX + 1];
	char oci_version[32];
	char bundle[PATH_MAX], rootfs[PATH_MAX];
	int pid; /* the shim */
	uint64_t pid_start; /* its start time (pid reuse check) */
	enum rt_status status; /* as the shim last wrote it */
	int exit_code; /* RT_STOPPED: the workload's status, else -1 */
	long long created_ns; /* wall clock */
	char sandbox[32]; /* the matchlock sandbox ID (its control socket serves exec) */
	char *annotations_json; /* may be NULL */
	char
	    *hooks_json; /* may be NULL: the hooks run by start (poststart) and delete (poststop) */
	/* Secrets' names: an exec's environment must not carry their real values either. */
	char secret_names[RT_MAX_SECRET_NAMES][64];
	unsigned nsecret_names;
};

/* The runtime root: --root, else $XDG_RUNTIME_DIR/matchlock-oci, /run/matchlock-oci as root. */
int rt_root_default(char *out, size_t n);
/* Is id acceptable as a container ID (and so as a directory name)? */
bool rt_id_valid(const char *id);
/* ROOT/ID into out; -EINVAL for a bad ID, -ENAMETOOLONG. */
int rt_container_dir(const char *root, const char *id, char *out, size_t n);

/* Write state.json atomically (a temporary file renamed over it). */
int rt_state_write(const char *dir, const struct rt_state *s);
/* Read state.json; -ENOENT when the container does not exist. Free with rt_state_fini. */
int rt_state_read(const char *dir, struct rt_state *s);
void rt_state_fini(struct rt_state *s);
/* The status now: a shim that is gone means stopped, whatever the file says. */
enum rt_status rt_state_status(const struct rt_state *s);
/* Is pid alive (not a zombie) and the process that started at start? */
bool rt_pid_alive(int pid, uint64_t start);

/* RFC 3339 with nanoseconds, UTC (runc's "created"). */
void rt_rfc3339(long long ns, char *out, size_t n);
/* The OCI state of a container (runtime.md), with runc's rootfs, created and owner. */
json_t *rt_state_json(const struct rt_state *st);

struct sockaddr_un;
/*
 * The address of dir's shim.sock through an O_PATH descriptor of dir (*dirfd, the caller
 * closes it): a runtime root of any length (containerd's are long) still fits sun_path.
 */
int rt_sock_addr(const char *dir, int *dirfd, struct sockaddr_un *sa);

/*
 * Send one command to the shim of the container in dir and wait (bounded) for its answer.
 * Returns 0 ("ok"), or -errno with err ("error: ..." text, or why the shim could not be asked).
 */
int rt_shim_call(const char *dir, const char *cmd, char *err, size_t errn);

#endif
