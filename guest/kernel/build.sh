#!/bin/sh
# Build the guest kernel from Debian's linux-source package, cached by content.
#
# usage: guest/kernel/build.sh LINKDIR [ARCH]
#   ARCH x86_64 (the default): makes LINKDIR/vmlinux (PVH-bootable ELF: no decompression, the
#   fastest start) and LINKDIR/bzImage. ARCH arm64: makes LINKDIR/Image (what QEMU's `virt`
#   boots), cross-built with Debian's gcc-aarch64-linux-gnu. Both are symlinks to the cached
#   kernel; prints nothing on a cache hit.
# The cache key hashes the source package version, both config fragments and RECIPE; bump RECIPE
# when a change to this script changes what it builds. Concurrent builds wait on a lock.
set -eu

RECIPE=2
linkdir=${1:?usage: build.sh LINKDIR [ARCH]}
arch=${2:-x86_64}
here=$(cd "$(dirname "$0")" && pwd)
src=/usr/src/linux-source-6.1.tar.xz
[ -r "$src" ] || { echo "build.sh: $src missing (apt-get install linux-source-6.1)" >&2; exit 1; }
# x86_64 is built natively: ARCH=x86_64 would make a different tinyconfig (no VMAP_STACK).
case $arch in
x86_64) kmake="" images="arch/x86/boot/bzImage vmlinux" ;;
arm64) kmake="ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-" images="arch/arm64/boot/Image" ;;
*) echo "build.sh: unknown architecture $arch (x86_64, arm64)" >&2; exit 1 ;;
esac

cache=${XDG_CACHE_HOME:-$HOME/.cache}/matchlock/kernel
key=$( { dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c '%s %Y' "$src"
	echo "recipe $RECIPE $arch"; cat "$here/config.fragment" "$here/config.$arch"; } |
	sha256sum | cut -c1-16)
out=$cache/$key

mkdir -p "$cache"
# A cached kernel needs no lock (entries appear whole, by rename): builds of other keys, which
# hold the lock for minutes, must not stall a build that has its kernel already.
if [ ! -e "$out/.done" ]; then
	exec 9>"$cache/.lock"
	flock 9
fi
if [ ! -e "$out/.done" ]; then
	work=$(mktemp -d "$cache/build.XXXXXX")
	trap 'rm -rf "$work"' EXIT INT TERM
	echo "building the $arch guest kernel $key (a few minutes, once)..." >&2
	tar -C "$work" -xf "$src"
	tree=$(echo "$work"/linux-source-*)
	frag=$work/fragment
	cat "$here/config.fragment" "$here/config.$arch" >"$frag"
	# shellcheck disable=SC2086 # $kmake is a list of make variables
	make -s -C "$tree" $kmake tinyconfig >/dev/null
	"$tree/scripts/kconfig/merge_config.sh" -m -O "$tree" "$tree/.config" "$frag" >/dev/null
	# shellcheck disable=SC2086
	make -s -C "$tree" $kmake olddefconfig >/dev/null
	# merge_config only warns; a dependency we missed must fail the build instead.
	bad=0
	grep -E '^CONFIG_[A-Z0-9_]+=' "$frag" | while read -r line; do
		grep -qxF "$line" "$tree/.config" || { echo "build.sh: option did not stick: $line" >&2; exit 1; }
	done || bad=1
	sed -n 's/^# \(CONFIG_[A-Z0-9_]*\) is not set$/\1/p' "$frag" | while read -r opt; do
		! grep -q "^$opt=" "$tree/.config" || { echo "build.sh: option still set: $opt" >&2; exit 1; }
	done || bad=1
	[ "$bad" = 0 ] || exit 1
	targets=
	for i in $images; do targets="$targets ${i##*/}"; done
	# shellcheck disable=SC2086
	make -s -C "$tree" $kmake -j"$(nproc)" $targets >"$work/build.log" 2>&1 ||
		{ tail -30 "$work/build.log" >&2; exit 1; }
	mkdir -p "$work/out"
	for i in $images; do cp "$tree/$i" "$work/out/"; done
	cp "$tree/.config" "$work/out/"
	[ ! -e "$work/out/vmlinux" ] || strip --strip-debug "$work/out/vmlinux" 2>/dev/null || true
	touch "$work/out/.done"
	rm -rf "$out"
	mv "$work/out" "$out"
fi
mkdir -p "$linkdir"
for i in $images; do ln -sfn "$out/${i##*/}" "$linkdir/${i##*/}"; done
