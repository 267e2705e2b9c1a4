#!/bin/bash
# `matchlock run` end to end: real kernel, real QEMU, the busybox root filesystem.
. "$(dirname "$0")/lib.sh"

t_stdout_stderr_and_status() {
	ml run --rootfs "$ROOTFS" -- sh -c 'echo out; echo err >&2; exit 7'
	expect_eq status "$RC" 7
	expect_eq stdout "$OUT" out
	expect_eq stderr "$ERR" err
	expect_clean
}

t_signal_status() {
	ml run --rootfs "$ROOTFS" -- sh -c 'kill -9 $$'
	expect_eq status "$RC" 137
}

t_stdin_round_trip() {
	local got
	got=$(printf 'hello\nworld\n' | "$ML" run -i --rootfs "$ROOTFS" -- cat)
	expect_eq stdin "$got" "$(printf 'hello\nworld\n')"
	# Without -i the command's stdin is empty.
	got=$(echo ignored | "$ML" run --rootfs "$ROOTFS" -- cat)
	expect_eq "stdin without -i" "$got" ""
}

t_bulk_data_both_ways() {
	# 8 MB in, 16 MB out: crosses the credit window many times in both directions.
	head -c 8000000 /dev/urandom >"$T_OUT/in"
	local want got
	want=$(sha256sum <"$T_OUT/in" | cut -d' ' -f1)
	got=$("$ML" run -i --rootfs "$ROOTFS" -- sha256sum <"$T_OUT/in" | cut -d' ' -f1)
	expect_eq "sha256 of stdin (regular file)" "$got" "$want"
	got=$(cat "$T_OUT/in" | "$ML" run -i --rootfs "$ROOTFS" -- sha256sum | cut -d' ' -f1)
	expect_eq "sha256 of stdin (pipe)" "$got" "$want"
	got=$("$ML" run --rootfs "$ROOTFS" -- sh -c 'head -c 16000000 /dev/zero; head -c 1000 /dev/zero >&2' 2>"$T_OUT/e" | wc -c)
	expect_eq "stdout bytes" "$got" 16000000
	expect_eq "stderr bytes" "$(wc -c <"$T_OUT/e")" 1000
}

t_tty() {
	python3 - "$ML" "$ROOTFS" <<'PY' || fail "pty session"
import os, pty, sys, time, select, fcntl, termios, struct, signal
ml, rootfs = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "xterm"
    os.execv(ml, [ml, "run", "-it", "--rootfs", rootfs, "--", "sh"])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
buf = b""
def read_until(token, timeout=60):
    global buf
    end = time.time() + timeout
    while token not in buf and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                buf += os.read(fd, 4096)
            except OSError:
                break
    return token in buf
os.write(fd, b"echo tty=$(tty) size=$(stty size) sum=$((6*7))\r")
assert read_until(b"sum=42"), buf
assert b"tty=/dev/pts/" in buf, buf
assert b"size=33 101" in buf, buf
# Resize: the terminal changes size, matchlock gets SIGWINCH and forwards it.
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
os.kill(pid, signal.SIGWINCH)
time.sleep(0.5)
buf = b""
os.write(fd, b"echo new=$(stty size)\r")
assert read_until(b"new=40 120"), buf
os.write(fd, b"exit 3\r")
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3, status
PY
}

t_timeout_exits_124() {
	ml run --timeout 2 --rootfs "$ROOTFS" -- sleep 100
	expect_eq status "$RC" 124
	expect_clean
}

t_sigint_sends_sigterm() {
	"$ML" run --rootfs "$ROOTFS" -- sh -c 'trap "echo got-term; exit 5" TERM; echo ready; sleep 100 & wait' >"$T_OUT/out" 2>&1 &
	local pid=$! i
	for i in $(seq 100); do grep -q ready "$T_OUT/out" && break; sleep 0.2; done
	kill -INT $pid
	wait $pid
	RC=$?
	expect_eq status "$RC" 5
	grep -q got-term "$T_OUT/out" || fail "no got-term in: $(cat "$T_OUT/out")"
	expect_clean
}

t_kill9_leaves_no_qemu() {
	"$ML" run --rootfs "$ROOTFS" -- sh -c 'echo ready; sleep 100' >"$T_OUT/out" 2>&1 &
	local pid=$! i
	for i in $(seq 100); do grep -q ready "$T_OUT/out" && break; sleep 0.2; done
	local qemu
	qemu=$(pgrep -P $pid -f qemu-system) || fail "no QEMU child found"
	kill -9 $pid
	wait $pid 2>/dev/null
	for i in $(seq 50); do kill -0 "$qemu" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$qemu" 2>/dev/null && fail "QEMU $qemu outlived its supervisor"
	rm -rf "$MATCHLOCK_HOME/state/sandboxes"
}

t_exec_errors() {
	ml run --rootfs "$ROOTFS" -- /no/such/program
	expect_eq status "$RC" 127
	expect_match stderr "$ERR" "^matchlock: /no/such/program: .*No such file"
	ml run --rootfs "$ROOTFS" -- /etc/passwd
	expect_eq status "$RC" 126
	ml run -u nosuchuser --rootfs "$ROOTFS" -- true
	expect_eq status "$RC" 126
	expect_match stderr "$ERR" "user"
	expect_clean
}

t_user_workdir_env_hostname() {
	printf 'A=from-file\nB=from-file\n# comment\n\nC\n' >"$T_OUT/env"
	C=from-host ml run -u user -w /tmp/made/here -e A=from-flag --env-file "$T_OUT/env" -e C \
		--hostname box1 --rootfs "$ROOTFS" -- sh -c 'echo $(id -u):$(id -g) $(pwd) $A $B $C $HOME $(hostname)'
	expect_eq status "$RC" 0
	expect_eq output "$OUT" "1000:1000 /tmp/made/here from-flag from-file from-host /home/user box1"
	ml run -u 1234:5678 --rootfs "$ROOTFS" -- id
	expect_eq "numeric user" "$OUT" "uid=1234 gid=5678"
}

t_writes_stay_in_the_sandbox() {
	ml run --rootfs "$ROOTFS" -- sh -c 'echo x > /etc/passwd && rm /bin/ls && echo ok'
	expect_eq status "$RC" 0
	expect_eq output "$OUT" ok
	ml run --rootfs "$ROOTFS" -- sh -c 'head -1 /etc/passwd; test -e /bin/ls && echo ls-present'
	expect_eq "fresh sandbox" "$OUT" "$(printf 'root:x:0:0:root:/root:/bin/sh\nls-present')"
	grep -q '^root:' "$ROOTFS/etc/passwd" || fail "host rootfs modified"
}

t_rootfs_tarball_and_cache() {
	tar -C "$ROOTFS" -cf "$T_OUT/rootfs.tar" .
	ml run --rootfs "$T_OUT/rootfs.tar" -- echo from-tar
	expect_eq output "$OUT" from-tar
	local img
	img=$(ls -t "$MATCHLOCK_HOME"/cache/rootfs/*.ext4 | head -1)
	local before
	before=$(stat -c %i:%Y "$img")
	ml run --rootfs "$T_OUT/rootfs.tar" -- true
	expect_eq "cached image reused" "$(stat -c %i:%Y "$img")" "$before"
	expect_clean
}

t_hostile_tarball_rejected() {
	mkdir -p "$T_OUT/evil"
	python3 - "$T_OUT/evil.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    for name in ["../escaped-by-dotdot"]:
        data = b"pwned"
        ti = tarfile.TarInfo(name); ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
PY
	ml run --rootfs "$T_OUT/evil.tar" -- true
	expect_one_line_error
	[ -e "$MATCHLOCK_HOME/cache/escaped-by-dotdot" ] && fail "tar escaped the staging dir"
	python3 - "$T_OUT/evil2.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    ti = tarfile.TarInfo("link"); ti.type = tarfile.SYMTYPE; ti.linkname = "/tmp"
    t.addfile(ti)
    data = b"pwned"
    ti = tarfile.TarInfo("link/escaped-by-symlink"); ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))
PY
	ml run --rootfs "$T_OUT/evil2.tar" -- true
	expect_one_line_error
	[ -e /tmp/escaped-by-symlink ] && { rm -f /tmp/escaped-by-symlink; fail "tar wrote through a symlink"; }
	expect_clean
}

t_bad_input_errors() {
	ml run --no-such-flag --rootfs "$ROOTFS" -- true
	expect_one_line_error
	ml run --rootfs /no/such/dir -- true
	expect_one_line_error
	ml run --rootfs "$ROOTFS"
	expect_one_line_error
	ml run --memory lots --rootfs "$ROOTFS" -- true
	expect_one_line_error
	ml run --accel warp --rootfs "$ROOTFS" -- true
	expect_one_line_error
	ml frobnicate
	expect_one_line_error
	expect_clean
}

t_kernel_panic_is_reported() {
	MATCHLOCK_INITRAMFS=$BUILD/initramfs-empty.cpio ml run --rootfs "$ROOTFS" -- true
	expect_one_line_error
	expect_match error "$ERR" "panic"
	expect_clean
}

# The time-out must outlast the kernel's boot to the hanging /init (its console line is part of
# the message): 3 s was too short on a 2-core machine under load 16.
t_silent_guest_times_out() {
	MATCHLOCK_BOOT_TIMEOUT=10 MATCHLOCK_INITRAMFS=$BUILD/initramfs-hang.cpio ml run --rootfs "$ROOTFS" -- true
	expect_one_line_error
	expect_match error "$ERR" "did not answer within 10 s.*hang_init"
	expect_clean
}

t_qemu_failure_is_reported() {
	MATCHLOCK_QEMU=/no/such/qemu ml run --rootfs "$ROOTFS" -- true
	expect_one_line_error
	expect_match error "$ERR" "/no/such/qemu"
	MATCHLOCK_KERNEL=/etc/hostname ml run --rootfs "$ROOTFS" -- true
	expect_one_line_error
	expect_match error "$ERR" "QEMU failed"
	expect_clean
}

t_diagnose() {
	ml diagnose
	expect_eq status "$RC" 0
	expect_match output "$OUT" "accelerator +ok .*using (KVM|TCG)"
	ml diagnose --json
	python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ok"] is True' <<<"$OUT" || fail "diagnose --json"
	MATCHLOCK_QEMU=/no/such/qemu ml diagnose
	[ "$RC" != 0 ] || fail "diagnose passes without QEMU"
}

run_tests "$@"
