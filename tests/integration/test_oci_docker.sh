#!/bin/bash
# tests/run: root
# Docker with matchlock as an added runtime: a private dockerd (its own socket, data and exec
# roots; no bridge, no iptables) started with --add-runtime matchlock=build/matchlock, and
# `docker run --runtime matchlock` on an image loaded from an archive of the busybox test
# rootfs. Docker's network hook (a prestart hook) runs on the host. Root only; skipped where
# dockerd cannot start.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
	echo "skipped: needs root (dockerd)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
	echo "skipped: docker is not installed (docker.io)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
D=$T_OUT/docker
IMG=localhost/matchlock-test-busybox:latest
mkdir -p "$D"
dockerd --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/pid" --host "unix://$D/docker.sock" \
	--bridge none --iptables=false --ip6tables=false --ip-masq=false \
	--add-runtime "matchlock=$ML" >"$D/log" 2>&1 &
DOCKERD=$!
DK=(docker -H "unix://$D/docker.sock")
trap '"${DK[@]}" rm -f $("${DK[@]}" ps -aq 2>/dev/null) >/dev/null 2>&1; kill $DOCKERD 2>/dev/null; wait $DOCKERD 2>/dev/null
	"$ML" kill --all >/dev/null 2>&1; rm -rf "$MATCHLOCK_HOME" "$T_OUT"' EXIT
for _ in $(seq 150); do [ -S "$D/docker.sock" ] && "${DK[@]}" info >/dev/null 2>&1 && break; sleep 0.2; done
python3 "$ROOT/tests/integration/image_archive.py" "$ROOTFS" "$T_OUT/image.tar" "$IMG"
if ! timeout 120 "${DK[@]}" load -i "$T_OUT/image.tar" >"$T_OUT/import" 2>&1; then
	echo "skipped: dockerd cannot start or load an image here: $(tail -n 2 "$D/log" "$T_OUT/import" 2>/dev/null | tr '\n' ' ')"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
RUN=(run --runtime matchlock --network none)
dk() { timeout 180 "${DK[@]}" "$@" >"$T_OUT/out" 2>"$T_OUT/err"; RC=$?; OUT=$(cat "$T_OUT/out"); ERR=$(cat "$T_OUT/err"); }

t_docker_run_status_stdin_env_user() {
	echo piped | timeout 180 "${DK[@]}" "${RUN[@]}" --rm -i -e A=b -w /tmp -u 1000:1000 "$IMG" sh -c 'cat; echo "$A $(pwd) $(id -u)"; exit 5' >"$T_OUT/o" 2>&1
	local rc=$?
	expect_eq "status ($(cat "$T_OUT/o"))" "$rc" 5
	expect_eq "output" "$(cat "$T_OUT/o")" $'piped\nb /tmp 1000'
}

t_docker_detached_exec_stop_rm() {
	dk "${RUN[@]}" -d --name ml-d1 "$IMG" sleep 600
	expect_eq "run -d" "$RC" 0
	dk exec ml-d1 sh -c 'echo exec-ok; exit 6'
	expect_eq "exec status" "$RC" 6
	expect_eq "exec output" "$OUT" "exec-ok"
	dk stop -t 5 ml-d1
	expect_eq "stop" "$RC" 0
	expect_eq "SIGTERM" "$("${DK[@]}" inspect -f '{{.State.ExitCode}}' ml-d1)" 143
	dk rm ml-d1
	expect_eq "rm" "$RC" 0
}

t_docker_refused_config_is_a_clear_error() {
	dk "${RUN[@]}" --rm --read-only "$IMG" true
	[ "$RC" != 0 ] || fail "--read-only was not refused"
	expect_match "the runtime's words" "$ERR" "root.readonly: a read-only root is not supported by matchlock"
}

run_tests "$@"
