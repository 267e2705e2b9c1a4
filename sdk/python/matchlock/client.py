"""The matchlock client: spawns `matchlock rpc` and speaks JSON-RPC 2.0 over its stdio."""

import base64
import collections
import itertools
import json
import os
import queue
import select
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Deque, Dict, List, Optional, Sequence, Union

from .errors import CANCELLED, MatchlockError, RPCError
from .sandbox import Sandbox

Command = Union[str, Sequence[str]]
Sink = Union[Callable[[bytes], Any], IO[Any], None]

#: Raw bytes per write_file/read_file request; the server's request lines are limited to
#: 16 MiB, and 4 MiB of raw data is about 5.6 MB of base64 (the server reads at most 8 MiB per
#: read_file request).
FILE_CHUNK = 4 << 20

#: read_file's default bound on a whole file: past it read_file raises instead of filling memory.
READ_FILE_MAX = 256 << 20

# How long to wait for the server's answer after asking it to cancel a request.
_CANCEL_GRACE_S = 30.0


@dataclass
class ExecResult:
    """The outcome of a command: its exit code, its output and how long it ran."""

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    duration_ms: int = 0
    #: True when the server kept only the first 16 MiB of stdout or stderr (exec only).
    truncated: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0


@dataclass
class FileInfo:
    """One entry of ``list_files``."""

    name: str  #: UTF-8; bytes that are not UTF-8 appear as U+FFFD
    size: int
    mode: int
    mod_time: str
    is_dir: bool
    name_bytes: bytes = b""  #: the name's exact bytes


@dataclass
class PortBinding:
    """One forwarded port returned by ``port_forward``."""

    address: str
    local_port: int
    remote_port: int


@dataclass
class _Call:
    id: int
    method: str
    q: "queue.Queue[tuple]" = field(default_factory=queue.Queue)
    # When set, notifications are handled on the reader thread instead of being queued.
    handler: Optional[Callable[[str, Dict[str, Any]], None]] = None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(s: Optional[str]) -> bytes:
    return base64.b64decode(s) if s else b""


def _sink(target: Sink) -> Optional[Callable[[bytes], None]]:
    """Turn a callable or a file-like object into a function taking bytes."""
    if target is None:
        return None
    write = getattr(target, "write", None)
    if write is None:
        if callable(target):
            return target  # type: ignore[return-value]
        raise TypeError("an output sink must be a callable or have a write() method")
    binary = getattr(target, "buffer", None)

    def put(data: bytes) -> None:
        if binary is not None:
            target.flush()  # type: ignore[union-attr]
            binary.write(data)
            binary.flush()
            return
        try:
            write(data)
        except TypeError:
            write(data.decode("utf-8", errors="replace"))
        flush = getattr(target, "flush", None)
        if flush:
            flush()

    return put


def _command(cmd: Command) -> Union[str, List[str]]:
    if isinstance(cmd, str):
        return cmd
    argv = list(cmd)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("command must be a string or a non-empty sequence of strings")
    return argv


def _exec_params(cmd: Command, working_dir: Optional[str], user: Optional[str],
                 env: Optional[Dict[str, str]]) -> Dict[str, Any]:
    p: Dict[str, Any] = {"command": _command(cmd)}
    if working_dir:
        p["working_dir"] = working_dir
    if user:
        p["user"] = user
    if env:
        p["env"] = dict(env)
    return p


def find_binary() -> str:
    """The `matchlock` binary: $MATCHLOCK_BIN, else the first `matchlock` on PATH."""
    env = os.environ.get("MATCHLOCK_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise MatchlockError(f"MATCHLOCK_BIN={env} is not an executable file")
        return env
    found = shutil.which("matchlock")
    if not found:
        raise MatchlockError("cannot find the matchlock binary: put it on PATH or set MATCHLOCK_BIN")
    return found


class Client:
    """A connection to one `matchlock rpc` process; the client holds one sandbox at a time.

    Use it as a context manager; leaving the block closes the sandbox and the process::

        with Client() as c:
            c.launch(Sandbox("build/rootfs-busybox"))
            print(c.exec("echo hi").stdout)

    Every method is safe to call from several threads at once; requests overlap on the wire.
    """

    def __init__(self, binary: Optional[str] = None, *, stderr: Optional[IO[Any]] = None) -> None:
        """``binary`` overrides the search for `matchlock`; ``stderr``, when given, receives the
        server's log lines (they are otherwise kept only to explain failures)."""
        self._binary = binary
        self._stderr_sink = stderr
        self._proc: Optional[subprocess.Popen] = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # guards _pending and _dead
        self._wlock = threading.Lock()  # serialises writes to the server's stdin
        self._pending: Dict[int, _Call] = {}
        self._dead: Optional[str] = None
        self._stderr_tail: Deque[str] = collections.deque(maxlen=20)
        self._threads: List[threading.Thread] = []
        self.sandbox_id: Optional[str] = None

    # ---- process ---------------------------------------------------------------------------
    def start(self) -> "Client":
        """Spawn `matchlock rpc`. Called by ``__enter__`` and, lazily, by ``launch``."""
        if self._proc:
            return self
        binary = self._binary or find_binary()
        try:
            self._proc = subprocess.Popen([binary, "rpc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, bufsize=0)
        except OSError as e:
            raise MatchlockError(f"cannot start {binary} rpc: {e}") from e
        for fn, name in ((self._read_loop, "matchlock-rpc-reader"), (self._stderr_loop, "matchlock-rpc-stderr")):
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __enter__(self) -> "Client":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _stderr_loop(self) -> None:
        assert self._proc and self._proc.stderr
        for raw in iter(self._proc.stderr.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self._stderr_tail.append(line)
            if self._stderr_sink is not None:
                try:
                    self._stderr_sink.write(line + "\n")
                except Exception:  # a broken log sink must not break the client
                    pass

    def _read_loop(self) -> None:
        assert self._proc and self._proc.stdout
        out = self._proc.stdout
        try:
            for line in iter(out.readline, b""):
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue  # stdout carries only protocol; ignore anything else
                if isinstance(msg, dict):
                    self._dispatch(msg)
        except (OSError, ValueError):
            pass
        # The server is gone: fail everything still waiting.
        try:
            rc = self._proc.wait(timeout=5)
            why = f"matchlock rpc exited with status {rc}"
        except subprocess.TimeoutExpired:
            why = "matchlock rpc closed its output"
        time.sleep(0.05)  # let the stderr thread collect the last words
        tail = " | ".join(list(self._stderr_tail)[-5:])
        if tail:
            why += f": {tail}"
        with self._lock:
            self._dead = why
            calls = list(self._pending.values())
            self._pending.clear()
        for c in calls:
            c.q.put(("dead", why))

    def _dispatch(self, msg: Dict[str, Any]) -> None:
        if "method" in msg and ("id" in msg or msg["method"] == "event"):
            from .hooks import on_server_message  # hook questions from the server, and events

            if on_server_message(self, msg):
                return
        if "method" in msg:
            params = msg.get("params") or {}
            if not isinstance(params, dict):
                return
            with self._lock:
                call = self._pending.get(params.get("id"))  # type: ignore[arg-type]
            if call is None:
                return
            if call.handler is not None:
                call.handler(msg["method"], params)
            else:
                call.q.put(("notify", msg["method"], params))
            return
        with self._lock:
            call = self._pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
        if call is None:
            return
        if "error" in msg:
            err = msg["error"] if isinstance(msg["error"], dict) else {}
            call.q.put(("error", RPCError(int(err.get("code", 0)), str(err.get("message", "")), call.method,
                                          err.get("data"))))
        else:
            call.q.put(("result", msg.get("result")))

    def _write(self, obj: Dict[str, Any]) -> None:
        obj["jsonrpc"] = "2.0"
        line = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        if not self._proc or not self._proc.stdin:
            raise MatchlockError("the client is not started")
        with self._wlock:
            try:
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
            except (OSError, ValueError) as e:
                raise MatchlockError(f"cannot talk to matchlock rpc: {self._dead or e}") from e

    # ---- requests --------------------------------------------------------------------------
    def _request(self, method: str, params: Dict[str, Any],
                 handler: Optional[Callable[[str, Dict[str, Any]], None]] = None) -> _Call:
        self.start()
        call = _Call(next(self._ids), method, handler=handler)
        with self._lock:
            if self._dead:
                raise MatchlockError(f"{method}: {self._dead}")
            self._pending[call.id] = call
        try:
            self._write({"id": call.id, "method": method, "params": params})
        except MatchlockError:
            with self._lock:
                self._pending.pop(call.id, None)
            raise
        return call

    def _notify(self, method: str, params: Dict[str, Any]) -> None:
        self._write({"method": method, "params": params})

    def _wait(self, call: _Call, timeout: Optional[float] = None,
              on_notify: Optional[Callable[[str, Dict[str, Any]], None]] = None) -> Any:
        """Wait for the answer to ``call``. Past ``timeout`` seconds (or on Ctrl-C) the request is
        cancelled and the server's answer (normally RPCError CANCELLED) is raised."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        cancelled_at: Optional[float] = None
        while True:
            wait = None
            now = time.monotonic()
            if cancelled_at is not None:
                wait = max(0.0, cancelled_at + _CANCEL_GRACE_S - now)
            elif deadline is not None:
                wait = max(0.0, deadline - now)
            try:
                item = call.q.get(timeout=wait)
            except queue.Empty:
                if cancelled_at is not None:
                    with self._lock:
                        self._pending.pop(call.id, None)
                    raise MatchlockError(f"{call.method}: no answer {_CANCEL_GRACE_S:.0f} s after cancel")
                cancelled_at = time.monotonic()
                self.cancel(call.id)
                continue
            except KeyboardInterrupt:
                try:
                    self.cancel(call.id)
                except MatchlockError:
                    pass
                raise
            kind = item[0]
            if kind == "notify":
                if on_notify:
                    on_notify(item[1], item[2])
            elif kind == "result":
                return item[1]
            elif kind == "error":
                raise item[1]
            else:
                raise MatchlockError(f"{call.method}: {item[1]}")

    def call(self, method: str, params: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Send one raw JSON-RPC request and return its result (for methods without a helper)."""
        return self._wait(self._request(method, params or {}), timeout)

    def cancel(self, request_id: int) -> bool:
        """Ask the server to cancel a running request; True if it was running."""
        call = self._request("cancel", {"id": request_id})
        res = self._wait(call, timeout=_CANCEL_GRACE_S)
        return bool(res and res.get("cancelled"))

    # ---- sandbox -----------------------------------------------------------------------------
    def launch(self, sandbox: Sandbox) -> str:
        """Create and boot the sandbox; returns its id. One sandbox per client at a time."""
        if self.sandbox_id is not None:
            # The server holds several, but this client's calls name none: they would be ambiguous.
            raise MatchlockError(f"launch: this client already has sandbox {self.sandbox_id}: close or remove "
                                 "it first, or use another Client")
        res = self.call("create", sandbox.create_params())
        self.sandbox_id = res["id"]
        try:
            for local, remote in sandbox.port_forwards:
                self.port_forward(local, remote)
        except MatchlockError:
            self._close_sandbox()
            raise
        return self.sandbox_id  # type: ignore[return-value]

    def exec(self, command: Command, *, working_dir: Optional[str] = None, user: Optional[str] = None,
             env: Optional[Dict[str, str]] = None, timeout: Optional[float] = None) -> ExecResult:
        """Run a command to completion and return its exit code and captured output.

        A string runs through ``sh -c``; a list is argv, run with no shell. Past ``timeout``
        seconds the command is cancelled and RPCError(CANCELLED) is raised.
        """
        res = self._wait(self._request("exec", _exec_params(command, working_dir, user, env)), timeout)
        return ExecResult(int(res["exit_code"]), _unb64(res.get("stdout")), _unb64(res.get("stderr")),
                          int(res.get("duration_ms", 0)), bool(res.get("truncated", False)),
                          bool(res.get("stdout_truncated", False)), bool(res.get("stderr_truncated", False)))

    def exec_stream(self, command: Command, stdout: Sink = None, stderr: Sink = None, *,
                    working_dir: Optional[str] = None, user: Optional[str] = None,
                    env: Optional[Dict[str, str]] = None, timeout: Optional[float] = None) -> ExecResult:
        """Run a command, passing its output to ``stdout``/``stderr`` (callables taking bytes, or
        file-like objects) as it arrives, in the calling thread. Output without a sink is
        dropped. Returns the exit code and duration (``stdout``/``stderr`` of the result are empty).
        """
        out, err = _sink(stdout), _sink(stderr)

        def on_notify(method: str, params: Dict[str, Any]) -> None:
            fn = out if method.endswith(".stdout") else err if method.endswith(".stderr") else None
            if fn:
                fn(_unb64(params.get("data")))

        call = self._request("exec_stream", _exec_params(command, working_dir, user, env))
        res = self._wait(call, timeout, on_notify)
        return ExecResult(int(res["exit_code"]), duration_ms=int(res.get("duration_ms", 0)))

    def exec_pipe(self, command: Command, stdout: Sink = None, stderr: Sink = None, *,
                  working_dir: Optional[str] = None, user: Optional[str] = None,
                  env: Optional[Dict[str, str]] = None) -> "Process":
        """Start a command with a stdin pipe; returns a ``Process`` to write to and wait for.

        Output goes to the sinks (called on the client's reader thread; they must not block on
        this client) or, without them, is collected into the result of ``Process.wait``.
        """
        proc = Process(self, "exec_pipe", _sink(stdout), _sink(stderr))
        proc._start(_exec_params(command, working_dir, user, env))
        return proc

    def exec_interactive(self, command: Command, stdin: Optional[IO[Any]] = None, stdout: Sink = None, *,
                         rows: Optional[int] = None, cols: Optional[int] = None,
                         working_dir: Optional[str] = None, user: Optional[str] = None) -> int:
        """Run a command on a pseudo-terminal, copying ``stdin`` (default: sys.stdin) to it and its
        output to ``stdout`` (default: sys.stdout) until it exits; returns the exit code.

        When stdin is a terminal it is put in raw mode for the duration and window size changes
        are forwarded.
        """
        stdin = sys.stdin if stdin is None else stdin
        sink = _sink(sys.stdout if stdout is None else stdout)
        fd: Optional[int] = None
        try:
            fd = stdin.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        is_tty = fd is not None and os.isatty(fd)
        if rows is None or cols is None:
            try:
                size = os.get_terminal_size(fd if is_tty else 1)
                rows, cols = rows or size.lines, cols or size.columns
            except OSError:
                rows, cols = rows or 24, cols or 80
        params = _exec_params(command, working_dir, user, None)
        params.update(rows=rows, cols=cols)
        proc = Process(self, "exec_tty", sink, None)
        saved = None
        old_winch = None
        if is_tty:
            import signal
            import termios
            import tty
            saved = termios.tcgetattr(fd)  # type: ignore[arg-type]
            tty.setraw(fd)  # type: ignore[arg-type]
            if threading.current_thread() is threading.main_thread():
                def on_winch(*_: Any) -> None:
                    s = os.get_terminal_size(fd)  # type: ignore[arg-type]
                    proc.resize(s.lines, s.columns)
                old_winch = signal.signal(signal.SIGWINCH, on_winch)
        try:
            proc._start(params)
            stop = threading.Event()
            pump = threading.Thread(target=_pump_stdin, args=(proc, stdin, fd, stop), daemon=True)
            pump.start()
            try:
                return proc.wait().exit_code
            finally:
                stop.set()
        finally:
            if saved is not None:
                import signal
                import termios
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)  # type: ignore[arg-type]
                if old_winch is not None:
                    signal.signal(signal.SIGWINCH, old_winch)

    # ---- files -------------------------------------------------------------------------------
    def write_file(self, path: str, content: Union[bytes, str], mode: int = 0o644) -> None:
        """Write a file in the guest (parents are created), in chunks of any total size."""
        data = content.encode() if isinstance(content, str) else bytes(content)
        view = memoryview(data)
        off = 0
        while True:
            chunk = view[off:off + FILE_CHUNK]
            self.call("write_file", {"path": path, "content": _b64(chunk), "mode": mode, "append": off > 0})
            off += len(chunk)
            if off >= len(data):
                return

    def read_file(self, path: str, max_bytes: int = READ_FILE_MAX) -> bytes:
        """Read a whole file from the guest, in chunks. A file larger than ``max_bytes``
        (default READ_FILE_MAX, 256 MiB) raises MatchlockError instead of filling memory."""
        parts: List[bytes] = []
        off = 0
        while True:
            want = min(FILE_CHUNK, max_bytes - off + 1)  # one byte past the bound tells us it is larger
            res = self.call("read_file", {"path": path, "offset": off, "length": want})
            chunk = _unb64(res.get("content"))
            parts.append(chunk)
            off += len(chunk)
            if off > max_bytes:
                raise MatchlockError(f"read_file {path}: the file is larger than max_bytes={max_bytes}; "
                                     "pass a larger max_bytes to read it")
            if len(chunk) < want:
                return b"".join(parts)

    def list_files(self, path: str) -> List[FileInfo]:
        """The entries of a guest directory."""
        res = self.call("list_files", {"path": path})
        return [FileInfo(f["name"], int(f["size"]), int(f["mode"]), f.get("mod_time", ""), bool(f["is_dir"]),
                         _unb64(f.get("name_b64")) if "name_b64" in f else f["name"].encode())
                for f in res.get("files", [])]

    # ---- network -----------------------------------------------------------------------------
    def port_forward(self, local_port: int, remote_port: int, addresses: Optional[List[str]] = None) -> List[PortBinding]:
        """Forward a host port to a guest port."""
        params: Dict[str, Any] = {"forwards": [{"local_port": local_port, "remote_port": remote_port}]}
        if addresses:
            params["addresses"] = list(addresses)
        res = self.call("port_forward", params)
        return [PortBinding(b["address"], int(b["local_port"]), int(b["remote_port"])) for b in res.get("bindings", [])]

    def allow_list_add(self, *hosts: str) -> List[str]:
        """Allow more hosts at run time; returns the whole allow-list."""
        return list(self.call("allow_list_add", {"hosts": list(hosts)}).get("allowed_hosts", []))

    def allow_list_delete(self, *hosts: str) -> List[str]:
        """Remove hosts from the allow-list; returns the whole allow-list."""
        return list(self.call("allow_list_delete", {"hosts": list(hosts)}).get("allowed_hosts", []))

    def log(self) -> str:
        """The sandbox's log so far (its last 16 MiB); bytes that are not UTF-8 appear as U+FFFD."""
        return self.log_bytes().decode("utf-8", errors="replace")

    def log_bytes(self) -> bytes:
        """The sandbox's log so far (its last 16 MiB), exactly as written."""
        return _unb64(self.call("log").get("content"))

    # ---- shutdown ----------------------------------------------------------------------------
    def _close_sandbox(self) -> None:
        if self.sandbox_id is None:
            return
        try:
            self.call("close", {})
        finally:
            self.sandbox_id = None

    def close(self) -> None:
        """Stop the sandbox and end `matchlock rpc`. The sandbox stays listed as stopped (with
        its log) until ``matchlock rm ID``, ``matchlock prune`` or ``remove``."""
        proc = self._proc
        if proc is None:
            return
        try:
            if self._dead is None:
                self._close_sandbox()
        except MatchlockError:
            pass
        finally:
            self.sandbox_id = None
            try:
                with self._wlock:
                    if proc.stdin:
                        proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for t in self._threads:
                t.join(timeout=5)
            self._proc = None

    def remove(self) -> None:
        """Stop the sandbox and remove its record and directory (``matchlock rm``), keeping the
        client usable for another ``launch``."""
        sid = self.sandbox_id
        self._close_sandbox()
        if sid is None:
            return
        binary = self._binary or find_binary()
        r = subprocess.run([binary, "rm", sid], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise MatchlockError(f"matchlock rm {sid}: {r.stderr.strip()}")


def _pump_stdin(proc: "Process", stdin: IO[Any], fd: Optional[int], stop: threading.Event) -> None:
    """Copy ``stdin`` to an interactive process until EOF or until it exits."""
    try:
        while not stop.is_set():
            if fd is not None:
                r, _, _ = select.select([fd], [], [], 0.2)
                if not r:
                    continue
                data = os.read(fd, 65536)
            else:
                data = stdin.read(65536)
            if not data:
                break
            proc.write(data)
        if not stop.is_set():
            proc.close_stdin()
    except (OSError, ValueError, MatchlockError):
        pass


class Process:
    """A command started with ``exec_pipe`` (or ``exec_interactive``): write to its stdin, then
    ``wait`` for it."""

    def __init__(self, client: Client, method: str, out: Optional[Callable[[bytes], None]],
                 err: Optional[Callable[[bytes], None]]) -> None:
        self._client = client
        self._method = method
        self._out, self._err = out, err
        self._bufs: Dict[str, List[bytes]] = {"stdout": [], "stderr": []}
        self._ready = threading.Event()
        self._call: Optional[_Call] = None

    def _on_notify(self, method: str, params: Dict[str, Any]) -> None:
        kind = method.rsplit(".", 1)[-1]
        if kind == "ready":
            self._ready.set()
            return
        data = _unb64(params.get("data"))
        fn = self._out if kind == "stdout" else self._err if kind == "stderr" else None
        if fn:
            fn(data)
        elif kind in self._bufs:
            self._bufs[kind].append(data)

    def _start(self, params: Dict[str, Any]) -> None:
        self._call = self._client._request(self._method, params, handler=self._on_notify)
        # Either ready arrives, or the request fails (its answer is then queued).
        while not self._ready.wait(0.05):
            if not self._call.q.empty():
                self._client._wait(self._call)  # raises the error
                self._ready.set()  # finished without ready: nothing more to write

    @property
    def id(self) -> int:
        """The request id of this process (for ``Client.cancel``)."""
        assert self._call
        return self._call.id

    def write(self, data: Union[bytes, str]) -> None:
        """Send bytes to the process's stdin."""
        b = data.encode() if isinstance(data, str) else bytes(data)
        for i in range(0, len(b), FILE_CHUNK):
            self._client._notify(self._method + ".stdin", {"id": self.id, "data": _b64(b[i:i + FILE_CHUNK])})

    def close_stdin(self) -> None:
        """Close the process's stdin (it sees end of file)."""
        self._client._notify(self._method + ".stdin_eof", {"id": self.id})

    def resize(self, rows: int, cols: int) -> None:
        """Change the terminal size (exec_interactive only)."""
        if self._method == "exec_tty":
            self._client._notify("exec_tty.resize", {"id": self.id, "rows": rows, "cols": cols})

    def cancel(self) -> bool:
        """Terminate the process; ``wait`` then raises RPCError(CANCELLED)."""
        return self._client.cancel(self.id)

    def wait(self, timeout: Optional[float] = None) -> ExecResult:
        """Wait for the process to exit. Output not sent to a sink is in the result."""
        assert self._call
        res = self._client._wait(self._call, timeout)
        return ExecResult(int(res["exit_code"]), b"".join(self._bufs["stdout"]), b"".join(self._bufs["stderr"]),
                          int(res.get("duration_ms", 0)))


__all__ = ["Client", "ExecResult", "FileInfo", "PortBinding", "Process", "FILE_CHUNK", "READ_FILE_MAX", "CANCELLED",
           "find_binary"]
