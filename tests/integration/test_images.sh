#!/bin/bash
# OCI images end to end: a real registry (Debian's docker-registry) on loopback, small images
# assembled here from busybox-static and pushed through the registry API, then pulled, imported
# and booted. No test touches the internet.
. "$(dirname "$0")/lib.sh"
TOOL="python3 $ROOT/scripts/oci_image.py"
REG_DIR=$(mktemp -d /tmp/matchlock-registry.XXXXXX)
REG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$REG_PORT
cat >"$REG_DIR/config.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $REG_DIR/data}, delete: {enabled: true}}
http: {addr: $REG}
YML
command -v docker-registry >/dev/null || { echo "docker-registry is missing (scripts/deps.sh)"; echo "0 passed, 1 failed"; exit 1; }
docker-registry serve "$REG_DIR/config.yml" >"$REG_DIR/log" 2>&1 &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null; wait $REG_PID 2>/dev/null; rm -rf "$MATCHLOCK_HOME" "$T_OUT" "$REG_DIR"' EXIT
for _ in $(seq 100); do curl -sf "http://$REG/v2/" >/dev/null && break; sleep 0.1; done
STORE=$MATCHLOCK_HOME/cache/oci
blob_bytes() { find "$STORE/blobs" -type f -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
nblobs() { find "$STORE/blobs" -type f 2>/dev/null | wc -l; }

# The base layer every test image starts from: the busybox root filesystem.
BASE=$T_OUT/base.tar
tar -C "$ROOTFS" --owner=0 --group=0 -cf "$BASE" .

t_config_honoured() {
	$TOOL push "http://$REG" cfg/app:1 --layer "$BASE" --env GREETING=hello --env PATH=/bin:/usr/bin \
		--entrypoint /bin/sh --entrypoint=-c --cmd 'echo $GREETING $(id -u) $(pwd) "$@"' --cmd argv0 \
		--user 1000 --workdir /srv/app >/dev/null || fail "push"
	ml pull "$REG/cfg/app:1"
	expect_eq "pull status" "$RC" 0
	expect_match "pull output" "$OUT" "sha256:[0-9a-f]{64}"
	ml run --image "$REG/cfg/app:1"
	expect_eq status "$RC" 0
	expect_eq "Entrypoint+Cmd, Env, User, WorkingDir" "$OUT" "hello 1000 /srv/app"
	ml run --image "$REG/cfg/app:1" -e GREETING=bye -u 0 -w /tmp -- 'echo $GREETING $(id -u) $(pwd)'
	expect_eq "args replace Cmd; -e/-u/-w override" "$OUT" "bye 0 /tmp"
	ml run --image "$REG/cfg/app:1" --entrypoint /bin/echo -- replaced
	expect_eq "--entrypoint replaces Entrypoint and drops Cmd" "$OUT" "replaced"
	expect_clean
}

t_layers_whiteouts_links_modes() {
	local l1=$T_OUT/l1 l2=$T_OUT/l2
	mkdir -p "$l1/data" "$l1/opq/sub" "$l2/data" "$l2/opq"
	echo a >"$l1/data/a"; echo b >"$l1/data/b"; echo old >"$l1/opq/old"; echo old2 >"$l1/opq/sub/old2"
	echo new >"$l2/opq/new"; : >"$l2/data/.wh.a"; : >"$l2/opq/.wh..wh..opq"
	printf '#!/bin/sh\necho suid\n' >"$l2/data/tool"; chmod 4755 "$l2/data/tool"
	touch -d '2001-02-03 04:05:06 UTC' "$l2/data/tool"
	ln "$l2/data/tool" "$l2/data/tool-link"
	ln -s ../data/b "$l2/opq/to-b"
	$TOOL push "http://$REG" layers/img:zstd --compress zstd --layer "$BASE" --layer-dir "$l1" \
		--layer-dir "$l2" >/dev/null || fail "push"
	ml run --image "$REG/layers/img:zstd" -- sh -c 'ls /data | tr "\n" " "; echo; ls -a /opq | tr "\n" " "; echo;
		stat -c "%a %h %Y" /data/tool; cat /opq/to-b; readlink /opq/to-b'
	expect_eq status "$RC" 0
	expect_eq "whiteout, opaque dir, setuid+hard link+mtime, symlink" "$OUT" \
		"$(printf 'b tool tool-link \n. .. new to-b \n4755 2 981173106\nb\n../data/b')"
	expect_clean
}

t_multi_arch_index() {
	local a=$T_OUT/amd64 b=$T_OUT/arm64
	mkdir -p "$a" "$b"; echo amd64 >"$a/arch"; echo arm64 >"$b/arch"
	$TOOL push "http://$REG" multi/img:amd64 --layer "$BASE" --layer-dir "$a" >/dev/null || fail "push amd64"
	$TOOL push "http://$REG" multi/img:arm64 --arch arm64 --layer "$BASE" --layer-dir "$b" >/dev/null || fail "push arm64"
	$TOOL push-index "http://$REG" multi/img:latest --platform-image linux/arm64=multi/img:arm64 \
		--platform-image linux/amd64=multi/img:amd64 >/dev/null || fail "push index"
	ml run --image "$REG/multi/img" -- cat /arch
	expect_eq status "$RC" 0
	expect_eq "platform chosen from the index" "$OUT" amd64
	# An index without our platform is refused, naming what it offers.
	$TOOL push-index "http://$REG" multi/img:armonly --platform-image linux/arm64=multi/img:arm64 >/dev/null
	ml pull "$REG/multi/img:armonly"
	expect_one_line_error
	expect_match error "$ERR" "no linux/amd64 .*linux/arm64"
	ml pull --platform linux/s390x "$REG/multi/img"
	expect_one_line_error
	expect_match error "$ERR" "expected linux/amd64 or linux/arm64"
}

# One multi-arch index, both guests: each --platform runs its own variant on its own kind of
# guest, and a single-arch image of the other architecture is refused naming both.
t_platform_chooses_variant_and_guest() {
	local arm=$BUILD/arm64
	[ -r "${MATCHLOCK_KERNEL_ARM64:-$arm/Image}" ] && [ -x "$arm/rootfs-busybox/bin/busybox" ] ||
		skip "no arm64 guest (make guest-arm64)"
	local a=$T_OUT/pa b=$T_OUT/pb
	mkdir -p "$a" "$b"; echo amd64 >"$a/arch"; echo arm64 >"$b/arch"
	tar -C "$arm/rootfs-busybox" --owner=0 --group=0 -cf "$T_OUT/base-arm64.tar" .
	$TOOL push "http://$REG" plat/img:amd64 --layer "$BASE" --layer-dir "$a" >/dev/null || fail "push amd64"
	$TOOL push "http://$REG" plat/img:arm64 --arch arm64 --layer "$T_OUT/base-arm64.tar" --layer-dir "$b" >/dev/null ||
		fail "push arm64"
	$TOOL push-index "http://$REG" plat/img:latest --platform-image linux/amd64=plat/img:amd64 \
		--platform-image linux/arm64=plat/img:arm64 >/dev/null || fail "push index"
	ml run --platform linux/arm64 --image "$REG/plat/img" -- sh -c 'cat /arch; uname -m'
	expect_eq status "$RC" 0
	expect_eq "arm64 variant on an arm64 guest" "$OUT" "$(printf 'arm64\naarch64')"
	# The tag now holds the arm64 image (as in Docker): amd64 pulls the other variant again.
	ml run --platform linux/amd64 --image "$REG/plat/img" -- sh -c 'cat /arch; uname -m'
	expect_eq status "$RC" 0
	expect_eq "amd64 variant on an x86_64 guest" "$OUT" "$(printf 'amd64\nx86_64')"
	MATCHLOCK_PLATFORM=linux/arm64 ml run --image "$REG/plat/img" -- uname -m
	expect_eq "MATCHLOCK_PLATFORM" "$OUT" aarch64
	# A single-arch image of the other architecture: refused, naming both.
	ml run --platform linux/arm64 --image "$REG/plat/img:amd64" -- true
	expect_one_line_error
	expect_match error "$ERR" "linux/amd64.*linux/arm64"
	$TOOL docker-save "$T_OUT/arm-save.tar" --arch arm64 --layer "$T_OUT/base-arm64.tar" >/dev/null 2>&1 ||
		fail "docker-save arm64"
	ml image import local/armonly <"$T_OUT/arm-save.tar"
	expect_eq "import" "$RC" 0
	ml run --image local/armonly -- true
	expect_one_line_error
	expect_match error "$ERR" "image .*local/armonly.* is linux/arm64, the sandbox is linux/amd64"
	expect_clean
}

t_import_docker_save_and_oci_layout() {
	mkdir -p "$T_OUT/imp"; echo imported >"$T_OUT/imp/marker"
	$TOOL docker-save "$T_OUT/save.tar" --layer "$BASE" --layer-dir "$T_OUT/imp" --cmd cat --cmd /marker || fail "build"
	ml image import local/saved:v1 <"$T_OUT/save.tar"
	expect_eq "import status" "$RC" 0
	ml run --image local/saved:v1
	expect_eq "docker save image runs" "$OUT" imported
	$TOOL layout "$T_OUT/layout.tar" --layer "$BASE" --layer-dir "$T_OUT/imp" --cmd cat --cmd /marker || fail "build"
	gzip -c "$T_OUT/layout.tar" >"$T_OUT/layout.tar.gz"
	ml image import local/layout <"$T_OUT/layout.tar.gz"
	expect_eq "import status" "$RC" 0
	ml run --image local/layout
	expect_eq "OCI layout image runs" "$OUT" imported
	ml image ls
	expect_match "ls" "$OUT" "^TAG +SOURCE +SIZE +CREATED"
	expect_match "ls" "$OUT" "docker.io/local/saved:v1 +import +[0-9.]+MB +2024-01-02"
	# A corrupt archive: a blob whose name is not its digest.
	python3 - "$T_OUT/layout.tar" "$T_OUT/bad.tar" <<'PY'
import sys, tarfile, io
src, dst = tarfile.open(sys.argv[1]), tarfile.open(sys.argv[2], "w")
for m in src.getmembers():
    data = src.extractfile(m).read()
    if m.name.startswith("blobs/") and len(data) > 100000:
        data = data[:-1] + b"x"
    dst.addfile(m, io.BytesIO(data))
dst.close()
PY
	local before
	before=$(nblobs)
	ml image import local/bad <"$T_OUT/bad.tar"
	expect_one_line_error
	expect_match error "$ERR" "does not match its digest"
	expect_eq "nothing stored from a bad archive" "$(nblobs)" "$before"
	expect_clean
}

t_store_stays_consistent() {
	# Its own top layer, so that removing it frees something the other images do not share.
	mkdir -p "$T_OUT/uniq"; head -c 100000 /dev/urandom >"$T_OUT/uniq/noise"
	$TOOL push "http://$REG" store/img:1 --layer "$BASE" --layer-dir "$T_OUT/uniq" >/dev/null || fail "push"
	$TOOL push "http://$REG" store/img:2 --layer "$BASE" --layer-dir "$T_OUT/uniq" >/dev/null || fail "push"
	ml image gc
	local b0 n0
	b0=$(blob_bytes)
	ml pull "$REG/store/img:1"
	local b1
	b1=$(blob_bytes)
	[ "$b1" -gt "$b0" ] || fail "pull stored nothing"
	ml pull "$REG/store/img:1"
	expect_eq "re-pull adds no bytes" "$(blob_bytes)" "$b1"
	ml pull "$REG/store/img:2"
	expect_eq "a second tag adds no bytes" "$(blob_bytes)" "$b1"
	ml image ls
	expect_match "both tags listed" "$OUT" "store/img:1 .*store/img:2"
	ml run --image "$REG/store/img:1" -- true
	local disks
	disks=$(ls "$STORE/disks" | wc -l)
	ml image rm "$REG/store/img:1"
	expect_eq "rm status" "$RC" 0
	expect_eq "blobs kept while a tag uses them" "$(blob_bytes)" "$b1"
	ml image rm "$REG/store/img:2"
	expect_eq "blobs freed with the last tag" "$(blob_bytes)" "$b0"
	[ "$(ls "$STORE/disks" | wc -l)" -lt "$disks" ] || fail "root disk not collected"
	ml image rm "$REG/store/img:2"
	expect_one_line_error
	ml run --image "$REG/store/img:1" -- echo pulled-again
	expect_eq "run pulls a removed image again" "$OUT" pulled-again
	expect_clean
}

t_second_run_does_not_unpack() {
	$TOOL push "http://$REG" speed/img:1 --layer "$BASE" >/dev/null || fail "push"
	local t0 t1 t2
	t0=$(date +%s%N)
	ml run --image "$REG/speed/img:1" -- true
	t1=$(date +%s%N)
	expect_eq status "$RC" 0
	local disk
	disk=$(ls "$STORE"/disks/*.ext4 | head -1)
	local before
	before=$(stat -c %i:%Y "$disk")
	ml run --image "$REG/speed/img:1" -- true
	t2=$(date +%s%N)
	expect_eq "the cached root disk is reused" "$(stat -c %i:%Y "$disk")" "$before"
	echo "    first run (pull+unpack+ext4) $(((t1 - t0) / 1000000)) ms, second run $(((t2 - t1) / 1000000)) ms" >&2
}

t_wrong_digest_rejected() {
	# A registry that lies: the layer it serves does not hash to the digest in its manifest.
	local port
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	python3 - "$port" "$BASE" >"$T_OUT/liar.log" 2>&1 <<'PY' &
import hashlib, http.server, json, sys, gzip
layer = gzip.compress(open(sys.argv[2], "rb").read())
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {}}).encode()
sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg), "size": len(cfg)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer), "size": len(layer)}]}).encode()
tampered = bytearray(layer); tampered[len(tampered) // 2] ^= 0xff
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = {"/v2/liar/img/manifests/1": man, "/v2/liar/img/blobs/" + sha(cfg): cfg,
                "/v2/liar/img/blobs/" + sha(layer): bytes(tampered)}.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
	local liar=$! i
	for i in $(seq 50); do curl -s "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
	local layer_digest
	layer_digest=$(gzip -c "$BASE" | sha256sum | cut -d' ' -f1)
	ml pull "127.0.0.1:$port/liar/img:1"
	kill $liar; wait $liar 2>/dev/null
	expect_one_line_error
	expect_match error "$ERR" "does not match its digest"
	[ -e "$STORE/blobs/sha256/$layer_digest" ] && fail "the tampered layer was stored"
	[ -z "$(ls -A "$STORE/tmp")" ] || fail "temp files left: $(ls -A "$STORE/tmp")"
	expect_clean
}

t_path_traversal_rejected() {
	local tag=$RANDOM$RANDOM
	python3 - "$T_OUT" "$tag" <<'PY'
import io, sys, tarfile
out, tag = sys.argv[1], sys.argv[2]
def tar(path, entries):
    with tarfile.open(path, "w") as t:
        for name, kind, arg in entries:
            ti = tarfile.TarInfo(name)
            if kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
                t.addfile(ti)
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
                t.addfile(ti)
            else:
                ti.size = len(arg); t.addfile(ti, io.BytesIO(arg))
tar(out + "/dotdot.tar", [("ok", "file", b"x"), ("../../../../tmp/escape-dotdot-" + tag, "file", b"pwned")])
tar(out + "/abs.tar", [("/tmp/escape-abs-" + tag, "file", b"pwned")])
tar(out + "/symparent.tar", [("link", "sym", "/tmp"), ("link/escape-sym-" + tag, "file", b"pwned")])
tar(out + "/hardout.tar", [("h", "hard", "../../../../etc/passwd")])
PY
	local kind
	for kind in dotdot abs symparent hardout; do
		$TOOL push "http://$REG" evil/$kind:1 --layer "$BASE" --layer "$T_OUT/$kind.tar" >/dev/null || fail "push $kind"
		ml run --image "$REG/evil/$kind:1" -- true
		expect_one_line_error
		expect_match "$kind error" "$ERR" "refused|outside"
	done
	local found
	found=$(find /tmp "$MATCHLOCK_HOME" -name "escape-*-$tag" 2>/dev/null)
	[ -z "$found" ] || { rm -f $found; fail "files escaped the staging dir: $found"; }
	[ -z "$(ls "$STORE/disks")" ] || true
	expect_clean
}

# A registry that accepts and never answers: the pull runs in a worker process (the supervisor's
# loop stays free), and Ctrl-C during it ends the run at once, worker and all, leaving nothing.
t_interrupt_during_pull_leaves_nothing() {
	local port pid worker="" srv
	python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
conns = []
while True:
    conns.append(s.accept()[0])' >"$T_OUT/port" &
	srv=$!
	for _ in $(seq 50); do [ -s "$T_OUT/port" ] && break; sleep 0.1; done
	port=$(cat "$T_OUT/port")
	"$ML" run --image "127.0.0.1:$port/hangs/img:1" -- true >"$T_OUT/out" 2>"$T_OUT/err" &
	pid=$!
	for _ in $(seq 100); do worker=$(pgrep -P $pid) && break; sleep 0.1; done
	[ -n "$worker" ] || fail "no worker process while pulling"
	kill -INT $pid
	wait $pid
	RC=$?
	kill $srv 2>/dev/null
	wait $srv 2>/dev/null
	expect_eq "exit status" "$RC" 130
	expect_match "error" "$(cat "$T_OUT/err")" "interrupted while preparing the image"
	kill -0 "$worker" 2>/dev/null && fail "the worker outlived the run"
	expect_clean
}

t_errors_are_one_line_and_recoverable() {
	ml pull "$REG/no/such-image:1"
	expect_one_line_error
	expect_match "unknown image" "$ERR" "not found"
	ml run --image "127.0.0.1:1/some/img:1" -- true
	expect_one_line_error
	expect_match "unreachable registry" "$ERR" "cannot reach registry 127.0.0.1:1"
	ml pull "Not/A:Valid:Ref"
	expect_one_line_error
	# A corrupt layer: valid digest, but the gzip stream is garbage.
	head -c 4096 /dev/urandom | { printf '\037\213\010\000'; cat; } >"$T_OUT/corrupt.gz"
	python3 - "$REG" "$T_OUT/corrupt.gz" <<'PY' || fail "push corrupt"
import hashlib, json, sys, urllib.request
reg, path = sys.argv[1], sys.argv[2]
sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
def req(m, url, data=None, ct=None):
    r = urllib.request.Request(url, data=data, method=m)
    if ct: r.add_header("Content-Type", ct)
    return urllib.request.urlopen(r)
def blob(b):
    loc = req("POST", f"http://{reg}/v2/corrupt/img/blobs/uploads/").headers["Location"]
    if loc.startswith("/"): loc = f"http://{reg}" + loc
    req("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + sha(b), b, "application/octet-stream")
layer = open(path, "rb").read()
cfg = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
blob(layer); blob(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg), "size": len(cfg)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer), "size": len(layer)}]}).encode()
req("PUT", f"http://{reg}/v2/corrupt/img/manifests/1", man, "application/vnd.oci.image.manifest.v1+json")
PY
	ml run --image "$REG/corrupt/img:1" -- true
	expect_one_line_error
	expect_match "corrupt layer" "$ERR" "truncated or corrupt"
	expect_clean
	# After all that, a good pull and run still work.
	$TOOL push "http://$REG" good/img:1 --layer "$BASE" >/dev/null || fail "push"
	ml run --image "$REG/good/img:1" -- echo still-fine
	expect_eq "next run works" "$OUT" still-fine
	expect_clean
}

# Archives that would fill the disk from a few KB: checked while they stream, with the bounds of
# a pull (README's Images section), refused before anything is staged, and nothing left behind.
t_import_bounds_checked_while_streaming() {
	python3 - "$T_OUT" <<'PY' || fail "building the archives"
import gzip, io, sys, tarfile
out = sys.argv[1]
def claim(path, name, size, data=b""):
    # A tar whose entry's header claims `size` bytes; `data` follows (64 MiB of zeros: 64 KB
    # gzipped), then the stream ends.
    ti = tarfile.TarInfo(name); ti.size = size
    with gzip.open(path, "wb") as g:
        g.write(ti.tobuf(format=tarfile.PAX_FORMAT)); g.write(data)
claim(f"{out}/huge-blob.tar.gz", "blobs/sha256/" + "0" * 64, 17 << 30, b"\0" * (64 << 20))
claim(f"{out}/huge-manifest.tar.gz", "manifest.json", 100 << 20)
# A real, highly compressible config past the 8 MiB config bound: 9 MiB of spaces, ~9 KB gzipped.
with gzip.open(f"{out}/big-config.tar.gz", "wb") as g, tarfile.open(fileobj=g, mode="w") as t:
    ti = tarfile.TarInfo("abc.json"); ti.size = 9 << 20
    t.addfile(ti, io.BytesIO(b" " * ti.size))
# A compression bomb: a truthful 512 MiB blob of zeros, about 0.5 MB gzipped.
with gzip.open(f"{out}/bomb.tar.gz", "wb", compresslevel=1) as g:
    ti = tarfile.TarInfo("blobs/sha256/" + "1" * 64); ti.size = 512 << 20
    g.write(ti.tobuf(format=tarfile.PAX_FORMAT))
    for _ in range(512):
        g.write(b"\0" * (1 << 20))
# More regular files than an archive may hold.
with gzip.open(f"{out}/many.tar.gz", "wb") as g, tarfile.open(fileobj=g, mode="w") as t:
    for i in range(5000):
        t.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO(b""))
PY
	local a peak size base
	for a in huge-blob huge-manifest big-config bomb many; do
		base=$(du -sb "$STORE" 2>/dev/null | cut -f1)
		"$ML" image import "local/$a" <"$T_OUT/$a.tar.gz" >"$T_OUT/out" 2>"$T_OUT/err" &
		local pid=$! i
		peak=${base:-0}
		for i in $(seq 600); do
			size=$(du -sb "$STORE" 2>/dev/null | cut -f1)
			[ "${size:-0}" -gt "$peak" ] && peak=$size
			kill -0 $pid 2>/dev/null || break
			sleep 0.05
		done
		wait $pid
		RC=$?
		OUT=$(cat "$T_OUT/out")
		ERR=$(cat "$T_OUT/err")
		expect_one_line_error
		case $a in
		huge-blob) expect_match "$a" "$ERR" "blobs/sha256/0+ is 17 GiB, over the limit of 16 GiB" ;;
		huge-manifest) expect_match "$a" "$ERR" "manifest.json is 100 MiB, over the limit of 4 MiB" ;;
		big-config) expect_match "$a" "$ERR" "abc.json is 9 MiB, over the limit of 8 MiB" ;;
		many) expect_match "$a" "$ERR" "more than 4096 files" ;;
		bomb) expect_match "$a" "$ERR" "expands more than 64 times over .* compression bomb" ;;
		esac
		echo "    $a: the store grew by at most $((peak - ${base:-0})) bytes"
		# The bomb may stage 64 MiB plus 64 times what was read (~0.5 MB): never its 512 MiB.
		local bound=$((4 << 20))
		[ $a = bomb ] && bound=$((160 << 20))
		[ "$((peak - ${base:-0}))" -lt $bound ] || fail "$a: the store grew by $((peak - base)) bytes while importing"
		expect_clean
	done
}

run_tests "$@"
