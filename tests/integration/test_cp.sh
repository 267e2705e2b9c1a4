#!/bin/bash
# matchlock cp and diff in real sandboxes: a tree with modes, a symlink, an empty directory and a
# 20 MB file round-trips host -> guest -> host (hashes equal), docker-cp placement, a hostile
# guest tree (a symlink to /etc, absolute and climbing symlinks, odd names) copied out writes
# nothing outside the destination, errors are one line; an agent-like edit in an overlay mount
# (add, change, delete, rename) shows in diff, leaves the host folder unchanged until --apply,
# and after --apply the host tree equals the guest's view.
. "$(dirname "$0")/lib.sh"

# A tree's identity: every path, type, mode, mtime (whole seconds), symlink target and content.
tree_hash() {
	(cd "$1" && find . -mindepth 1 -printf '%p %y %m %TY%Tm%Td%TH%TM%TS %l\n' | sed 's/\.[0-9]* / /' |
		LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum) |
		sha256sum | cut -c1-64
}

# A listing of the same identity, the same inside the guest (no mtimes: busybox find has no -printf).
guest_hash_cmd='cd "$0" && (find . -mindepth 1 | LC_ALL=C sort | while read -r p; do
	if [ -L "$p" ]; then echo "$p l $(readlink "$p")"; elif [ -d "$p" ]; then echo "$p d";
	else echo "$p f $(stat -c %a "$p") $(sha256sum <"$p" | cut -c1-64)"; fi; done)'
host_hash_nomtime() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort | while read -r p; do
		if [ -L "$p" ]; then echo "$p l $(readlink "$p")"; elif [ -d "$p" ]; then echo "$p d";
		else echo "$p f $(stat -c %a "$p") $(sha256sum <"$p" | cut -c1-64)"; fi
	done)
}

start() {
	ID=$("$ML" run -d --rootfs "$ROOTFS" "$@") || fail "run -d"
}

t_round_trip_modes_symlinks_empty_dir_20mb() {
	local s=$T_OUT/src
	mkdir -p "$s/sub/deep" "$s/empty"
	echo hello >"$s/a.txt"
	chmod 640 "$s/a.txt"
	printf '#!/bin/sh\n' >"$s/tool.sh"
	chmod 755 "$s/tool.sh"
	head -c 20000000 /dev/urandom >"$s/sub/big"
	ln -s ../a.txt "$s/sub/link"
	echo deep >"$s/sub/deep/f"
	chmod 700 "$s/sub/deep"
	chmod 750 "$s/empty"
	touch -d '2001-02-03 04:05:06' "$s/a.txt" "$s/sub/big" "$s/empty" "$s/sub/deep"
	start
	ml cp "$s" "$ID:/tmp/in"
	expect_eq "cp in ($ERR)" "$RC" 0
	ml exec "$ID" -- sh -c 'stat -c "%a %Y" /tmp/in/a.txt /tmp/in/empty /tmp/in/sub/deep; readlink /tmp/in/sub/link'
	expect_eq "modes and times in the guest" "$OUT" "640 981173106
750 981173106
700 981173106
../a.txt"
	ml cp "$ID:/tmp/in" "$T_OUT/back"
	expect_eq "cp out ($ERR)" "$RC" 0
	expect_eq "the tree came back identical" "$(tree_hash "$T_OUT/back")" "$(tree_hash "$s")"
	# Into an existing directory: by name; SRC/. : the entries.
	mkdir "$T_OUT/into" "$T_OUT/entries"
	ml cp "$ID:/tmp/in" "$T_OUT/into"
	expect_eq "into a directory ($ERR)" "$(tree_hash "$T_OUT/into/in")" "$(tree_hash "$s")"
	ml cp "$ID:/tmp/in/." "$T_OUT/entries"
	expect_eq "entries ($ERR)" "$(tree_hash "$T_OUT/entries")" "$(tree_hash "$s")"
	# A single file, to a new name and over an existing file.
	ml cp "$ID:/tmp/in/a.txt" "$T_OUT/one"
	expect_eq "one file ($ERR)" "$(cat "$T_OUT/one") $(stat -c %a "$T_OUT/one")" "hello 640"
	ml cp "$T_OUT/one" "$ID:/tmp/in/tool.sh"
	ml exec "$ID" -- cat /tmp/in/tool.sh
	expect_eq "over a file in the guest" "$OUT" hello
	"$ML" kill "$ID" >/dev/null
}

t_hostile_guest_tree_stays_in_destination() {
	local d=$T_OUT/dest canary=$T_OUT/canary
	mkdir -p "$canary"
	echo safe >"$canary/file"
	start
	ml exec "$ID" -- sh -c "mkdir -p /tmp/h/d && ln -s /etc /tmp/h/etc && ln -s ../../.. /tmp/h/up &&
		ln -s $canary /tmp/h/abs && ln -s $canary/file /tmp/h/d/f && echo x >'/tmp/h/d/..x' &&
		echo y >'/tmp/h/d/a b'"
	expect_eq "guest tree ($ERR)" "$RC" 0
	local before
	before=$(tree_hash "$canary")
	ml cp "$ID:/tmp/h" "$d"
	expect_eq "copied ($ERR)" "$RC" 0
	expect_eq "symlinks stay symlinks" "$(readlink "$d/etc") $(readlink "$d/abs")" "/etc $canary"
	expect_eq "odd names are names" "$(cat "$d/d/..x")" x
	# Again over the same destination: the symlinks there are replaced, never followed.
	ml exec "$ID" -- sh -c 'rm /tmp/h/etc /tmp/h/abs /tmp/h/d/f && mkdir /tmp/h/etc /tmp/h/abs &&
		echo pwned >/tmp/h/etc/passwd-matchlock && echo pwned >/tmp/h/abs/file && echo pwned >/tmp/h/d/f'
	ml cp "$ID:/tmp/h" "$T_OUT"
	ml cp "$ID:/tmp/h/." "$d"
	expect_eq "second copy ($ERR)" "$RC" 0
	[ ! -e /etc/passwd-matchlock ] || fail "wrote into /etc"
	expect_eq "the canary is untouched" "$(tree_hash "$canary")" "$before"
	expect_eq "the file replaced the symlink" "$(cat "$d/d/f") $(stat -c %F "$d/d/f")" "pwned regular file"
	"$ML" kill "$ID" >/dev/null
}

t_errors_are_one_line() {
	ml cp vm-ffffffff:/x "$T_OUT/x"
	expect_one_line_error
	ml cp "$T_OUT/nothing" "$T_OUT/x"
	expect_one_line_error
	start
	ml cp "$ID:relative" "$T_OUT/x"
	expect_one_line_error
	ml cp "$ID:/no/such/path" "$T_OUT/x"
	expect_eq "missing guest path" "$RC" 1
	expect_match "names it" "$ERR" "^matchlock: cp: /no/such/path: No such file or directory$"
	ml cp "$T_OUT/no-such" "$ID:/tmp"
	expect_eq "missing host path" "$RC" 1
	expect_match "names it" "$ERR" "^matchlock: cp: .*no-such: No such file or directory$"
	ml cp "$ID:/etc" "$T_OUT/missing-parent/x"
	expect_eq "missing destination parent" "$RC" 1
	[ "$(printf '%s\n' "$ERR" | grep -c .)" = 1 ] || fail "one line: $ERR"
	ml diff "$ID" /nowhere
	expect_eq "diff of no mount" "$RC" 1
	"$ML" kill "$ID" >/dev/null
}

t_diff_and_apply_overlay_changes() {
	local w=$T_OUT/ws
	mkdir -p "$w/src" "$w/old" "$w/keep"
	echo a >"$w/keep/k"
	echo b >"$w/change.txt"
	echo c >"$w/del.txt"
	echo d >"$w/src/mv.txt"
	echo e >"$w/old/x"
	local before
	before=$(tree_hash "$w")
	start -v "$w:/ws"
	ml exec "$ID" -- sh -c 'cd /ws && echo new >add.txt && echo more >>change.txt && rm del.txt &&
		mv src/mv.txt src/moved.txt && rm -rf old && mkdir old && echo y >old/y &&
		mkdir -p n && ln -s ../keep/k n/l && chmod 600 add.txt'
	expect_eq "agent edit ($ERR)" "$RC" 0
	ml diff "$ID"
	expect_eq "diff ($ERR)" "$RC" 0
	local sorted
	sorted=$(printf '%s\n' "$OUT" | LC_ALL=C sort)
	expect_eq "the changes" "$sorted" "A /ws/add.txt
A /ws/n
A /ws/n/l
A /ws/old/y
A /ws/src/moved.txt
C /ws/change.txt
C /ws/old
C /ws/src
D /ws/del.txt
D /ws/src/mv.txt"
	expect_eq "the host folder is unchanged" "$(tree_hash "$w")" "$before"
	# The guest's view, before anything changes under its overlay.
	ml exec "$ID" -- sh -c "$guest_hash_cmd" /ws
	expect_eq "guest view ($ERR)" "$RC" 0
	local view=$OUT
	# To another directory first (a copy of the folder), then to the folder itself.
	cp -a "$w" "$T_OUT/copy"
	ml diff "$ID" /ws --apply --to "$T_OUT/copy"
	expect_eq "apply --to ($ERR)" "$RC" 0
	expect_eq "the folder is still unchanged" "$(tree_hash "$w")" "$before"
	local inode
	inode=$(stat -c %i "$w/change.txt")
	ml diff "$ID" --apply
	expect_eq "apply ($ERR)" "$RC" 0
	expect_eq "host tree equals the guest's view" "$(host_hash_nomtime "$w")" "$view"
	expect_eq "--to got the same" "$(host_hash_nomtime "$T_OUT/copy")" "$view"
	expect_eq "a mode came along" "$(stat -c %a "$w/add.txt")" 600
	# A changed file is rewritten in place: the sandbox's copy-up keeps its origin and still
	# reads once the guest's caches have expired (a renamed one does not: spec/cli.md).
	expect_eq "same inode" "$(stat -c %i "$w/change.txt")" "$inode"
	sleep 2
	ml exec "$ID" -- cat /ws/change.txt
	expect_eq "the guest still reads it ($ERR)" "$OUT" "b
more"
	"$ML" kill "$ID" >/dev/null
}

# A client that dies mid-copy (both ways): the transfer is cancelled in the guest, the sandbox
# keeps serving, and the next copies and execs work (nothing of the dead copy reaches them).
t_client_killed_mid_copy() {
	start --memory 768
	ml exec "$ID" -- sh -c 'head -c 150000000 /dev/zero >/tmp/big'
	expect_eq "guest file ($ERR)" "$RC" 0
	local i pid
	for i in 1 2 3; do
		"$ML" cp "$ID:/tmp/big" "$T_OUT/partial$i" 2>/dev/null &
		pid=$!
		sleep 0.$((i * 2))
		kill -9 $pid 2>/dev/null
		wait $pid 2>/dev/null
	done
	head -c 30000000 /dev/zero >"$T_OUT/in.bin"
	"$ML" cp "$T_OUT/in.bin" "$ID:/tmp/in.bin" 2>/dev/null &
	pid=$!
	sleep 0.3
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	echo hello >"$T_OUT/small"
	ml cp "$T_OUT/small" "$ID:/tmp/small"
	expect_eq "a copy after the cancelled ones ($ERR)" "$RC" 0
	ml exec "$ID" -- cat /tmp/small
	expect_eq "exec after them" "$OUT" hello
	ml cp "$ID:/tmp/small" "$T_OUT/small.back"
	expect_eq "and out ($ERR)" "$(cat "$T_OUT/small.back")" hello
	"$ML" kill "$ID" >/dev/null
}

run_tests "$@"
