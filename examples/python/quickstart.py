#!/usr/bin/env python3
"""matchlock Python SDK example: two sandboxes from one client, exec, streaming, stdin, a file
round trip and a cancelled command.

Run from the repository root after `make all fixtures` (and `pip install ./sdk/python`, or
PYTHONPATH=sdk/python):

    MATCHLOCK_BIN=build/matchlock python3 examples/python/quickstart.py [ROOTFS]
"""

import hashlib
import os
import sys
import threading

from matchlock import CANCELLED, Client, RPCError

image = sys.argv[1] if len(sys.argv) > 1 else "build/rootfs-busybox"
if os.path.exists(image):  # a local root filesystem, not a registry reference
    image = os.path.abspath(image)

with Client() as client:  # leaving the block closes every sandbox still open
    sb = client.create(image, memory_mb=256, env={"GREETING": "hello"})
    print(f"created {sb.id}")

    # Run to completion: a string goes through sh -c, a list is argv with no shell.
    r = sb.exec("echo $GREETING from $(uname -n); echo oops >&2; exit 3")
    print(f"exit={r.exit_code} stdout={r.stdout!r} stderr={r.stderr!r}")

    # Stream output as it is produced.
    sb.exec_stream("for i in 1 2 3; do echo tick $i; sleep 0.2; done",
                   stdout=lambda chunk: print("streamed:", chunk.decode().rstrip()))

    # Feed stdin.
    p = sb.exec_pipe(["sed", "s/^/guest says: /"])
    p.write(b"one\ntwo\n")
    p.close_stdin()
    print(p.wait().stdout.decode(), end="")

    # Files of any size travel in chunks.
    data = os.urandom(8 << 20)
    sb.files.write("/tmp/data/blob.bin", data)
    back = sb.files.read("/tmp/data/blob.bin")
    print("round trip ok:", hashlib.sha256(back).digest() == hashlib.sha256(data).digest())
    for f in sb.files.list("/tmp/data"):
        print(f"  {f.name} {f.size} bytes mode {f.mode:o}")

    # A second sandbox on the same client, used at the same time from another thread.
    with client.create(image, hostname="other") as other:
        out = []
        t = threading.Thread(target=lambda: out.append(other.exec(["hostname"]).stdout))
        t.start()
        t.join()
        print("second sandbox:", out[0].decode().strip())

    # A command that runs too long is cancelled.
    try:
        sb.exec("sleep 60", timeout=1)
        sys.exit("expected a cancellation")
    except RPCError as e:
        assert e.code == CANCELLED
        print("cancelled:", e)
