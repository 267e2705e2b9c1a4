#!/bin/bash
# tests/run: root
# containerd with matchlock as the runc binary of its runc shim: `ctr run --runc-binary
# build/matchlock --runtime io.containerd.runc.v2`, the path Kubernetes' CRI takes for a
# RuntimeClass whose handler sets BinaryName. A private containerd (its own socket, root and
# state under the suite's temporary directory), an image imported from the busybox test rootfs.
# Root only; skipped where containerd cannot start.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
	echo "skipped: needs root (containerd)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
if ! command -v containerd >/dev/null || ! command -v containerd-shim-runc-v2 >/dev/null; then
	echo "skipped: containerd is not installed (scripts/deps.sh installs it)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
C=$T_OUT/containerd
NS=matchlock-test
IMG=localhost/matchlock-test-busybox:latest
mkdir -p "$C"
cat >"$C/config.toml" <<EOF
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$C/containerd.sock"
[ttrpc]
  address = "$C/containerd.sock.ttrpc"
EOF
containerd --config "$C/config.toml" >"$C/log" 2>&1 &
CTD_PID=$!
CTR=(ctr --address "$C/containerd.sock" -n "$NS")
trap 'for t in $("${CTR[@]}" task ls -q 2>/dev/null); do "${CTR[@]}" task kill -s KILL "$t"; done >/dev/null 2>&1
	sleep 1; for c in $("${CTR[@]}" container ls -q 2>/dev/null); do "${CTR[@]}" task delete -f "$c"; "${CTR[@]}" container delete "$c"; done >/dev/null 2>&1
	kill $CTD_PID 2>/dev/null; wait $CTD_PID 2>/dev/null; "$ML" kill --all >/dev/null 2>&1; rm -rf "$MATCHLOCK_HOME" "$T_OUT"' EXIT
for _ in $(seq 100); do [ -S "$C/containerd.sock" ] && break; sleep 0.1; done
python3 "$ROOT/tests/integration/image_archive.py" "$ROOTFS" "$T_OUT/image.tar" "$IMG"
if ! [ -S "$C/containerd.sock" ] || ! timeout 120 "${CTR[@]}" image import "$T_OUT/image.tar" >"$T_OUT/import" 2>&1; then
	echo "skipped: containerd cannot start or import here: $(tail -n 2 "$C/log" "$T_OUT/import" 2>/dev/null | tr '\n' ' ')"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
RUN=(run --runc-binary "$ML" --runtime io.containerd.runc.v2)
# c ARGS...: ctr (bounded), like ml.
c() { timeout 180 "${CTR[@]}" "$@" >"$T_OUT/out" 2>"$T_OUT/err" </dev/null; RC=$?; OUT=$(cat "$T_OUT/out"); ERR=$(cat "$T_OUT/err"); }
task_status() { "${CTR[@]}" task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}'; }

t_ctr_run_exit_status_output_env() {
	c "${RUN[@]}" --rm --env GREETING=hi --cwd /tmp "$IMG" r1 sh -c 'echo "$GREETING from $(pwd)"; echo err >&2; exit 4'
	expect_eq "status" "$RC" 4
	expect_eq "stdout" "$OUT" "hi from /tmp"
	expect_match "stderr" "$ERR" "err"
	[ -z "$("${CTR[@]}" container ls -q)" ] || fail "--rm left a container"
}

# (ctr keeps the task's stdin open after its own reaches EOF, with runc too: no stdin test here.)
t_ctr_memory_limit_is_the_guests_memory() {
	c "${RUN[@]}" --rm --memory-limit 268435456 "$IMG" r2 grep MemTotal /proc/meminfo
	[ "$RC" = 0 ] || fail "status $RC: $ERR $OUT"
	local kb
	kb=$(awk '{print $2}' <<<"$OUT")
	[ -n "$kb" ] && [ "$kb" -lt 300000 ] && [ "$kb" -gt 150000 ] || fail "--memory-limit 256 MiB: the guest has $kb kB"
}

t_ctr_task_exec_kill_delete() {
	c "${RUN[@]}" -d "$IMG" r3 sleep 600
	expect_eq "run -d" "$RC" 0
	expect_eq "running" "$(task_status r3)" RUNNING
	c task exec --exec-id e1 r3 sh -c 'echo exec-ok; exit 6'
	expect_eq "exec status" "$RC" 6
	expect_eq "exec output" "$OUT" "exec-ok"
	c task kill -s KILL r3
	expect_eq "kill" "$RC" 0
	for _ in $(seq 100); do [ "$(task_status r3)" = STOPPED ] && break; sleep 0.1; done
	expect_eq "stopped" "$(task_status r3)" STOPPED
	c task delete r3
	expect_eq "task delete" "$RC" 0
	c container delete r3
	expect_eq "container delete" "$RC" 0
	[ -z "$(ls /run/containerd/runc/$NS 2>/dev/null)" ] || fail "the runtime's state was left: $(ls /run/containerd/runc/$NS)"
}

run_tests "$@"
