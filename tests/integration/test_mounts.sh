#!/bin/bash
# Host folders in real sandboxes (-v HOST[:GUEST][:ro|rw|overlay]): writes through rw keep
# content and modes, ro refuses writes, overlay leaves the host tree byte-identical while the
# guest sees its own writes, git works on a mount, escape attempts by guest root never reach or
# read a canary outside the folder, bad input is one line and exit 125, and snapshot starts and
# -d sandboxes get their mounts.
. "$(dirname "$0")/lib.sh"

# A tree's identity: every path, type, mode, symlink target and file content.
tree_hash() {
	(cd "$1" && find . -printf '%p %y %m %l\n' | LC_ALL=C sort &&
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum) | sha256sum
}

# A folder to share with a few files, a subdirectory and an executable.
make_tree() {
	mkdir -p "$1/sub"
	echo hello >"$1/a.txt"
	printf 'x%.0s' $(seq 1 5000) >"$1/sub/b.txt"
	printf '#!/bin/sh\necho ran\n' >"$1/tool.sh"
	chmod 755 "$1/tool.sh"
}

t_rw_round_trip_keeps_content_and_modes() {
	local d=$T_OUT/rw
	make_tree "$d"
	ml run --rootfs "$ROOTFS" -v "$d:/work:rw" -- sh -c '
		cat /work/a.txt && /work/tool.sh &&
		echo written >/work/new.txt && chmod 640 /work/new.txt &&
		mkdir -m 711 /work/dir && echo deep >/work/dir/f &&
		ln -s a.txt /work/link && mv /work/sub/b.txt /work/sub/c.txt &&
		rm /work/a.txt && dd if=/dev/zero of=/work/big bs=64k count=64 2>/dev/null &&
		sha256sum /work/big | cut -c1-64'
	expect_eq "status ($ERR)" "$RC" 0
	expect_match "guest read the host's files" "$OUT" "^hello
ran
"
	expect_eq "new file" "$(cat "$d/new.txt")" written
	expect_eq "its mode" "$(stat -c %a "$d/new.txt")" 640
	expect_eq "directory mode" "$(stat -c %a "$d/dir")" 711
	expect_eq "nested file" "$(cat "$d/dir/f")" deep
	expect_eq "symlink" "$(readlink "$d/link")" a.txt
	[ -f "$d/sub/c.txt" ] && [ ! -e "$d/sub/b.txt" ] || fail "rename did not reach the host"
	[ ! -e "$d/a.txt" ] || fail "unlink did not reach the host"
	expect_eq "4 MB written in 64 KB writes" "$(sha256sum <"$d/big" | cut -c1-64)" \
		"$(printf '%s\n' "$OUT" | tail -n 1)"
	expect_clean
}

# cat splices from the file into its output pipe while the agent reads that pipe: the relay
# must not wait behind the agent (the reason it is a process of its own). This hung before.
t_cat_and_read_of_big_files() {
	local d=$T_OUT/big
	mkdir -p "$d"
	head -c 3000000 /dev/urandom >"$d/blob"
	# Then four readers at once: many requests in flight on one stream.
	ml run --rootfs "$ROOTFS" -v "$d:/work:ro" -- sh -c 'cat /work/blob | sha256sum | cut -c1-64
		for i in 1 2 3 4; do (cat /work/blob | sha256sum | cut -c1-64 >/tmp/h$i) & done; wait
		cat /tmp/h1 /tmp/h2 /tmp/h3 /tmp/h4 | uniq -c'
	expect_eq "status ($ERR)" "$RC" 0
	local want
	want=$(sha256sum <"$d/blob" | cut -c1-64)
	expect_eq "content through cat, alone and four at once" "$(printf '%s\n' "$OUT" | tr -s ' ')" "$want
 4 $want"
}

# GNU cat of a large file: many 128 KiB reads in flight while replies drain, which once moved the
# supervisor's reply queue under a record whose length was not yet written (the relay then saw
# an oversized record and ended).
t_gnu_cat_of_a_large_file() {
	ML="$ML" "$ROOT/scripts/default-image.sh" >/dev/null 2>&1 || skip "no default image (make default-image)"
	local d=$T_OUT/large
	mkdir -p "$d"
	head -c 100000000 /dev/urandom >"$d/blob"
	ml run --image matchlock/default -v "$d:/work:ro" -- sh -c 'cat /work/blob | sha256sum | cut -c1-64'
	expect_eq "status ($ERR)" "$RC" 0
	expect_eq "content" "$OUT" "$(sha256sum <"$d/blob" | cut -c1-64)"
	rm -rf "$d"
}

t_ro_refuses_writes() {
	local d=$T_OUT/ro before
	make_tree "$d"
	before=$(tree_hash "$d")
	# HOST:MODE: the workspace, moved by --workspace.
	ml run --rootfs "$ROOTFS" --workspace /w -v "$d:ro" -- sh -c '
		cat /w/a.txt
		for op in "echo x >/w/a.txt" "echo x >/w/new" "mkdir /w/d" "rm /w/a.txt" \
			"chmod 600 /w/a.txt" "mv /w/a.txt /w/b" "ln -s x /w/l" "touch /w/a.txt"; do
			eval "$op" 2>/tmp/e && echo "ALLOWED: $op"
			grep -q "Read-only file system" /tmp/e || echo "NOT EROFS: $op: $(cat /tmp/e)"
		done'
	expect_eq "status ($ERR)" "$RC" 0
	expect_eq "reads work, every write fails with EROFS" "$OUT" hello
	expect_eq "host tree unchanged" "$(tree_hash "$d")" "$before"
}

t_overlay_leaves_host_identical() {
	local d=$T_OUT/ov before
	make_tree "$d"
	before=$(tree_hash "$d")
	# The default mode, at the default workspace.
	ml run --rootfs "$ROOTFS" -v "$d" -- sh -c '
		cd /workspace && echo changed >a.txt && echo new >new.txt && chmod 600 tool.sh &&
		rm sub/b.txt && mkdir more && mv new.txt more/ && ln -s a.txt l &&
		cat a.txt more/new.txt l && stat -c %a tool.sh && ls sub | wc -l'
	expect_eq "status ($ERR)" "$RC" 0
	expect_eq "the guest sees its own writes" "$OUT" "changed
new
changed
600
0"
	expect_eq "host tree byte-identical" "$(tree_hash "$d")" "$before"
}

t_git_round_trip() {
	ML="$ML" "$ROOT/scripts/default-image.sh" >/dev/null 2>&1 || skip "no default image (make default-image)"
	local d=$T_OUT/repo
	mkdir -p "$d"
	ml run --image matchlock/default -v "$d:/repo:rw" -w /repo -- sh -ec '
		git init -q -b main . && git config user.email t@example.com && git config user.name t
		echo one >f && git add f && git commit -qm first
		git checkout -qb topic && echo two >f && git commit -qam second
		git checkout -q main && cat f
		echo dirty >>f && git status --porcelain && git checkout -- f && git status --porcelain
		git log --oneline --all | wc -l'
	expect_eq "status ($ERR)" "$RC" 0
	expect_eq "checkout, status, log inside" "$OUT" "one
 M f
2"
	if command -v git >/dev/null; then
		expect_eq "the host sees the commits" \
			"$(git -C "$d" log --format=%s --all | LC_ALL=C sort | tr '\n' ' ')" "first second "
		git -C "$d" fsck >/dev/null 2>&1 || fail "the repository is not consistent on the host"
	fi
}

# Guest root tries to reach a canary next to the shared folder, on a rw and an overlay mount of
# the same folder: symlinks to / and to the canary (made in the guest and on the host), '..',
# hard links, and a rename/symlink swap race for a few seconds.
t_escape_attempts_from_guest_root() {
	local base=$T_OUT/esc d out before_canary before_outside secret
	d=$base/share
	mkdir -p "$d/dir" "$base/outside"
	secret="CANARY-$RANDOM$RANDOM-$$"
	echo "$secret" >"$base/outside/canary"
	chmod 666 "$base/outside/canary"
	ln -s ../outside/canary "$d/rel"
	ln -s "$base/outside/canary" "$d/abs"
	ln -s / "$d/root"
	echo inside >"$d/dir/f"
	before_canary=$(sha256sum <"$base/outside/canary")
	before_outside=$( (ls -la --time-style=full-iso "$base/outside"; ls "$base") | md5sum)
	ml run --rootfs "$ROOTFS" -v "$d:/rw:rw" -v "$d:/ov:overlay" -e "C=$base/outside/canary" -- sh -c '
		for m in /rw /ov; do
			cat $m/rel $m/abs $m/root$C $m/../outside/canary $m/dir/../../outside/canary
			echo owned >$m/rel; echo owned >$m/abs; echo owned >$m/root$C
			ln -s / $m/groot; cat $m/groot$C; ln -s $C $m/gabs; cat $m/gabs; echo owned >$m/gabs
			ln $m/rel $m/hard && cat $m/hard; ln $m/abs $m/hard2 && echo owned >$m/hard2
			ln /etc/passwd $m/hl3
		done 2>/dev/null
		# The race: swap a directory for symlinks to / and to the canary while reading through it.
		end=$(($(date +%s) + 3))
		for m in /rw /ov; do
			mkdir -p $m/race && echo safe >$m/race/canary
			( while [ $(date +%s) -lt $end ]; do
				mv $m/race $m/race.d; ln -s / $m/race; rm $m/race; ln -s $C $m/race
				rm $m/race; mv $m/race.d $m/race
			done ) 2>/dev/null &
		done
		n=0
		while [ $(date +%s) -lt $end ]; do
			for m in /rw /ov; do
				cat $m/race/canary $m/race$C $m/race; echo owned >$m/race/canary
			done
			n=$((n + 1))
		done 2>/dev/null
		wait
		echo "rounds $n"'
	expect_eq "status ($ERR)" "$RC" 0
	[[ $OUT != *"$secret"* ]] || fail "the canary was read into the guest: $OUT"
	expect_match "the race ran" "$OUT" "rounds [1-9]"
	expect_eq "canary unchanged" "$(sha256sum <"$base/outside/canary")" "$before_canary"
	expect_eq "nothing new outside the folder" \
		"$( (ls -la --time-style=full-iso "$base/outside"; ls "$base") | md5sum)" "$before_outside"
	# What the guest did make on rw is inside the folder, as links the host never followed.
	expect_eq "symlink made by the guest" "$(readlink "$d/groot")" /
}

t_bad_input_is_one_line_and_exit_125() {
	local d=$T_OUT/bad
	mkdir -p "$d"
	echo f >"$T_OUT/file"
	local -a cases=(
		"-v $T_OUT/missing:/w|host folder $T_OUT/missing: No such file or directory"
		"-v $T_OUT/file:/w|host folder $T_OUT/file: not a directory"
		"-v $d:w|guest path w: expected an absolute path"
		"-v $d:/a/../b|guest path /a/../b: expected a normalised path"
		"-v $d:/w/|guest path /w/: expected a normalised path"
		"-v $d:/w -v $d:/w:ro|guest path /w: two host folders mounted on it"
		"-v $d:/proc|guest path /proc: reserved"
		"-v $d:/dev/x|guest path /dev/x: reserved"
		"-v $d:/run/matchlock/share|guest path /run/matchlock/share: reserved"
		"-v $d:/|guest path /: reserved"
		"-v $d:/w:rx|mount mode rx: expected ro, rw or overlay"
		"--workspace rel -v $d|guest path rel: expected an absolute path"
	)
	local c
	for c in "${cases[@]}"; do
		# shellcheck disable=SC2086
		ml run --rootfs "$ROOTFS" ${c%%|*} -- true
		expect_one_line_error
		[[ $ERR == *"${c#*|}"* ]] || fail "${c%%|*}: got [$ERR], want [${c#*|}]"
		expect_clean
	done
}

# A mount point the guest cannot create (a file in the image) fails the start with the guest's
# reason, and costs nothing else: the template stays, the next start restores it.
t_guest_mount_failure_is_reported() {
	local d=$T_OUT/mf
	mkdir -p "$d"
	"$ML" run --rootfs "$ROOTFS" -- true || fail "warm-up run"
	ml run --rootfs "$ROOTFS" -v "$d:/bin/sh/x:rw" -- true
	expect_one_line_error
	expect_match "the guest's reason" "$ERR" "creating the mount point /bin/sh/x: Not a directory"
	expect_clean
	local t
	t=$(MATCHLOCK_TIMING=1 "$ML" run --rootfs "$ROOTFS" -v "$d:/w" -- true 2>&1 >/dev/null)
	expect_match "the next start restores the template" "$t" "restored=1"
}

# A sandbox restored from a template gets its mounts through CTL_CONFIG; -d sandboxes keep them
# for every exec, and get/inspect show them.
t_snapshot_and_detached_starts() {
	local d=$T_OUT/snap id t
	make_tree "$d"
	"$ML" run --rootfs "$ROOTFS" -- true || fail "warm-up run"
	t=$(MATCHLOCK_TIMING=1 "$ML" run --rootfs "$ROOTFS" -v "$d:/data:ro" -- cat /data/a.txt 2>&1)
	expect_match "restored with the mount" "$t" "^hello
.*restored=1"
	id=$("$ML" run -d --rootfs "$ROOTFS" --workspace /src -v "$d" -v "$d:/rw:rw") || fail "run -d"
	ml exec "$id" sh -c 'echo from-exec >/rw/e.txt; cat /src/a.txt; echo x >/src/a.txt; cat /src/a.txt'
	expect_eq "exec sees the mounts ($ERR)" "$OUT" "hello
x"
	expect_eq "rw write reached the host" "$(cat "$d/e.txt")" from-exec
	expect_eq "overlay write did not" "$(cat "$d/a.txt")" hello
	ml get "$id"
	expect_match "get shows the mounts" "$OUT" "\"mounts\":\[\{\"host\":\"$d\",\"guest\":\"/src\",\"mode\":\"overlay\"\},\{\"host\":\"$d\",\"guest\":\"/rw\",\"mode\":\"rw\"\}\]"
	"$ML" kill "$id" >/dev/null || fail "kill"
}

# Guest root kills the relay (the mount then fails with ENOTCONN, nothing hangs) and writes
# garbage to the file-service port: the sandbox is stopped with the reason, the host is fine.
t_hostile_file_service_link() {
	local d=$T_OUT/hostile
	make_tree "$d"
	ml run --rootfs "$ROOTFS" -v "$d:/w:rw" -- sh -c '
		for p in /sys/class/virtio-ports/*; do
			[ "$(cat $p/name)" = matchlock.fs ] && dev=/dev/${p##*/}
		done
		for f in /proc/[0-9]*/fd/*; do
			[ "$(readlink $f)" = "$dev" ] && { p=${f#/proc/}; kill -9 ${p%%/*}; }
		done
		sleep 0.5
		cat /w/a.txt 2>&1
		head -c 100000 /dev/urandom >$dev
		sleep 5
		echo survived'
	expect_match "the mount fails once the relay is gone" "$OUT" "Transport endpoint is not connected"
	[[ $OUT != *survived* ]] || fail "the sandbox survived garbage on the file-service link"
	expect_one_line_error
	expect_match "why" "$ERR" "the guest broke the file-service protocol"
	expect_eq "the folder is intact" "$(cat "$d/a.txt")" hello
	expect_clean
}

run_tests "$@"
