#!/usr/bin/env python3
"""Raw-protocol driver for test_rpc_async.sh: several sandboxes in one `matchlock rpc`, started
and stopped while the others keep answering. Usage: rpc_async.py CASE [REGISTRY_DIR]; prints
what it measured; exit status 0 when every check held.

The slow registry (slow_registry.py) holds the last byte of its layer until REGISTRY_DIR/release
exists, so "B's create is still unanswered when A's exec answers" is a fact of ordering the test
controls, not a race it hopes to win: a server that stopped serving during the pull would never
answer A, and this driver fails after its bounded wait.
"""

import base64
import glob
import json
import os
import subprocess
import sys
import threading
import time

BIN = os.environ["ML"]
ROOTFS = os.environ["ROOTFS"]
HOME = os.environ["MATCHLOCK_HOME"]
PARAMS, SANDBOX, CANCELLED = -32602, -32000, -32003
TRACE = bool(os.environ.get("RPC_ASYNC_TRACE"))  # every message, timed, on stderr


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"FAIL: {what}")


class Rpc:
    """One `matchlock rpc`; a reader thread records every message in arrival order."""

    def __init__(self) -> None:
        self.p = subprocess.Popen([BIN, "rpc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=None if TRACE else subprocess.DEVNULL)
        self.next_id = 0
        self.cv = threading.Condition()
        self.msgs: list = []  # every message, in the order it arrived
        self.closed = False
        self.reading = threading.Event()  # cleared: the reader stops taking messages
        self.reading.set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stdout:
            if TRACE:
                print(f"{time.monotonic():.2f} < {line[:200]!r}", file=sys.stderr, flush=True)
            with self.cv:
                self.msgs.append(json.loads(line))
                self.cv.notify_all()
            self.reading.wait()
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def send(self, method: str, params: dict) -> int:
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        if TRACE:
            print(f"{time.monotonic():.2f} > {line[:200]}", file=sys.stderr, flush=True)
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()
        return self.next_id

    def note(self, method: str, params: dict) -> None:
        """A notification: no id, no answer."""
        line = json.dumps({"jsonrpc": "2.0", "method": method, "params": params})
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def position(self, id_: int) -> int:
        """Where the answer to id_ is in the arrival order; -1 while it has not arrived."""
        with self.cv:
            for i, m in enumerate(self.msgs):
                if m.get("id") == id_ and "method" not in m:
                    return i
        return -1

    def answer(self, id_: int, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for m in self.msgs:
                    if m.get("id") == id_ and "method" not in m:
                        return m
                check(not self.closed, f"matchlock rpc closed stdout before answering request {id_}")
                left = deadline - time.monotonic()
                check(left > 0, f"no answer to request {id_} within {timeout:.0f} s")
                self.cv.wait(left)

    def call(self, method: str, params: dict, timeout: float = 300) -> dict:
        return self.answer(self.send(method, params), timeout)

    def events(self) -> list:
        with self.cv:
            return [m["params"] for m in self.msgs if m.get("method") == "event"]

    def eof(self) -> None:
        """Close stdin: the server stops what it holds and exits 0."""
        self.p.stdin.close()
        check(self.p.wait(180) == 0, "matchlock rpc's exit status after EOF")


def result(res: dict, what: str) -> dict:
    check("result" in res, f"{what}: {str(res)[:300]}")
    return res["result"]


def error(res: dict, code: int, what: str, words: str = "") -> str:
    err = res.get("error", {})
    check(err.get("code") == code and words in err.get("message", ""),
          f"{what}: want error {code} with '{words}', got {str(res)[:300]}")
    return err["message"]


def out(res: dict, what: str) -> bytes:
    r = result(res, what)
    check(r.get("exit_code") == 0, f"{what}: {r}")
    return base64.b64decode(r.get("stdout", ""))


def create(r: Rpc, image: str = ROOTFS) -> str:
    return result(r.call("create", {"image": image}), f"create {image}")["id"]


def wait_file_line(path: str, line: str, timeout: float, r: Rpc = None, pending: int = 0,
                   count: int = 1) -> None:
    """Wait until file path has line (count times); fail early if request `pending` was
    answered meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                if f.read().split().count(line) >= count:
                    return
        except FileNotFoundError:
            pass
        if r is not None and pending and r.position(pending) >= 0:
            raise SystemExit(f"FAIL: waiting for {line}: request {pending} answered: {r.answer(pending)}")
        check(time.monotonic() < deadline, f"{path}: no {line} within {timeout:.0f} s")
        time.sleep(0.05)


def registry(reg_dir: str) -> str:
    with open(os.path.join(reg_dir, "port")) as f:
        return f"127.0.0.1:{f.read().strip()}/slow/img:1"


def descendants(pid: int) -> list:
    """The processes below pid (pid, command), from /proc."""
    parent = {}
    for d in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(d) as f:
                s = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: fields resume after the last ')'.
        fields = s[s.rindex(")") + 2:].split()
        parent[int(d.split("/")[2])] = (int(fields[1]), s[s.index("(") + 1:s.rindex(")")])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        for child, (pp, comm) in parent.items():
            if pp == p:
                found.append((child, comm))
                frontier.append(child)
    return found


def sandbox_dirs() -> list:
    return [d for d in glob.glob(os.path.join(HOME, "**", "vm-*"), recursive=True) if os.path.isdir(d)]


def listed() -> str:
    return subprocess.run([BIN, "list"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout


def pull(reg_dir: str) -> None:
    """A's execs are answered while B's image is being pulled; then B runs the pulled image."""
    r = Rpc()
    a = create(r)
    t0 = time.monotonic()
    check(out(r.call("exec", {"command": ["echo", "a"]}), "exec on A alone") == b"a\n", "A's output")
    idle_ms = (time.monotonic() - t0) * 1000
    b_create = r.send("create", {"image": registry(reg_dir)})
    wait_file_line(os.path.join(reg_dir, "events"), "blob-start", 120, r, b_create)
    # B is starting: a request that names no sandbox is ambiguous now, naming one is not.
    error(r.call("exec", {"command": "true"}), PARAMS, "exec naming no sandbox of two", '"sandbox": ID')
    error(r.call("exec", {"sandbox": "vm-nosuchbox", "command": "true"}), SANDBOX, "exec on an unknown sandbox",
          "no sandbox vm-nosuchbox")
    worst_ms = 0.0
    for i in range(5):
        t = time.monotonic()
        res = r.call("exec", {"sandbox": a, "command": ["echo", f"a{i}"]}, timeout=120)
        worst_ms = max(worst_ms, (time.monotonic() - t) * 1000)
        check(out(res, f"exec {i} on A during B's pull") == f"a{i}\n".encode(), "A's output during the pull")
        if r.position(b_create) >= 0:
            raise SystemExit(f"FAIL: B's create was answered before A's exec {i}: {r.answer(b_create)}")
    check(base64.b64decode(result(r.call("log", {"sandbox": a}), "log of A")["content"]), "A's log is empty")
    check(r.position(b_create) < 0, "B's create answered while its layer was held")
    open(os.path.join(reg_dir, "release"), "w").close()
    t = time.monotonic()
    b = result(r.answer(b_create, timeout=600), "B's create")["id"]
    boot_ms = (time.monotonic() - t) * 1000
    check(b != a, "two sandboxes, two IDs")
    with open(os.path.join(reg_dir, "nonce")) as f:
        nonce = f.read().encode()
    check(out(r.call("exec", {"sandbox": b, "command": ["cat", "/etc/slow-registry-nonce"]}), "exec on B") == nonce,
          "B runs the pulled image")
    check(result(r.call("close", {"sandbox": b}), "close B") == {}, "close answers {}")
    # One sandbox again: requests that name none are A's (today's SDKs).
    check(out(r.call("exec", {"command": "echo alone"}), "exec on A after closing B") == b"alone\n", "A alone")
    check(result(r.call("close", {}), "close A") == {}, "close A answers {}")
    r.eof()
    print(f"pull: 5 execs on A answered during B's pull (worst {worst_ms:.0f} ms; {idle_ms:.0f} ms before "
          f"it); B's create answered {boot_ms:.0f} ms after its layer was released (rest of the trickle, "
          f"unpack, boot)")


def two() -> None:
    """Two sandboxes, each its own files and events; closing one leaves the other serving; a
    third stopped by `matchlock kill` and a fourth whose lifetime ran out leave the server."""
    r = Rpc()
    a, b = create(r), create(r)
    check(a != b, "two IDs")
    for sid in (a, b):
        res = r.call("write_file", {"sandbox": sid, "path": "/tmp/who",
                                    "content": base64.b64encode(sid.encode()).decode()})
        result(res, f"write_file on {sid}")
    for sid in (a, b):
        got = base64.b64decode(result(r.call("read_file", {"sandbox": sid, "path": "/tmp/who"}), "read_file")["content"])
        check(got == sid.encode(), f"{sid} reads its own file: {got!r}")
        check(out(r.call("exec", {"sandbox": sid, "command": "cat /tmp/who"}), "exec") == sid.encode(), "exec")
    # A denied lookup in each: its event names its sandbox.
    for sid in (a, b):
        r.call("exec", {"sandbox": sid, "command": f"nslookup denied-{sid}.example >/dev/null 2>&1; true"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = {(e.get("sandbox"), e.get("network", {}).get("host", "").rstrip(".")) for e in r.events()}
        if all((sid, f"denied-{sid}.example") in seen for sid in (a, b)):
            break
        time.sleep(0.2)
    else:
        raise SystemExit(f"FAIL: events naming their sandbox; got {r.events()[:6]}")
    # exec_pipe in B: its stdin notifications name B; one that names A reaches nothing.
    pipe = r.send("exec_pipe", {"sandbox": b, "command": "cat"})
    deadline = time.monotonic() + 60
    while not any(m.get("method") == "exec_pipe.ready" and m["params"].get("id") == pipe for m in list(r.msgs)):
        check(time.monotonic() < deadline, "exec_pipe.ready")
        time.sleep(0.05)
    for sid, data in ((a, b"not-for-b\n"), (b, b"for-b\n")):
        r.note("exec_pipe.stdin", {"sandbox": sid, "id": pipe, "data": base64.b64encode(data).decode()})
    r.note("exec_pipe.stdin_eof", {"sandbox": b, "id": pipe})
    result(r.answer(pipe, timeout=60), "exec_pipe in B")
    got = b"".join(base64.b64decode(m["params"]["data"]) for m in list(r.msgs)
                   if m.get("method") == "exec_pipe.stdout" and m["params"].get("id") == pipe)
    check(got == b"for-b\n", f"B's pipe got {got!r}")
    error(r.call("close", {}), PARAMS, "close naming no sandbox of two", '"sandbox": ID')
    # Two closes of A: both answered once A has stopped; a close cannot be cancelled.
    close1, close2 = r.send("close", {"sandbox": a}), r.send("close", {"sandbox": a})
    check(result(r.call("cancel", {"id": close1}), "cancel of a close") == {"cancelled": False},
          "a close is not cancelled")
    for c in (close1, close2):
        check(result(r.answer(c), "close A") == {}, "close A")
    check(" stopped " in next((l for l in listed().splitlines() if l.startswith(a)), ""), "A listed as stopped")
    error(r.call("exec", {"sandbox": a, "command": "true"}), SANDBOX, "exec on closed A", "no sandbox")
    check(out(r.call("exec", {"sandbox": b, "command": "echo b"}), "exec on B") == b"b\n", "B still answers")
    check(out(r.call("exec", {"command": "echo b"}), "exec on the one left") == b"b\n", "B is the one left")
    # `matchlock kill` of a third: it leaves the server (kill returns once it has stopped).
    c = create(r)
    k = subprocess.run([BIN, "kill", c], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    check(k.returncode == 0, f"matchlock kill {c}: {k.stderr}")
    error(r.call("exec", {"sandbox": c, "command": "true"}), SANDBOX, "exec on killed C", "no sandbox")
    check(out(r.call("exec", {"command": "echo b"}), "exec after the kill") == b"b\n", "B is the one left")
    # A lifetime that runs out: the sandbox leaves the server (polled, bounded).
    d = result(r.call("create", {"image": ROOTFS, "resources": {"timeout_seconds": 1}}), "create D")["id"]
    deadline = time.monotonic() + 120
    while True:  # running, then stopping, then gone
        res = r.call("exec", {"sandbox": d, "command": "true"})
        if "no sandbox" in res.get("error", {}).get("message", ""):
            break
        # An exec that was running when the lifetime ran out is answered "the sandbox was
        # stopped"; one sent while it stops, "stopping".
        msg = res.get("error", {}).get("message", "")
        check("result" in res or "stopping" in msg or "was stopped" in msg, f"exec on D: {res}")
        check(time.monotonic() < deadline, "D outlived its lifetime")
        time.sleep(0.2)
    check(" stopped " in next((l for l in listed().splitlines() if l.startswith(d)), ""), "D listed as stopped")
    r.eof()  # B is stopped by the EOF
    check(" stopped " in next((l for l in listed().splitlines() if l.startswith(b)), ""), "B stopped at EOF")
    print("two: each sandbox its own files and events; B served after A closed, C was killed and D's "
          "lifetime ran out")


def cancel(reg_dir: str) -> None:
    """cancel of a create whose image is being pulled leaves no record, directory or process."""
    r = Rpc()
    before_dirs, before_list = sandbox_dirs(), listed()
    c = r.send("create", {"image": registry(reg_dir)})
    wait_file_line(os.path.join(reg_dir, "events"), "blob-start", 120, r, c)
    check(descendants(r.p.pid), "a worker is pulling the image")
    check(result(r.call("cancel", {"id": c}), "cancel") == {"cancelled": True}, "cancel answers cancelled")
    error(r.answer(c, timeout=60), CANCELLED, "the cancelled create")
    deadline = time.monotonic() + 30
    while descendants(r.p.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    check(not descendants(r.p.pid), f"processes left after cancel: {descendants(r.p.pid)}")
    wait_file_line(os.path.join(reg_dir, "events"), "blob-abort", 30)
    check(sandbox_dirs() == before_dirs, f"directories left: {set(sandbox_dirs()) - set(before_dirs)}")
    check(listed() == before_list, f"records left: {listed()}")
    error(r.call("exec", {"command": "true"}), SANDBOX, "exec after the cancelled create", "no sandbox")
    # close of the one sandbox while it is starting (the layer is pulled again) cancels it too.
    c = r.send("create", {"image": registry(reg_dir)})
    wait_file_line(os.path.join(reg_dir, "events"), "blob-start", 120, r, c, count=2)
    check(result(r.call("close", {}), "close while starting") == {}, "close answers {}")
    error(r.answer(c, timeout=60), CANCELLED, "the create closed while starting")
    deadline = time.monotonic() + 30
    while descendants(r.p.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    check(not descendants(r.p.pid), f"processes left after close: {descendants(r.p.pid)}")
    check(sandbox_dirs() == before_dirs and listed() == before_list, "nothing left after close")
    r.eof()
    print("cancel: the pull was abandoned (the registry saw the client leave); nothing left behind")


def proc_status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def unread(fd: int) -> int:
    """Bytes waiting in the pipe behind fd (FIONREAD)."""
    import array
    import fcntl
    import termios
    n = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, n)
    return n[0]


def backpressure() -> None:
    """A client that sends 100 `log` requests (5.6 MB answers) and reads nothing: the server takes
    requests only while stdout holds less than 8 MiB, so its memory stays bounded; once the client
    reads, every request is answered, in order."""
    bound, n = 128 << 20, 100
    r = Rpc()
    a = create(r)
    logs = glob.glob(os.path.join(HOME, "**", a, "log"), recursive=True)
    check(len(logs) == 1, f"the sandbox's log: {logs}")
    with open(logs[0], "a") as f:  # 4 MiB more of log, written from the host (fast)
        for _ in range(4096):
            f.write("x" * 1023 + "\n")
    size = len(base64.b64decode(result(r.call("log", {}), "log")["content"]))
    check(size > 4 << 20, f"log size {size}")
    r.reading.clear()
    r.call("exec", {"command": "true"})  # the reader stops after this answer
    ids = [r.send("log", {}) for _ in range(n)]
    # Wait until the server is idle (in epoll_wait) with its stdout pipe full: a server without
    # backpressure would have answered all n by then, into its own memory.
    deadline, idle = time.monotonic() + 120, 0
    while idle < 3:
        check(time.monotonic() < deadline, "the server never became idle with stdout full")
        with open(f"/proc/{r.p.pid}/wchan") as f:
            wchan = f.read()
        # wchan reads "0" to whoever may not trace the server (it is not dumpable; root may):
        # then all a normal user sees is that it sleeps.
        with open(f"/proc/{r.p.pid}/stat") as f:
            sleeping = f.read().rsplit(")", 1)[1].split()[0] == "S"
        waiting = wchan == "do_epoll_wait" or (wchan == "0" and sleeping)
        idle = idle + 1 if waiting and unread(r.p.stdout.fileno()) >= 60000 else 0
        time.sleep(0.2)
    peak = proc_status(r.p.pid, "VmHWM")
    check(peak < bound, f"peak RSS {peak >> 20} MiB with {n} answers of {size * 4 // 3 >> 20} MiB unread")
    r.reading.set()
    for i in ids:
        got = base64.b64decode(result(r.answer(i, timeout=120), "log")["content"])
        check(len(got) >= size, f"log answer {i}: {len(got)} bytes")
    check(sorted(ids, key=r.position) == ids, "answers in request order")
    r.eof()
    print(f"backpressure: peak RSS of matchlock rpc {peak / (1 << 20):.1f} MiB with {n} answers of "
          f"{size * 4 / 3 / (1 << 20):.1f} MiB each requested and unread (bound {bound >> 20} MiB)")


def limit(reg_dir: str) -> None:
    """16 sandboxes starting at once (all waiting for the held layer); the 17th is refused; EOF
    abandons every start and the server exits with nothing left running."""
    r = Rpc()
    before_dirs, before_list = sandbox_dirs(), listed()
    ids = [r.send("create", {"image": registry(reg_dir)}) for _ in range(16)]
    extra = r.call("create", {"image": ROOTFS}, timeout=60)
    error(extra, SANDBOX, "the 17th create", "16 sandboxes")
    check(all(r.position(i) < 0 for i in ids), "the 16 creates are still starting")
    deadline = time.monotonic() + 60
    while len(descendants(r.p.pid)) < 16 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [p for p, _ in descendants(r.p.pid)]
    check(len(workers) >= 16, f"a worker for each start: {descendants(r.p.pid)}")
    r.eof()
    for i in ids:
        error(r.answer(i, timeout=5), CANCELLED, "a create abandoned at EOF")
    left = [p for p in workers if os.path.exists(f"/proc/{p}") and "Z" not in open(f"/proc/{p}/stat").read().split(")")[-1][:3]]
    check(not left, f"workers left running after EOF: {left}")
    check(sandbox_dirs() == before_dirs, f"directories left: {set(sandbox_dirs()) - set(before_dirs)}")
    check(listed() == before_list, f"records left: {listed()}")
    print("limit: 16 starting sandboxes, the 17th refused; EOF abandoned all 16")


if __name__ == "__main__":
    case = sys.argv[1]
    {"pull": lambda: pull(sys.argv[2]), "two": two, "cancel": lambda: cancel(sys.argv[2]),
     "limit": lambda: limit(sys.argv[2]), "backpressure": backpressure}[case]()
