#!/bin/bash
# tests/run: root
# Podman with matchlock as its OCI runtime: `podman --runtime build/matchlock run ...` on an image
# loaded (`podman load`) from an archive of the busybox test rootfs (image_archive.py: no
# registry, no internet), in a private Podman storage.
# Root only (rootful Podman: conmon, netavark); skipped where Podman cannot start.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
	echo "skipped: needs root (rootful Podman)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
if ! command -v podman >/dev/null; then
	echo "skipped: podman is not installed (scripts/deps.sh installs it)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
S=$T_OUT/podman
IMG=localhost/matchlock-test-busybox:latest
PD=(podman --root "$S/storage" --runroot "$S/run" --tmpdir "$S/tmp")
PR=("${PD[@]}" --runtime "$ML")
trap '"${PD[@]}" rm -af -t 0 >/dev/null 2>&1; "$ML" kill --all >/dev/null 2>&1; rm -rf "$MATCHLOCK_HOME" "$T_OUT"' EXIT
mkdir -p "$S/tmp"
python3 "$ROOT/tests/integration/image_archive.py" "$ROOTFS" "$T_OUT/image.tar" "$IMG"
if ! timeout 120 "${PD[@]}" load -i "$T_OUT/image.tar" >"$T_OUT/import" 2>&1; then
	echo "skipped: podman cannot load an image here: $(tail -n 1 "$T_OUT/import")"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
# pd ARGS...: Podman with matchlock as the runtime (bounded), like ml.
pd() { timeout 180 "${PR[@]}" "$@" >"$T_OUT/out" 2>"$T_OUT/err"; RC=$?; OUT=$(cat "$T_OUT/out"); ERR=$(cat "$T_OUT/err"); }
# The matchlock sandbox behind a container (its QEMU holds its disk: lib.sh's qemu_with).
sandbox_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sandbox"])' "/run/matchlock-oci/$1/state.json"; }
wait_exited() { for _ in $(seq 300); do [ "$("${PD[@]}" inspect --format '{{.State.Status}}' "$1" 2>/dev/null)" = exited ] && return 0; sleep 0.1; done; return 1; }

t_exit_status_and_output() {
	pd run --rm --network none "$IMG" sh -c 'echo out; echo err >&2; exit 3'
	expect_eq "status" "$RC" 3
	expect_eq "stdout" "$OUT" "out"
	expect_match "stderr" "$ERR" "err"
}

t_stdin_with_i() {
	printf 'line1\nline2\n' | timeout 180 "${PR[@]}" run --rm -i --network none "$IMG" sh -c 'wc -l; cat' >"$T_OUT/o" 2>&1
	expect_eq "status" "$?" 0
	expect_eq "stdin reached the workload" "$(tr -d ' ' <"$T_OUT/o")" "2"
}

t_terminal_with_t() {
	pd run --rm -t --network none "$IMG" sh -c 'tty; [ -t 0 ] && echo stdin-is-a-tty'
	expect_eq "status" "$RC" 0
	expect_match "a terminal" "$OUT" "/dev/pts/[0-9]+"
	expect_match "stdin" "$OUT" "stdin-is-a-tty"
}

t_env_workdir_user_hostname_ulimit() {
	pd run --rm --network none -e FOO=bar -w /tmp -u 1000:1000 --hostname boxy --ulimit nofile=2048:4096 "$IMG" sh -c 'echo "$FOO $(pwd) $(id -u):$(id -g) $(hostname) $(ulimit -n) $(ulimit -Hn)"'
	expect_eq "status" "$RC" 0
	expect_eq "process" "$OUT" "bar /tmp 1000:1000 boxy 2048 4096"
}

t_bind_mount_and_memory() {
	mkdir -p "$T_OUT/vol"
	echo from-host >"$T_OUT/vol/in"
	pd run --rm --network none -v "$T_OUT/vol:/data" --memory 256m "$IMG" sh -c 'cat /data/in; echo from-guest >/data/out; grep MemTotal /proc/meminfo'
	expect_eq "status" "$RC" 0
	expect_match "the host file" "$OUT" "from-host"
	expect_eq "written through" "$(cat "$T_OUT/vol/out" 2>/dev/null)" "from-guest"
	local kb
	kb=$(awk '/MemTotal/ {print $2}' <<<"$OUT")
	[ -n "$kb" ] && [ "$kb" -lt 300000 ] && [ "$kb" -gt 150000 ] || fail "--memory 256m: the guest has $kb kB"
}

t_detached_exec_stop_rm() {
	pd run -d --name ml-exec --network none "$IMG" sleep 600
	expect_eq "run -d" "$RC" 0
	pd exec ml-exec sh -c 'echo exec-ok; exit 5'
	expect_eq "exec status" "$RC" 5
	expect_eq "exec output" "$OUT" "exec-ok"
	pd exec -t ml-exec tty
	expect_match "exec -t" "$OUT" "/dev/pts/[0-9]+"
	echo piped | timeout 120 "${PR[@]}" exec -i ml-exec cat >"$T_OUT/o" 2>&1
	expect_eq "exec -i" "$(cat "$T_OUT/o")" "piped"
	pd stop -t 5 ml-exec
	expect_eq "stop" "$RC" 0
	expect_eq "stopped by SIGTERM" "$("${PD[@]}" inspect --format '{{.State.ExitCode}}' ml-exec)" 143
	pd rm ml-exec
	expect_eq "rm" "$RC" 0
}

t_kill_and_kill9_of_the_runtime_process() {
	pd run -d --name ml-kill --network none "$IMG" sleep 600
	pd kill ml-kill
	expect_eq "kill" "$RC" 0
	wait_exited ml-kill || fail "podman kill did not end it"
	expect_eq "SIGKILL" "$("${PD[@]}" inspect --format '{{.State.ExitCode}}' ml-kill)" 137
	pd rm ml-kill
	# kill -9 of the pid-file process: the VM goes with it.
	pd run -d --name ml-k9 --network none "$IMG" sleep 600
	local id pid sb
	id=$("${PD[@]}" inspect --format '{{.Id}}' ml-k9)
	pid=$("${PD[@]}" inspect --format '{{.State.Pid}}' ml-k9)
	sb=$(sandbox_of "$id")
	[ -n "$(qemu_with "$sb")" ] || fail "no QEMU for $sb"
	kill -9 "$pid"
	wait_exited ml-k9 || fail "the container did not end"
	wait_qemu_gone "$sb" || fail "QEMU outlived the pid-file process"
	pd rm ml-k9
	expect_eq "rm" "$RC" 0
	[ ! -e "/run/matchlock-oci/$id" ] || fail "the runtime's directory was left"
}

t_default_network_joins_the_pod_netns() {
	# Podman's own network: the supervisor joins the container's namespace (no egress allowed:
	# a name outside the allow-list is not even resolved).
	pd run --rm "$IMG" sh -c 'hostname; nslookup example.com >/dev/null 2>&1; echo dns=$?'
	expect_eq "status" "$RC" 0
	expect_match "sealed" "$OUT" "dns=1"
}

# The annotations: an allow-list and a secret. A loopback HTTPS "API" with its own CA (trusted
# through the operator's policy file) sees the real key; the workload only the placeholder.
t_annotations_allow_list_and_secret() {
	local srv=$T_OUT/srv
	mkdir -p "$srv"
	python3 "$ROOT/tests/integration/secrets_server.py" "$srv" >/dev/null 2>&1 &
	local spid=$!
	for _ in $(seq 100); do [ -e "$srv/ready" ] && break; sleep 0.1; done
	[ -e "$srv/ready" ] || { kill $spid; skip "the loopback API did not start (ports 8443/8080 taken?)"; }
	printf '{"upstream_ca": ["%s"]}\n' "$srv/ca.pem" >"$T_OUT/policy.json"
	# The operator's handler: matchlock with a policy file (a RuntimeClass handler does this).
	printf '#!/bin/sh\nexec "%s" --policy "%s" "$@"\n' "$ML" "$T_OUT/policy.json" >"$T_OUT/matchlock-egress"
	chmod +x "$T_OUT/matchlock-egress"
	local real="sk-live-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	timeout 180 "${PD[@]}" --runtime "$T_OUT/matchlock-egress" run --rm --network host -e API_KEY="$real" \
		--annotation run.matchlock.add-hosts=api.test:127.0.0.1 \
		--annotation run.matchlock.allow-hosts=api.test:8080 \
		--annotation "run.matchlock.secret-env=API_KEY@api.test:8443" \
		"$IMG" sh -c 'echo "key=$API_KEY"
			wget -q -O- --header "X-Api-Key: $API_KEY" https://api.test:8443/echo; echo
			wget -q -O- http://api.test:8080/echo >/dev/null; echo plain=$?
			wget -q -T 5 -O- http://unlisted.test/ >/dev/null 2>&1; echo unlisted=$?' >"$T_OUT/o" 2>"$T_OUT/e"
	local rc=$?
	kill $spid 2>/dev/null
	OUT=$(cat "$T_OUT/o")
	expect_eq "status ($(cat "$T_OUT/e"))" "$rc" 0
	expect_match "placeholder" "$OUT" "key=SANDBOX_SECRET_[0-9a-f]{32}"
	[[ $(cat "$srv/requests.log") == *"X-Api-Key: $real"* ]] || fail "the API did not get the real key: $(cat "$srv/requests.log")"
	[[ $OUT != *"$real"* ]] || fail "the real key reached the workload"
	expect_match "allowed host" "$OUT" "plain=0"
	expect_match "unlisted host" "$OUT" "unlisted=[1-9]"
}

run_tests "$@"
