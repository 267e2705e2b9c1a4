#!/bin/bash
# matchlock as an OCI runtime, driven by hand the way engines drive runc: bundles with a
# config.json over the busybox test rootfs, runc's global flags first, a private runtime root.
# No engine needed (test_oci_podman.sh has Podman); works as a normal user.
. "$(dirname "$0")/lib.sh"

R=$T_OUT/root # the runtime root (--root)
LOG=$T_OUT/runtime.log

# bundle DIR [PYTHON...]: a bundle over the busybox rootfs; the Python lines edit `c`.
bundle() {
	local dir=$1
	shift
	mkdir -p "$dir"
	python3 - "$dir" "$ROOTFS" "$@" <<'EOF'
import json, sys
d, rootfs = sys.argv[1], sys.argv[2]
c = {"ociVersion": "1.0.2", "root": {"path": rootfs},
     "process": {"terminal": False, "user": {"uid": 0, "gid": 0},
                 "args": ["sh", "-c", "echo hello; exit 0"],
                 "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
                 "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]},
     "hostname": "oci-test",
     "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs"}],
     "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}]}}
for line in sys.argv[3:]:
    exec(line)
open(d + "/config.json", "w").write(json.dumps(c) if not isinstance(c, str) else c)
EOF
}
# rt ARGS...: the runtime with runc's global flags, output in $OUT/$ERR, status in $RC.
rt() { ml --root "$R" --log "$LOG" --log-format json "$@"; }
# wait_gone PID: until the process is gone (bounded).
wait_gone() { for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
# sealed PID: its seccomp mode (2: a filter).
sealed() { awk '$1 == "Seccomp:" { print $2 }' "/proc/$1/status"; }
# The one error line on stderr and the same message in the JSON log; nothing left behind.
expect_runtime_error() {
	[ "$RC" != 0 ] || fail "expected a failure, got status 0"
	[ "$(printf '%s\n' "$ERR" | grep -c .)" = 1 ] || fail "expected one stderr line, got: $ERR"
	expect_match "error" "$ERR" "^matchlock: $1"
	tail -n 1 "$LOG" | python3 -c 'import json,sys; o=json.loads(sys.stdin.read()); assert o["level"]=="error" and o["msg"] and o["time"], o' ||
		fail "the log's last line is not a JSON error: $(tail -n 1 "$LOG")"
}

t_lifecycle_create_start_state_delete() {
	bundle "$T_OUT/b" 'c["process"]["args"] = ["sh", "-c", "echo out-$(hostname); read x; echo in-$x; echo err >&2; exit 7"]'
	echo line | "$ML" --root "$R" create --bundle "$T_OUT/b" --pid-file "$T_OUT/pid" c1 >"$T_OUT/o" 2>"$T_OUT/e"
	expect_eq "create" "$?" 0
	local pid
	pid=$(cat "$T_OUT/pid")
	rt state c1
	expect_match "created" "$OUT" '"status": "created"'
	expect_match "pid" "$OUT" "\"pid\": $pid"
	[ -d /proc/"$pid" ] || fail "the pid-file process $pid is not running"
	rt start c1
	expect_eq "start" "$RC" 0
	wait_gone "$pid" || fail "the container did not end"
	expect_eq "stdout" "$(cat "$T_OUT/o")" $'out-oci-test\nin-line'
	expect_eq "stderr" "$(cat "$T_OUT/e")" "err"
	rt state c1
	expect_match "stopped" "$OUT" '"status": "stopped"'
	rt start c1
	expect_runtime_error "cannot start a container that has stopped"
	rt delete c1
	expect_eq "delete" "$RC" 0
	[ ! -e "$R/c1" ] || fail "delete left $R/c1"
}

# process.rlimits are set in the guest, for the container's process and for exec'd ones.
t_rlimits_reach_the_guest_process() {
	bundle "$T_OUT/b" 'c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000}, {"type": "RLIMIT_NPROC", "soft": 77, "hard": 77}]' \
		'c["process"]["args"] = ["sh", "-c", "echo $(ulimit -n) $(ulimit -Hn) $(ulimit -u); sleep 600"]'
	"$ML" --root "$R" create --bundle "$T_OUT/b" --pid-file "$T_OUT/pid" rl1 </dev/null >"$T_OUT/o" 2>&1 || fail "create"
	rt start rl1
	for _ in $(seq 100); do [ -s "$T_OUT/o" ] && break; sleep 0.1; done
	expect_eq "the container's limits" "$(cat "$T_OUT/o")" "512 1000 77"
	echo '{"args": ["sh", "-c", "ulimit -n"], "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 300, "hard": 300}]}' >"$T_OUT/p.json"
	rt exec --process "$T_OUT/p.json" rl1
	expect_eq "an exec's limit" "$OUT" "300"
	bundle "$T_OUT/b2" 'c["process"]["rlimits"] = [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]'
	rt create --bundle "$T_OUT/b2" rl2
	expect_runtime_error "config.json: process.rlimits\\[0\\]: expected a type RLIMIT_\\* Linux knows"
	rt delete --force rl1
	expect_eq "delete" "$RC" 0
}

# The pid-file process's exit status is the workload's (seen by its parent, as a subreaper would).
t_exit_status_is_the_workloads() {
	bundle "$T_OUT/b" 'c["process"]["args"] = ["sh", "-c", "exit 42"]'
	python3 - "$ML" "$R" "$T_OUT/b" <<'EOF' >"$T_OUT/o" 2>&1
import ctypes, os, subprocess, sys
ml, root, b = sys.argv[1:4]
ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER, like conmon and containerd's shim
subprocess.run([ml, "--root", root, "create", "--bundle", b, "--pid-file", b + "/pid", "c2"], check=True, stdin=subprocess.DEVNULL)
pid = int(open(b + "/pid").read())
subprocess.run([ml, "--root", root, "start", "c2"], check=True)
_, st = os.waitpid(pid, 0)
print("exit=%d" % os.waitstatus_to_exitcode(st))
EOF
	expect_match "exit status" "$(cat "$T_OUT/o")" "exit=42"
	rt delete c2
	expect_eq "delete" "$RC" 0
}

t_kill_signals_the_workload_and_delete_needs_force() {
	bundle "$T_OUT/b" 'c["process"]["args"] = ["sleep", "600"]'
	"$ML" --root "$R" create --bundle "$T_OUT/b" --pid-file "$T_OUT/pid" c3 </dev/null >/dev/null 2>&1 || fail "create"
	local pid
	pid=$(cat "$T_OUT/pid")
	rt start c3
	rt state c3
	expect_match "running" "$OUT" '"status": "running"'
	rt ps --format json c3
	expect_eq "ps" "$OUT" "[$pid]"
	rt delete c3
	expect_runtime_error "cannot delete container c3 that is not stopped: running"
	[ -d /proc/"$pid" ] || fail "a refused delete ended the container"
	rt kill c3 TERM
	expect_eq "kill" "$RC" 0
	wait_gone "$pid" || fail "SIGTERM did not end the workload"
	rt state c3
	expect_match "stopped" "$OUT" '"status": "stopped"'
	rt kill c3 KILL
	expect_runtime_error "container not running"
	rt delete c3
	expect_eq "delete" "$RC" 0
}

t_exec_in_a_running_container() {
	bundle "$T_OUT/b" 'c["process"]["args"] = ["sleep", "600"]' 'c["process"]["env"].append("SHARED=1")'
	"$ML" --root "$R" create --bundle "$T_OUT/b" --pid-file "$T_OUT/pid" c4 </dev/null >/dev/null 2>&1 || fail "create"
	rt start c4
	cat >"$T_OUT/p.json" <<'EOF'
{"args": ["sh", "-c", "echo exec-$X-$(id -u); exit 9"], "env": ["X=y", "PATH=/bin:/sbin"], "cwd": "/tmp", "user": {"uid": 1000, "gid": 1000}}
EOF
	rt exec --process "$T_OUT/p.json" c4
	expect_eq "exec status" "$RC" 9
	expect_eq "exec output" "$OUT" "exec-y-1000"
	# --detach: the pid file names a host process whose status is the exec'd one's.
	rt exec --process "$T_OUT/p.json" --detach --pid-file "$T_OUT/epid" c4
	expect_eq "exec --detach" "$RC" 0
	[ -s "$T_OUT/epid" ] || fail "no exec pid file"
	rt delete --force c4
	expect_eq "delete --force" "$RC" 0
	wait_gone "$(cat "$T_OUT/pid")" || fail "delete --force left the container's process"
	[ ! -e "$R/c4" ] || fail "delete --force left $R/c4"
}

t_kill9_of_the_pid_file_process_leaves_no_qemu() {
	bundle "$T_OUT/b" 'c["process"]["args"] = ["sleep", "600"]'
	"$ML" --root "$R" create --bundle "$T_OUT/b" --pid-file "$T_OUT/pid" c5 </dev/null >/dev/null 2>&1 || fail "create"
	local pid sb
	pid=$(cat "$T_OUT/pid")
	sb=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sandbox"])' "$R/c5/state.json")
	# QEMU's command line names no file: it is found by its sandbox's disk (lib.sh).
	[ -n "$(qemu_with "$sb")" ] || fail "no QEMU for sandbox $sb"
	kill -9 "$pid"
	wait_gone "$pid" || fail "kill -9 did not end it"
	wait_qemu_gone "$sb" || fail "QEMU outlived the pid-file process"
	rt state c5
	expect_match "stopped" "$OUT" '"status": "stopped"'
	rt delete c5
	expect_eq "delete" "$RC" 0
	[ -z "$(ls "$MATCHLOCK_HOME"/state/sandboxes 2>/dev/null)" ] || fail "the sandbox's directory was left"
}

t_errors_are_runc_style_and_leave_nothing() {
	bundle "$T_OUT/bad" 'c = "{not json"'
	rt create --bundle "$T_OUT/bad" e1
	expect_runtime_error "config.json: not valid JSON"
	bundle "$T_OUT/ver" 'c["ociVersion"] = "9.9.9"'
	rt create --bundle "$T_OUT/ver" e2
	expect_runtime_error 'config.json: unknown ociVersion "9.9.9"'
	bundle "$T_OUT/noroot" 'c["root"]["path"] = "/nonexistent/rootfs"'
	rt create --bundle "$T_OUT/noroot" e3
	expect_runtime_error "config.json: root.path /nonexistent/rootfs: No such file or directory"
	bundle "$T_OUT/ns" 'c["linux"]["namespaces"].append({"type": "ipc", "path": "/proc/1/ns/ipc"})'
	rt create --bundle "$T_OUT/ns" e4
	expect_runtime_error "config.json: linux.namespaces: joining the ipc namespace"
	bundle "$T_OUT/mem" 'c["linux"]["resources"] = {"memory": {"limit": 10485760}}'
	rt create --bundle "$T_OUT/mem" e5
	expect_runtime_error "config.json: memory 10 MB: expected 64 to"
	bundle "$T_OUT/ann" 'c["annotations"] = {"run.matchlock.allow-hostz": "x.com"}'
	rt create --bundle "$T_OUT/ann" e6
	expect_runtime_error "config.json: annotation run.matchlock.allow-hostz: unknown"
	rt start nosuch
	expect_runtime_error "container nosuch does not exist"
	rt delete nosuch
	expect_runtime_error "container nosuch does not exist"
	rt kill nosuch KILL
	expect_runtime_error "container nosuch does not exist"
	rt create --bundle "$T_OUT/b" ../x
	expect_runtime_error "invalid container ID"
	# A duplicate ID is refused and the first container is untouched.
	bundle "$T_OUT/b" 'c["process"]["args"] = ["sleep", "600"]'
	"$ML" --root "$R" create --bundle "$T_OUT/b" --pid-file "$T_OUT/pid" dup </dev/null >/dev/null 2>&1 || fail "create"
	rt create --bundle "$T_OUT/b" dup
	expect_runtime_error "container with id dup already exists"
	rt state dup
	expect_match "the first is still there" "$OUT" '"status": "created"'
	rt delete dup
	expect_eq "delete of a created container" "$RC" 0
	[ -z "$(ls "$R")" ] || fail "left in the runtime root: $(ls "$R")"
	expect_clean
}

t_policy_file_can_forbid_annotations() {
	echo '{"annotations": false, "allow_hosts": ["example.test"]}' >"$T_OUT/policy.json"
	bundle "$T_OUT/b" 'c["annotations"] = {"run.matchlock.allow-hosts": "*"}'
	rt --policy "$T_OUT/policy.json" create --bundle "$T_OUT/b" p1
	[ "$RC" != 0 ] || fail "a sealed policy let an annotation open the network"
	expect_match "error" "$ERR" "annotation run.matchlock.allow-hosts: this runtime's policy file does not let containers open the network"
	echo '{"allow_hostz": []}' >"$T_OUT/policy.json"
	bundle "$T_OUT/b"
	rt --policy "$T_OUT/policy.json" create --bundle "$T_OUT/b" p2
	expect_match "error" "$ERR" 'unknown key "allow_hostz"'
	# Only this test's containers: the runtime root is the suite's.
	[ ! -e "$R/p1" ] && [ ! -e "$R/p2" ] || fail "left in the runtime root: $(ls "$R")"
}

# Hooks of the runtime's namespace run on the host with the state on stdin; writes of the
# container reach root.path when its process ends (Buildah commits that directory).
t_hooks_and_writes_back_to_root_path() {
	cp -a "$ROOTFS" "$T_OUT/rootfs"
	printf '#!/bin/sh\ncat >"%s/$1.json"\ngrep CapEff /proc/self/status >"%s/$1.caps"\n' "$T_OUT" "$T_OUT" >"$T_OUT/hook"
	chmod +x "$T_OUT/hook"
	bundle "$T_OUT/b" "c['root']['path'] = '$T_OUT/rootfs'" \
		'c["process"]["args"] = ["sh", "-c", "echo new >/added; rm /linuxrc; mkdir -p /d/e"]' \
		"c['hooks'] = {k: [{'path': '$T_OUT/hook', 'args': ['hook', k]}] for k in ('prestart', 'createRuntime', 'poststart', 'poststop')}"
	"$ML" --root "$R" create --bundle "$T_OUT/b" --pid-file "$T_OUT/pid" h1 </dev/null >/dev/null 2>&1 || fail "create"
	local pid
	pid=$(cat "$T_OUT/pid")
	for k in prestart createRuntime; do
		grep -q "\"pid\": *$pid" "$T_OUT/$k.json" 2>/dev/null || fail "$k hook: $(cat "$T_OUT/$k.json" 2>&1)"
		# The runtime's privileges, as runc's hooks have (not the supervisor's reduced ones).
		expect_eq "$k hook's capabilities" "$(cat "$T_OUT/$k.caps" 2>&1)" "$(grep CapEff /proc/$$/status)"
	done
	[ -e "$T_OUT/poststart.json" ] && fail "poststart ran before start"
	# Its last hook ran: it is sealed like `run`'s supervisor (jail.h), and still writes back.
	expect_eq "the pid-file process's Seccomp" "$(sealed "$pid")" 2
	rt start h1
	expect_eq "start" "$RC" 0
	grep -q '"status": *"running"' "$T_OUT/poststart.json" || fail "poststart: $(cat "$T_OUT/poststart.json" 2>&1)"
	wait_gone "$pid" || fail "the container did not end"
	expect_eq "a new file" "$(cat "$T_OUT/rootfs/added" 2>&1)" "new"
	[ -e "$T_OUT/rootfs/linuxrc" ] || [ -L "$T_OUT/rootfs/linuxrc" ] && fail "a deletion did not reach root.path"
	[ -d "$T_OUT/rootfs/d/e" ] || fail "a directory did not reach root.path"
	[ -e "$T_OUT/rootfs/etc/ssl/matchlock-ca.pem" ] && fail "the sandbox CA reached root.path"
	rt delete h1
	expect_eq "delete" "$RC" 0
	grep -q '"status": *"stopped"' "$T_OUT/poststop.json" || fail "poststop: $(cat "$T_OUT/poststop.json" 2>&1)"
	bundle "$T_OUT/b2" 'c["hooks"] = {"createContainer": [{"path": "/bin/true"}]}'
	rt create --bundle "$T_OUT/b2" h2
	expect_runtime_error "config.json: hooks.createContainer: hooks inside the container are not supported"
	bundle "$T_OUT/b3" 'c["hooks"] = {"prestart": [{"path": "/bin/false"}]}'
	rt create --bundle "$T_OUT/b3" h3
	expect_runtime_error "hooks.prestart\\[0\\] /bin/false: failed \\(status 1\\)"
	[ ! -e "$R/h3" ] || fail "a failed create left $R/h3"
}

# Kubernetes: the pod's sandbox ("pause") container needs no VM; the pod's containers are given
# its IPC/UTS namespaces, which an operator's policy may accept (each VM keeps its own).
t_kubernetes_pod_sandbox_and_pod_namespaces() {
	bundle "$T_OUT/p" 'c["annotations"] = {"io.kubernetes.cri.container-type": "sandbox"}' 'c["process"]["args"] = ["/pause"]'
	"$ML" --root "$R" create --bundle "$T_OUT/p" --pid-file "$T_OUT/pid" pause1 </dev/null >/dev/null 2>&1 || fail "create of the pod sandbox"
	local pid
	pid=$(cat "$T_OUT/pid")
	expect_eq "no VM for the pod sandbox" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sandbox"])' "$R/pause1/state.json")" ""
	expect_eq "the pod sandbox's Seccomp" "$(sealed "$pid")" 2
	rt start pause1
	rt state pause1
	expect_match "running" "$OUT" '"status": "running"'
	bundle "$T_OUT/c" "c['linux']['namespaces'] += [{'type': 'ipc', 'path': '/proc/$pid/ns/ipc'}, {'type': 'uts', 'path': '/proc/$pid/ns/uts'}]"
	rt create --bundle "$T_OUT/c" app1
	expect_runtime_error "config.json: linux.namespaces: joining the ipc namespace"
	echo '{"pod_namespaces": true}' >"$T_OUT/k8s.json"
	"$ML" --root "$R" --policy "$T_OUT/k8s.json" create --bundle "$T_OUT/c" --pid-file "$T_OUT/apid" app1 </dev/null >/dev/null 2>&1 || fail "pod_namespaces: true did not accept the pod's namespaces"
	rt delete app1
	expect_eq "delete" "$RC" 0
	rt kill pause1 TERM
	wait_gone "$pid" || fail "the pod sandbox did not end on SIGTERM"
	rt delete pause1
	expect_eq "delete" "$RC" 0
}

t_features_and_dispatch() {
	rt features
	expect_eq "features" "$RC" 0
	expect_match "features" "$OUT" '"ociVersionMax": "1.2.0"'
	expect_match "annotations" "$OUT" 'run.matchlock.secret-env'
	# The same verbs under `matchlock oci`, and matchlock's own verbs are unchanged.
	ml oci --root "$R" list --format json
	expect_eq "oci list" "$OUT" "[]"
	ml list
	expect_match "matchlock's own list" "$OUT" "^ID +STATUS +IMAGE"
	ml kill nosuch
	expect_match "matchlock's own kill" "$ERR" "no sandbox nosuch"
	ml kill nosuch KILL
	expect_match "runc's kill" "$ERR" "container nosuch does not exist"
}

run_tests "$@"
