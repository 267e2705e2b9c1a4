/* SPDX-License-Identifier: MIT */
/*
 * config.json and process.json, read with jansson into struct runtime_config. What a VM gives
 * anyway (its own kernel, so its own namespaces, capabilities, seccomp, masked paths, cgroups,
 * devices) is accepted: the boundary is stronger than what those fields ask for. What it cannot
 * do (join another container's IPC or PID namespace, a read-only root, hooks, mount types with
 * no guest counterpart) is refused by name.
 */
#define _GNU_SOURCE
#include "runtime_config.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "common/util.h"
#include "proto/msg.h"

#define RT_MAX_CONFIG_MOUNTS 128 /* entries in config.json's mounts (most map to nothing) */
#define RT_MAX_NAMESPACES 16

static int fail(char *err, size_t errn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errn, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errn, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void runtime_policy_default(struct runtime_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->annotations = true;
}

/* A JSON boolean at key, or def when absent; -EINVAL if present and not a boolean. */
static int get_bool(json_t *obj, const char *key, bool def, bool *out)
{
	json_t *v = json_object_get(obj, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_boolean(v))
		return -EINVAL;
	*out = json_is_true(v);
	return 0;
}

int runtime_policy_load(const char *path, struct runtime_policy *p, char *err, size_t errn)
{
	runtime_policy_default(p);
	json_error_t je;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return fail(err, errn, "policy file %s: line %d: %s", path, je.line, je.text);
	int r = 0;
	size_t i;
	json_t *v;
	const char *key;
	if (!json_is_object(root)) {
		r = fail(err, errn, "policy file %s: expected a JSON object", path);
		goto out;
	}
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "allow_hosts") && strcmp(key, "allow_private_ips") &&
		    strcmp(key, "no_network") && strcmp(key, "annotations") &&
		    strcmp(key, "upstream_ca") && strcmp(key, "pod_namespaces")) {
			r = fail(err, errn,
				 "policy file %s: unknown key \"%.64s\" (known: allow_hosts, "
				 "allow_private_ips, no_network, annotations, upstream_ca, "
				 "pod_namespaces)",
				 path, key);
			goto out;
		}
	}
	v = json_object_get(root, "allow_hosts");
	if (v && !json_is_array(v)) {
		r = fail(err, errn, "policy file %s: allow_hosts: expected an array of globs",
			 path);
		goto out;
	}
	json_t *h;
	json_array_foreach(v, i, h)
	{
		if (!json_is_string(h) || policy_add(&p->base, json_string_value(h)) < 0) {
			r = fail(err, errn,
				 "policy file %s: allow_hosts[%zu]: expected a host glob", path, i);
			goto out;
		}
	}
	v = json_object_get(root, "upstream_ca");
	if ((v && !json_is_array(v)) || json_array_size(v) > MITM_MAX_UPSTREAM_CA) {
		r = fail(err, errn,
			 "policy file %s: upstream_ca: expected an array of PEM files "
			 "(at most %d)",
			 path, MITM_MAX_UPSTREAM_CA);
		goto out;
	}
	json_array_foreach(v, i, h)
	{
		if (!json_is_string(h)) {
			r = fail(err, errn, "policy file %s: upstream_ca[%zu]: expected a path",
				 path, i);
			goto out;
		}
		if (!(p->upstream_ca[p->nupstream_ca++] = strdup(json_string_value(h)))) {
			r = -ENOMEM;
			goto out;
		}
	}
	if (get_bool(root, "allow_private_ips", false, &p->base.allow_private) < 0 ||
	    get_bool(root, "no_network", false, &p->base.no_network) < 0 ||
	    get_bool(root, "annotations", true, &p->annotations) < 0 ||
	    get_bool(root, "pod_namespaces", false, &p->pod_namespaces) < 0)
		r = fail(err, errn,
			 "policy file %s: allow_private_ips, no_network and annotations "
			 "are true or false",
			 path);
out:
	json_decref(root);
	if (r < 0)
		runtime_policy_fini(p);
	return r;
}

void runtime_policy_fini(struct runtime_policy *p)
{
	for (unsigned i = 0; i < p->nupstream_ca; i++)
		free(p->upstream_ca[i]);
	runtime_policy_default(p);
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

void runtime_config_fini(struct runtime_config *c)
{
	free(c->oci_version);
	free(c->bundle);
	free(c->root);
	strv_free(c->args);
	env_fini(&c->env);
	free(c->cwd);
	free(c->hostname);
	free(c->netns);
	for (unsigned i = 0; i < c->nmounts; i++) {
		free(c->mounts[i].host);
		free(c->mounts[i].guest);
	}
	for (unsigned i = 0; i < c->nfiles; i++) {
		free(c->files[i].host);
		free(c->files[i].guest);
	}
	free(c->policy);
	secrets_clear(c->secrets);
	free(c->secrets);
	free(c->annotations_json);
	free(c->hooks_json);
	memset(c, 0, sizeof(*c));
}

/* An unsigned 32-bit id at key (uid, gid); def when absent. */
static int get_id(json_t *obj, const char *key, unsigned *out)
{
	json_t *v = json_object_get(obj, key);
	if (!v) {
		*out = 0;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > (json_int_t)UINT32_MAX - 1)
		return -EINVAL;
	*out = (unsigned)json_integer_value(v);
	return 0;
}

/* RLIMIT_NAME -> its number, or -1. */
static int rlimit_by_name(const char *name)
{
	static const struct {
		const char *name;
		int res;
	} names[] = {
		{ "RLIMIT_CPU", RLIMIT_CPU },		{ "RLIMIT_FSIZE", RLIMIT_FSIZE },
		{ "RLIMIT_DATA", RLIMIT_DATA },		{ "RLIMIT_STACK", RLIMIT_STACK },
		{ "RLIMIT_CORE", RLIMIT_CORE },		{ "RLIMIT_RSS", RLIMIT_RSS },
		{ "RLIMIT_NPROC", RLIMIT_NPROC },	{ "RLIMIT_NOFILE", RLIMIT_NOFILE },
		{ "RLIMIT_MEMLOCK", RLIMIT_MEMLOCK },	{ "RLIMIT_AS", RLIMIT_AS },
		{ "RLIMIT_LOCKS", RLIMIT_LOCKS },	{ "RLIMIT_SIGPENDING", RLIMIT_SIGPENDING },
		{ "RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE }, { "RLIMIT_NICE", RLIMIT_NICE },
		{ "RLIMIT_RTPRIO", RLIMIT_RTPRIO },	{ "RLIMIT_RTTIME", RLIMIT_RTTIME },
	};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(name, names[i].name))
			return names[i].res < EXEC_MAX_RLIMITS ? names[i].res : -1;
	return -1;
}

/* The process object (config.json's process, or a whole process.json). */
static int parse_process(json_t *proc, const char *where, struct runtime_config *c, char *err,
			 size_t errn)
{
	if (!json_is_object(proc))
		return fail(err, errn, "%s: expected an object", where);
	json_t *args = json_object_get(proc, "args");
	size_t n = json_array_size(args);
	if (!json_is_array(args) || n == 0)
		return fail(err, errn, "%s.args: expected a non-empty array of strings", where);
	if (n > MSG_MAX_ARGS)
		return fail(err, errn, "%s.args: %zu arguments (at most %d)", where, n,
			    MSG_MAX_ARGS);
	if (!(c->args = calloc(n + 1, sizeof(*c->args))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *a = json_array_get(args, i);
		if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a))
			return fail(err, errn, "%s.args[%zu]: expected a string without NUL", where,
				    i);
		if (!(c->args[i] = strdup(json_string_value(a))))
			return -ENOMEM;
	}
	json_t *env = json_object_get(proc, "env"), *e;
	if (env && !json_is_array(env))
		return fail(err, errn, "%s.env: expected an array of KEY=VALUE strings", where);
	size_t i;
	json_array_foreach(env, i, e)
	{
		int k = json_is_string(e) && strlen(json_string_value(e)) == json_string_length(e)
			    ? env_set(&c->env, json_string_value(e))
			    : -EINVAL;
		if (k == -ENOMEM)
			return k;
		if (k < 0)
			return fail(err, errn, "%s.env[%zu]: %s", where, i,
				    k == -EINVAL ? "expected KEY=VALUE" : env_strerror(k));
	}
	json_t *cwd = json_object_get(proc, "cwd");
	if (cwd && (!json_is_string(cwd) || json_string_value(cwd)[0] != '/' ||
		    json_string_length(cwd) >= MSG_MAX_STR))
		return fail(err, errn, "%s.cwd: expected an absolute path", where);
	if (cwd && !(c->cwd = strdup(json_string_value(cwd))))
		return -ENOMEM;
	json_t *user = json_object_get(proc, "user");
	unsigned uid = 0, gid = 0;
	if (user && (!json_is_object(user) || get_id(user, "uid", &uid) < 0 ||
		     get_id(user, "gid", &gid) < 0))
		return fail(err, errn, "%s.user: expected uid and gid as numbers", where);
	if (user && json_object_get(user, "username"))
		return fail(err, errn, "%s.user.username: not supported on Linux (give uid, gid)",
			    where);
	json_t *groups = json_object_get(user, "additionalGids");
	if (groups && !json_is_array(groups))
		return fail(err, errn, "%s.user.additionalGids: expected an array", where);
	snprintf(c->user, sizeof(c->user), "%u:%u", uid, gid);
	if (get_bool(proc, "terminal", false, &c->terminal) < 0)
		return fail(err, errn, "%s.terminal: expected true or false", where);
	json_t *rl = json_object_get(proc, "rlimits"), *r;
	if (rl && !json_is_array(rl))
		return fail(err, errn, "%s.rlimits: expected an array", where);
	json_array_foreach(rl, i, r)
	{
		const char *type = json_string_value(json_object_get(r, "type"));
		json_t *hard = json_object_get(r, "hard"), *soft = json_object_get(r, "soft");
		int res = type ? rlimit_by_name(type) : -1;
		if (res < 0 || !json_is_integer(hard) || !json_is_integer(soft))
			return fail(
			    err, errn,
			    "%s.rlimits[%zu]: expected a type RLIMIT_* Linux knows, hard and "
			    "soft",
			    where, i);
		/* JSON numbers above 2^63 (RLIM_INFINITY) arrive negative: unlimited. */
		uint64_t h = (uint64_t)json_integer_value(hard),
			 s = (uint64_t)json_integer_value(soft);
		if (s > h)
			return fail(err, errn, "%s.rlimits[%zu] %s: soft above hard", where, i,
				    type);
		unsigned k = 0;
		while (k < c->nrlimits && c->rlimits[k].resource != (uint32_t)res)
			k++;
		if (k == EXEC_MAX_RLIMITS)
			return fail(err, errn, "%s.rlimits: too many", where);
		c->rlimits[k] = (struct exec_rlimit){ (uint32_t)res, s, h };
		c->nrlimits += k == c->nrlimits;
	}
	return 0;
}

/* Is p an absolute path without "." or ".." components? */
static bool path_plain(const char *p)
{
	if (p[0] != '/')
		return false;
	for (const char *s = p; (s = strchr(s, '/'));) {
		s++;
		if ((s[0] == '.' && (s[1] == '/' || !s[1])) ||
		    (s[0] == '.' && s[1] == '.' && (s[2] == '/' || !s[2])))
			return false;
	}
	return true;
}

static bool under(const char *p, const char *dir)
{
	size_t n = strlen(dir);
	return !strncmp(p, dir, n) && (p[n] == 0 || p[n] == '/');
}

static bool has_option(json_t *opts, const char *name)
{
	size_t i;
	json_t *o;
	json_array_foreach(opts, i, o)
	{
		if (json_is_string(o) && !strcmp(json_string_value(o), name))
			return true;
	}
	return false;
}

/*
 * One entry of mounts. The guest has its own /proc, /sys, /dev (with pts, shm, mqueue) and a
 * tmpfs /run: what an engine mounts there is the guest's already. Directories bound in go
 * through the file service; single files (an engine's /etc/hosts, /etc/hostname) are copied in
 * at create, except resolv.conf (the guest's resolver is matchlock's DNS, the policy's place).
 */
static int parse_mount(json_t *m, size_t idx, const char *bundle, struct runtime_config *c,
		       char *err, size_t errn)
{
	const char *dst = json_string_value(json_object_get(m, "destination"));
	const char *type = json_string_value(json_object_get(m, "type"));
	const char *src = json_string_value(json_object_get(m, "source"));
	json_t *opts = json_object_get(m, "options");
	if (!json_is_object(m) || !dst || (opts && !json_is_array(opts)) ||
	    (json_object_get(m, "type") && !type) || (json_object_get(m, "source") && !src))
		return fail(err, errn,
			    "mounts[%zu]: expected destination, and type, source, options as "
			    "strings",
			    idx);
	if (!path_plain(dst) || strlen(dst) >= 1024 || !strcmp(dst, "/"))
		return fail(err, errn,
			    "mounts[%zu].destination %.200s: expected an absolute path "
			    "other than /",
			    idx, dst);
	bool bind = (type && !strcmp(type, "bind")) || has_option(opts, "bind") ||
		    has_option(opts, "rbind");
	if (under(dst, "/proc") || under(dst, "/sys") || under(dst, "/dev"))
		return 0;
	if (!bind && type && !strcmp(type, "tmpfs") && (under(dst, "/run") || !strcmp(dst, "/tmp")))
		return 0;
	if (!bind)
		return fail(err, errn,
			    "mounts[%zu]: %.32s on %.200s: not supported by matchlock (bind "
			    "mounts anywhere; proc, sysfs, devpts, mqueue, cgroup and tmpfs under "
			    "/proc, /sys, /dev, /run and /tmp are the guest's own)",
			    idx, type ? type : "(no type)", dst);
	if (!src || !*src)
		return fail(err, errn, "mounts[%zu]: a bind mount on %.200s without a source", idx,
			    dst);
	char joined[PATH_MAX], real[PATH_MAX];
	if (snprintf(joined, sizeof(joined), "%s%s%s", src[0] == '/' ? "" : bundle,
		     src[0] == '/' ? "" : "/", src) >= (int)sizeof(joined))
		return fail(err, errn, "mounts[%zu].source: too long", idx);
	struct stat st;
	if (!realpath(joined, real) || stat(real, &st) < 0)
		return fail(err, errn, "mounts[%zu].source %.200s: %s", idx, src, strerror(errno));
	bool ro = has_option(opts, "ro");
	struct rt_mount *out;
	if (S_ISDIR(st.st_mode)) {
		if (c->nmounts >= RT_MAX_MOUNTS)
			return fail(err, errn, "mounts: more than %d directories bound in",
				    RT_MAX_MOUNTS);
		out = &c->mounts[c->nmounts++];
	} else if (S_ISREG(st.st_mode)) {
		if (!strcmp(dst, "/etc/resolv.conf"))
			return 0;
		if (st.st_size > RT_FILE_MAX)
			return fail(err, errn,
				    "mounts[%zu]: file %.200s is bound in as a copy, and is larger "
				    "than %u bytes",
				    idx, src, RT_FILE_MAX);
		if (c->nfiles >= RT_MAX_FILES)
			return fail(err, errn, "mounts: more than %d files bound in", RT_MAX_FILES);
		out = &c->files[c->nfiles++];
	} else {
		return fail(err, errn,
			    "mounts[%zu].source %.200s: neither a directory nor a regular file",
			    idx, src);
	}
	out->ro = ro;
	if (!(out->host = strdup(real)) || !(out->guest = strdup(dst)))
		return -ENOMEM;
	return 0;
}

static int parse_namespaces(json_t *nss, const struct runtime_policy *pol, struct runtime_config *c,
			    char *err, size_t errn)
{
	static const char *const known[] = { "pid", "network", "mount",	 "ipc",
					     "uts", "user",    "cgroup", "time" };
	if (nss && (!json_is_array(nss) || json_array_size(nss) > RT_MAX_NAMESPACES))
		return fail(err, errn, "linux.namespaces: expected an array (at most %d)",
			    RT_MAX_NAMESPACES);
	size_t i;
	json_t *ns;
	json_array_foreach(nss, i, ns)
	{
		const char *type = json_string_value(json_object_get(ns, "type"));
		const char *path = json_string_value(json_object_get(ns, "path"));
		bool ok = false;
		for (size_t k = 0; type && k < ARRAY_SIZE(known); k++)
			ok |= !strcmp(type, known[k]);
		if (!ok)
			return fail(err, errn, "linux.namespaces[%zu]: unknown type %.32s", i,
				    type ? type : "(none)");
		if (json_object_get(ns, "path") && !path)
			return fail(err, errn, "linux.namespaces[%zu].path: expected a string", i);
		if (!path || !*path)
			continue;
		/* A pod's containers are given its IPC, UTS and PID namespaces: an operator may
		 * accept that each VM keeps its own (no shared memory between them). */
		if (strcmp(type, "network") && pol->pod_namespaces &&
		    (!strcmp(type, "ipc") || !strcmp(type, "uts") || !strcmp(type, "pid")))
			continue;
		if (strcmp(type, "network"))
			return fail(err, errn,
				    "linux.namespaces: joining the %s namespace at %.200s is not "
				    "supported: each matchlock container is its own VM (only a "
				    "network namespace can be joined, by the host side)",
				    type, path);
		if (path[0] != '/' || strlen(path) >= PATH_MAX)
			return fail(err, errn,
				    "linux.namespaces[%zu].path: expected an absolute "
				    "path",
				    i);
		free(c->netns);
		if (!(c->netns = strdup(path)))
			return -ENOMEM;
	}
	return 0;
}

static int parse_resources(json_t *res, struct runtime_config *c, char *err, size_t errn)
{
	if (!res)
		return 0;
	if (!json_is_object(res))
		return fail(err, errn, "linux.resources: expected an object");
	json_t *limit = json_object_get(json_object_get(res, "memory"), "limit");
	if (limit && !json_is_integer(limit))
		return fail(err, errn, "linux.resources.memory.limit: expected a number of bytes");
	json_int_t bytes = limit ? json_integer_value(limit) : 0;
	if (bytes > 0)
		c->memory_mb = (long long)((bytes + (1 << 20) - 1) >> 20);
	json_t *cpu = json_object_get(res, "cpu");
	json_t *quota = json_object_get(cpu, "quota"), *period = json_object_get(cpu, "period");
	if ((quota && !json_is_integer(quota)) || (period && !json_is_integer(period)))
		return fail(err, errn, "linux.resources.cpu: quota and period are numbers");
	if (quota && json_integer_value(quota) > 0) {
		json_int_t p = period ? json_integer_value(period) : 100000;
		if (p <= 0)
			return fail(err, errn, "linux.resources.cpu.period: expected > 0");
		c->cpus = (double)json_integer_value(quota) / (double)p;
	}
	return 0;
}

/* "true"/"false" for a switch annotation. */
static int switch_value(const char *key, const char *v, bool *out, char *err, size_t errn)
{
	if (!strcmp(v, "true") || !strcmp(v, "1"))
		*out = true;
	else if (!strcmp(v, "false") || !strcmp(v, "0") || !*v)
		*out = false;
	else
		return fail(err, errn, "annotation %s: expected true or false", key);
	return 0;
}

/* Drop KEY from e (the real value of a secret must not reach the guest). */
static int env_drop(struct env *e, const char *key)
{
	struct env keep = { 0 };
	size_t kl = strlen(key);
	for (size_t i = 0; i < e->n; i++) {
		if (!strncmp(e->v[i], key, kl) && e->v[i][kl] == '=')
			continue;
		int k = env_set(&keep, e->v[i]);
		if (k < 0) {
			env_fini(&keep);
			return k;
		}
	}
	env_fini(e);
	*e = keep;
	return 0;
}

/*
 * run.matchlock.secret-env: "VAR@HOST[,HOST...][;VAR@HOST...]": VAR's value is taken from
 * process.env (where an engine put it, e.g. from a Kubernetes Secret), the guest gets the
 * placeholder instead, and HTTPS requests to HOST get the value in flight.
 */
static int parse_secret_env(const char *key, const char *v, struct runtime_config *c, char *err,
			    size_t errn)
{
	char *copy = strdup(v), *save = NULL;
	if (!copy)
		return -ENOMEM;
	int r = 0;
	for (char *one = strtok_r(copy, ";", &save); one && r == 0;
	     one = strtok_r(NULL, ";", &save)) {
		while (*one == ' ')
			one++;
		char *at = strchr(one, '@');
		if (!at || at == one || !at[1]) {
			r = fail(err, errn,
				 "annotation %s: expected VAR@HOST[,HOST...], separated "
				 "by ';'",
				 key);
			break;
		}
		*at = 0;
		const char *value = NULL;
		size_t nl = strlen(one);
		char **vec = env_vector(&c->env);
		for (size_t i = 0; vec[i]; i++)
			if (!strncmp(vec[i], one, nl) && vec[i][nl] == '=')
				value = vec[i] + nl + 1;
		if (!value) {
			r = fail(err, errn,
				 "annotation %s: %.64s is not in process.env (the value "
				 "comes from there)",
				 key, one);
			break;
		}
		char why[256] = "";
		r = secrets_add(c->secrets, one, (const uint8_t *)value, strlen(value), at + 1, why,
				sizeof(why));
		if (r < 0) {
			r = fail(err, errn, "annotation %s: %.64s: %s", key, one,
				 r == -EEXIST	? "given twice"
				 : r == -ENOSPC ? "too many secrets"
						: why);
			break;
		}
		r = env_drop(&c->env, one);
	}
	free(copy);
	return r;
}

static int parse_annotations(json_t *ann, const struct runtime_policy *pol,
			     struct runtime_config *c, char *err, size_t errn)
{
	if (!ann)
		return 0;
	if (!json_is_object(ann) || json_object_size(ann) > RT_MAX_ANNOTATIONS)
		return fail(err, errn, "annotations: expected an object of strings (at most %d)",
			    RT_MAX_ANNOTATIONS);
	const char *key;
	json_t *v;
	/* The secrets last: no-network decides whether they can work at all. */
	for (int pass = 0; pass < 2; pass++) {
		json_object_foreach(ann, key, v)
		{
			if (!json_is_string(v))
				return fail(err, errn, "annotations.%.64s: expected a string", key);
			if (strncmp(key, RT_ANNOTATION_PREFIX, strlen(RT_ANNOTATION_PREFIX)))
				continue;
			const char *name = key + strlen(RT_ANNOTATION_PREFIX);
			const char *val = json_string_value(v);
			bool opens = strcmp(name, "no-network") != 0, b = false;
			if ((pass == 1) != !strcmp(name, "secret-env"))
				continue;
			if (opens && !pol->annotations)
				return fail(
				    err, errn,
				    "annotation %.64s: this runtime's policy file does not "
				    "let containers open the network (\"annotations\": false)",
				    key);
			int r = 0;
			if (!strcmp(name, "allow-hosts")) {
				r = policy_add_list(c->policy, val);
				if (r < 0)
					return fail(err, errn,
						    "annotation %s: expected host names or globs "
						    "like api.x.com, *.x.com or *, separated by "
						    "commas (at most %d)",
						    key, POLICY_MAX_RULES);
			} else if (!strcmp(name, "add-hosts")) {
				char *copy = strdup(val), *save = NULL;
				if (!copy)
					return -ENOMEM;
				for (char *p = strtok_r(copy, ",", &save); p && r == 0;
				     p = strtok_r(NULL, ",", &save))
					r = policy_pin(c->policy, p);
				free(copy);
				if (r < 0)
					return fail(err, errn,
						    "annotation %s: expected NAME:IP[,NAME:IP...]",
						    key);
			} else if (!strcmp(name, "allow-private-ips")) {
				if ((r = switch_value(key, val, &b, err, errn)) < 0)
					return r;
				c->policy->allow_private |= b;
			} else if (!strcmp(name, "no-network")) {
				if ((r = switch_value(key, val, &b, err, errn)) < 0)
					return r;
				c->policy->no_network |= b;
			} else if (!strcmp(name, "secret-env")) {
				if (c->policy->no_network)
					return fail(err, errn,
						    "annotation %s: secrets need the network (the "
						    "container has no network)",
						    key);
				if ((r = parse_secret_env(key, val, c, err, errn)) < 0)
					return r;
			} else {
				return fail(err, errn,
					    "annotation %.64s: unknown (known: allow-hosts, "
					    "add-hosts, allow-private-ips, no-network, secret-env)",
					    key);
			}
		}
	}
	if (!(c->annotations_json = json_dumps(ann, JSON_COMPACT)))
		return -ENOMEM;
	return 0;
}

/*
 * hooks: the ones that run in the runtime's namespace (prestart, createRuntime, poststart,
 * poststop) run on the host; the ones that would run inside the container (createContainer,
 * startContainer) cannot: it is a VM.
 */
static int parse_hooks(json_t *hooks, struct runtime_config *c, char *err, size_t errn)
{
	static const char *const host_kinds[] = { "prestart", "createRuntime", "poststart",
						  "poststop" };
	if (!json_is_object(hooks))
		return fail(err, errn, "config.json: hooks: expected an object");
	const char *kind;
	json_t *list;
	json_object_foreach(hooks, kind, list)
	{
		bool host = false;
		for (size_t k = 0; k < ARRAY_SIZE(host_kinds); k++)
			host |= !strcmp(kind, host_kinds[k]);
		if (!json_is_array(list) || json_array_size(list) > RT_MAX_HOOKS)
			return fail(err, errn,
				    "config.json: hooks.%.32s: expected an array (at most "
				    "%d)",
				    kind, RT_MAX_HOOKS);
		if (!host && json_array_size(list))
			return fail(err, errn,
				    "config.json: hooks.%.32s: hooks inside the container are not "
				    "supported by matchlock (the container is a VM)",
				    kind);
		size_t i;
		json_t *h, *v;
		json_array_foreach(list, i, h)
		{
			const char *path = json_string_value(json_object_get(h, "path"));
			json_t *args = json_object_get(h, "args"), *env = json_object_get(h, "env");
			json_t *to = json_object_get(h, "timeout");
			bool ok = path && path[0] == '/' && (!args || json_is_array(args)) &&
				  (!env || json_is_array(env)) &&
				  (!to || (json_is_integer(to) && json_integer_value(to) > 0)) &&
				  json_array_size(args) <= MSG_MAX_ARGS &&
				  json_array_size(env) <= MSG_MAX_ENV;
			size_t k;
			json_array_foreach(args, k, v) ok &= json_is_string(v);
			json_array_foreach(env, k, v) ok &= json_is_string(v);
			if (!ok)
				return fail(err, errn,
					    "config.json: hooks.%.32s[%zu]: expected an absolute "
					    "path, args and env as strings, a timeout > 0",
					    kind, i);
		}
	}
	if (!(c->hooks_json = json_dumps(hooks, JSON_COMPACT)))
		return -ENOMEM;
	return 0;
}

/* 1.0.x, 1.1.x and 1.2.x (and their release candidates). */
static bool version_known(const char *v)
{
	static const char *const known[] = { "1.0", "1.1", "1.2" };
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (!strncmp(v, known[i], 3) && (v[3] == 0 || v[3] == '.' || v[3] == '-'))
			return true;
	return false;
}

static int parse_config(json_t *root, const char *bundle, const struct runtime_policy *pol,
			struct runtime_config *c, char *err, size_t errn)
{
	if (!json_is_object(root))
		return fail(err, errn, "config.json: expected a JSON object");
	const char *ver = json_string_value(json_object_get(root, "ociVersion"));
	if (!ver)
		return fail(err, errn, "config.json: ociVersion: expected a version string");
	if (!version_known(ver))
		return fail(err, errn,
			    "config.json: unknown ociVersion \"%.32s\" (matchlock reads 1.0.x "
			    "to 1.2.x)",
			    ver);
	if (!(c->oci_version = strdup(ver)) || !(c->bundle = strdup(bundle)))
		return -ENOMEM;
	json_t *rootobj = json_object_get(root, "root");
	const char *rpath = json_string_value(json_object_get(rootobj, "path"));
	if (!rpath || !*rpath)
		return fail(err, errn, "config.json: root.path: expected a path");
	bool ro = false;
	if (get_bool(rootobj, "readonly", false, &ro) < 0)
		return fail(err, errn, "config.json: root.readonly: expected true or false");
	if (ro)
		return fail(err, errn,
			    "config.json: root.readonly: a read-only root is not "
			    "supported by matchlock");
	char joined[PATH_MAX], real[PATH_MAX];
	struct stat st;
	if (snprintf(joined, sizeof(joined), "%s%s%s", rpath[0] == '/' ? "" : bundle,
		     rpath[0] == '/' ? "" : "/", rpath) >= (int)sizeof(joined))
		return fail(err, errn, "config.json: root.path: too long");
	if (!realpath(joined, real) || stat(real, &st) < 0)
		return fail(err, errn, "config.json: root.path %.256s: %s", joined,
			    strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail(err, errn, "config.json: root.path %.256s: not a directory", joined);
	if (!(c->root = strdup(real)))
		return -ENOMEM;
	int r =
	    parse_process(json_object_get(root, "process"), "config.json: process", c, err, errn);
	if (r < 0)
		return r;
	json_t *hn = json_object_get(root, "hostname");
	if (hn && !json_is_string(hn))
		return fail(err, errn, "config.json: hostname: expected a string");
	if (hn && json_string_length(hn) && !(c->hostname = strdup(json_string_value(hn))))
		return -ENOMEM;
	json_t *hooks = json_object_get(root, "hooks");
	if (hooks && (r = parse_hooks(hooks, c, err, errn)) < 0)
		return r;
	json_t *mounts = json_object_get(root, "mounts"), *m;
	if (mounts && (!json_is_array(mounts) || json_array_size(mounts) > RT_MAX_CONFIG_MOUNTS))
		return fail(err, errn, "config.json: mounts: expected an array (at most %d)",
			    RT_MAX_CONFIG_MOUNTS);
	size_t i;
	json_array_foreach(mounts, i, m)
	{
		char why[600];
		if ((r = parse_mount(m, i, bundle, c, why, sizeof(why))) < 0)
			return r == -ENOMEM ? r : fail(err, errn, "config.json: %s", why);
	}
	json_t *linux_ = json_object_get(root, "linux");
	if (linux_ && !json_is_object(linux_))
		return fail(err, errn, "config.json: linux: expected an object");
	char why[600];
	if ((r = parse_namespaces(json_object_get(linux_, "namespaces"), pol, c, why,
				  sizeof(why))) < 0 ||
	    (r = parse_resources(json_object_get(linux_, "resources"), c, why, sizeof(why))) < 0)
		return r == -ENOMEM ? r : fail(err, errn, "config.json: %s", why);
	/* Kubernetes' pod sandbox ("pause") holds namespaces only: it needs no VM of its own. */
	const char *ctype = json_string_value(json_object_get(json_object_get(root, "annotations"),
							      "io.kubernetes.cri.container-type"));
	c->pod_sandbox = ctype && !strcmp(ctype, "sandbox");
	if (!(c->policy = malloc(sizeof(*c->policy))) ||
	    !(c->secrets = calloc(1, sizeof(*c->secrets))))
		return -ENOMEM;
	*c->policy = pol->base;
	if ((r = parse_annotations(json_object_get(root, "annotations"), pol, c, why,
				   sizeof(why))) < 0)
		return r == -ENOMEM ? r : fail(err, errn, "config.json: %s", why);
	return 0;
}

static json_t *load(const char *text, size_t n, const char *what, char *err, size_t errn)
{
	if (n > RT_CONFIG_MAX) {
		fail(err, errn, "%s: larger than %u bytes", what, RT_CONFIG_MAX);
		return NULL;
	}
	json_error_t je;
	json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		fail(err, errn, "%s: not valid JSON: line %d: %s", what, je.line, je.text);
	return root;
}

int runtime_config_parse(const char *text, size_t n, const char *bundle,
			 const struct runtime_policy *pol, struct runtime_config *c, char *err,
			 size_t errn)
{
	memset(c, 0, sizeof(*c));
	json_t *root = load(text, n, "config.json", err, errn);
	if (!root)
		return -EINVAL;
	int r = parse_config(root, bundle, pol, c, err, errn);
	json_decref(root);
	if (r == -ENOMEM)
		snprintf(err, errn, "out of memory");
	if (r < 0)
		runtime_config_fini(c);
	return r;
}

int runtime_process_parse(const char *text, size_t n, struct runtime_config *p, char *err,
			  size_t errn)
{
	memset(p, 0, sizeof(*p));
	json_t *root = load(text, n, "process.json", err, errn);
	if (!root)
		return -EINVAL;
	int r = parse_process(root, "process.json", p, err, errn);
	json_decref(root);
	if (r == -ENOMEM)
		snprintf(err, errn, "out of memory");
	if (r < 0)
		runtime_config_fini(p);
	return r;
}

int runtime_signal_parse(const char *s)
{
	static const struct {
		const char *name;
		int sig;
	} names[] = {
		{ "HUP", SIGHUP },	 { "INT", SIGINT },   { "QUIT", SIGQUIT },
		{ "ILL", SIGILL },	 { "TRAP", SIGTRAP }, { "ABRT", SIGABRT },
		{ "BUS", SIGBUS },	 { "FPE", SIGFPE },   { "KILL", SIGKILL },
		{ "USR1", SIGUSR1 },	 { "SEGV", SIGSEGV }, { "USR2", SIGUSR2 },
		{ "PIPE", SIGPIPE },	 { "ALRM", SIGALRM }, { "TERM", SIGTERM },
		{ "CHLD", SIGCHLD },	 { "CONT", SIGCONT }, { "STOP", SIGSTOP },
		{ "TSTP", SIGTSTP },	 { "TTIN", SIGTTIN }, { "TTOU", SIGTTOU },
		{ "URG", SIGURG },	 { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ },
		{ "VTALRM", SIGVTALRM }, { "PROF", SIGPROF }, { "WINCH", SIGWINCH },
		{ "IO", SIGIO },	 { "PWR", SIGPWR },   { "SYS", SIGSYS },
	};
	if (!s || !*s)
		return -EINVAL;
	char *end;
	long n = strtol(s, &end, 10);
	if (!*end)
		return n > 0 && n < NSIG ? (int)n : -EINVAL;
	if (!strncasecmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcasecmp(s, names[i].name))
			return names[i].sig;
	return -EINVAL;
}
