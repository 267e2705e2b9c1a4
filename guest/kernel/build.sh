#!/bin/sh
# Build the guest kernel from Debian's linux-source package, cached by content.
#
# usage: guest/kernel/build.sh LINKDIR
#   Makes LINKDIR/vmlinux (PVH-bootable ELF: no decompression, the fastest start) and
#   LINKDIR/bzImage symlinks to the cached kernel; prints nothing on a cache hit.
# The cache key hashes the source package version, the config fragment and RECIPE; bump RECIPE
# when a change to this script changes what it builds. Concurrent builds wait on a lock.
set -eu

RECIPE=1
linkdir=${1:?usage: build.sh LINKDIR}
here=$(cd "$(dirname "$0")" && pwd)
src=/usr/src/linux-source-6.1.tar.xz
[ -r "$src" ] || { echo "build.sh: $src missing (apt-get install linux-source-6.1)" >&2; exit 1; }

cache=${XDG_CACHE_HOME:-$HOME/.cache}/matchlock/kernel
key=$( { dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c '%s %Y' "$src"
	echo "recipe $RECIPE"; cat "$here/config.fragment"; } | sha256sum | cut -c1-16)
out=$cache/$key

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -s "$out/vmlinux" ]; then
	work=$(mktemp -d "$cache/build.XXXXXX")
	trap 'rm -rf "$work"' EXIT INT TERM
	echo "building guest kernel $key (a few minutes, once)..." >&2
	tar -C "$work" -xf "$src"
	tree=$(echo "$work"/linux-source-*)
	make -s -C "$tree" tinyconfig >/dev/null
	"$tree/scripts/kconfig/merge_config.sh" -m -O "$tree" "$tree/.config" "$here/config.fragment" >/dev/null
	make -s -C "$tree" olddefconfig >/dev/null
	# merge_config only warns; a dependency we missed must fail the build instead.
	bad=0
	grep -E '^CONFIG_[A-Z0-9_]+=' "$here/config.fragment" | while read -r line; do
		grep -qxF "$line" "$tree/.config" || { echo "build.sh: option did not stick: $line" >&2; exit 1; }
	done || bad=1
	sed -n 's/^# \(CONFIG_[A-Z0-9_]*\) is not set$/\1/p' "$here/config.fragment" | while read -r opt; do
		! grep -q "^$opt=" "$tree/.config" || { echo "build.sh: option still set: $opt" >&2; exit 1; }
	done || bad=1
	[ "$bad" = 0 ] || exit 1
	make -s -C "$tree" -j"$(nproc)" bzImage vmlinux >"$work/build.log" 2>&1 ||
		{ tail -30 "$work/build.log" >&2; exit 1; }
	mkdir -p "$work/out"
	cp "$tree/arch/x86/boot/bzImage" "$tree/vmlinux" "$tree/.config" "$work/out/"
	strip --strip-debug "$work/out/vmlinux" 2>/dev/null || true
	rm -rf "$out"
	mv "$work/out" "$out"
fi
mkdir -p "$linkdir"
ln -sfn "$out/vmlinux" "$linkdir/vmlinux"
ln -sfn "$out/bzImage" "$linkdir/bzImage"
