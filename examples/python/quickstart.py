#!/usr/bin/env python3
"""matchlock Python SDK example: exec, streaming, and a file round trip.

Run from the repository root after `make all fixtures`:

    MATCHLOCK_BIN=build/matchlock PYTHONPATH=sdk/python python3 examples/python/quickstart.py [ROOTFS]
"""

import hashlib
import os
import sys

from matchlock import CANCELLED, Client, RPCError, Sandbox

image = sys.argv[1] if len(sys.argv) > 1 else "build/rootfs-busybox"

with Client() as client:
    sandbox_id = client.launch(Sandbox(image).with_memory(256).with_env("GREETING", "hello"))
    print(f"launched {sandbox_id}")

    # Run to completion: a string goes through sh -c, a list is argv with no shell.
    r = client.exec("echo $GREETING from $(uname -n); echo oops >&2; exit 3")
    print(f"exit={r.exit_code} stdout={r.stdout!r} stderr={r.stderr!r} in {r.duration_ms} ms")
    print(client.exec(["uname", "-r"]).stdout.decode().strip())

    # Stream output as it is produced.
    client.exec_stream("for i in 1 2 3; do echo tick $i; sleep 0.2; done",
                       stdout=lambda chunk: print("streamed:", chunk.decode().rstrip()))

    # Feed stdin.
    p = client.exec_pipe(["sed", "s/^/guest says: /"])
    p.write(b"one\ntwo\n")
    p.close_stdin()
    print(p.wait().stdout.decode(), end="")

    # Files of any size travel in chunks.
    data = os.urandom(8 << 20)
    client.write_file("/tmp/data/blob.bin", data)
    back = client.read_file("/tmp/data/blob.bin")
    print("round trip ok:", hashlib.sha256(back).digest() == hashlib.sha256(data).digest())
    for f in client.list_files("/tmp/data"):
        print(f"  {f.name} {f.size} bytes mode {f.mode:o}")

    # A command that runs too long is cancelled.
    try:
        client.exec("sleep 60", timeout=1)
    except RPCError as e:
        assert e.code == CANCELLED
        print("cancelled:", e)
