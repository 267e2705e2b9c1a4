#!/bin/sh
# Install the Debian packages matchlock needs to build and test, when missing.
# As root: apt-get installs them. Otherwise: says exactly which are missing and fails.
# `deps.sh bench` adds the peers the benchmarks compare with.
set -eu

pkgs="build-essential musl-tools qemu-system-x86 linux-source-6.1 flex bison bc libelf-dev
libssl-dev libarchive-dev libcurl4-openssl-dev libjansson-dev libsqlite3-dev zlib1g-dev libbrotli-dev libzstd-dev
cpio busybox-static e2fsprogs xz-utils python3 clang clang-format libclang-rt-14-dev docker-registry
mmdebstrap uidmap zstd curl libext2fs-dev golang-go openssl iproute2 libnghttp2-dev python3-h2 python3-grpcio nghttp2-client nghttp2-server
git gcc-aarch64-linux-gnu qemu-system-arm musl-dev:arm64"

# `deps.sh bench`: also the peers `make bench` measures against, side by side.
[ "${1:-}" = bench ] && pkgs="$pkgs mitmproxy runsc"

missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "matchlock: missing Debian packages:$missing" >&2
	echo "matchlock: install them with: sudo apt-get install$missing" >&2
	exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# The arm64 guest's agent links musl for arm64 (musl-dev:arm64): a foreign architecture.
case $missing in *:arm64*) dpkg --print-foreign-architectures | grep -qx arm64 ||
	dpkg --add-architecture arm64 ;; esac
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >&2
