/* SPDX-License-Identifier: MIT */
/* The RPC's `create` params into a sandbox spec (rpc_spec.h). */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/child.h"
#include "net/policy.h"
#include "net/secrets.h"
#include "proto/env.h"
#include "rpc_spec.h"
#include "spec_hooks.h"
#include "session.h"

int rpc_spec_env_put(struct env *e, json_t *obj, const char *where, char *err, size_t errn)
{
	if (obj && !json_is_object(obj)) {
		snprintf(err, errn, "%s must be an object {NAME: VALUE}", where);
		return -EINVAL;
	}
	const char *k;
	json_t *val;
	json_object_foreach(obj, k, val)
	{
		int rc = json_is_string(val) ? env_set_kv(e, k, json_string_value(val)) : -EINVAL;
		if (rc < 0) {
			snprintf(err, errn, "%s.%.64s: %s", where, k,
				 json_is_string(val) ? env_strerror(rc)
						     : "the value must be a string");
			return rc;
		}
	}
	return 0;
}

/* network {allowed_hosts[], add_hosts[{host, ip}], block_private_ips, no_network} into pol. */
static int rpc_policy_from(struct policy *pol, json_t *net, char *err, size_t errn)
{
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(net, "allowed_hosts"), i, v)
	{
		if (!json_is_string(v) || policy_add(pol, json_string_value(v)) < 0) {
			snprintf(err, errn, "allowed_hosts[%zu]: expected a host name or glob", i);
			return -EINVAL;
		}
	}
	json_array_foreach(json_object_get(net, "add_hosts"), i, v)
	{
		const char *h = json_string_value(json_object_get(v, "host"));
		const char *ip = json_string_value(json_object_get(v, "ip"));
		char spec[POLICY_NAME_MAX + 64];
		bool v6 = ip && strchr(ip, ':');
		if (h && ip)
			snprintf(spec, sizeof(spec), v6 ? "%s:[%s]" : "%s:%s", h, ip);
		if (!h || !ip || policy_pin(pol, spec) < 0) {
			snprintf(err, errn, "add_hosts[%zu]: expected {host, ip}", i);
			return -EINVAL;
		}
	}
	json_t *bp = json_object_get(net, "block_private_ips");
	pol->allow_private = json_is_false(bp);
	pol->no_network = json_is_true(json_object_get(net, "no_network"));
	return 0;
}

/*
 * network.secrets {NAME: {value, hosts[]}, aws: {access_key_id, secret_access_key,
 * session_token?, hosts[]}} into ss (session_start allows their hosts).
 */
static int rpc_secrets_from(struct secrets *ss, json_t *secrets, char *err, size_t errn)
{
	const char *name;
	json_t *v;
	json_object_foreach(secrets, name, v)
	{
		const char *value = json_string_value(json_object_get(v, "value"));
		json_t *hosts = json_object_get(v, "hosts");
		char list[2048] = "";
		size_t i;
		json_t *h;
		json_array_foreach(hosts, i, h)
		{
			if (!json_is_string(h) ||
			    strlen(list) + strlen(json_string_value(h)) + 2 >= sizeof(list)) {
				snprintf(err, errn, "network.secrets.%s.hosts: expected host names",
					 name);
				return -EINVAL;
			}
			if (i)
				strcat(list, ",");
			strcat(list, json_string_value(h));
		}
		if (!strcmp(name, "aws")) {
			/* An AWS credential, re-signed by the proxy (proxy_sigv4.c). */
			static const char *const part[] = { "access_key_id", "secret_access_key",
							    "session_token" };
			const char *c[3];
			for (int k = 0; k < 3; k++)
				c[k] = json_string_value(json_object_get(v, part[k]));
			if (!c[0] || !c[1] || !list[0]) {
				snprintf(err, errn,
					 "network.secrets.aws: needs access_key_id, "
					 "secret_access_key and at least one host");
				return -EINVAL;
			}
			const char *t = c[2] ? c[2] : "";
			if (secrets_add_aws(ss, (const uint8_t *)c[0], strlen(c[0]),
					    (const uint8_t *)c[1], strlen(c[1]), (const uint8_t *)t,
					    strlen(t), list, err, errn) < 0)
				return -EINVAL;
			for (int k = 0; k < 3; k++)
				if (c[k] && c[k][0])
					child_wipe_env_value(c[k], strlen(c[k]));
			continue;
		}
		if (!value || !list[0]) {
			snprintf(err, errn,
				 "network.secrets.%s: needs a value and at least one host", name);
			return -EINVAL;
		}
		if (secrets_add(ss, name, (const uint8_t *)value, strlen(value), list, err, errn) <
		    0)
			return -EINVAL;
		/* The SDK's program may hold the value in the environment we inherited (child.h).
		 */
		child_wipe_env_value(value, strlen(value));
	}
	return 0;
}

int rpc_spec_keys_known(json_t *obj, const char *where, const char *const *known, char *err,
			size_t errn)
{
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v)
	{
		bool ok = false;
		for (const char *const *q = known; *q && !ok; q++)
			ok = !strcmp(k, *q);
		if (!ok) {
			char name[160];
			snprintf(name, sizeof(name), "%s%s%.64s", where, *where ? "." : "", k);
			sandbox_spec_unsupported(err, errn, name);
			return -EINVAL;
		}
	}
	return 0;
}

/* Is v absent or of the type check accepts? Sets err naming where.name otherwise. */
static bool field_ok(json_t *obj, const char *where, const char *name, int (*check)(const json_t *),
		     const char *what, char *err, size_t errn)
{
	json_t *v = json_object_get(obj, name);
	if (!v || check(v))
		return true;
	snprintf(err, errn, "%s%s%s must be %s", where, *where ? "." : "", name, what);
	return false;
}

static int is_obj(const json_t *v)
{
	return json_is_object(v);
}
static int is_arr(const json_t *v)
{
	return json_is_array(v);
}
static int is_str(const json_t *v)
{
	return json_is_string(v);
}
static int is_bool(const json_t *v)
{
	return json_is_boolean(v);
}
static int is_num(const json_t *v)
{
	return json_is_number(v);
}
static int is_int(const json_t *v)
{
	return json_is_integer(v);
}

static bool strings_ok(json_t *arr, const char *what, char *err, size_t errn)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		if (!json_is_string(v)) {
			snprintf(err, errn, "%s[%zu] must be a string", what, i);
			return false;
		}
	}
	return true;
}

/* mounts: [{host, guest?, mode?}], strings; what they name is sandbox_spec_check's. */
static int mounts_check(json_t *arr, char *err, size_t errn)
{
	static const char *const mount[] = { "host", "guest", "mode", NULL };
	char where[64];
	size_t i;
	json_t *v;
	if (arr && !json_is_array(arr)) {
		snprintf(err, errn, "mounts must be an array of {host, guest, mode}");
		return -EINVAL;
	}
	if (json_array_size(arr) > SPEC_MAX_MOUNTS) {
		snprintf(err, errn, "mounts: at most %d host folders", SPEC_MAX_MOUNTS);
		return -EINVAL;
	}
	json_array_foreach(arr, i, v)
	{
		snprintf(where, sizeof(where), "mounts[%zu]", i);
		if (!json_is_object(v)) {
			snprintf(err, errn, "%s must be an object {host, guest, mode}", where);
			return -EINVAL;
		}
		if (rpc_spec_keys_known(v, where, mount, err, errn) < 0 ||
		    !field_ok(v, where, "host", is_str, "a string", err, errn) ||
		    !field_ok(v, where, "guest", is_str, "a string", err, errn) ||
		    !field_ok(v, where, "mode", is_str, "a string", err, errn))
			return -EINVAL;
	}
	return 0;
}

/*
 * create's params, checked for shape before they become a spec. Every field the server does not
 * know (vfs, privileged, dns_servers, mtu, intercept, a secret's placeholder, ...) is refused by
 * name, at every level, in the validator's words (sandbox_spec_unsupported): a caller who asked
 * for a protection must not silently get none. Fields the spec has but does not implement yet
 * (disk_size_mb) and every range are sandbox_spec_check's. Returns 0 or -EINVAL with err.
 */
static int create_check(json_t *p, char *err, size_t errn)
{
	static const char *const top[] = { "image",   "env",	      "resources",
					   "network", "image_config", "launch_entrypoint",
					   "mounts",  "platform",     "hooks",
					   NULL };
	static const char *const resources[] = { "cpus", "memory_mb", "disk_size_mb",
						 "timeout_seconds", NULL };
	static const char *const network[] = {
		"allowed_hosts", "add_hosts", "block_private_ips", "no_network", "secrets",
		"hostname",	 NULL
	};
	static const char *const add_host[] = { "host", "ip", NULL };
	static const char *const secret[] = { "value", "hosts", NULL };
	static const char *const aws_secret[] = { "access_key_id", "secret_access_key",
						  "session_token", "hosts", NULL };
	static const char *const image_config[] = { "user", "working_dir", "entrypoint",
						    "cmd",  "env",	   NULL };
	json_t *res = json_object_get(p, "resources"), *net = json_object_get(p, "network");
	json_t *ic = json_object_get(p, "image_config");
	if (rpc_spec_keys_known(p, "", top, err, errn) < 0)
		return -EINVAL;
	if (!field_ok(p, "", "image", is_str, "a string", err, errn) ||
	    !field_ok(p, "", "env", is_obj, "an object {NAME: VALUE}", err, errn) ||
	    !field_ok(p, "", "resources", is_obj, "an object", err, errn) ||
	    !field_ok(p, "", "network", is_obj, "an object", err, errn) ||
	    !field_ok(p, "", "image_config", is_obj, "an object", err, errn) ||
	    !field_ok(p, "", "launch_entrypoint", is_bool, "true or false", err, errn) ||
	    !field_ok(p, "", "platform", is_str, "a string such as linux/arm64", err, errn))
		return -EINVAL;
	if (rpc_spec_keys_known(res, "resources", resources, err, errn) < 0 ||
	    rpc_spec_keys_known(net, "network", network, err, errn) < 0 ||
	    rpc_spec_keys_known(ic, "image_config", image_config, err, errn) < 0)
		return -EINVAL;
	/* Types only: the ranges are sandbox_spec_check's, the same for every entry point. */
	if (!field_ok(res, "resources", "cpus", is_num, "a number", err, errn) ||
	    !field_ok(res, "resources", "memory_mb", is_int, "an integer", err, errn) ||
	    !field_ok(res, "resources", "disk_size_mb", is_int, "an integer", err, errn) ||
	    !field_ok(res, "resources", "timeout_seconds", is_int, "an integer", err, errn))
		return -EINVAL;
	if (!field_ok(net, "network", "allowed_hosts", is_arr, "an array of host names", err,
		      errn) ||
	    !field_ok(net, "network", "add_hosts", is_arr, "an array of {host, ip}", err, errn) ||
	    !field_ok(net, "network", "block_private_ips", is_bool, "true or false", err, errn) ||
	    !field_ok(net, "network", "no_network", is_bool, "true or false", err, errn) ||
	    !field_ok(net, "network", "secrets", is_obj, "an object {NAME: {value, hosts}}", err,
		      errn) ||
	    !field_ok(net, "network", "hostname", is_str, "a string", err, errn))
		return -EINVAL;
	size_t i;
	json_t *v;
	char where[96];
	json_array_foreach(json_object_get(net, "add_hosts"), i, v)
	{
		snprintf(where, sizeof(where), "network.add_hosts[%zu]", i);
		if (!json_is_object(v)) {
			snprintf(err, errn, "%s must be an object {host, ip}", where);
			return -EINVAL;
		}
		if (rpc_spec_keys_known(v, where, add_host, err, errn) < 0)
			return -EINVAL;
	}
	const char *name;
	json_object_foreach(json_object_get(net, "secrets"), name, v)
	{
		snprintf(where, sizeof(where), "network.secrets.%.64s", name);
		if (!json_is_object(v)) {
			snprintf(err, errn, "%s must be an object {value, hosts}", where);
			return -EINVAL;
		}
		if (rpc_spec_keys_known(v, where, strcmp(name, "aws") ? secret : aws_secret, err,
					errn) < 0)
			return -EINVAL;
	}
	if (mounts_check(json_object_get(p, "mounts"), err, errn) < 0)
		return -EINVAL;
	if (!field_ok(ic, "image_config", "user", is_str, "a string", err, errn) ||
	    !field_ok(ic, "image_config", "working_dir", is_str, "a string", err, errn) ||
	    !field_ok(ic, "image_config", "entrypoint", is_arr, "an array of strings", err, errn) ||
	    !field_ok(ic, "image_config", "cmd", is_arr, "an array of strings", err, errn) ||
	    !field_ok(ic, "image_config", "env", is_obj, "an object {NAME: VALUE}", err, errn) ||
	    !strings_ok(json_object_get(ic, "entrypoint"), "image_config.entrypoint", err, errn) ||
	    !strings_ok(json_object_get(ic, "cmd"), "image_config.cmd", err, errn) ||
	    !strings_ok(json_object_get(net, "allowed_hosts"), "network.allowed_hosts", err, errn))
		return -EINVAL;
	return 0;
}

/* A JSON array of strings (checked by create_check) as a NULL-terminated copy; NULL: ENOMEM. */
static char **json_strv(json_t *arr)
{
	char **v = calloc(json_array_size(arr) + 1, sizeof(char *));
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e)
	{
		if (v && !(v[i] = strdup(json_string_value(e)))) {
			spec_strv_free(v);
			v = NULL;
		}
	}
	return v;
}

/*
 * create's params (already through create_check) into sp. This is translation only: whether
 * the values are acceptable is sandbox_spec_check's call, the same for `matchlock run`.
 */
static int create_spec(json_t *p, struct sandbox_spec *sp, char *err, size_t errn)
{
	json_t *res = json_object_get(p, "resources"), *net = json_object_get(p, "network");
	json_t *ic = json_object_get(p, "image_config"), *v;
	const char *image = json_string_value(json_object_get(p, "image"));
	if (!image || !*image) {
		snprintf(err, errn, "image is required");
		return -EINVAL;
	}
	/* A path is a root filesystem (directory or tarball); anything else an OCI reference. */
	bool is_path = image[0] == '/' || image[0] == '.';
	int k = spec_strdup(is_path ? &sp->rootfs : &sp->image, image);
	if ((v = json_object_get(res, "cpus")))
		sp->cpus = json_number_value(v);
	if ((v = json_object_get(res, "memory_mb")))
		sp->memory_mb = json_integer_value(v);
	if ((sp->has_disk_size = (v = json_object_get(res, "disk_size_mb"))))
		sp->disk_size_mb = json_integer_value(v);
	if ((sp->has_timeout = (v = json_object_get(res, "timeout_seconds"))))
		sp->timeout_s = json_integer_value(v);
	sp->lifetime = LIFETIME_CLIENT;
	k = k ?: spec_strdup(&sp->accel, getenv("MATCHLOCK_ACCEL"));
	if ((v = json_object_get(p, "platform")))
		k = k ?: spec_strdup(&sp->platform, json_string_value(v));
	k = k ?: spec_strdup(&sp->hostname, json_string_value(json_object_get(net, "hostname")));
	k = k ?: spec_strdup(&sp->user, json_string_value(json_object_get(ic, "user")));
	k = k ?: spec_strdup(&sp->workdir, json_string_value(json_object_get(ic, "working_dir")));
	if (!k && (v = json_object_get(ic, "entrypoint")) && !(sp->entrypoint = json_strv(v)))
		k = -ENOMEM;
	if (!k && (v = json_object_get(ic, "cmd")) && !(sp->cmd = json_strv(v)))
		k = -ENOMEM;
	if (k < 0) {
		snprintf(err, errn, "out of memory");
		return k;
	}
	/* Above the image's Env, Docker's order: image_config.env, then env. */
	if ((k = rpc_spec_env_put(&sp->env, json_object_get(ic, "env"), "image_config.env", err,
				  errn)) < 0 ||
	    (k = rpc_spec_env_put(&sp->env, json_object_get(p, "env"), "env", err, errn)) < 0)
		return k == -ENOMEM ? k : -EINVAL;
	/* A mount without a guest path goes to the workspace, as `run -v HOST` does. */
	size_t i;
	json_array_foreach(json_object_get(p, "mounts"), i, v)
	{
		struct spec_mount *m = &sp->mounts[i];
		const char *guest = json_string_value(json_object_get(v, "guest"));
		k = spec_strdup(&m->host, json_string_value(json_object_get(v, "host")));
		k = k ?: spec_strdup(&m->guest, guest ? guest : SPEC_WORKSPACE);
		k = k ?: spec_strdup(&m->mode, json_string_value(json_object_get(v, "mode")));
		sp->nmounts = (unsigned)i + 1;
		if (k < 0) {
			snprintf(err, errn, "out of memory");
			return k;
		}
	}
	if (rpc_policy_from(sp->policy, net, err, errn) < 0 ||
	    rpc_secrets_from(sp->secrets, json_object_get(net, "secrets"), err, errn) < 0)
		return -EINVAL;
	return 0;
}

int rpc_spec_from_json(json_t *p, struct sandbox_spec *sp, char *err, size_t errn)
{
	int k = create_check(p, err, errn);
	k = k ?: create_spec(p, sp, err, errn);
	json_t *hk = json_object_get(p, "hooks");
	return k || !hk ? k : spec_hooks_apply(sp->hooks, sp->fhooks, hk, err, errn);
}
