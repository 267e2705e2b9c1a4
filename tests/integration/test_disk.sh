#!/bin/bash
# The sandbox's writable disk (--disk-size) and named volumes (matchlock volume, -v @NAME):
# what the guest writes goes to a sparse host file, not to QEMU's memory; a full disk is ENOSPC
# inside; the file goes with the sandbox; every start, restored ones too, gets an empty disk;
# bad sizes are one line and exit 125 (the same words over RPC). Volumes keep their contents
# between sandboxes, cannot be removed or attached writable twice while in use, and ro refuses
# writes.
. "$(dirname "$0")/lib.sh"

# The sandbox's directory (its disk file is in there).
sandbox_dir() { echo "$MATCHLOCK_HOME/state/sandboxes/$1"; }

# QEMU's resident memory in kB, for the sandbox whose disk is $1.
qemu_rss_kb() {
	local pid
	pid=$(qemu_with "$1" | head -n 1)
	[ -n "$pid" ] || fail "no QEMU for $1"
	awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"
}

# 1 GB written in the guest lands in the disk file, not in QEMU's memory. O_DIRECT: the guest's
# own page cache is guest memory too, and would be counted against QEMU whatever the disk.
t_1g_write_does_not_grow_qemu() {
	local id disk before after
	id=$("$ML" run -d --rootfs "$ROOTFS") || fail "run -d"
	disk=$(sandbox_dir "$id")/disk.img
	[ -f "$disk" ] || fail "no disk file at $disk"
	ml exec "$id" sh -c 'dd if=/dev/zero of=/root/warm bs=1M count=8 oflag=direct 2>/dev/null; sync'
	before=$(qemu_rss_kb "$disk")
	ml exec "$id" sh -c 'dd if=/dev/zero of=/root/big bs=1M count=1024 oflag=direct 2>&1 | tail -n 1; ls -l /root/big'
	expect_match "1 GB written ($ERR)" "$OUT" "1073741824 "
	after=$(qemu_rss_kb "$disk")
	echo "    QEMU RSS before ${before} kB, after ${after} kB; disk file $(du -k "$disk" | cut -f1) kB"
	[ $((after - before)) -lt 16384 ] || fail "QEMU's RSS grew by $((after - before)) kB"
	[ "$(du -k "$disk" | cut -f1)" -gt 1000000 ] || fail "the disk file did not get the data"
	ml inspect "$id"
	expect_match "inspect: the disk" "$OUT" "\"disk_size_mb\":8192,.*\"disk_path\":\"$disk\",\"disk_used_mb\":[0-9]{4}"
	"$ML" kill "$id" >/dev/null || fail "kill"
	[ ! -e "$disk" ] || fail "the disk file outlived the sandbox"
	"$ML" rm "$id" >/dev/null || fail "rm"
}

# A full disk is ENOSPC in the guest; the host file never grows past the size.
t_small_disk_fills_with_enospc() {
	ml run --rootfs "$ROOTFS" --disk-size 64 -- sh -c \
		'dd if=/dev/zero of=/root/fill bs=1M count=200 2>&1; echo rc=$?; df -m / | tail -n 1'
	expect_match "ENOSPC inside ($OUT $ERR)" "$OUT" "No space left on device"
	expect_match "dd failed" "$OUT" "rc=1"
	expect_clean
}

# A run's disk is gone when it ends (removed or not); a -d sandbox's when it is killed.
t_disk_file_removed_with_the_sandbox() {
	local id dir
	ml run --rootfs "$ROOTFS" -- true
	expect_eq "run" "$RC" 0
	[ -z "$(find "$MATCHLOCK_HOME/state" -name disk.img)" ] || fail "a disk file is left"
	id=$("$ML" run -d --rootfs "$ROOTFS") || fail "run -d"
	dir=$(sandbox_dir "$id")
	[ -f "$dir/disk.img" ] || fail "no disk while running"
	"$ML" kill "$id" >/dev/null || fail "kill"
	[ ! -e "$dir/disk.img" ] || fail "the disk file outlived the sandbox"
	[ -d "$dir" ] || fail "the stopped sandbox's directory is gone (its record stays until rm)"
	"$ML" rm "$id" >/dev/null || fail "rm"
	expect_clean
}

# Every start from the template gets a fresh, empty disk: one clone's file is absent in the next.
t_restored_starts_get_a_fresh_disk() {
	local t
	"$ML" run --rootfs "$ROOTFS" -- true || fail "warm-up run"
	t=$(MATCHLOCK_TIMING=1 "$ML" run --rootfs "$ROOTFS" -- sh -c 'ls /root /tmp; echo one >/root/mark; echo t >/tmp/t' 2>&1)
	expect_match "restored" "$t" "restored=1"
	[[ $t != *mark* ]] || fail "first clone saw a file: $t"
	t=$(MATCHLOCK_TIMING=1 "$ML" run --rootfs "$ROOTFS" -- sh -c 'ls -A /root /tmp' 2>&1)
	expect_match "restored" "$t" "restored=1"
	t=$(printf '%s\n' "$t" | grep -v '^timing:')
	[[ $t != *mark* ]] && ! printf '%s\n' "$t" | grep -qx t || fail "the next clone saw the last one's files: $t"
}

t_bad_disk_sizes_are_refused() {
	local s
	for s in 0 63 1048577 -5 abc; do
		ml run --rootfs "$ROOTFS" --disk-size "$s" -- true
		expect_eq "exit status ($s)" "$RC" 125
		[ "$(printf '%s\n' "$ERR" | grep -c .)" = 1 ] || fail "$s: expected one line: $ERR"
	done
	ml run --rootfs "$ROOTFS" --disk-size 63 -- true
	expect_eq "the validator's words" "$ERR" \
		"matchlock: disk size 63 MB: expected 64 to 1048576 MB (--disk-size, resources.disk_size_mb)"
	expect_clean
}

# ---- named volumes ----

# Written by one sandbox, read and added to by the next, all of it seen by a third.
t_volume_survives_two_sandboxes() {
	ml volume create keep --size 128
	expect_eq "create ($ERR)" "$RC" 0
	ml run --rootfs "$ROOTFS" -v @keep:/data -- sh -c 'echo one >/data/f; mkdir /data/d; chmod 700 /data/d'
	expect_eq "first ($ERR)" "$RC" 0
	ml run --rootfs "$ROOTFS" -v @keep:/data:rw -- sh -c 'cat /data/f; echo two >>/data/f'
	expect_eq "second sees the first's file ($ERR)" "$OUT" one
	ml run --rootfs "$ROOTFS" -v @keep:/v:ro -- sh -c 'cat /v/f; stat -c %a /v/d'
	expect_eq "third sees both ($ERR)" "$OUT" "one
two
700"
	ml volume ls
	expect_match "ls" "$OUT" "keep +128 MB +-"
	ml volume rm keep
	expect_eq "rm ($ERR)" "$RC" 0
	[ ! -e "$MATCHLOCK_HOME/cache/volumes/keep.ext4" ] || fail "the volume's file is still there"
	expect_clean
}

# While a sandbox writes a volume: rm, a second writable attach and a read-only one are refused
# (one line, exit 125); after it ends, all work. Two read-only attaches at once are fine.
t_volume_in_use() {
	local id id2
	"$ML" volume create busy --size 64 >/dev/null || fail "create"
	id=$("$ML" run -d --rootfs "$ROOTFS" -v @busy:/b) || fail "run -d"
	ml volume rm busy
	expect_one_line_error
	expect_match "rm refused" "$ERR" "volume busy is in use by a running sandbox"
	ml run --rootfs "$ROOTFS" -v @busy:/b -- true
	expect_one_line_error
	expect_match "second rw refused" "$ERR" "volume busy is in use by a running sandbox"
	ml run --rootfs "$ROOTFS" -v @busy:/b:ro -- true
	expect_one_line_error
	ml volume ls
	expect_match "ls says in use" "$OUT" "busy +64 MB +in use"
	ml get "$id"
	expect_match "get shows the volume" "$OUT" '"mounts":\[\{"host":"@busy","guest":"/b","mode":"rw","size_mb":64\}\]'
	"$ML" kill "$id" >/dev/null && "$ML" rm "$id" >/dev/null || fail "kill"
	id=$("$ML" run -d --rootfs "$ROOTFS" -v @busy:/b:ro) || fail "run -d ro"
	id2=$("$ML" run -d --rootfs "$ROOTFS" -v @busy:/b:ro) || fail "a second ro attach"
	ml run --rootfs "$ROOTFS" -v @busy:/b -- true
	expect_eq "rw refused while read ($ERR)" "$RC" 125
	for id in "$id" "$id2"; do
		"$ML" kill "$id" >/dev/null && "$ML" rm "$id" >/dev/null || fail "kill"
	done
	ml volume rm busy
	expect_eq "rm once free ($ERR)" "$RC" 0
	expect_clean
}

# ro: writes fail (EROFS), even from guest root remounting it (the device is read-only).
t_volume_ro_refuses_writes() {
	"$ML" volume create rov --size 64 >/dev/null || fail "create"
	ml run --rootfs "$ROOTFS" -v @rov:/r:ro -- sh -c 'echo x >/r/f 2>&1; mount -o remount,rw /r 2>&1 && echo remounted; touch /r/g 2>&1; ls -A /r | grep -v lost+found; true'
	expect_match "EROFS" "$OUT" "Read-only file system"
	[[ $OUT != *remounted* ]] || fail "guest root remounted the volume writable: $OUT"
	ml run --rootfs "$ROOTFS" -v @rov:/r -- ls -A /r
	expect_eq "nothing was written" "$OUT" "lost+found"
	"$ML" volume rm rov >/dev/null
}

t_volume_bad_input() {
	local n
	for n in ../x -x .x 'a/b' "$(printf 'v%.0s' $(seq 1 65))"; do
		ml volume create "$n"
		expect_one_line_error
	done
	ml volume create v0 --size 10
	expect_one_line_error
	expect_match "size" "$ERR" "expected 64 to 1048576 MB"
	"$ML" volume create v0 >/dev/null || fail "create"
	ml volume create v0
	expect_one_line_error
	expect_match "exists" "$ERR" "already exists"
	ml run --rootfs "$ROOTFS" -v @nope:/d -- true
	expect_one_line_error
	expect_match "missing" "$ERR" "volume nope: no such volume"
	ml run --rootfs "$ROOTFS" -v @v0:/d:overlay -- true
	expect_one_line_error
	expect_match "mode" "$ERR" "volume v0: mode overlay: expected ro or rw"
	ml run --rootfs "$ROOTFS" -v @v0:/d -v @v0:/d -- true
	expect_one_line_error
	mkdir -p "$T_OUT/folder"
	ml run --rootfs "$ROOTFS" -v "$T_OUT/folder:/w" -v @v0:/w/v -- true
	expect_one_line_error
	expect_match "under a folder" "$ERR" "guest path /w/v: a volume cannot be under a host folder's path /w"
	ml volume rm nope
	expect_one_line_error
	"$ML" volume rm v0 >/dev/null
	expect_clean
}

# RPC mounts with host "@NAME" (the Python SDK's with_volume), and resources.disk_size_mb.
t_volume_over_rpc() {
	local size
	"$ML" volume create rpcv --size 64 >/dev/null || fail "create"
	"$ML" run --rootfs "$ROOTFS" -v @rpcv:/v -- sh -c 'echo via-cli >/v/f' || fail "write"
	PYTHONPATH=$ROOT/sdk/python MATCHLOCK_BIN=$ML python3 - "$ROOTFS" >"$T_OUT/py" 2>&1 <<'PY' || fail "python: $(cat "$T_OUT/py")"
import sys
from matchlock import Client, Sandbox
with Client() as c:
    c.launch(Sandbox(sys.argv[1]).with_volume("rpcv", "/vol", "ro").with_disk_size(128))
    print(c.exec("df -m / | tail -n 1").stdout.decode().split()[1])
    print(c.exec("cat /vol/f").stdout.decode().strip())
PY
	expect_eq "rpc read the volume" "$(tail -n 1 "$T_OUT/py")" via-cli
	size=$(tail -n 2 "$T_OUT/py" | head -n 1)
	[ "$size" -gt 100 ] && [ "$size" -le 128 ] || fail "resources.disk_size_mb 128: / is $size MB"
	"$ML" volume rm rpcv >/dev/null || fail "rm after the client closed"
	"$ML" rm --stopped >/dev/null # the client's sandbox stays listed until removed
	expect_clean
}

run_tests "$@"
