"""The Python SDK's side of tests/integration/test_spec_errors.sh: launch each bad spec and
print "CASE<TAB>MESSAGE" with the server's error message (the SDK must not judge the values
itself, nor accept and ignore a field the server does not implement)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))
from matchlock import Client, RPCError, Sandbox  # noqa: E402
from matchlock.errors import INVALID_PARAMS  # noqa: E402

IMAGE = os.environ["MATCHLOCK_TEST_IMAGE"]
CASES = {
    "cpus-0": lambda: Sandbox(IMAGE).with_cpus(0),
    "cpus-1000": lambda: Sandbox(IMAGE).with_cpus(1000),
    "memory-10": lambda: Sandbox(IMAGE).with_memory(10),
    "memory-1e9": lambda: Sandbox(IMAGE).with_memory(10**9),
    "disk-size": lambda: Sandbox(IMAGE).with_disk_size(10),
    "timeout-0": lambda: Sandbox(IMAGE).with_timeout(0),
    "mount-missing": lambda: Sandbox(IMAGE).with_mount("/nonexistent-matchlock", "/w"),
    "mount-relative": lambda: Sandbox(IMAGE).with_mount("/tmp", "w"),
    "mount-proc": lambda: Sandbox(IMAGE).with_mount("/tmp", "/proc"),
    "mount-mode": lambda: Sandbox(IMAGE).with_mount("/tmp", "/w", "rx"),
}

with Client() as c:
    for name in sys.argv[1:]:
        try:
            if name == "unknown-key":
                c.call("create", {"image": IMAGE, "no_such_field": 1})
            else:
                c.launch(CASES[name]())
        except RPCError as e:
            if e.code != INVALID_PARAMS:
                sys.exit(f"{name}: code {e.code}, want {INVALID_PARAMS}: {e.message}")
            print(f"{name}\t{e.message}")
        else:
            sys.exit(f"{name}: accepted")
