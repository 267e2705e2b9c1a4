"""The matchlock client: spawns `matchlock rpc` and speaks JSON-RPC 2.0 over its stdio."""

import collections
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Deque, Dict, List, Optional, Union

from .errors import CANCELLED, MatchlockError, RPCError
from .handle import FILE_CHUNK, READ_FILE_MAX, Command, Process, SandboxHandle, Sink
from .options import Sandbox, SandboxOptions
from .types import Event, ExecResult, FileInfo, PortBinding

# How long to wait for the server's answer after asking it to cancel a request.
_CANCEL_GRACE_S = 30.0

#: Stops in flight at once when a client closes all its sandboxes (the server serves 16).
_CLOSE_ALL_MAX = 16


@dataclass
class _Call:
    id: int
    method: str
    q: "queue.Queue[tuple]" = field(default_factory=queue.Queue)
    # When set, notifications are handled on the reader thread instead of being queued.
    handler: Optional[Callable[[str, Dict[str, Any]], None]] = None


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
    """A connection to one `matchlock rpc` process, which serves up to 16 sandboxes at once.

    ``create`` (or ``launch``) returns a SandboxHandle per sandbox; leaving the ``with`` block
    closes every sandbox still open and ends the process::

        with Client() as c:
            a = c.create("build/rootfs-busybox", memory_mb=256)
            b = c.create("build/rootfs-busybox")
            print(a.exec("echo hi").stdout, b.exec("uname -n").stdout)

    Every method is safe to call from several threads at once; requests overlap on the wire,
    and one sandbox's slow request never holds up another's. For a client of one sandbox, the
    handle's methods are also on the client (``c.exec(...)`` after ``c.launch(...)``).
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
        self._sandboxes: Dict[str, SandboxHandle] = {}  # guarded by _lock

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
            if msg["method"] == "event":
                self._route_event(Event.from_params(params))
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


    # ---- sandboxes -------------------------------------------------------------------------
    def create(self, image: Union[str, SandboxOptions, Sandbox], *, timeout: Optional[float] = None,
               **options: Any) -> SandboxHandle:
        """Create and start a sandbox; returns its handle once it runs.

        ``image`` is an image (a root filesystem path or an OCI reference) with the options as
        keyword arguments (the fields of SandboxOptions: ``memory_mb=256``, ``env={...}``,
        ``mounts=[Mount(...)]``, ...), or a SandboxOptions, or a Sandbox builder. Past
        ``timeout`` seconds the start is abandoned (RPCError CANCELLED, nothing left behind).
        """
        opts = SandboxOptions.of(image, **options)
        call = self._request("create", opts.create_params())
        started = time.monotonic()
        res = self._wait(call, timeout)
        if timeout is not None and time.monotonic() - started >= timeout:
            # Started before the cancel could abandon it: the server stops it (spec/rpc.md).
            try:
                self.call("close", {"sandbox": res["id"]}, timeout=_CANCEL_GRACE_S)
            except MatchlockError:
                pass
            raise RPCError(CANCELLED, "cancelled", "create")
        handle = SandboxHandle(self, str(res["id"]))
        with self._lock:
            self._sandboxes[handle.id] = handle
        try:
            for local, remote in opts.port_forwards:
                handle.port_forward(local, remote)
        except MatchlockError:
            handle.close()
            raise
        return handle

    def launch(self, sandbox: Union[Sandbox, SandboxOptions], *, timeout: Optional[float] = None) -> SandboxHandle:
        """``create`` from a Sandbox builder (or a SandboxOptions)."""
        return self.create(sandbox, timeout=timeout)

    def handle(self, sandbox_id: str) -> SandboxHandle:
        """The handle of a sandbox this server holds, by id: one this client made, or one made
        with a raw ``call("create", ...)`` (which this client then tracks and closes)."""
        with self._lock:
            h = self._sandboxes.get(sandbox_id)
            if h is None:
                h = self._sandboxes[sandbox_id] = SandboxHandle(self, sandbox_id)
        return h

    @property
    def sandboxes(self) -> List[SandboxHandle]:
        """The sandboxes this client created that are not closed, oldest first."""
        with self._lock:
            return list(self._sandboxes.values())

    def _forget(self, handle: SandboxHandle) -> None:
        with self._lock:
            self._sandboxes.pop(handle.id, None)

    def _route_event(self, ev: Event) -> None:
        with self._lock:
            if ev.sandbox is not None:
                targets = [h for h in (self._sandboxes.get(ev.sandbox),) if h is not None]
            else:  # "dropped" names no sandbox: every handle may have missed some
                targets = list(self._sandboxes.values())
        for h in targets:
            h._push_event(ev)

    # ---- the one sandbox, for clients of one sandbox ------------------------------------------
    def _only(self) -> SandboxHandle:
        """The client's one sandbox; holding none or several, a handle that names no sandbox,
        so the server answers as spec/rpc.md says (none: SANDBOX_FAILED; several:
        INVALID_PARAMS, "say which")."""
        with self._lock:
            hs = list(self._sandboxes.values())
        return hs[0] if len(hs) == 1 else SandboxHandle(self, None)

    @property
    def sandbox_id(self) -> Optional[str]:
        """The id of the client's only sandbox, or None (none, or several)."""
        with self._lock:
            hs = list(self._sandboxes.values())
        return hs[0].id if len(hs) == 1 else None

    def exec(self, command: Command, **kw: Any) -> ExecResult:
        return self._only().exec(command, **kw)

    def exec_stream(self, command: Command, stdout: Sink = None, stderr: Sink = None, **kw: Any) -> ExecResult:
        return self._only().exec_stream(command, stdout, stderr, **kw)

    def exec_pipe(self, command: Command, stdout: Sink = None, stderr: Sink = None, **kw: Any) -> Process:
        return self._only().exec_pipe(command, stdout, stderr, **kw)

    def exec_interactive(self, command: Command, stdin: Optional[IO[Any]] = None, stdout: Sink = None,
                         **kw: Any) -> int:
        return self._only().exec_interactive(command, stdin, stdout, **kw)

    def write_file(self, path: str, content: Union[bytes, str], mode: int = 0o644, **kw: Any) -> None:
        self._only().files.write(path, content, mode, **kw)

    def read_file(self, path: str, max_bytes: int = READ_FILE_MAX, **kw: Any) -> bytes:
        return self._only().files.read(path, max_bytes, **kw)

    def list_files(self, path: str, **kw: Any) -> List[FileInfo]:
        return self._only().files.list(path, **kw)

    def port_forward(self, local_port: int, remote_port: int, addresses: Optional[List[str]] = None) -> List[PortBinding]:
        return self._only().port_forward(local_port, remote_port, addresses)

    def allow_list_add(self, *hosts: str) -> List[str]:
        return self._only().allow_list_add(*hosts)

    def allow_list_delete(self, *hosts: str) -> List[str]:
        return self._only().allow_list_delete(*hosts)

    def log(self) -> str:
        return self._only().log()

    def log_bytes(self) -> bytes:
        return self._only().log_bytes()

    def remove(self) -> None:
        """Stop the only sandbox and remove its record and directory (``matchlock rm``)."""
        with self._lock:
            hs = list(self._sandboxes.values())
        if hs:
            self._only().remove()

    # ---- shutdown ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every sandbox still open (concurrently) and end `matchlock rpc`. The sandboxes
        stay listed as stopped (with their logs) until ``matchlock rm ID``, ``matchlock prune``
        or ``SandboxHandle.remove``."""
        proc = self._proc
        if proc is None:
            return
        try:
            if self._dead is None:
                hs = self.sandboxes
                for i in range(0, len(hs), _CLOSE_ALL_MAX):
                    stops = [threading.Thread(target=h._close_quietly, daemon=True) for h in hs[i:i + _CLOSE_ALL_MAX]]
                    for t in stops:
                        t.start()
                    for t in stops:
                        t.join(timeout=_CANCEL_GRACE_S + 60)
        finally:
            with self._lock:
                self._sandboxes.clear()
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

    @property
    def binary(self) -> str:
        """The matchlock binary this client runs."""
        return self._binary or find_binary()


# The first version's names here too (from matchlock.client import ExecResult, ...).
__all__ = ["Client", "find_binary", "FILE_CHUNK", "READ_FILE_MAX", "ExecResult", "FileInfo", "PortBinding",
           "Process"]
