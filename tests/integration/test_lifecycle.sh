#!/bin/bash
# Long-lived sandboxes: run -d, exec, list, get/inspect, log, kill, rm, prune, gc, crash safety.
. "$(dirname "$0")/lib.sh"

# One detached sandbox serves the checks that only need a running sandbox.
SB=
start_shared() {
	[ -n "$SB" ] && return
	SB=$("$ML" run -d --rootfs "$ROOTFS" --cpus 0.5 --memory 256 --hostname shared) || fail "run -d"
}
stop_shared() { [ -n "$SB" ] && "$ML" kill "$SB" >/dev/null; }

t_detach_exec_keeps_state() {
	expect_match "id" "$SB" '^vm-[0-9a-f]{8}$'
	ml exec "$SB" -- sh -c 'echo kept > /root/note; echo out; echo err >&2; exit 3'
	expect_eq status "$RC" 3
	expect_eq stdout "$OUT" out
	expect_eq stderr "$ERR" err
	ml exec "$SB" -- cat /root/note
	expect_eq "state between execs" "$OUT" kept
	# A unique prefix of the ID works too.
	ml exec "${SB:0:6}" -- hostname
	expect_eq hostname "$OUT" shared
}

t_exec_stdin_and_bulk_output() {
	local got
	got=$(printf 'one\ntwo\n' | "$ML" exec -i "$SB" -- sort -r)
	expect_eq "stdin" "$got" "$(printf 'two\none')"
	got=$("$ML" exec "$SB" -- sh -c 'head -c 10000000 /dev/zero' | wc -c)
	expect_eq "bytes" "$got" 10000000
}

t_exec_env_user_workdir_timeout() {
	ml exec -e A=1 -u user -w /tmp/w "$SB" -- sh -c 'echo $A $(id -u) $(pwd)'
	expect_eq output "$OUT" "1 1000 /tmp/w"
	ml exec --timeout 1 "$SB" -- sleep 60
	expect_eq "timeout status" "$RC" 124
	ml exec "$SB" -- /nonexistent
	expect_eq "not found" "$RC" 127
}

t_exec_interrupt() {
	"$ML" exec "$SB" -- sh -c 'trap "echo term; exit 9" TERM; echo ready; sleep 60 & wait' >"$T_OUT/o" 2>&1 &
	local pid=$! i
	for i in $(seq 100); do grep -q ready "$T_OUT/o" && break; sleep 0.1; done
	kill -INT $pid
	wait $pid
	expect_eq status $? 9
	grep -q term "$T_OUT/o" || fail "no term"
}

t_exec_tty() {
	python3 - "$ML" "$SB" <<'PY' || fail "pty exec"
import os, pty, sys, time, select
ml, sb = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(ml, [ml, "exec", "-it", sb, "--", "sh"])
buf = b""
os.write(fd, b"echo tty=$(tty) x=$((40+2)); exit 4\r")
end = time.time() + 30
while time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.5)
    if r:
        try:
            buf += os.read(fd, 4096)
        except OSError:
            break
_, st = os.waitpid(pid, 0)
assert b"x=42" in buf and b"tty=/dev/pts/" in buf, buf
assert os.WEXITSTATUS(st) == 4, st
PY
}

t_concurrent_execs_in_one_sandbox() {
	local i
	for i in 1 2 3 4 5; do "$ML" exec "$SB" -- sh -c "sleep 1; echo $i" >"$T_OUT/c$i" & done
	wait
	for i in 1 2 3 4 5; do expect_eq "exec $i" "$(cat "$T_OUT/c$i")" "$i"; done
}

t_resources() {
	ml exec "$SB" -- sh -c 'cat /sys/fs/cgroup/sandbox/cpu.max; nproc; grep MemTotal /proc/meminfo'
	expect_match "cpu quota" "$OUT" "^50000 100000"
	expect_match "memory" "$OUT" "MemTotal: +2[0-9]{5} kB"
}

t_list_get_inspect_log() {
	ml list
	expect_match list "$OUT" "$SB +running +.*rootfs-busybox"
	ml ls --running
	expect_match "ls --running" "$OUT" "$SB"
	ml get "$SB"
	python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["status"]=="running" and d["config"]["cpus"]==0.5, d' <<<"$OUT" || fail "get: $OUT"
	ml inspect "$SB"
	python3 -c 'import json,sys; d=json.load(sys.stdin); assert [h["status"] for h in d["history"]][:2]==["creating","running"], d' <<<"$OUT" || fail "inspect: $OUT"
	ml log "$SB"
	expect_eq "log status" "$RC" 0
}

t_log_follow_ends_with_sandbox() {
	local id
	id=$("$ML" run -d --rootfs "$ROOTFS" -- sh -c 'echo hello-from-background') || fail "run -d"
	timeout 60 "$ML" log -f "$id" >"$T_OUT/log" &
	local lp=$!
	sleep 1
	"$ML" kill "$id" >/dev/null
	wait $lp || fail "log -f did not end with the sandbox"
	grep -q hello-from-background "$T_OUT/log" || fail "background command output missing from the log"
	"$ML" rm "$id" >/dev/null
}

t_kill_rm_prune_errors() {
	local a b
	a=$("$ML" run -d --rootfs "$ROOTFS") || fail "run -d a"
	b=$("$ML" run -d --rootfs "$ROOTFS") || fail "run -d b"
	ml rm "$a"
	[ "$RC" != 0 ] || fail "rm of a running sandbox succeeded"
	expect_match "rm running" "$ERR" "stop it first"
	ml kill "$a"
	expect_eq "kill" "$OUT" "$a"
	ml kill "$a"
	[ "$RC" != 0 ] || fail "second kill succeeded"
	expect_match "second kill" "$ERR" "not running"
	ml exec "$a" -- true
	expect_eq "exec stopped" "$RC" 125
	expect_match "exec stopped" "$ERR" "not running"
	ml list
	expect_match "stopped listed" "$OUT" "$a +stopped"
	ml rm "$a"
	expect_eq "rm" "$OUT" "$a"
	ml rm "$a"
	[ "$RC" != 0 ] || fail "second rm succeeded"
	expect_match "second rm" "$ERR" "no sandbox"
	ml exec vm-00000000 -- true
	expect_eq "unknown id" "$RC" 125
	expect_match "unknown id" "$ERR" "no sandbox vm-00000000"
	ml run -d -i --rootfs "$ROOTFS"
	expect_one_line_error
	"$ML" kill "$b" >/dev/null
	ml prune
	expect_match prune "$OUT" "$b"
	[ -d "$MATCHLOCK_HOME/state/sandboxes/$b" ] && fail "prune left the directory"
	return 0
}

t_supervisor_kill9_then_gc() {
	local id pid qemu i
	id=$("$ML" run -d --rootfs "$ROOTFS") || fail "run -d"
	pid=$("$ML" get "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
	qemu=$(pgrep -P "$pid" -f qemu-system) || fail "no QEMU under the supervisor"
	kill -9 "$pid"
	for i in $(seq 50); do kill -0 "$qemu" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$qemu" 2>/dev/null && fail "QEMU outlived its supervisor"
	ml list
	expect_match "crashed" "$OUT" "$id +crashed"
	[ -e "$MATCHLOCK_HOME/state/sandboxes/$id/disk.img" ] || fail "no disk to collect"
	mkdir -p "$MATCHLOCK_HOME/state/sandboxes/vm-deadbeef"
	ml gc
	expect_eq "gc" "$RC" 0
	[ -e "$MATCHLOCK_HOME/state/sandboxes/$id/control.sock" ] && fail "gc left the socket"
	[ -e "$MATCHLOCK_HOME/state/sandboxes/$id/disk.img" ] && fail "gc left the writable disk"
	[ -d "$MATCHLOCK_HOME/state/sandboxes/vm-deadbeef" ] && fail "gc left an orphan directory"
	ml rm "$id"
	expect_eq "rm crashed" "$RC" 0
}

t_lifetime_timeout() {
	local id i
	id=$("$ML" run -d --timeout 2 --rootfs "$ROOTFS") || fail "run -d"
	for i in $(seq 100); do "$ML" get "$id" | grep -q '"status":"stopped"' && break; sleep 0.2; done
	"$ML" get "$id" | grep -q '"status":"stopped"' || fail "sandbox outlived --timeout"
	"$ML" rm "$id" >/dev/null
}

t_ten_at_once() {
	local i ids=()
	for i in $(seq 10); do
		"$ML" run --rootfs "$ROOTFS" -- sh -c "echo sandbox-$i" >"$T_OUT/ten$i" 2>&1 &
	done
	wait
	for i in $(seq 10); do expect_eq "sandbox $i" "$(cat "$T_OUT/ten$i")" "sandbox-$i"; done
}

t_allow_list_takes_effect() {
	local look='nslookup runtime.test >/dev/null 2>&1 && echo resolves || echo nxdomain'
	ml exec "$SB" -- sh -c "$look"
	expect_eq "before" "$OUT" nxdomain
	ml allow-list add "$SB" runtime.test,other.test
	expect_eq "add" "$OUT" "$(printf 'runtime.test\nother.test')"
	ml exec "$SB" -- sh -c "$look"
	expect_eq "after add" "$OUT" resolves
	ml allow-list delete "$SB" runtime.test,other.test
	expect_match "sealed notice" "$ERR" "sealed"
	ml exec "$SB" -- sh -c "$look"
	expect_eq "after delete" "$OUT" nxdomain
	ml allow-list add "$SB" 'bad name!'
	[ "$RC" != 0 ] || fail "a bad glob was accepted"
}

t_port_forward_round_trip() {
	"$ML" exec "$SB" -- sh -c 'mkdir -p /www && echo port-ok > /www/p.html && httpd -p 8081 -h /www' || fail "httpd"
	ml port-forward "$SB" 0:8081
	expect_match "binding" "$OUT" '^127\.0\.0\.1:[0-9]+ -> 8081$'
	local port=${OUT#127.0.0.1:}
	port=${port%% *}
	expect_eq "through the forward" "$(python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$port/p.html', timeout=30).read().decode().strip())")" port-ok
	ml port-forward "$SB" 8081
	expect_eq "LOCAL defaults to REMOTE" "$OUT" "127.0.0.1:8081 -> 8081"
	ml port-forward "$SB" 8081
	[ "$RC" != 0 ] || fail "a port already forwarded was bound twice"
	expect_match "busy" "$ERR" "Address already in use"
}

t_run_publish() {
	local id port
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	id=$("$ML" run -d -p "$port:8082" --rootfs "$ROOTFS" -- sh -c 'mkdir -p /w && echo published > /w/x && httpd -f -p 8082 -h /w') || fail "run -d -p"
	local got i
	for i in $(seq 50); do
		got=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/x', timeout=5).read().decode().strip())" 2>/dev/null) && break
		sleep 0.2
	done
	expect_eq "-p" "$got" published
	ml run -p "$port:80" --rootfs "$ROOTFS" -- true
	expect_one_line_error
	expect_match "port in use" "$ERR" "Address already in use"
	"$ML" kill "$id" >/dev/null
}

start_shared
run_tests "$@"
stop_shared
