#!/bin/bash
# The image layer writer (src/oci/ext4_layers.c) on its own, no VM: layers made here with Python's
# tarfile are written by build/ext4-from-tar, and the file system is read back with e2fsprogs
# (e2fsck -fn, debugfs): owners, modes, setuid bits, xattrs, hard links, device nodes, symlinks,
# whiteouts and opaque directories as the layers say, whoever runs it; the same layers give the
# same bytes; hostile entries are refused with one line. Runs as any user.
. "$(dirname "$0")/lib.sh"
W=$BUILD/ext4-from-tar
[ -x "$W" ] || { echo "missing $W (make fixtures)"; echo "0 passed, 1 failed"; exit 1; }

python3 - "$T_OUT" <<'PY'
import io, sys, tarfile
out = sys.argv[1]
CAP = "\x01\x00\x00\x02\x00\x20\x00\x00" + "\x00" * 12  # cap_net_raw, as ping has it
def tar(path, entries):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            name, kind = e[0], e[1]
            o = dict(mode=0o755, uid=0, gid=0, mtime=1000000000, data=b"", link="", dev=(0, 0), xattrs={})
            o.update(e[2] if len(e) > 2 else {})
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime = o["mode"], o["uid"], o["gid"], o["mtime"]
            if o["xattrs"]:
                ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in o["xattrs"].items()}
            if kind == "file":
                ti.size = len(o["data"])
                t.addfile(ti, io.BytesIO(o["data"]))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                       "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            ti.linkname = o["link"]
            ti.devmajor, ti.devminor = o["dev"]
            t.addfile(ti)
tar(out + "/l1.tar", [
    ("./", "dir"), ("etc/", "dir"), ("etc/passwd", "file", dict(mode=0o644, data=b"root:x:0:0::/root:/bin/sh\n")),
    ("data/", "dir", dict(mode=0o750, uid=1000, gid=1000)),
    ("data/a", "file", dict(data=b"a\n", uid=1000, gid=1000, mode=0o600)),
    ("data/b", "file", dict(data=b"b\n")),
    ("opq/", "dir"), ("opq/old", "file", dict(data=b"old\n")), ("opq/sub/old2", "file", dict(data=b"o\n")),
    ("dev/", "dir"), ("dev/null", "chr", dict(mode=0o666, dev=(1, 3))),
    ("dev/sda", "blk", dict(mode=0o660, dev=(8, 0), gid=6)), ("dev/big", "chr", dict(mode=0o600, dev=(300, 70000))),
    ("dev/fifo", "fifo", dict(mode=0o644)),
    ("bin/ping", "file", dict(data=b"\x7fELF" + b"x" * 10000, xattrs={"security.capability": CAP})),
    ("big", "file", dict(data=bytes(range(256)) * 40000, mode=0o644)),
    ("gone", "file", dict(data=b"lower\n")), ("gonedir/x/y", "file", dict(data=b"y\n")),
])
tar(out + "/l2.tar", [
    ("data/.wh.a", "file"), (".wh.gone", "file"), (".wh.gonedir", "file"),
    ("opq/.wh..wh..opq", "file"), ("opq/new", "file", dict(data=b"new\n")),
    ("data/tool", "file", dict(data=b"#!/bin/sh\necho suid\n", mode=0o4755, mtime=981173106, xattrs={"user.note": "hello"})),
    ("data/tool-link", "hard", dict(link="data/tool")),
    ("opq/to-b", "sym", dict(link="../data/b", mode=0o777)),
    ("usr/bin/sudo", "file", dict(data=b"sudo", mode=0o4711)),
    ("usr/bin/wall", "file", dict(data=b"wall", mode=0o2755, gid=5)),
    ("tmp/", "dir", dict(mode=0o1777)),
    ("etc/passwd", "file", dict(mode=0o644, data=b"root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")),
    ("home/user/", "dir", dict(mode=0o700, uid=1000, gid=1000)),
])
tar(out + "/dotdot.tar", [("ok", "file", dict(data=b"x")), ("../../../../tmp/escape", "file", dict(data=b"pwned"))])
tar(out + "/abs.tar", [("/tmp/escape", "file", dict(data=b"pwned"))])
tar(out + "/symparent.tar", [("link", "sym", dict(link="/tmp")), ("link/escape", "file", dict(data=b"pwned"))])
tar(out + "/hardout.tar", [("h", "hard", dict(link="../../../../etc/passwd"))])
tar(out + "/hardmissing.tar", [("h", "hard", dict(link="nothere"))])
tar(out + "/fileparent.tar", [("f", "file", dict(data=b"f")), ("f/x", "file", dict(data=b"x"))])
PY

IMG=$T_OUT/img.ext4
build() { "$W" "$@" >"$T_OUT/out" 2>"$T_OUT/err"; RC=$?; ERR=$(cat "$T_OUT/err"); }
dbg() { debugfs -R "$1" "$IMG" 2>/dev/null; }
# mode uid gid links of PATH, from debugfs.
meta() { dbg "stat $1" | awk '/Mode:/ {for (i = 1; i < NF; i++) if ($i == "Mode:") m = $(i + 1)} /^User:/ {u=$2; g=$4} /^Links:/ {l=$2} END {print m, u, g, l}'; }

t_fsck_clean_and_contents() {
	build "$IMG" "$T_OUT/l1.tar" "$T_OUT/l2.tar"
	expect_eq "status ($ERR)" "$RC" 0
	e2fsck -fn "$IMG" >"$T_OUT/fsck" 2>&1 || fail "e2fsck: $(cat "$T_OUT/fsck")"
	expect_eq "file bytes" "$(dbg 'cat /big' | sha256sum | cut -c1-16)" \
		"$(python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256))*40000)' | sha256sum | cut -c1-16)"
	expect_eq "replaced file" "$(dbg 'cat /etc/passwd' | tail -1)" "user:x:1000:1000::/home/user:/bin/sh"
	expect_eq "symlink" "$(dbg 'stat /opq/to-b' | grep -o 'Fast link dest: .*')" 'Fast link dest: "../data/b"'
}

t_owners_modes_setuid() {
	build "$IMG" "$T_OUT/l1.tar" "$T_OUT/l2.tar"
	expect_eq "status ($ERR)" "$RC" 0
	expect_eq "setuid root" "$(meta /usr/bin/sudo)" "04711 0 0 1"
	expect_eq "setgid" "$(meta /usr/bin/wall)" "02755 0 5 1"
	expect_eq "sticky dir" "$(meta /tmp)" "01777 0 0 2"
	expect_eq "user-owned dir" "$(meta /home/user)" "0700 1000 1000 2"
	expect_eq "mtime kept" "$(dbg 'stat /data/tool' | grep -o 'mtime: 0x[0-9a-f]*')" "mtime: 0x3a7b8372"
}

t_hard_links_devices_xattrs() {
	build "$IMG" "$T_OUT/l1.tar" "$T_OUT/l2.tar"
	expect_eq "status ($ERR)" "$RC" 0
	local a b
	a=$(dbg 'stat /data/tool' | awk '/^Inode:/ {print $2}')
	b=$(dbg 'stat /data/tool-link' | awk '/^Inode:/ {print $2}')
	expect_eq "one inode for a hard link" "$a" "$b"
	expect_eq "link count" "$(meta /data/tool)" "04755 0 0 2"
	expect_match "char device" "$(dbg 'stat /dev/null')" "Type: character special.*"
	expect_match "device numbers" "$(dbg 'stat /dev/null')" "Device major/minor number: 01:03"
	expect_match "big device numbers" "$(dbg 'stat /dev/big')" "300:70000"
	expect_eq "block device" "$(meta /dev/sda)" "0660 0 6 1"
	expect_match "fifo" "$(dbg 'stat /dev/fifo')" "Type: FIFO"
	expect_match "file capability" "$(dbg 'ea_list /bin/ping')" "security.capability \(20\) = 01 00 00 02 00 20"
	expect_match "user xattr" "$(dbg 'ea_list /data/tool')" 'user.note \(5\) = "hello"'
}

t_whiteouts_and_opaque_dirs() {
	build "$IMG" "$T_OUT/l1.tar" "$T_OUT/l2.tar"
	expect_eq "status ($ERR)" "$RC" 0
	expect_eq "/data after a whiteout" "$(dbg 'ls /data' | tr -s ' \n' ' ' | xargs -n1 | grep -v '^[0-9(]' | sort | tr '\n' ' ')" ". .. b tool tool-link "
	expect_eq "/opq is opaque" "$(dbg 'ls /opq' | tr -s ' \n' ' ' | xargs -n1 | grep -v '^[0-9(]' | sort | tr '\n' ' ')" ". .. new to-b "
	dbg 'stat /gone' | grep -q Inode && fail "/gone survived its whiteout"
	dbg 'stat /gonedir/x/y' | grep -q Inode && fail "/gonedir survived its whiteout"
	return 0
}

t_same_bytes_every_time() {
	build "$T_OUT/a.ext4" "$T_OUT/l1.tar" "$T_OUT/l2.tar"
	expect_eq "status ($ERR)" "$RC" 0
	sleep 1.1 # a clock that leaked into the image would show now
	build "$T_OUT/b.ext4" "$T_OUT/l1.tar" "$T_OUT/l2.tar"
	expect_eq "status ($ERR)" "$RC" 0
	expect_eq "two builds" "$(sha256sum <"$T_OUT/a.ext4")" "$(sha256sum <"$T_OUT/b.ext4")"
	build --seed other "$T_OUT/c.ext4" "$T_OUT/l1.tar" "$T_OUT/l2.tar"
	[ "$(sha256sum <"$T_OUT/a.ext4")" != "$(sha256sum <"$T_OUT/c.ext4")" ] || fail "the seed does not reach the UUID"
	expect_eq "UUID from the seed" "$(dumpe2fs -h "$T_OUT/a.ext4" 2>/dev/null | awk '/UUID/ {print $3}')" \
		"$(python3 -c 'import hashlib; b=bytearray(hashlib.sha256(b"test").digest()[:16]); b[6]=b[6]&15|64; b[8]=b[8]&63|128; h=b.hex(); print(h[:8]+"-"+h[8:12]+"-"+h[12:16]+"-"+h[16:20]+"-"+h[20:])')"
}

t_hostile_layers_refused() {
	local kind
	for kind in dotdot abs symparent hardout hardmissing fileparent; do
		build "$T_OUT/$kind.ext4" "$T_OUT/l1.tar" "$T_OUT/$kind.tar"
		expect_eq "$kind status" "$RC" 1
		[ "$(printf '%s\n' "$ERR" | grep -c .)" = 1 ] || fail "$kind: expected one line, got: $ERR"
		expect_match "$kind error" "$ERR" "refused|outside|missing"
		[ -e "$T_OUT/$kind.ext4" ] && fail "$kind: an image was written"
		ls "$T_OUT" | grep -q "$kind.ext4.tmp" && fail "$kind: a temp file was left"
	done
	[ -e /tmp/escape ] && fail "a file escaped to /tmp/escape"
	return 0
}

# ext4 counts a file's names (and a directory's subdirectories) in 16 bits.
t_too_many_links_refused() {
	python3 - "$T_OUT/links.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    ti = tarfile.TarInfo("f"); ti.size = 1; t.addfile(ti, io.BytesIO(b"x"))
    for i in range(65001):
        ti = tarfile.TarInfo("l%d" % i); ti.type = tarfile.LNKTYPE; ti.linkname = "f"; t.addfile(ti)
PY
	build "$IMG" "$T_OUT/links.tar"
	expect_eq "status" "$RC" 1
	expect_match "error" "$ERR" "more than 65000 links"
}

t_plain_tarball_keeps_wh_names() {
	build --no-whiteouts "$IMG" "$T_OUT/l2.tar"
	expect_eq "status ($ERR)" "$RC" 0
	dbg 'stat /data/.wh.a' | grep -q Inode || fail "a --rootfs tarball's .wh. file was taken for a whiteout"
	return 0
}

run_tests "$@"
