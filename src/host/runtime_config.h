/* SPDX-License-Identifier: MIT */
/*
 * The OCI runtime's reading of a bundle: config.json (runtime-spec config.md) and the operator's
 * policy file, into a struct runtime_config that says everything matchlock will do with them.
 * This is the parser of untrusted input (an engine writes config.json from an image and a user's
 * flags): every field is type-checked and bounded here, and everything the runtime cannot
 * honour is refused with a one-line reason naming the field, never ignored silently. The values
 * themselves (memory range, host name, mount paths) are checked once more by the one validator,
 * sandbox_spec_check, when cmd_oci.c turns this into a sandbox spec.
 */
#ifndef MATCHLOCK_RUNTIME_CONFIG_H
#define MATCHLOCK_RUNTIME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "net/mitm.h"
#include "net/policy.h"
#include "net/secrets.h"
#include "proto/env.h"
#include "proto/exec_req.h"

#define RT_CONFIG_MAX (4u << 20) /* the largest config.json or process.json read */
#define RT_MAX_MOUNTS 16 /* host folders (SANDBOX_MAX_MOUNTS) */
#define RT_MAX_FILES 16 /* single files bound in, copied at create */
#define RT_FILE_MAX (1u << 20) /* the largest of them */
#define RT_MAX_ANNOTATIONS 256
#define RT_ANNOTATION_PREFIX "run.matchlock."

/* The operator's defaults (runtime_policy_load): sealed unless the file says otherwise. */
struct runtime_policy {
	struct policy base; /* hosts every container may reach, the switches */
	bool annotations; /* may a container's run.matchlock.* annotations open the network */
	bool pod_namespaces; /* accept a pod's IPC/UTS/PID namespace paths (each VM has its own) */
	char *upstream_ca[MITM_MAX_UPSTREAM_CA + 1]; /* CA files trusted upstream, NULL-ended */
	unsigned nupstream_ca;
};

struct rt_mount {
	char *host, *guest;
	bool ro;
};

struct runtime_config {
	char *oci_version;
	char *bundle; /* absolute */
	char *root; /* the root file system directory, absolute */
	/* process */
	char **args; /* NULL-terminated, at least one */
	struct env env; /* without the secrets' real values */
	char *cwd;
	char user[32]; /* "UID:GID" */
	bool terminal;
	struct exec_rlimit rlimits[EXEC_MAX_RLIMITS]; /* process.rlimits, set in the guest */
	unsigned nrlimits;
	/* the machine */
	char *hostname;
	long long memory_mb; /* 0: not given */
	double cpus; /* 0: not given */
	char *netns; /* a network namespace to join on the host, NULL: the caller's */
	struct rt_mount mounts[RT_MAX_MOUNTS]; /* directories, through the file service */
	unsigned nmounts;
	struct rt_mount files[RT_MAX_FILES]; /* files, copied into the guest at create */
	unsigned nfiles;
	/* policy: the operator's defaults and the annotations */
	struct policy *policy;
	struct secrets *secrets;
	char *annotations_json; /* the annotations object as given (for `state`), or NULL */
	char *hooks_json; /* the hooks object, checked (runtime_hooks_run), or NULL */
	bool pod_sandbox; /* Kubernetes' pause container: no VM, it only holds the namespaces */
};

/* Defaults for an operator who wrote no policy file: sealed, annotations honoured. */
void runtime_policy_default(struct runtime_policy *p);
/*
 * Read the policy file at path (JSON: {"allow_hosts": [GLOB...], "allow_private_ips": BOOL,
 * "no_network": BOOL, "annotations": BOOL, "upstream_ca": [PEM FILE...], "pod_namespaces":
 * BOOL}; every key
 * optional). Returns 0, or -errno with err (p is empty then). Free with runtime_policy_fini.
 */
int runtime_policy_load(const char *path, struct runtime_policy *p, char *err, size_t errn);
void runtime_policy_fini(struct runtime_policy *p);

/*
 * Parse config.json text (n bytes) of the bundle at bundle (an absolute path) under policy pol.
 * Returns 0 with c filled (free with runtime_config_fini), or -EINVAL / -ENOMEM with err saying
 * which field is wrong and why; c is empty then.
 */
int runtime_config_parse(const char *text, size_t n, const char *bundle,
			 const struct runtime_policy *pol, struct runtime_config *c, char *err,
			 size_t errn);
void runtime_config_fini(struct runtime_config *c);

/*
 * A process.json (`exec --process`, the runtime-spec process object): args, env, cwd, user,
 * terminal into p (only those fields). The same checks as config.json's process.
 */
int runtime_process_parse(const char *text, size_t n, struct runtime_config *p, char *err,
			  size_t errn);

/*
 * Run the hooks of one kind ("prestart", "createRuntime", "poststart", "poststop") from
 * hooks_json (as runtime_config_parse kept it) on the host, in order, each with the OCI state
 * JSON on its stdin and its timeout (at most RT_HOOK_TIMEOUT_S). Returns 0, or -errno with err
 * naming the hook that failed.
 */
#define RT_HOOK_TIMEOUT_S 120
#define RT_MAX_HOOKS 32
int runtime_hooks_run(const char *hooks_json, const char *kind, const char *state_json, char *err,
		      size_t errn);

/* A signal by name (KILL, SIGKILL) or number; -EINVAL if none. */
int runtime_signal_parse(const char *s);

#endif
