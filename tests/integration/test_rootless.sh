#!/bin/bash
# tests/run: root
# Root and a normal user get the same images: the same layers give a byte-identical root disk
# whether root or the unprivileged test user ($MATCHLOCK_TEST_USER, matchlock-test) writes it, the
# default image imports with the same digest and boots from the same disk bytes for both, and the
# test user runs a sandbox from an image end to end. Root-only: it compares root's results with
# another user's. MATCHLOCK_TEST_REBUILD_IMAGES=1 also rebuilds the default image from the Debian
# mirror as the test user (mmdebstrap --mode=unshare) and compares its layer with root's, bit for
# bit (minutes, and the network: off by default).
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "skipped: needs root (compares root's images with another user's)"; echo "0 passed, 0 failed, 1 skipped"; exit 0; }
TU=${MATCHLOCK_TEST_USER:-matchlock-test}
[ "$TU" != root ] && id -u "$TU" >/dev/null 2>&1 || { echo "skipped: no test user $TU (tests/run creates it)"; echo "0 passed, 0 failed, 1 skipped"; exit 0; }
TU_HOME=$(getent passwd "$TU" | cut -d: -f6)
# A place both may write; each side's matchlock state in its own directory.
SHARED=$(mktemp -d /tmp/matchlock-rootless.XXXXXX)
chmod 0755 "$SHARED" "$T_OUT"
install -d -o "$TU" -m 0700 "$SHARED/user"
trap '"$ML" kill --all >/dev/null 2>&1; rm -rf "$MATCHLOCK_HOME" "$T_OUT" "$SHARED"' EXIT
# as_user CMD...: run CMD as the test user, with its HOME and its own matchlock state.
as_user() {
	runuser -u "$TU" -- env -i HOME="$TU_HOME" USER="$TU" PATH="$PATH" LANG=C.UTF-8 \
		MATCHLOCK_HOME="$SHARED/user/home" ${MATCHLOCK_KERNEL:+MATCHLOCK_KERNEL="$MATCHLOCK_KERNEL"} "$@"
}
# The kernel the test user can read: build/vmlinux may point into root's private cache.
KERNEL=$(readlink -f "$BUILD/vmlinux")
if ! runuser -u "$TU" -- test -r "$KERNEL"; then
	cp "$KERNEL" "$SHARED/vmlinux" && chmod 0644 "$SHARED/vmlinux"
	export MATCHLOCK_KERNEL=$SHARED/vmlinux
fi
LAYER=$SHARED/busybox.tar
tar -C "$ROOTFS" --owner=0 --group=0 -cf "$LAYER" .
chmod 0644 "$LAYER"

t_same_disk_bytes_as_root_and_as_user() {
	"$BUILD/ext4-from-tar" "$SHARED/root.ext4" "$LAYER" || fail "as root"
	install -d -o "$TU" "$SHARED/u"
	as_user "$BUILD/ext4-from-tar" "$SHARED/u/user.ext4" "$LAYER" || fail "as $TU"
	expect_eq "owner of the user's disk" "$(stat -c %U "$SHARED/u/user.ext4")" "$TU"
	expect_eq "disk bytes" "$(sha256sum <"$SHARED/u/user.ext4")" "$(sha256sum <"$SHARED/root.ext4")"
}

t_user_runs_an_image_end_to_end() {
	local tool="python3 $ROOT/scripts/oci_image.py"
	$tool layout "$SHARED/img.tar" --layer "$LAYER" --cmd /bin/sh >/dev/null || fail "layout"
	chmod 0644 "$SHARED/img.tar"
	local rd ud
	rd=$(MATCHLOCK_HOME=$SHARED/root "$ML" image import rl/bb:1 <"$SHARED/img.tar") || fail "import as root"
	ud=$(as_user "$ML" image import rl/bb:1 <"$SHARED/img.tar") || fail "import as $TU"
	expect_eq "image digest" "$ud" "$rd"
	local out
	out=$(as_user "$ML" run --image rl/bb:1 -- sh -c 'id -u; ls -ln /bin/busybox | awk "{print \$3}"; echo ok >/tmp/x; cat /tmp/x' 2>&1) ||
		fail "run as $TU: $out"
	expect_eq "run as $TU" "$(echo $out)" "0 0 ok"
	local r u
	MATCHLOCK_HOME=$SHARED/root "$ML" run --image rl/bb:1 -- true || fail "run as root"
	r=$(find "$SHARED/root" -path "*/disks/${rd#rl/bb:1 sha256:}.ext4")
	u=$(find "$SHARED/user/home" -path "*/disks/${ud#rl/bb:1 sha256:}.ext4")
	[ -n "$r" ] && [ -n "$u" ] || fail "no disks: root [$r] user [$u]"
	expect_eq "disk owner" "$(stat -c %U "$u")" "$TU"
	expect_eq "root disk bytes, root vs $TU" "$(sha256sum <"$u")" "$(sha256sum <"$r")"
	as_user "$ML" kill --all >/dev/null 2>&1
	return 0
}

# The default image as `make test` built it (root's cache; the test user's cache holds a hard link
# or its own unshare-mode build of the same recipe): the same digest and disk bytes for both.
t_default_image_same_digest_and_disk() {
	local tar utar rd ud
	tar=$(MATCHLOCK_IMAGE_TAR_PATH=1 "$ROOT/scripts/default-image.sh")
	[ -s "$tar" ] || skip "no default image for root (make default-image)"
	utar=$TU_HOME/.cache/matchlock/default-image/$(basename "$tar")
	[ -s "$utar" ] || skip "the test user has no $(basename "$tar") (tests/run links root's)"
	rd=$(MATCHLOCK_HOME=$SHARED/root2 "$ML" image import d:1 <"$tar") || fail "import as root"
	ud=$(as_user sh -c "'$ML' image import d:1 <'$utar'") || fail "import as $TU"
	expect_eq "default image digest" "${ud#d:1 }" "${rd#d:1 }"
	# The disk as image preparation writes it (the writer, seeded with the manifest digest), each
	# from its own store's layer blob: booting Debian twice would add nothing but time.
	local digest=${rd#d:1 } layer r=$SHARED/root2.ext4 u=$SHARED/u2/user.ext4
	layer=$(find "$SHARED/root2" -path '*/blobs/sha256/*' -size +100M | head -1)
	[ -n "$layer" ] || fail "no layer blob in root's store"
	"$BUILD/ext4-from-tar" --seed "$digest" "$r" "$layer" || fail "disk as root"
	install -d -o "$TU" "$SHARED/u2"
	layer=$(find "$SHARED/user/home" -path "*/blobs/sha256/${layer##*/}")
	[ -n "$layer" ] || fail "the user's store lacks the layer"
	as_user "$BUILD/ext4-from-tar" --seed "$digest" "$u" "$layer" || fail "disk as $TU"
	expect_eq "default image disk bytes" "$(sha256sum <"$u")" "$(sha256sum <"$r")"
}

t_default_image_rebuilt_unprivileged() {
	[ "${MATCHLOCK_TEST_REBUILD_IMAGES:-}" = 1 ] || skip "set MATCHLOCK_TEST_REBUILD_IMAGES=1 (Debian mirror, minutes)"
	local cache=$SHARED/user/cache
	as_user env XDG_CACHE_HOME="$cache" ML="$ML" "$ROOT/scripts/default-image.sh" >/dev/null 2>"$T_OUT/build.err" ||
		fail "unprivileged build: $(tail -3 "$T_OUT/build.err")"
	local mine theirs
	mine=$(ls "$cache"/matchlock/default-image/*.oci.tar)
	theirs=${XDG_CACHE_HOME:-$HOME/.cache}/matchlock/default-image/$(basename "$mine")
	[ -s "$theirs" ] || skip "root has no build of this recipe to compare with"
	expect_eq "layer built by $TU (unshare) vs root" "$(sha256sum <"$mine")" "$(sha256sum <"$theirs")"
}

run_tests "$@"
