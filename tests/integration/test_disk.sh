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
	pid=$(pgrep -f "qemu-system.*file=$1" | head -n 1)
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

run_tests "$@"
