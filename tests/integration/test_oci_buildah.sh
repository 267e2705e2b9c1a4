#!/bin/bash
# tests/run: root
# Buildah with matchlock as its OCI runtime: `buildah bud --runtime build/matchlock` runs every RUN
# step of a Dockerfile in a micro-VM and commits what it wrote; `matchlock build -t TAG DIR`
# wraps that and lands the image in matchlock's store. A private Buildah storage; the base image
# is loaded from an archive of the busybox test rootfs. Root only; skipped without Buildah.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
	echo "skipped: needs root (rootful Buildah)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
if ! command -v buildah >/dev/null; then
	echo "skipped: buildah is not installed (scripts/deps.sh installs it)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
S=$T_OUT/storage
BASE=localhost/matchlock-test-busybox:latest
export CONTAINERS_STORAGE_CONF=$T_OUT/storage.conf
printf '[storage]\ndriver = "overlay"\nrunroot = "%s/run"\ngraphroot = "%s/graph"\n' "$S" "$S" >"$CONTAINERS_STORAGE_CONF"
BA=(buildah --root "$S/graph" --runroot "$S/run")
trap '"${BA[@]}" rm -a >/dev/null 2>&1; "${BA[@]}" rmi -af >/dev/null 2>&1; "$ML" kill --all >/dev/null 2>&1; rm -rf "$MATCHLOCK_HOME" "$T_OUT"' EXIT
python3 "$ROOT/tests/integration/image_archive.py" "$ROOTFS" "$T_OUT/image.tar" "$BASE"
if ! timeout 120 "${BA[@]}" pull "docker-archive:$T_OUT/image.tar" >"$T_OUT/import" 2>&1 ||
	! timeout 60 "${BA[@]}" tag "$("${BA[@]}" images -q | head -n 1)" "$BASE" >>"$T_OUT/import" 2>&1; then
	echo "skipped: buildah cannot load an image here: $(tail -n 1 "$T_OUT/import")"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
mkdir -p "$T_OUT/ctx"
cat >"$T_OUT/ctx/Dockerfile" <<EOF
FROM $BASE
RUN echo built-in-a-vm >/built && uname -r >/kernel && rm /linuxrc && mkdir -p /made/here
RUN cat /built >/second && ls /made
EOF

# What a file of an image holds: its filesystem exported through a container (no runtime needed).
image_file() {
	local c m r=1
	c=$("${BA[@]}" from "$1" 2>/dev/null) || return 1
	m=$("${BA[@]}" mount "$c") && cat "$m$2" && r=0
	"${BA[@]}" rm "$c" >/dev/null 2>&1
	return $r
}

# Does the image hold PATH (a symlink counts, not followed)?
image_has() {
	local c m r=1
	c=$("${BA[@]}" from "$1" 2>/dev/null) || return 1
	m=$("${BA[@]}" mount "$c") && { [ -e "$m$2" ] || [ -L "$m$2" ]; } && r=0
	"${BA[@]}" rm "$c" >/dev/null 2>&1
	return $r
}

t_buildah_bud_runs_steps_in_vms_and_commits_them() {
	timeout 600 "${BA[@]}" bud --runtime "$ML" --isolation oci --network none -t localhost/ml-built "$T_OUT/ctx" >"$T_OUT/o" 2>&1
	expect_eq "bud ($(tail -n 3 "$T_OUT/o"))" "$?" 0
	expect_eq "the first step's file" "$(image_file localhost/ml-built /built)" "built-in-a-vm"
	expect_eq "seen by the second step" "$(image_file localhost/ml-built /second)" "built-in-a-vm"
	# uname -r in the step is the guest kernel's, not the host's.
	[ "$(image_file localhost/ml-built /kernel)" != "$(uname -r)" ] || fail "the RUN step ran on the host kernel"
	image_has localhost/ml-built /linuxrc && fail "a deletion in a step was not committed"
	image_has localhost/ml-built /made/here || fail "a directory made in a step was not committed"
	# Nothing of the sandbox's own is baked into the image.
	image_has localhost/ml-built /etc/ssl/matchlock-ca.pem && fail "the sandbox CA reached the image"
	image_file localhost/ml-built /etc/resolv.conf 2>/dev/null | grep -q 127.0.0.1 && fail "the guest's resolv.conf reached the image"
	return 0
}

t_buildah_failing_step_fails_the_build() {
	printf 'FROM %s\nRUN exit 3\n' "$BASE" >"$T_OUT/ctx/Failing"
	timeout 600 "${BA[@]}" bud --runtime "$ML" --isolation oci --network none -f "$T_OUT/ctx/Failing" -t localhost/ml-fail "$T_OUT/ctx" >"$T_OUT/o" 2>&1
	[ "$?" != 0 ] || fail "a failing RUN step did not fail the build"
	expect_match "the step's status" "$(cat "$T_OUT/o")" "exit status 3"
}

t_matchlock_build_lands_in_the_store() {
	# matchlock build runs buildah with its default storage: point it at ours.
	timeout 600 "$ML" build -t ml-store-test:1 "$T_OUT/ctx" >"$T_OUT/o" 2>&1
	expect_eq "build ($(tail -n 3 "$T_OUT/o"))" "$?" 0
	expect_match "tag and digest" "$(tail -n 1 "$T_OUT/o")" "^ml-store-test:1 sha256:[0-9a-f]{64}$"
	ml run --image ml-store-test:1 -- cat /built /second
	expect_eq "status" "$RC" 0
	expect_eq "the built files" "$OUT" $'built-in-a-vm\nbuilt-in-a-vm'
	"${BA[@]}" images | grep -q matchlock-build- && fail "buildah's intermediate image was left"
	return 0
}

run_tests "$@"
