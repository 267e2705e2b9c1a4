#!/bin/bash
# matchlock rpc under a client or guest that tries to grow its memory (issue 11 items 6 and 7):
# peak RSS of the rpc process stays under a stated bound; the driver is rpc_limits.py.
# Runs in private namespaces (netns.sh): the denied lookups never leave this machine.
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/lib.sh"
export ML ROOTFS MATCHLOCK_HOME
DRIVER=$(dirname "$0")/rpc_limits.py

# read_file of a 700 MB sparse file with a small length: bounded, the length honoured.
t_read_file_small_length() { timeout 600 python3 "$DRIVER" read_file; }
# exec printing 64 MiB: 16 MiB kept with stdout_truncated; peak memory bounded.
t_exec_output_capped() { timeout 600 python3 "$DRIVER" exec_output; }
# A client not reading while the guest makes denied DNS lookups: events dropped with a count.
t_events_dropped_when_client_does_not_read() { timeout 900 python3 "$DRIVER" events; }

# Images whose config has many Env entries (issue 11 item 2: 20 overflowed a 16-slot array in
# rpc's env merge; 1000 keys of 8 KB exhausted its stack): run and rpc merge them, or refuse them
# with one clear error, and neither crashes.
t_image_env_entries() {
	local base=$T_OUT/base.tar envs=() i
	tar -C "$ROOTFS" --owner=0 --group=0 -cf "$base" .
	for i in $(seq 20); do envs+=(--env "IMG$i=v$i"); done
	python3 "$ROOT/scripts/oci_image.py" docker-save "$T_OUT/env20.tar" --layer "$base" "${envs[@]}" || fail build
	ml image import local/env20 <"$T_OUT/env20.tar"
	expect_eq "import" "$RC" 0
	ml run --image local/env20 -e IMG20=mine -- sh -c 'env | grep -c ^IMG; echo $IMG20'
	[ "$RC" = 0 ] || fail "run: $ERR"
	expect_eq "run: 20 image Env entries" "$OUT" "$(printf '20\nmine')"
	# 1000 keys of ~8 KB each, built in-process (too long for a command line).
	python3 - "$ROOT/scripts/oci_image.py" "$T_OUT/envbig.tar" "$base" <<'PY' || fail "build big"
import runpy, sys
tool, out, base = sys.argv[1:4]
sys.argv = [tool, "docker-save", out, "--layer", base] + [f"--env=K{i}_{'k' * 8000}=v" for i in range(1000)]
runpy.run_path(tool, run_name="__main__")
PY
	ml image import local/envbig <"$T_OUT/envbig.tar"
	local imported=$RC
	echo "    the 8 MB-Env image: import status $imported (0: run and rpc must refuse it)"
	ml run --image local/envbig -- true
	[ "$imported" != 0 ] || expect_one_line_error
	[ "$imported" != 0 ] || expect_match "run: a clear error" "$ERR" "Env\\[[0-9]+\\]: environment too large"
	timeout 600 python3 - "$ML" "$imported" <<'PY'
import json, subprocess, sys
ml, imported = sys.argv[1], sys.argv[2]
p = subprocess.Popen([ml, "rpc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
def call(i, method, params):
    p.stdin.write((json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}) + "\n").encode())
    p.stdin.flush()
    while True:
        m = json.loads(p.stdout.readline())
        if m.get("id") == i:
            return m
if imported == "0":
    m = call(1, "create", {"image": "local/envbig"})
    assert m.get("error", {}).get("code") == -32602 and "environment too large" in m["error"]["message"], m
m = call(2, "create", {"image": "local/env20", "env": {"IMG20": "create"}})
assert "result" in m, m
m = call(3, "exec", {"command": "env | grep -c ^IMG; echo $IMG20 $IMG1", "env": {"X": "1"}})
import base64
out = base64.b64decode(m["result"]["stdout"])
assert out == b"20\ncreate v1\n", out
call(4, "close", {})
p.stdin.close()
p.stdout.read()
assert p.wait(120) == 0, "rpc exit status"
print("rpc: 20 image Env entries merged; the oversized image refused")
PY
	[ $? = 0 ] || fail "rpc"
}

run_tests "$@"
