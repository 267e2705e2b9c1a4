#!/bin/bash
# tests/run: root
# The file server (src/fs) through a real FUSE mount on the host, no VM: build/fs-mount-host
# serves a folder on a mount point and real programs (coreutils, git, python) work through it.
# Escape attempts run chrooted into the mount with busybox, as a guest sees it: the mount is
# their "/", so only a server that followed a symlink or a name on the host could reach the
# file outside the share. Needs root and /dev/fuse (skipped otherwise).
. "$(dirname "$0")/lib.sh"

FSM=${FSM:-$BUILD/fs-mount-host} # FSM=... runs another build of it (e.g. under ASan)
BUSYBOX=$ROOTFS/bin/busybox

# fs_mount [--ro] [-o OPTS]: a fresh share $SHARE served on $MNT (in a directory of its own, so that
# "../outside" from the mount is not the outside folder), a folder $OUTSIDE next to the share
# holding $OUTSIDE/secret, and a trap that unmounts when the test ends.
fs_mount() {
	[ "$(id -u)" = 0 ] || skip "mounting FUSE needs root"
	[ -c /dev/fuse ] || skip "no /dev/fuse"
	[ -x "$FSM" ] || fail "$FSM is missing (make fixtures)"
	local top
	top=$(mktemp -d /tmp/matchlock-fs.XXXXXX)
	SHARE=$top/share OUTSIDE=$top/outside MNT=$top/m/mnt
	mkdir -p "$SHARE" "$OUTSIDE" "$MNT"
	SECRET="canary-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	echo "$SECRET" >"$OUTSIDE/secret"
	chmod 600 "$OUTSIDE/secret"
	"$FSM" "$@" "$SHARE" "$MNT" >"$top/fsm.log" 2>&1 &
	FSM_PID=$!
	# Only the test's own shell cleans up (background subshells inherit the trap).
	trap '[ $BASHPID = '$BASHPID' ] && { umount -l "$MNT" 2>/dev/null; wait $FSM_PID 2>/dev/null; rm -rf "'"$top"'"; }' EXIT
	local i
	for i in $(seq 100); do grep -qs ready "$top/fsm.log" && break; sleep 0.05; done
	grep -qs ready "$top/fsm.log" || fail "fs-mount-host did not start: $(cat "$top/fsm.log")"
}

# The file outside the share still holds exactly the canary, and no output of ours shows it.
expect_outside_untouched() {
	expect_eq "outside file" "$(cat "$OUTSIDE/secret")" "$SECRET"
	expect_eq "outside folder" "$(ls -A "$OUTSIDE")" "secret"
	if grep -rqF -- "$SECRET" "$@" 2>/dev/null; then fail "the canary was read: $*"; fi
}

# Run busybox chrooted into the mount: the mount is the process's whole file system.
in_mount() {
	mkdir -p "$SHARE/bin"
	[ -x "$SHARE/bin/busybox" ] || cp "$BUSYBOX" "$SHARE/bin/busybox"
	chroot "$MNT" /bin/busybox "$@"
}

t_fs_files_and_attributes() {
	fs_mount
	echo hello >"$MNT/a" || fail "create"
	expect_eq "read back on the host" "$(cat "$SHARE/a")" hello
	printf 'more' >>"$MNT/a"
	expect_eq "append" "$(cat "$MNT/a")" "$(printf 'hello\nmore')"
	dd if=/dev/urandom of="$SHARE/big" bs=1M count=3 status=none
	cmp "$SHARE/big" "$MNT/big" || fail "a 3 MB file reads back differently"
	dd if=/dev/urandom of="$MNT/big2" bs=200k count=7 status=none
	cmp "$SHARE/big2" "$MNT/big2" || fail "a 1.4 MB write lands differently"
	mv "$MNT/a" "$MNT/b" && [ ! -e "$SHARE/a" ] && [ -f "$SHARE/b" ] || fail "rename"
	chmod 640 "$MNT/b"
	expect_eq "chmod" "$(stat -c %a "$SHARE/b")" 640
	chmod 4755 "$MNT/b"
	expect_eq "no set-user-id bit reaches the host" "$(stat -c %a "$SHARE/b")" 755
	truncate -s 3 "$MNT/b"
	expect_eq "truncate" "$(cat "$SHARE/b")" hel
	touch -m -d '2001-02-03 04:05:06' "$MNT/b"
	expect_eq "utimens" "$(stat -c %Y "$SHARE/b")" "$(date -d '2001-02-03 04:05:06' +%s)"
	touch "$MNT/b"
	[ "$(stat -c %Y "$SHARE/b")" -gt 1000000000 ] || fail "utimens now"
	chown 1234:1234 "$MNT/b" || fail "chown is accepted"
	expect_eq "chown leaves the host owner" "$(stat -c %u:%g "$SHARE/b")" 0:0
	ln -s b "$MNT/sl" && ln "$MNT/b" "$MNT/hl" || fail "symlink, link"
	expect_eq "readlink" "$(readlink "$MNT/sl")" b
	expect_eq "link count" "$(stat -c %h "$MNT/b")" 2
	expect_eq "same inode" "$(stat -c %i "$SHARE/hl")" "$(stat -c %i "$SHARE/b")"
	mkdir -p "$MNT/d/e" && rmdir "$MNT/d/e" && rm "$MNT/hl" || fail "mkdir, rmdir, unlink"
	mkfifo "$MNT/fifo" || fail "mkfifo"
	mknod "$MNT/null" c 1 3 2>/dev/null && fail "a device node was created"
	[ ! -e "$SHARE/null" ] || fail "a device node is on the host"
	df "$MNT" >/dev/null || fail "statfs"
	cp -a "$ROOT/tests" "$MNT/tests-copy" 2>"$T_OUT/cp.err" || fail "cp -a: $(head -3 "$T_OUT/cp.err")"
	diff -r "$ROOT/tests" "$SHARE/tests-copy" >/dev/null || fail "cp -a copied something else"
	expect_eq "cp -a keeps modes" "$(stat -c %a "$SHARE/tests-copy/run")" "$(stat -c %a "$ROOT/tests/run")"
	python3 - "$MNT" <<'EOF' || fail "rename2 / exchange"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
d = sys.argv[1]
open(d + "/x1", "w").write("1"); open(d + "/x2", "w").write("2")
AT_FDCWD, NOREPLACE, EXCHANGE = -100, 1, 2
r = libc.renameat2(AT_FDCWD, (d + "/x1").encode(), AT_FDCWD, (d + "/x2").encode(), NOREPLACE)
assert r == -1 and ctypes.get_errno() == 17, "RENAME_NOREPLACE replaced"
r = libc.renameat2(AT_FDCWD, (d + "/x1").encode(), AT_FDCWD, (d + "/x2").encode(), EXCHANGE)
assert r == 0, os.strerror(ctypes.get_errno())
assert open(d + "/x1").read() == "2" and open(d + "/x2").read() == "1"
EOF
}

t_fs_xattrs_user_only() {
	fs_mount
	echo x >"$MNT/f"
	python3 - "$MNT/f" "$SHARE/f" <<'EOF' || fail "xattrs"
import errno, os, sys
m, h = sys.argv[1], sys.argv[2]
os.setxattr(m, "user.k", b"v1")
assert os.getxattr(h, "user.k") == b"v1"
assert os.getxattr(m, "user.k") == b"v1"
os.setxattr(h, "trusted.hidden", b"t")
assert os.listxattr(m) == ["user.k"], os.listxattr(m)
for name in ("trusted.x", "security.x", "system.x"):
    try:
        os.setxattr(m, name, b"1")
        raise SystemExit("set " + name)
    except OSError as e:
        assert e.errno == errno.EOPNOTSUPP, e
try:
    os.getxattr(m, "trusted.hidden")
    raise SystemExit("trusted.* was visible")
except OSError as e:
    assert e.errno == errno.ENODATA, e
os.removexattr(m, "user.k")
assert os.listxattr(h) == ["trusted.hidden"], os.listxattr(h)
EOF
}

t_fs_readdir_types_and_many_files() {
	fs_mount
	mkdir "$SHARE/dir" && touch "$SHARE/file" && ln -s file "$SHARE/link" && mkfifo "$SHARE/fifo"
	mkdir "$SHARE/many"
	(cd "$SHARE/many" && seq 1500 | sed 's/^/file-with-a-longish-name-/' | xargs touch)
	expect_eq "entries" "$(ls -A "$MNT/many" | wc -l)" 1500
	expect_eq "same names" "$(ls -A "$MNT/many" | sort | md5sum)" "$(ls -A "$SHARE/many" | sort | md5sum)"
	expect_eq "types" "$(cd "$MNT" && find . -maxdepth 1 -printf '%y %p\n' | sort | tr '\n' ' ')" \
		"d . d ./dir d ./many f ./file l ./link p ./fifo "
	expect_eq "ls -l" "$(ls -l "$MNT" | awk 'NR > 1 { print substr($1, 1, 1) $9 }' | tr '\n' ' ')" \
		"ddir pfifo -file llink dmany "
}

t_fs_git_round_trip() {
	fs_mount
	command -v git >/dev/null || skip "no git"
	local g=(git -c user.email=t@example.com -c user.name=t -c init.defaultBranch=main)
	(
		cd "$MNT" && "${g[@]}" init -q repo && cd repo &&
			mkdir -p src && echo 'int main(void) { return 0; }' >src/main.c &&
			echo readme >README && "${g[@]}" add -A && "${g[@]}" commit -qm first &&
			echo change >>README && "${g[@]}" commit -qam second &&
			"${g[@]}" checkout -q HEAD~1 -- README && [ "$(cat README)" = readme ] &&
			"${g[@]}" checkout -q HEAD -- README && "${g[@]}" branch -q side &&
			"${g[@]}" checkout -q side
	) || fail "git through the mount"
	expect_eq "status" "$(cd "$MNT/repo" && git status --porcelain)" ""
	expect_eq "log" "$(cd "$MNT/repo" && git log --format=%s | tr '\n' ' ')" "second first "
	expect_eq "host sees the same repository" "$(cd "$SHARE/repo" && git fsck --no-progress 2>&1 && git log --format=%s | head -1)" "second"
}

t_fs_read_only_share_refuses_writes() {
	fs_mount --ro
	echo keep >"$SHARE/f"
	mkdir "$SHARE/d"
	local err
	err=$(echo x 2>&1 >"$MNT/new")
	expect_match "create" "$err" "Read-only file system"
	err=$(echo x 2>&1 >"$MNT/f")
	expect_match "open for writing" "$err" "Read-only file system"
	rm "$MNT/f" 2>/dev/null && fail "unlink"
	mv "$MNT/f" "$MNT/g" 2>/dev/null && fail "rename"
	chmod 777 "$MNT/f" 2>/dev/null && fail "chmod"
	mkdir "$MNT/e" 2>/dev/null && fail "mkdir"
	ln -s f "$MNT/s" 2>/dev/null && fail "symlink"
	python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.a", b"1")' "$MNT/f" 2>/dev/null && fail "setxattr"
	expect_eq "reads work" "$(cat "$MNT/f")" keep
	expect_eq "host unchanged" "$(ls -A "$SHARE" | tr '\n' ' ')$(cat "$SHARE/f")" "d f keep"
}

# Symlinks in the share pointing at / and at the outside file (absolute, and relative with ..),
# opened for reading and writing from a process whose root is the mount.
t_fs_escape_symlinks_and_links() {
	fs_mount
	local out=$T_OUT/escape
	mkdir -p "$out"
	ln -s / "$SHARE/to-root"
	ln -s "$OUTSIDE/secret" "$SHARE/abs"
	ln -s ../outside/secret "$SHARE/rel"
	ln -s ../../../../../../.. "$SHARE/up"
	mkdir -p "$SHARE/sub"
	ln -s ../../outside "$SHARE/sub/updir"
	local p
	for p in /to-root"$OUTSIDE"/secret /abs /rel /up"$OUTSIDE"/secret /sub/updir/secret \
		/../outside/secret /../../"$OUTSIDE"/secret; do
		in_mount cat "$p" >>"$out/read" 2>&1
		in_mount sh -c "echo pwned > '$p'" >>"$out/read" 2>&1
	done
	# A hard link to the outside file cannot be made into the share.
	ln "$OUTSIDE/secret" "$MNT/hard" 2>>"$out/read" && fail "a hard link to an outside file"
	expect_outside_untouched "$out" "$SHARE"
	[ ! -e "$SHARE/hard" ] || fail "hard link landed"
}

# A directory swapped for a symlink to the outside folder while a reader opens files through
# it, for 3 s: no open through the mount may ever reach the outside file.
t_fs_escape_rename_race() {
	fs_mount
	local out=$T_OUT/race
	mkdir -p "$out" "$SHARE/d"
	echo inside >"$SHARE/d/secret"
	ln -s "$OUTSIDE" "$SHARE/abs-link"
	ln -s ../outside "$SHARE/rel-link"
	in_mount true
	in_mount sh -c '
		b=/bin/busybox end=$(($($b date +%s) + 3))
		while [ "$($b date +%s)" -lt "$end" ]; do
			$b mv /d /d.real; $b mv /abs-link /d; $b mv /d /abs-link
			$b mv /rel-link /d; $b mv /d /rel-link; $b mv /d.real /d
		done' >"$out/swap" 2>&1 &
	local swapper=$!
	in_mount sh -c '
		b=/bin/busybox end=$(($($b date +%s) + 3))
		while [ "$($b date +%s)" -lt "$end" ]; do
			$b cat /d/secret; echo pwned >> /d/secret
		done' >"$out/read" 2>&1 &
	local reader=$!
	wait $swapper $reader
	grep -q inside "$out/read" || fail "the reader never read the inside file: $(head -3 "$out/read")"
	expect_outside_untouched "$out/read" "$out/swap"
}

# With default_permissions (as a guest mount may use) the kernel checks modes against the caller
# using the attributes the server reports: another user reads a 0644 file but cannot write it.
t_fs_default_permissions() {
	fs_mount -o default_permissions
	chmod 755 "${MNT%/m/mnt}" # mktemp -d made it 0700
	echo keep >"$MNT/f"
	chmod 644 "$MNT/f"
	expect_eq "nobody reads" "$(su nobody -s /bin/sh -c "cat '$MNT/f'")" keep
	su nobody -s /bin/sh -c "echo x > '$MNT/f'" 2>/dev/null && fail "nobody wrote a 0644 root file"
	expect_eq "unchanged" "$(cat "$SHARE/f")" keep
}

t_fs_server_survives_unmount_and_remount() {
	fs_mount
	echo a >"$MNT/f"
	umount "$MNT" || fail "umount"
	wait $FSM_PID || fail "fs-mount-host did not exit cleanly after umount"
	expect_eq "host file" "$(cat "$SHARE/f")" a
}

run_tests "$@"
