#!/usr/bin/env python3
"""Our `matchlock rpc` driven with the request shapes the Go Matchlock's SDKs send (its Python
SDK `sdk/python/matchlock/client.py` and Go SDK `pkg/sdk/*.go`, github.com/jingkaihe/matchlock,
read for their wire format only): every method both sides define must behave the same, or be
refused with words that say so (spec/rpc.md, "Compatibility with the Go Matchlock's SDKs").

Run: tests/sdk/run_compat [TEST ...]. Last line: "N passed, N failed".
Environment: MATCHLOCK_BIN, MATCHLOCK_TEST_IMAGE (defaults: build/matchlock, build/rootfs-busybox).
"""

import base64
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("MATCHLOCK_BIN", os.path.join(ROOT, "build", "matchlock"))
IMAGE = os.environ.get("MATCHLOCK_TEST_IMAGE", os.path.join(ROOT, "build", "rootfs-busybox"))
WAIT = 120  # seconds: a bound on every answer

# Their Go SDK fills in its defaults before sending (pkg/sdk/create.go): every resource, always.
GO_RESOURCES = {"cpus": 1, "memory_mb": 512, "disk_size_mb": 5120, "timeout_seconds": 300}


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


class Wire:
    """Their client's framing: one JSON object a line; `params` left out when empty (Python
    SDK); stdin, resize and cancel sent as requests with their own ids and never awaited."""

    def __init__(self) -> None:
        self.p = subprocess.Popen([BIN, "rpc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.next = 0
        self.answers: "dict[int, queue.Queue]" = {}
        self.notes: "queue.Queue" = queue.Queue()
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout
        for line in self.p.stdout:
            msg = json.loads(line)
            if "method" in msg:
                self.notes.put(msg)
            else:
                with self.lock:
                    q = self.answers.setdefault(msg.get("id"), queue.Queue())
                q.put(msg)

    def send(self, method: str, params=None) -> int:
        with self.lock:
            self.next += 1
            rid = self.next
            self.answers.setdefault(rid, queue.Queue())
        req = {"jsonrpc": "2.0", "method": method, "id": rid}
        if params:
            req["params"] = params
        assert self.p.stdin
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        return rid

    def answer(self, rid: int, timeout: float = WAIT) -> dict:
        return self.answers[rid].get(timeout=timeout)

    def call(self, method: str, params=None, timeout: float = WAIT) -> dict:
        return self.answer(self.send(method, params), timeout)

    def result(self, method: str, params=None) -> dict:
        msg = self.call(method, params)
        if "error" in msg:
            raise AssertionError(f"{method}: {msg['error']}")
        return msg["result"]

    def notes_for(self, rid: int, until: str, timeout: float = WAIT) -> list:
        """Notifications of request rid, up to (and including) one whose method ends with until."""
        got, deadline = [], time.monotonic() + timeout
        while True:
            msg = self.notes.get(timeout=max(0.0, deadline - time.monotonic()))
            if msg["params"].get("id") == rid:
                got.append(msg)
                if msg["method"].endswith(until):
                    return got

    def close(self, timeout_seconds: float = 2.0) -> "int | None":
        """Their close(): close {timeout_seconds}, stdin closed, the process waited for that long,
        then killed. Returns the exit status, None when it had to be killed."""
        try:
            self.call("close", {"timeout_seconds": timeout_seconds}, timeout=timeout_seconds + 1.0)
        except queue.Empty:
            pass
        assert self.p.stdin
        self.p.stdin.close()
        try:
            return self.p.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None


class CompatTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.w = Wire()
        # Their Python SDK's launch(): the image, launch_entrypoint, nothing else left at default.
        cls.id = cls.w.result("create", {"image": IMAGE, "launch_entrypoint": True})["id"]

    @classmethod
    def tearDownClass(cls) -> None:
        cls.w.close(30)

    def test_exec(self) -> None:
        r = self.w.result("exec", {"command": "echo hi; echo err >&2; pwd; exit 3", "working_dir": "/tmp"})
        self.assertEqual((r["exit_code"], base64.b64decode(r["stdout"]), base64.b64decode(r["stderr"])),
                         (3, b"hi\n/tmp\n", b"err\n"))

    def test_exec_stream(self) -> None:
        rid = self.w.send("exec_stream", {"command": "echo a; echo b >&2"})
        res = self.w.answer(rid)["result"]
        self.assertEqual(res["exit_code"], 0)

    def test_exec_pipe_with_stdin_requests(self) -> None:
        # Their stdin chunks are requests with ids of their own, never awaited.
        rid = self.w.send("exec_pipe", {"command": "cat"})
        self.w.notes_for(rid, ".ready")
        self.w.send("exec_pipe.stdin", {"id": rid, "data": b64(b"piped\n")})
        self.w.send("exec_pipe.stdin_eof", {"id": rid})
        out = self.w.notes_for(rid, ".stdout")
        self.assertEqual(base64.b64decode(out[-1]["params"]["data"]), b"piped\n")
        self.assertEqual(self.w.answer(rid)["result"]["exit_code"], 0)

    def test_exec_tty_resize(self) -> None:
        rid = self.w.send("exec_tty", {"command": "read x; stty size", "rows": 24, "cols": 80})
        self.w.notes_for(rid, ".ready")
        self.w.send("exec_tty.resize", {"id": rid, "rows": 33, "cols": 101})
        time.sleep(0.5)
        self.w.send("exec_tty.stdin", {"id": rid, "data": b64(b"go\n")})
        res = self.w.answer(rid)["result"]
        self.assertEqual(res["exit_code"], 0)

    def test_files(self) -> None:
        data = os.urandom(100000)
        self.assertEqual(self.w.result("write_file", {"path": "/tmp/c/f.bin", "content": b64(data), "mode": 0o600}), {})
        self.assertEqual(base64.b64decode(self.w.result("read_file", {"path": "/tmp/c/f.bin"})["content"]), data)
        files = self.w.result("list_files", {"path": "/tmp/c"})["files"]
        self.assertEqual([(f["name"], f["size"], f["is_dir"], f["mode"] & 0o777) for f in files],
                         [("f.bin", len(data), False, 0o600)])

    def test_cancel_fire_and_forget(self) -> None:
        rid = self.w.send("exec", {"command": "sleep 60"})
        time.sleep(0.5)
        self.w.send("cancel", {"id": rid})
        self.assertEqual(self.w.answer(rid)["error"]["code"], -32003)

    def test_port_forward_with_addresses(self) -> None:
        r = self.w.result("port_forward", {"forwards": [{"local_port": 0, "remote_port": 8080}],
                                            "addresses": ["127.0.0.1"]})
        self.assertEqual(r["bindings"][0]["address"], "127.0.0.1")
        self.assertEqual(r["bindings"][0]["remote_port"], 8080)
        self.assertGreater(r["bindings"][0]["local_port"], 0)

    def test_allow_list(self) -> None:
        self.assertIn("compat.test", self.w.result("allow_list_add", {"hosts": ["compat.test"]})["allowed_hosts"])
        self.assertNotIn("compat.test", self.w.result("allow_list_delete", {"hosts": ["compat.test"]})["allowed_hosts"])

    def test_log_is_base64(self) -> None:
        # Both SDKs base64-decode `content` (pkg/sdk/log.go, client.py log()); sent without params.
        text = base64.b64decode(self.w.result("log")["content"]).decode("utf-8", "replace")
        self.assertTrue(text)

    def test_refused_options_say_so(self) -> None:
        # Options we do not implement are refused by name, never accepted and ignored.
        for params, words in [
            ({"network": {"allowed_hosts": [], "block_private_ips": True, "dns_servers": ["1.1.1.1"]}},
             "network.dns_servers: not supported"),
            ({"network": {"allowed_hosts": [], "block_private_ips": True, "mtu": 1400}}, "network.mtu: not supported"),
            ({"network": {"allowed_hosts": [], "block_private_ips": True, "intercept": True}},
             "network.intercept: not supported"),
            ({"privileged": True}, "privileged: not supported"),
            ({"extra_disks": [{"host_path": "/tmp/x.ext4", "guest_mount": "/d"}]}, "extra_disks: not supported"),
            ({"vfs": {"workspace": "/workspace", "mounts": {"/workspace/m": {"type": "memory"}}}},
             "vfs.mounts./workspace/m.type memory: not supported"),
        ]:
            msg = self.w.call("create", dict({"image": IMAGE}, **params))
            self.assertEqual(msg.get("error", {}).get("code"), -32602, (params, msg))
            self.assertIn(words, msg["error"]["message"])


class LifecycleCompatTest(unittest.TestCase):
    def test_go_create_defaults_then_close_and_remove(self) -> None:
        # Their Go SDK always sends all four resources (its defaults); their close() asks for a
        # 2 s stop and kills the process 2 s after closing stdin; remove() then runs `rm ID`.
        w = Wire()
        sid = w.result("create", {"image": IMAGE, "resources": dict(GO_RESOURCES)})["id"]
        self.assertEqual(w.result("exec", {"command": "echo ok"})["exit_code"], 0)
        self.assertEqual(w.result("close", {"timeout_seconds": 2.0}), {})
        self.assertEqual(w.close(2.0), 0, "matchlock rpc had to be killed: the close took longer than asked")
        rm = subprocess.run([BIN, "rm", sid], capture_output=True, text=True, timeout=WAIT)
        self.assertEqual(rm.returncode, 0, rm.stderr)

    def test_close_timeout_below_the_grace_is_refused(self) -> None:
        w = Wire()
        w.result("create", {"image": IMAGE})
        msg = w.call("close", {"timeout_seconds": 0.5})
        self.assertEqual(msg.get("error", {}).get("code"), -32602, msg)
        self.assertIn("timeout_seconds", msg["error"]["message"])
        self.assertEqual(w.close(30), 0)

    def test_vfs_host_mounts(self) -> None:
        # Their MountHostDir / MountHostDirReadonly / MountOverlay under vfs.workspace.
        with tempfile.TemporaryDirectory() as tmp:
            dirs = {k: os.path.join(tmp, k) for k in ("rw", "ro", "ov")}
            for d in dirs.values():
                os.mkdir(d)
                with open(os.path.join(d, "f"), "w") as f:
                    f.write("host\n")
            w = Wire()
            w.result("create", {"image": IMAGE, "vfs": {"workspace": "/workspace", "mounts": {
                "/workspace/rw": {"type": "host_fs", "host_path": dirs["rw"]},
                "/workspace/ro": {"type": "host_fs", "host_path": dirs["ro"], "readonly": True},
                "/workspace/ov": {"type": "overlay", "host_path": dirs["ov"]}}}})
            r = w.result("exec", {"command": "echo g > /workspace/rw/n; echo g > /workspace/ov/f; "
                                             "echo g > /workspace/ro/f 2>/dev/null && exit 9; cat /workspace/ro/f"})
            self.assertEqual((r["exit_code"], base64.b64decode(r["stdout"])), (0, b"host\n"), r)
            with open(os.path.join(dirs["rw"], "n")) as f:
                self.assertEqual(f.read(), "g\n")
            with open(os.path.join(dirs["ov"], "f")) as f:
                self.assertEqual(f.read(), "host\n")
            self.assertEqual(w.close(30), 0)

    def test_volume_cli_json(self) -> None:
        # Their volume_create / volume_list / volume_remove: the CLI with --json.
        run = lambda *a: subprocess.run([BIN, "volume", *a], capture_output=True, text=True, timeout=WAIT)  # noqa: E731
        r = run("create", "compatvol", "--size", "64", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        info = json.loads(r.stdout)
        self.assertEqual((info["name"], info["size"]), ("compatvol", "64.0 MB"))
        self.assertTrue(os.path.isfile(info["path"]), info)
        r = run("ls", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn({"name": "compatvol", "size": "64.0 MB", "size_mb": 64, "path": info["path"]}, json.loads(r.stdout))
        self.assertEqual(run("rm", "compatvol").returncode, 0)
        self.assertEqual(json.loads(run("ls", "--json").stdout), [])

    def test_vfs_bad_shapes_are_refused(self) -> None:
        w = Wire()
        for vfs, words in [
            ("x", "vfs must be an object"),
            ({"workspace": "w", "mounts": {}}, "vfs.workspace w: expected an absolute path"),
            ({"mounts": {"/m": "x"}}, "vfs.mounts./m must be an object"),
            ({"mounts": {"/m": {"type": "host_fs"}}}, "vfs.mounts./m.host_path is required"),
            ({"mounts": {"/m": {"type": "host_fs", "host_path": "/tmp", "readonly": "yes"}}},
             "vfs.mounts./m.readonly must be true or false"),
            ({"mounts": {"/m": {"type": "overlay", "host_path": "/tmp", "readonly": True}}},
             "vfs.mounts./m.readonly with type overlay: not supported"),
            ({"mounts": {"/m": {"type": "host_fs", "host_path": "/tmp", "upper": {}}}},
             "vfs.mounts./m.upper: not supported"),
            ({"interception": {}}, "vfs.interception: not supported"),
        ]:
            msg = w.call("create", {"image": IMAGE, "vfs": vfs})
            self.assertEqual(msg.get("error", {}).get("code"), -32602, (vfs, msg))
            self.assertIn(words, msg["error"]["message"])
        self.assertEqual(w.close(30), 0)

    def test_vfs_mount_outside_its_workspace_is_refused(self) -> None:
        w = Wire()
        msg = w.call("create", {"image": IMAGE, "vfs": {"workspace": "/workspace", "mounts": {
            "/data": {"type": "host_fs", "host_path": "/tmp"}}}})
        self.assertEqual(msg.get("error", {}).get("code"), -32602, msg)
        self.assertIn("vfs.mounts./data", msg["error"]["message"])
        self.assertEqual(w.close(30), 0)


def main() -> int:
    loader = unittest.defaultTestLoader
    mod = sys.modules[__name__]
    suite = loader.loadTestsFromNames(sys.argv[1:], mod) if sys.argv[1:] else loader.loadTestsFromModule(mod)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
