#!/usr/bin/env python3
"""Raw-protocol driver for test_rpc_limits.sh: attacks `matchlock rpc` as a client or a guest
would and checks its peak memory (VmHWM of the rpc process). Usage: rpc_limits.py CASE; prints
the figures it measured; exit status 0 when every check held."""

import base64
import glob
import json
import os
import subprocess
import sys
import time

BIN = os.environ["ML"]
IMAGE = os.environ["ROOTFS"]
MIB = 1 << 20


class Rpc:
    def __init__(self) -> None:
        self.p = subprocess.Popen([BIN, "rpc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.next_id = 0
        self.notes: list = []  # notifications read while waiting for answers

    def send(self, method: str, params: dict) -> int:
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()
        return self.next_id

    def answer(self, id_: int) -> dict:
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit(f"FAIL: matchlock rpc closed stdout waiting for request {id_}")
            msg = json.loads(line)
            if msg.get("id") == id_ and "method" not in msg:
                return msg
            self.notes.append(msg)

    def call(self, method: str, params: dict) -> dict:
        return self.answer(self.send(method, params))

    def status(self, field: str) -> int:
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def close(self) -> None:
        self.p.stdin.close()
        for line in self.p.stdout:  # what is still queued (events), to EOF
            self.notes.append(json.loads(line))
        self.p.wait(120)


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"FAIL: {what}")


def create(r: Rpc) -> str:
    res = r.call("create", {"image": IMAGE})
    check("result" in res, f"create: {res}")
    return res["result"]["id"]


def read_file() -> None:
    """A 700 MB sparse file read with a small length: the rpc copies only what was asked."""
    bound = 64 * MIB
    r = Rpc()
    create(r)
    res = r.call("exec", {"command": "dd if=/dev/zero of=/tmp/sparse bs=1 count=0 seek=700M 2>/dev/null; ls -l /tmp/sparse"})
    check(res.get("result", {}).get("exit_code") == 0, f"making the sparse file: {res}")
    res = r.call("read_file", {"path": "/tmp/sparse", "offset": 100 * MIB, "length": 4096})
    check(res.get("result", {}).get("size") == 4096, f"read_file length 4096: {str(res)[:200]}")
    check(base64.b64decode(res["result"]["content"]) == b"\0" * 4096, "content of the window")
    res = r.call("read_file", {"path": "/tmp/sparse"})
    check(res.get("error", {}).get("code") == -32002 and "chunks" in res["error"]["message"],
          f"read_file without length of a 700 MB file: {str(res)[:200]}")
    res = r.call("read_file", {"path": "/tmp/sparse", "length": 1 << 30})
    check(res.get("error", {}).get("code") == -32602, f"read_file length 1 GiB: {str(res)[:200]}")
    # The largest request allowed, in chunks the SDKs use.
    for off in range(0, 32 * MIB, 8 * MIB):
        res = r.call("read_file", {"path": "/tmp/sparse", "offset": off, "length": 8 * MIB})
        check(res.get("result", {}).get("size") == 8 * MIB, f"chunk at {off}")
    peak = r.status("VmHWM")
    r.close()
    print(f"read_file: peak RSS of matchlock rpc {peak / MIB:.1f} MiB (bound {bound // MIB} MiB; was 3.6 GB)")
    check(peak < bound, f"peak RSS {peak} >= {bound}")


def exec_output() -> None:
    """One exec printing 64 MiB: 16 MiB kept, marked truncated, memory bounded."""
    bound = 96 * MIB
    r = Rpc()
    create(r)
    res = r.call("exec", {"command": "head -c 67108864 /dev/zero; echo tail >&2"})
    out = res.get("result", {})
    check(out.get("stdout_truncated") is True and out.get("truncated") is True, f"truncation marker: {list(out)}")
    check(len(base64.b64decode(out.get("stdout", ""))) == 16 * MIB, "16 MiB of stdout kept")
    check(base64.b64decode(out.get("stderr", "")) == b"tail\n" and "stderr_truncated" not in out, "stderr whole")
    peak = r.status("VmHWM")
    r.close()
    print(f"exec: peak RSS of matchlock rpc {peak / MIB:.1f} MiB with 64 MiB of output (bound {bound // MIB} MiB; was 660 MB)")
    check(peak < bound, f"peak RSS {peak} >= {bound}")


def events() -> None:
    """A client that does not read while the guest makes 4000 denied DNS lookups (4000 events;
    one query each: A and AAAA at once sometimes lost a reply here, which only slowed the loop):
    the rpc's memory stays bounded, the guest is never blocked, and the client, once it reads,
    gets a dropped-count notice."""
    n = 4000
    r = Rpc()
    sid = create(r)
    logs = glob.glob(os.path.join(os.environ["MATCHLOCK_HOME"], "**", sid, "log"), recursive=True)
    check(len(logs) == 1, f"the sandbox log of {sid}: {logs}")
    base = r.status("VmRSS")
    # The event queue (256 KiB) plus what waits on stdout before events stop moving (256 KiB),
    # with room for the allocator: not a byte per event beyond that.
    bound = base + 4 * MIB
    id_ = r.send("exec", {"command": f"i=0; while [ $i -lt {n} ]; do nslookup -type=A q$i.denied.test >/dev/null 2>&1;"
                          " i=$((i+1)); done; echo RPC-LIMITS-DONE > /dev/console"})
    # Not reading stdout: the guest must still finish (the sandbox never waits for the client).
    deadline = time.monotonic() + 300
    peak = 0
    done = False
    while time.monotonic() < deadline and not done:
        peak = max(peak, r.status("VmRSS"))
        with open(logs[0], "rb") as f:
            data = f.read()
            done = b"RPC-LIMITS-DONE" in data
        time.sleep(0.5)
    check(done, "the guest's lookups did not finish while the client was not reading")
    time.sleep(1)
    peak = max(peak, r.status("VmRSS"), r.status("VmHWM"))
    res = r.answer(id_)
    check(res.get("result", {}).get("exit_code") == 0, f"exec: {str(res)[:200]}")
    r.close()  # reads the events still queued behind the answer
    evs = [m for m in r.notes if m.get("method") == "event"]
    dropped = [m["params"]["count"] for m in evs if m["params"].get("type") == "dropped"]
    net = [m for m in evs if m["params"].get("type") == "network"]
    print(f"events: {len(net)} delivered, {sum(dropped)} dropped in {len(dropped)} notice(s); peak RSS "
          f"{peak / MIB:.1f} MiB (baseline {base / MIB:.1f} MiB, bound baseline + 4 MiB)")
    check(dropped and sum(dropped) > 0, "no dropped-count notice")
    check(len(net) + sum(dropped) >= n, f"events delivered + dropped ({len(net)} + {sum(dropped)}) < lookups {n}")
    check(peak < bound, f"peak RSS {peak} >= {bound}")


if __name__ == "__main__":
    {"read_file": read_file, "exec_output": exec_output, "events": events}[sys.argv[1]]()
