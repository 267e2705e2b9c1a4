/* SPDX-License-Identifier: MIT */
/* Container directories, state.json and the shim's command socket (runtime_state.h). */
#define _GNU_SOURCE
#include "runtime_state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "common/paths.h"
#include "common/util.h"
#include "runtime_config.h"
#include "state.h"

#define RT_SHIM_ANSWER_MS 60000 /* a start or kill is answered at once; a bound anyway */

const char *const rt_status_names[RT_STATUS_END] = { "created", "running", "stopped" };

int rt_root_default(char *out, size_t n)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int k;
	if (geteuid() == 0)
		k = snprintf(out, n, "/run/matchlock-oci");
	else if (xdg && *xdg)
		k = snprintf(out, n, "%s/matchlock-oci", xdg);
	else {
		char state[4096];
		int r = paths_state_dir(state, sizeof(state));
		if (r < 0)
			return r;
		k = snprintf(out, n, "%s/oci", state);
	}
	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

bool rt_id_valid(const char *id)
{
	size_t n = strlen(id);
	return n && n <= RT_ID_MAX && strcmp(id, ".") && strcmp(id, "..") &&
	       strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-") ==
		   n;
}

int rt_container_dir(const char *root, const char *id, char *out, size_t n)
{
	if (!rt_id_valid(id))
		return -EINVAL;
	int k = snprintf(out, n, "%s/%s", root, id);
	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

int rt_state_write(const char *dir, const struct rt_state *s)
{
	json_t *o = json_object(), *names = json_array();
	for (unsigned i = 0; names && i < s->nsecret_names; i++)
		json_array_append_new(names, json_string(s->secret_names[i]));
	json_t *ann = s->annotations_json ? json_loads(s->annotations_json, 0, NULL) : NULL;
	json_t *hooks = s->hooks_json ? json_loads(s->hooks_json, 0, NULL) : NULL;
	if (!o || !names || json_object_set_new(o, "ociVersion", json_string(s->oci_version)) < 0 ||
	    json_object_set_new(o, "id", json_string(s->id)) < 0 ||
	    json_object_set_new(o, "bundle", json_string(s->bundle)) < 0 ||
	    json_object_set_new(o, "rootfs", json_string(s->rootfs)) < 0 ||
	    json_object_set_new(o, "pid", json_integer(s->pid)) < 0 ||
	    json_object_set_new(o, "pid_start", json_integer((json_int_t)s->pid_start)) < 0 ||
	    json_object_set_new(o, "status", json_string(rt_status_names[s->status])) < 0 ||
	    json_object_set_new(o, "exit_code", json_integer(s->exit_code)) < 0 ||
	    json_object_set_new(o, "created_ns", json_integer(s->created_ns)) < 0 ||
	    json_object_set_new(o, "sandbox", json_string(s->sandbox)) < 0 ||
	    json_object_set_new(o, "secret_names", names) < 0 ||
	    (ann && json_object_set_new(o, "annotations", ann) < 0) ||
	    (hooks && json_object_set_new(o, "hooks", hooks) < 0)) {
		json_decref(o);
		return -ENOMEM;
	}
	char path[PATH_MAX + 32], tmp[PATH_MAX + 40];
	snprintf(path, sizeof(path), "%s/" RT_STATE_FILE, dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int r = json_dump_file(o, tmp, JSON_COMPACT) < 0 ? -EIO : 0;
	json_decref(o);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	return r;
}

static void copy_str(json_t *o, const char *key, char *out, size_t n)
{
	const char *v = json_string_value(json_object_get(o, key));
	snprintf(out, n, "%s", v ? v : "");
}

int rt_state_read(const char *dir, struct rt_state *s)
{
	memset(s, 0, sizeof(*s));
	s->exit_code = -1;
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/" RT_STATE_FILE, dir);
	json_t *o = json_load_file(path, 0, NULL);
	if (!o)
		return access(dir, F_OK) == 0 ? -EAGAIN : -ENOENT;
	copy_str(o, "id", s->id, sizeof(s->id));
	copy_str(o, "ociVersion", s->oci_version, sizeof(s->oci_version));
	copy_str(o, "bundle", s->bundle, sizeof(s->bundle));
	copy_str(o, "rootfs", s->rootfs, sizeof(s->rootfs));
	copy_str(o, "sandbox", s->sandbox, sizeof(s->sandbox));
	s->pid = (int)json_integer_value(json_object_get(o, "pid"));
	s->pid_start = (uint64_t)json_integer_value(json_object_get(o, "pid_start"));
	s->exit_code = (int)json_integer_value(json_object_get(o, "exit_code"));
	s->created_ns = json_integer_value(json_object_get(o, "created_ns"));
	const char *st = json_string_value(json_object_get(o, "status"));
	s->status = RT_STOPPED;
	for (int i = 0; st && i < RT_STATUS_END; i++)
		if (!strcmp(st, rt_status_names[i]))
			s->status = (enum rt_status)i;
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(o, "secret_names"), i, v)
	{
		if (s->nsecret_names < RT_MAX_SECRET_NAMES && json_is_string(v))
			snprintf(s->secret_names[s->nsecret_names++], sizeof(s->secret_names[0]),
				 "%s", json_string_value(v));
	}
	json_t *ann = json_object_get(o, "annotations");
	if (ann)
		s->annotations_json = json_dumps(ann, JSON_COMPACT);
	json_t *hooks = json_object_get(o, "hooks");
	if (hooks)
		s->hooks_json = json_dumps(hooks, JSON_COMPACT);
	json_decref(o);
	return 0;
}

void rt_state_fini(struct rt_state *s)
{
	free(s->annotations_json);
	free(s->hooks_json);
	s->annotations_json = s->hooks_json = NULL;
}

bool rt_pid_alive(int pid, uint64_t start)
{
	if (pid <= 0)
		return false;
	char path[64], *stat = NULL;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_file_str(path, 4096, &stat) < 0)
		return false;
	/* "PID (COMM) STATE ...": COMM may hold anything, so read after its last ')'. */
	char *p = strrchr(stat, ')');
	bool alive = p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
	free(stat);
	return alive && proc_start_time(pid) == start;
}

enum rt_status rt_state_status(const struct rt_state *s)
{
	if (s->status == RT_STOPPED || !rt_pid_alive(s->pid, s->pid_start))
		return RT_STOPPED;
	return s->status;
}

int rt_sock_addr(const char *dir, int *dirfd, struct sockaddr_un *sa)
{
	*dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*dirfd < 0)
		return -errno;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/" RT_SHIM_SOCK, *dirfd);
	return 0;
}

int rt_shim_call(const char *dir, const char *cmd, char *err, size_t errn)
{
	struct sockaddr_un a;
	int dirfd;
	if (rt_sock_addr(dir, &dirfd, &a) < 0) {
		snprintf(err, errn, "container not running");
		return -ENOENT;
	}
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(dirfd);
		snprintf(err, errn, "container not running");
		if (fd >= 0)
			close(fd);
		return -e;
	}
	close(dirfd);
	int r = -EIO;
	char ans[1024];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) < 0) {
		snprintf(err, errn, "container not running");
	} else if (poll(&p, 1, RT_SHIM_ANSWER_MS) <= 0) {
		snprintf(err, errn, "the container's runtime process did not answer");
		r = -ETIMEDOUT;
	} else {
		ssize_t n = recv(fd, ans, sizeof(ans) - 1, 0);
		ans[n > 0 ? n : 0] = 0;
		if (!strcmp(ans, "ok"))
			r = 0;
		else
			snprintf(err, errn, "%s",
				 !strncmp(ans, "error: ", 7) ? ans + 7
				 : n <= 0		     ? "container not running"
							     : ans);
	}
	close(fd);
	return r;
}

/* RFC 3339 with nanoseconds, UTC: what runc prints for "created". */
void rt_rfc3339(long long ns, char *out, size_t n)
{
	time_t sec = (time_t)(ns / 1000000000LL);
	struct tm tm;
	gmtime_r(&sec, &tm);
	size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + k, n - k, ".%09lldZ", ns % 1000000000LL);
}

/* The OCI state of a container, with runc's extra fields (rootfs, created, owner). */
json_t *rt_state_json(const struct rt_state *st)
{
	enum rt_status now = rt_state_status(st);
	char created[64];
	rt_rfc3339(st->created_ns, created, sizeof(created));
	json_t *o =
	    json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:s}", "ociVersion",
		      st->oci_version[0] ? st->oci_version : RT_SPEC_VERSION, "id", st->id, "pid",
		      now == RT_STOPPED ? 0 : st->pid, "status", rt_status_names[now], "bundle",
		      st->bundle, "rootfs", st->rootfs, "created", created, "owner", "");
	json_t *ann = st->annotations_json ? json_loads(st->annotations_json, 0, NULL) : NULL;
	if (o && ann)
		json_object_set_new(o, "annotations", ann);
	return o;
}

int runtime_hooks_run(const char *hooks_json, const char *kind, const char *state_json, char *err,
		      size_t errn)
{
	json_t *hooks = hooks_json ? json_loads(hooks_json, 0, NULL) : NULL;
	json_t *list = json_object_get(hooks, kind), *h;
	size_t i, k;
	int r = 0;
	json_array_foreach(list, i, h)
	{
		const char *path = json_string_value(json_object_get(h, "path"));
		json_t *args = json_object_get(h, "args"), *env = json_object_get(h, "env");
		json_int_t to = json_integer_value(json_object_get(h, "timeout"));
		unsigned timeout =
		    to > 0 && to < RT_HOOK_TIMEOUT_S ? (unsigned)to : RT_HOOK_TIMEOUT_S;
		char **av = calloc(json_array_size(args) + 2, sizeof(char *));
		char **ev = calloc(json_array_size(env) + 1, sizeof(char *));
		int in[2] = { -1, -1 };
		if (!av || !ev || pipe2(in, O_CLOEXEC) < 0) {
			r = -ENOMEM;
			snprintf(err, errn, "hooks.%s[%zu]: out of resources", kind, i);
		}
		/* args holds argv[0] too (runtime-spec); without args, the path is argv[0]. */
		if (av)
			av[0] = (char *)path;
		for (k = 0; av && k < json_array_size(args); k++)
			av[k] = (char *)json_string_value(json_array_get(args, k));
		for (k = 0; ev && k < json_array_size(env); k++)
			ev[k] = (char *)json_string_value(json_array_get(env, k));
		pid_t pid = r < 0 ? -1 : fork();
		if (pid == 0) {
			dup2(in[0], STDIN_FILENO);
			execve(path, av, ev);
			_exit(127);
		}
		if (in[0] >= 0)
			close(in[0]);
		if (pid > 0) {
			(void)!write_all(in[1], state_json, strlen(state_json));
			close(in[1]);
			int st = 0, waited = 0;
			pid_t w;
			while ((w = waitpid(pid, &st, WNOHANG)) == 0 &&
			       waited < (int)timeout * 50) {
				usleep(20000);
				waited++;
			}
			if (w == 0) {
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
				snprintf(err, errn, "hooks.%s[%zu] %s: timed out after %u s", kind,
					 i, path, timeout);
				r = -ETIMEDOUT;
			} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				snprintf(err, errn, "hooks.%s[%zu] %s: failed (status %d)", kind, i,
					 path,
					 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
				r = -EIO;
			}
		} else if (r == 0) {
			snprintf(err, errn, "hooks.%s[%zu]: fork: %s", kind, i, strerror(errno));
			r = -EAGAIN;
			close(in[1]);
		}
		free(av);
		free(ev);
		if (r < 0)
			break;
	}
	json_decref(hooks);
	return r;
}
