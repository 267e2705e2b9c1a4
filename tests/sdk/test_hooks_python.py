"""Python SDK hook tests (sdk/python/matchlock/hooks.py) against the real build/matchlock.

One sandbox (busybox, a rw host folder at /workspace) reaches a loopback HTTPS upstream
(tests/sdk/hooks_upstream.py) through the proxy; the upstream logs what it received.
Run: tests/sdk/run_python_hooks [Class[.test_name] ...]; prints "N passed, N failed" last.
"""

import base64
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))

from matchlock import INVALID_PARAMS, Client, RPCError, hooks  # noqa: E402

os.environ.setdefault("MATCHLOCK_BIN", os.path.join(ROOT, "build", "matchlock"))
IMAGE = os.environ.get("MATCHLOCK_TEST_IMAGE", os.path.join(ROOT, "build", "rootfs-busybox"))
REAL = "sk-live-" + os.urandom(8).hex()


class HooksTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        up = os.path.join(cls.tmp.name, "up")
        os.mkdir(up)
        cls.srv = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "sdk", "hooks_upstream.py"), up])
        for _ in range(200):
            if os.path.exists(os.path.join(up, "port")):
                break
            time.sleep(0.05)
        with open(os.path.join(up, "port")) as f:
            cls.port = int(f.read())
        cls.log_path = os.path.join(up, "requests.log")
        cls.work = os.path.join(cls.tmp.name, "work")
        os.makedirs(os.path.join(cls.work, "locked"))
        with open(os.path.join(cls.work, "locked", "keep.txt"), "w") as f:
            f.write("original\n")
        # The proxy (in `matchlock rpc`) trusts the upstream's test CA through OpenSSL's default path.
        os.environ["SSL_CERT_FILE"] = os.path.join(up, "ca.pem")
        cls.events = []
        cls.seen = []  # what the callbacks were asked
        cls.client = Client()
        cls.client.start()
        host = f"api.test:{cls.port}"
        cls.url = f"https://{host}"
        hooks.launch(cls.client, {
            "image": IMAGE,
            "network": {"allowed_hosts": [host], "add_hosts": [{"host": "api.test", "ip": "127.0.0.1"}],
                        "secrets": {"API_KEY": {"value": REAL, "hosts": [host]}}},
            "mounts": [{"host": cls.work, "guest": "/workspace", "mode": "rw"}],
        }, cls.rules())

    @classmethod
    def rules(cls) -> hooks.Hooks:
        def on_cb(rq: hooks.NetworkRequest) -> hooks.NetworkDecision:
            cls.seen.append(rq)
            return hooks.allow(set_headers={"X-From-Callback": "cb-" + rq.method}, delete_headers=["x-drop"])

        def slow(rq: hooks.NetworkRequest) -> bool:
            time.sleep(4)  # past callback_timeout_ms: the server has refused already
            return True

        def rewrite(rq: hooks.FileRequest) -> bytes:
            cls.seen.append(rq)
            return b"rewritten:" + (rq.data or b"").upper()

        return hooks.Hooks(
            network=[hooks.NetworkRule(name="no-admin", path="/admin/**", action="block"),
                     hooks.NetworkRule(name="cb", path="/cb", callback=on_cb),
                     hooks.NetworkRule(name="slow", path="/slow", callback=slow),
                     hooks.NetworkRule(name="move", path="/old/**", rewrite_path="/new", set_query={"k": "v w"},
                                       delete_query=["drop"]),
                     hooks.NetworkRule(name="tag", set_headers={"X-Tag": "t"}, set_response_headers={"X-Hooked": "1"},
                                       body_replacements=[{"find": "path=", "replace": "hooked-path="}])],
            files=[hooks.FileRule(name="locked", ops=["write", "create", "remove"], path="/workspace/locked/**",
                                  action="block"),
                   hooks.FileRule(name="rw", ops=["write"], path="/workspace/rewrite.txt", rewrite=rewrite),
                   hooks.FileRule(name="audit", phase="after", ops=["create"], path="/workspace/*")],
            callback_timeout_ms=1500,
            on_event=cls.events.append)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.client.close()
        cls.srv.kill()
        cls.srv.wait()
        os.environ.pop("SSL_CERT_FILE", None)
        cls.tmp.cleanup()

    def setUp(self) -> None:
        hooks.set_hooks(self.client, self.rules())  # a test may have changed them
        open(self.log_path, "a").close()
        self.mark = os.path.getsize(self.log_path)

    def upstream(self) -> str:
        with open(self.log_path) as f:
            f.seek(self.mark)
            return f.read()

    def wget(self, path: str, *headers: str) -> str:
        hs = " ".join(f'--header "{h}"' for h in headers)
        r = self.client.exec(f"wget -q -S -O - {hs} '{self.url}{path}' 2>&1; echo rc=$?")
        return r.stdout.decode()

    def wait_event(self, pred, what: str) -> dict:
        for _ in range(100):
            for e in list(self.events):
                if pred(e):
                    return e
            time.sleep(0.05)
        self.fail(f"no event {what}: {self.events[-5:]}")

    def test_rule_blocks_a_path(self) -> None:
        out = self.wget("/admin/users")
        self.assertIn("403 Forbidden", out)
        self.assertNotIn("/admin", self.upstream())
        e = self.wait_event(lambda e: e.get("type") == "network" and e["network"].get("blocked")
                            and "/admin/users" in e["network"].get("url", ""), "for the blocked request")
        self.assertIn("hook rule no-admin", e["network"]["block_reason"])
        # Dot segments do not get around it.
        self.assertIn("403 Forbidden", self.wget("/public/../admin/x"))
        self.assertNotIn("admin", self.upstream())

    def test_edits_and_response_headers(self) -> None:
        out = self.wget("/ok")
        self.assertIn("rc=0", out)
        self.assertIn("X-Hooked: 1", out.replace("x-hooked", "X-Hooked"))
        self.assertIn("x-tag: t", self.upstream().lower())
        # The body was replaced and re-framed (the upstream's Content-Length no longer holds).
        self.assertIn("hooked-path=/ok\n", out)
        self.assertNotIn("Content-Length: 9", out)

    def test_path_and_query_rewrite(self) -> None:
        self.assertIn("rc=0", self.wget("/old/x?drop=1&keep=2"))
        self.assertIn("GET /new?keep=2&k=v%20w HTTP/1.1", self.upstream())
        e = self.wait_event(lambda e: e.get("type") == "network" and "/new?" in e["network"].get("url", ""),
                            "naming the rewritten path")
        self.assertFalse(e["network"]["blocked"])

    def test_callback_rewrites_a_header_and_never_sees_a_secret(self) -> None:
        self.seen.clear()
        out = self.wget("/cb", "X-Key: $API_KEY", "X-Drop: 1")
        self.assertIn("rc=0", out)
        log = self.upstream()
        self.assertIn("x-from-callback: cb-GET", log)
        self.assertNotIn("X-Drop", log)
        # Secrets are put in after the hooks: the upstream gets the value, the callback the placeholder.
        self.assertIn(f"X-Key: {REAL}", log)
        rq = [s for s in self.seen if isinstance(s, hooks.NetworkRequest)][-1]
        self.assertEqual((rq.rule, rq.path, rq.host), ("cb", "/cb", "api.test"))
        self.assertTrue(rq.headers["x-key"].startswith("SANDBOX_SECRET_"), rq.headers)
        self.assertNotIn(REAL, repr(rq))

    def test_hanging_callback_fails_closed(self) -> None:
        out = self.wget("/slow")
        self.assertIn("403 Forbidden", out)
        self.assertNotIn("/slow", self.upstream())
        e = self.wait_event(lambda e: e.get("type") == "network" and "/slow" in e["network"].get("url", ""),
                            "for the refused request")
        self.assertIn("no answer", e["network"]["block_reason"])
        time.sleep(3)  # the late answer arrives and is ignored
        self.assertIn("rc=0", self.wget("/ok"))

    def test_rules_change_on_a_live_sandbox(self) -> None:
        hooks.set_hooks(self.client, hooks.Hooks(network=[hooks.NetworkRule(name="all", action="block")]))
        self.assertIn("403 Forbidden", self.wget("/ok"))
        now = hooks.get_hooks(self.client)
        self.assertEqual([r["name"] for r in now["network"]], ["all"])
        self.assertEqual(now["files"], [])  # a list given replaces the whole list

    def test_invalid_rules_change_nothing(self) -> None:
        bad = hooks.Hooks(network=[hooks.NetworkRule(name="x", set_headers={"Host": "evil"})])
        with self.assertRaises(RPCError) as cm:
            hooks.set_hooks(self.client, bad)
        self.assertEqual(cm.exception.code, INVALID_PARAMS)
        self.assertIn("set_headers", str(cm.exception))
        self.assertIn("no-admin", [r["name"] for r in hooks.get_hooks(self.client)["network"]])

    def test_file_rule_blocks_writes_under_a_path(self) -> None:
        r = self.client.exec("echo bad > /workspace/locked/keep.txt; echo new > /workspace/locked/new.txt; "
                             "rm -f /workspace/locked/keep.txt; cat /workspace/locked/keep.txt")
        self.assertEqual(r.stdout, b"original\n")
        self.assertIn(b"Permission denied", r.stderr)
        with open(os.path.join(self.work, "locked", "keep.txt")) as f:
            self.assertEqual(f.read(), "original\n")
        self.assertFalse(os.path.exists(os.path.join(self.work, "locked", "new.txt")))
        e = self.wait_event(lambda e: e.get("type") == "file" and e["file"]["path"] == "/workspace/locked/new.txt",
                            "for the blocked create")
        self.assertEqual((e["file"]["blocked"], e["file"]["rule"]), (True, "locked"))

    def test_write_rewrite_callback(self) -> None:
        self.seen.clear()
        r = self.client.exec("echo hello > /workspace/rewrite.txt && echo ok")
        self.assertEqual(r.stdout, b"ok\n", r.stderr)
        with open(os.path.join(self.work, "rewrite.txt"), "rb") as f:
            self.assertEqual(f.read(), b"rewritten:HELLO\n")
        rq = [s for s in self.seen if isinstance(s, hooks.FileRequest)][-1]
        self.assertEqual((rq.op, rq.path, rq.offset, rq.data), ("write", "/workspace/rewrite.txt", 0, b"hello\n"))
        # The after rule reported the create.
        self.wait_event(lambda e: e.get("type") == "file" and e["file"]["path"] == "/workspace/rewrite.txt"
                        and not e["file"]["blocked"], "for the create")

    def test_no_handler_fails_closed(self) -> None:
        # A callback rule whose function this client does not know: the client answers an error.
        hooks.set_hooks(self.client, hooks.Hooks(network=[hooks.NetworkRule(name="ghost", path="/g", action="callback")]))
        self.assertIn("403 Forbidden", self.wget("/g"))
        self.assertNotIn("/g", self.upstream())


class WireTest(unittest.TestCase):
    def test_wire_shapes(self) -> None:
        h = hooks.Hooks(network=[hooks.NetworkRule(path="/x", callback=lambda rq: None),
                                 hooks.NetworkRule(hosts=["a.test"], delete_query=["k"])],
                        files=[hooks.FileRule(ops=["write"], rewrite=lambda rq: b"")], callback_timeout_ms=100)
        self.assertEqual(h.wire(), {
            "network": [{"name": "py-network-0", "action": "callback", "path": "/x"},
                        {"hosts": ["a.test"], "delete_query": ["k"]}],
            "files": [{"phase": "before", "name": "py-file-0", "ops": ["write"], "action": "rewrite"}],
            "callback_timeout_ms": 100})
        ans = h.answer({"kind": "file", "rule": "py-file-0", "op": "write", "path": "/p",
                        "data": base64.b64encode(b"x").decode()})
        self.assertEqual(ans, {"action": "allow", "data": ""})
        self.assertEqual(h.answer({"kind": "network", "rule": "py-network-0"}), {"action": "allow"})
        with self.assertRaises(Exception):
            h.answer({"kind": "network", "rule": "nope"})


def main() -> int:
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    loader = unittest.defaultTestLoader
    names = sys.argv[1:]
    suite = (loader.loadTestsFromNames(names, sys.modules[__name__]) if names
             else loader.loadTestsFromModule(sys.modules[__name__]))
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    print(f"{result.testsRun - failed - skipped} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
