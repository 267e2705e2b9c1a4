#!/bin/bash
# Templates: the first boot of a machine saves a snapshot, later sandboxes restore it; clones
# never share identity, randomness or files; a bad template is detected and replaced; clones
# never write the template (its RAM is mapped copy-on-write); ten restores at once all restore.
. "$(dirname "$0")/lib.sh"

timing() { MATCHLOCK_TIMING=1 "$ML" run --rootfs "$ROOTFS" "$@" 2>&1 >/dev/null | sed -n 's/^timing: //p'; }
templates() { ls "$MATCHLOCK_HOME"/cache/templates/*.snap 2>/dev/null; }

t_first_boot_saves_then_restores() {
	local t
	rm -rf "$MATCHLOCK_HOME/cache/templates"
	t=$(timing -- true)
	expect_match "first run boots cold and saves" "$t" "restored=0 snapshot_ms=[1-9]"
	[ "$(templates | wc -l)" = 1 ] || fail "expected one template: $(templates)"
	t=$(timing -- true)
	expect_match "second run restores" "$t" "restored=1"
	t=$(timing --no-snapshot -- true)
	expect_match "--no-snapshot boots cold" "$t" "restored=0 snapshot_ms=0"
	# Another machine shape is another template.
	t=$(timing --memory 256 -- true)
	expect_match "new shape" "$t" "restored=0"
	[ "$(templates | wc -l)" = 2 ] || fail "expected two templates"
}

t_clones_do_not_share_identity() {
	timing -- true >/dev/null # make sure the template exists
	local a b ta tb now
	timing --secret TOKEN=same-value@api.test -- true >/dev/null # this shape's template too
	a=$("$ML" run -d --secret TOKEN=same-value@api.test --rootfs "$ROOTFS") || fail "run -d a"
	b=$("$ML" run -d --secret TOKEN=same-value@api.test --rootfs "$ROOTFS") || fail "run -d b"
	ta=$("$ML" exec "$a" -- sh -c 'hostname; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"; echo; date +%s; echo secret-a > /tmp/mine; echo $TOKEN')
	tb=$("$ML" exec "$b" -- sh -c 'hostname; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"; echo; date +%s; cat /tmp/mine 2>&1; echo $TOKEN')
	now=$(date +%s)
	expect_eq "hostname a" "$(sed -n 1p <<<"$ta")" "$a"
	expect_eq "hostname b" "$(sed -n 1p <<<"$tb")" "$b"
	[ "$(sed -n 2p <<<"$ta")" != "$(sed -n 2p <<<"$tb")" ] || fail "two clones drew the same random bytes"
	for t in "$ta" "$tb"; do
		local d=$(( now - $(sed -n 3p <<<"$t") ))
		[ "${d#-}" -le 5 ] || fail "guest clock off by $d s"
	done
	expect_match "b cannot see a's file" "$(sed -n 4p <<<"$tb")" "No such file"
	expect_match "placeholder a" "$(sed -n 4p <<<"$ta")" '^SANDBOX_SECRET_[0-9a-f]{32}$'
	expect_match "placeholder b" "$(sed -n 5p <<<"$tb")" '^SANDBOX_SECRET_[0-9a-f]{32}$'
	[ "$(sed -n 4p <<<"$ta")" != "$(sed -n 5p <<<"$tb")" ] || fail "two clones got the same placeholder"
	"$ML" get "$a" | grep -q "same-value" && fail "the secret value is in the record"
	"$ML" kill "$a" >/dev/null; "$ML" kill "$b" >/dev/null
	"$ML" rm "$a" "$b" >/dev/null
}

t_corrupt_or_truncated_template_falls_back() {
	rm -rf "$MATCHLOCK_HOME/cache/templates" # one template: the one the runs below use
	timing -- true >/dev/null
	local snap
	snap=$(templates | head -1)
	[ -n "$snap" ] || fail "no template"
	head -c 4096 "$snap" >"$snap.cut" && mv "$snap.cut" "$snap"
	ml run --rootfs "$ROOTFS" -- echo still-works
	expect_eq status "$RC" 0
	expect_eq output "$OUT" still-works
	expect_match "notice" "$ERR" "snapshot could not be restored.*booting cold"
	# The bad one was replaced by a good one.
	local t
	t=$(timing -- true)
	expect_match "restores again" "$t" "restored=1"
	head -c 1000000 /dev/urandom >"$snap"
	ml run --rootfs "$ROOTFS" -- echo garbage-ok
	expect_eq output "$OUT" garbage-ok
	expect_match "notice" "$ERR" "booting cold"
	expect_clean
}

t_clones_never_write_the_template() {
	timing -- true >/dev/null
	local snap before a b t
	snap=$(templates | head -1)
	[ -n "$snap" ] || fail "no template"
	before=$(sha256sum <"$snap")
	a=$("$ML" run -d --rootfs "$ROOTFS") || fail "run -d a"
	b=$("$ML" run -d --rootfs "$ROOTFS") || fail "run -d b"
	# Fill guest memory (tmpfs), drop the page cache, allocate again: pages the template holds
	# are rewritten in both clones.
	for id in "$a" "$b"; do
		"$ML" exec "$id" -- sh -c "dd if=/dev/urandom of=/tmp/fill bs=1M count=64 2>/dev/null; echo 3 >/proc/sys/vm/drop_caches; rm /tmp/fill; dd if=/dev/zero of=/tmp/z bs=1M count=32 2>/dev/null; echo wrote-$id" >"$T_OUT/w" 2>&1
		expect_eq "clone $id wrote" "$(cat "$T_OUT/w")" "wrote-$id"
	done
	"$ML" kill "$a" >/dev/null; "$ML" kill "$b" >/dev/null
	"$ML" rm "$a" "$b" >/dev/null
	expect_eq "template unchanged" "$(sha256sum <"$snap")" "$before"
	t=$(timing -- true)
	expect_match "still restores" "$t" "restored=1"
}

t_ten_restores_at_once() {
	timing -- true >/dev/null # the template exists
	local i
	for i in $(seq 10); do
		MATCHLOCK_TIMING=1 "$ML" run --rootfs "$ROOTFS" -- sh -c "echo sandbox-$i" \
			>"$T_OUT/ten$i" 2>"$T_OUT/ten$i.err" &
	done
	wait
	for i in $(seq 10); do
		expect_eq "sandbox $i" "$(cat "$T_OUT/ten$i")" "sandbox-$i"
		expect_match "sandbox $i from the snapshot" "$(cat "$T_OUT/ten$i.err")" "restored=1"
	done
}

t_gc_drops_orphaned_templates() {
	timing -- true >/dev/null
	local snap
	snap=$(templates | head -1)
	[ -e "$snap.scratch" ] || fail "the template has no writable disk beside it"
	echo /no/such/disk.ext4 >"$snap.disk"
	ml gc
	expect_match "gc" "$OUT" "1 stale snapshot"
	[ -e "$snap" ] && fail "gc kept a template whose disk is gone"
	[ -e "$snap.scratch" ] && fail "gc kept the template's writable disk"
	return 0
}

run_tests "$@"
