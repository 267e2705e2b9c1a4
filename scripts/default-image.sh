#!/bin/sh
# Build the embedded default image (Debian bookworm with sh, coreutils, curl, python3, git and
# ca-certificates) with mmdebstrap, as an OCI-layout tarball cached by the hash of this recipe
# under $XDG_CACHE_HOME/matchlock/default-image/, and import it into matchlock's image store as
# matchlock/default. No root needed: as a normal user mmdebstrap runs in --mode=unshare (a user
# namespace; needs the user's /etc/subuid and /etc/subgid ranges and newuidmap from uidmap),
# whose tarball mmdebstrap makes bit-for-bit the one root mode makes. With SOURCE_DATE_EPOCH fixed
# and the host's resolv.conf and hostname left out, the same recipe and mirror content give the
# same layer, hence the same image digest and (src/oci/ext4_layers.c) the same root disk, whoever
# builds it (the one exception seen, bytecode py3compile leaves of its own modules, which marshal
# differently from run to run, is deleted). Later calls reuse the cached tar.
# `default-image.sh clients`: the test-client image matchlock/clients instead, the same plus the
# clients the secrets suites drive (gRPC, httpx with HTTP/2, requests, websockets, boto3).
set -eu
cd "$(dirname "$0")/.."
ml=${ML:-build/matchlock}
suite=bookworm
mirror=${MATCHLOCK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
pkgs="ca-certificates,curl,python3,git"
name=matchlock/default
if [ "${1:-}" = clients ]; then
	name=matchlock/clients
	pkgs="$pkgs,python3-grpcio,python3-httpx,python3-h2,python3-requests,python3-websockets,python3-boto3"
fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}/matchlock/default-image
# Every time stamp in the layer: files newer than this are clamped to it.
epoch=1735689600
key=$(printf '%s\n' "$suite" "$mirror" "$pkgs" "$epoch" "$(cat scripts/oci_image.py)" "$(sed -n '/^if \[ ! -s/,/^fi/p' "$0")" | sha256sum | cut -c1-16)
out=$cache/debian-$suite-$key.oci.tar
# MATCHLOCK_IMAGE_TAR_PATH=1: only say where this recipe's tar is cached (tests compare it).
[ "${MATCHLOCK_IMAGE_TAR_PATH:-}" = 1 ] && { echo "$out"; exit 0; }

if [ ! -s "$out" ]; then
	command -v mmdebstrap >/dev/null || { echo "matchlock: mmdebstrap is missing: apt-get install mmdebstrap" >&2; exit 1; }
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/.build.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	mode=root
	if [ "$(id -u)" != 0 ]; then
		mode=unshare
		grep -q "^$(id -un):" /etc/subuid 2>/dev/null && grep -q "^$(id -un):" /etc/subgid 2>/dev/null &&
			command -v newuidmap >/dev/null || {
			echo "matchlock: building the default image as $(id -un) needs subordinate ids: add a range for $(id -un) to /etc/subuid and /etc/subgid (usermod --add-subuids 200000-265535 --add-subgids 200000-265535 $(id -un)) and apt-get install uidmap" >&2
			exit 1
		}
		# The unshared user must be able to enter the build directory.
		chmod 0755 "$tmp"
	fi
	echo "building the default image from Debian $suite as $(id -un) ($mode mode; once; cached in $cache)" >&2
	SOURCE_DATE_EPOCH=$epoch mmdebstrap --quiet --mode="$mode" --variant=minbase --include="$pkgs" \
		--customize-hook='chroot "$1" useradd -m -u 1000 -s /bin/sh user' \
		--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
		--customize-hook='rm -f "$1"/etc/resolv.conf "$1"/etc/hostname' \
		--customize-hook='rm -rf "$1"/usr/share/python3/debpython/__pycache__' \
		"$suite" "$tmp/rootfs.tar" "$mirror"
	python3 scripts/oci_image.py layout "$tmp/image.tar" --layer "$tmp/rootfs.tar" --compress none \
		--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--env LANG=C.UTF-8 --cmd /bin/sh
	mv "$tmp/image.tar" "$out"
fi
# Import only when the store does not have this exact build yet.
if ! "$ml" image ls 2>/dev/null | grep -q "^docker.io/$name:$key "; then
	"$ml" image import "$name:$key" <"$out"
	"$ml" image import "$name" <"$out"
fi
