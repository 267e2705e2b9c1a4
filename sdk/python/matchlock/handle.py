"""A sandbox handle: one running sandbox of a Client, with its commands, files, ports, allow-list,
events and life cycle. Every request it sends names its sandbox, so one client drives many."""

import base64
import os
import queue
import select
import subprocess
import sys
import threading
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from .errors import MatchlockError
from .types import Event, ExecResult, FileInfo, PortBinding

if TYPE_CHECKING:
    from .client import Client, _Call

Command = Union[str, Sequence[str]]
Sink = Union[Callable[[bytes], Any], IO[Any], None]

#: Raw bytes per write_file/read_file request; the server's request lines are limited to
#: 16 MiB, and 4 MiB of raw data is about 5.6 MB of base64 (the server reads at most 8 MiB per
#: read_file request).
FILE_CHUNK = 4 << 20

#: Files.read's default bound on a whole file: past it read raises instead of filling memory.
READ_FILE_MAX = 256 << 20

#: Events kept for a handle nobody reads; past it the oldest are dropped and counted.
EVENT_QUEUE_MAX = 4096


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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(s: Optional[str]) -> bytes:
    return base64.b64decode(s) if s else b""


class Files:
    """A sandbox's files: ``sb.files.read/write/list/remove``. Any size: large files travel in
    chunks of FILE_CHUNK bytes."""

    def __init__(self, sandbox: "SandboxHandle") -> None:
        self._sb = sandbox

    def write(self, path: str, content: Union[bytes, str], mode: int = 0o644, *,
              timeout: Optional[float] = None) -> None:
        """Write a file in the guest (parents are created); ``timeout`` bounds each chunk."""
        data = content.encode() if isinstance(content, str) else bytes(content)
        view = memoryview(data)
        off = 0
        while True:
            chunk = view[off:off + FILE_CHUNK]
            self._sb.call("write_file", {"path": path, "content": _b64(chunk), "mode": mode, "append": off > 0},
                          timeout)
            off += len(chunk)
            if off >= len(data):
                return

    def read(self, path: str, max_bytes: int = READ_FILE_MAX, *, timeout: Optional[float] = None) -> bytes:
        """Read a whole file from the guest, in chunks. A file larger than ``max_bytes``
        (default READ_FILE_MAX, 256 MiB) raises MatchlockError instead of filling memory."""
        parts: List[bytes] = []
        off = 0
        while True:
            want = min(FILE_CHUNK, max_bytes - off + 1)  # one byte past the bound tells us it is larger
            res = self._sb.call("read_file", {"path": path, "offset": off, "length": want}, timeout)
            chunk = _unb64(res.get("content"))
            parts.append(chunk)
            off += len(chunk)
            if off > max_bytes:
                raise MatchlockError(f"read_file {path}: the file is larger than max_bytes={max_bytes}; "
                                     "pass a larger max_bytes to read it")
            if len(chunk) < want:
                return b"".join(parts)

    def list(self, path: str, *, timeout: Optional[float] = None) -> List[FileInfo]:
        """The entries of a guest directory."""
        res = self._sb.call("list_files", {"path": path}, timeout)
        return [FileInfo(f["name"], int(f["size"]), int(f["mode"]), f.get("mod_time", ""), bool(f["is_dir"]),
                         _unb64(f.get("name_b64")) if "name_b64" in f else f["name"].encode())
                for f in res.get("files", [])]

    def remove(self, path: str, *, recursive: bool = False, timeout: Optional[float] = None) -> None:
        """Remove a file (or, with ``recursive``, a directory tree) in the guest. The protocol
        has no such request: this runs the image's ``rm``, so the image needs one."""
        argv = ["rm", "-f"] + (["-r"] if recursive else []) + ["--", path]
        r = self._sb.exec(argv, timeout=timeout)
        if r.exit_code != 0:
            raise MatchlockError(f"remove {path}: {r.stderr.decode(errors='replace').strip()}")


class SandboxHandle:
    """One sandbox of a Client (returned by ``Client.create``/``launch``). Use it as a context
    manager to close it on leaving the block::

        with client.create(image, memory_mb=256) as sb:
            print(sb.exec("echo hi").stdout)

    Every method takes ``timeout`` (seconds): past it the request is cancelled on the server
    and RPCError(CANCELLED) is raised. Methods are safe to call from several threads.
    """

    def __init__(self, client: "Client", sandbox_id: Optional[str]) -> None:
        self._client = client
        self.id = sandbox_id
        self.files = Files(self)
        self._events: "queue.Queue[Event]" = queue.Queue(EVENT_QUEUE_MAX)
        self._events_lost = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"SandboxHandle({self.id!r}{', closed' if self._closed else ''})"

    def __str__(self) -> str:
        return str(self.id)

    def __enter__(self) -> "SandboxHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- requests ----------------------------------------------------------------------------
    def _request(self, method: str, params: Dict[str, Any],
                 handler: Optional[Callable[[str, Dict[str, Any]], None]] = None) -> "_Call":
        if self._closed:
            raise MatchlockError(f"{method}: sandbox {self.id} is closed")
        if self.id is not None:
            params = dict(params, sandbox=self.id)
        return self._client._request(method, params, handler)

    def call(self, method: str, params: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        """Send one raw JSON-RPC request for this sandbox and return its result."""
        return self._client._wait(self._request(method, params or {}), timeout)

    # ---- commands ----------------------------------------------------------------------------
    def exec(self, command: Command, *, working_dir: Optional[str] = None, user: Optional[str] = None,
             env: Optional[Dict[str, str]] = None, timeout: Optional[float] = None) -> ExecResult:
        """Run a command to completion. A string runs through ``sh -c``; a sequence is argv with
        no shell. The first 16 MiB of stdout and stderr are kept (see ExecResult.truncated)."""
        res = self.call("exec", _exec_params(command, working_dir, user, env), timeout)
        return ExecResult(int(res["exit_code"]), _unb64(res.get("stdout")), _unb64(res.get("stderr")),
                          int(res.get("duration_ms", 0)), bool(res.get("truncated")),
                          bool(res.get("stdout_truncated")), bool(res.get("stderr_truncated")))

    def exec_stream(self, command: Command, stdout: Sink = None, stderr: Sink = None, *,
                    working_dir: Optional[str] = None, user: Optional[str] = None,
                    env: Optional[Dict[str, str]] = None, timeout: Optional[float] = None) -> ExecResult:
        """Run a command, sending its output to ``stdout``/``stderr`` (callables taking bytes,
        or file-like objects) as it arrives; unbounded. The result's stdout/stderr are empty."""
        out, err = _sink(stdout), _sink(stderr)

        def on_notify(method: str, params: Dict[str, Any]) -> None:
            fn = out if method.endswith(".stdout") else err if method.endswith(".stderr") else None
            if fn:
                fn(_unb64(params.get("data")))

        call = self._request("exec_stream", _exec_params(command, working_dir, user, env))
        res = self._client._wait(call, timeout, on_notify)
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

    # ---- network -----------------------------------------------------------------------------
    def port_forward(self, local_port: int, remote_port: int, addresses: Optional[List[str]] = None, *,
                     timeout: Optional[float] = None) -> List[PortBinding]:
        """Forward a host port (0: any free one) to a guest port; returns the bindings."""
        params: Dict[str, Any] = {"forwards": [{"local_port": local_port, "remote_port": remote_port}]}
        if addresses:
            params["addresses"] = list(addresses)
        res = self.call("port_forward", params, timeout)
        return [PortBinding(b["address"], int(b["local_port"]), int(b["remote_port"])) for b in res.get("bindings", [])]

    def allow_list_add(self, *hosts: str, timeout: Optional[float] = None) -> List[str]:
        """Allow more hosts (``GLOB[:PORT|:*]``) at run time; returns the whole allow-list."""
        return list(self.call("allow_list_add", {"hosts": list(hosts)}, timeout).get("allowed_hosts", []))

    def allow_list_delete(self, *hosts: str, timeout: Optional[float] = None) -> List[str]:
        """Remove hosts from the allow-list; returns the whole allow-list."""
        return list(self.call("allow_list_delete", {"hosts": list(hosts)}, timeout).get("allowed_hosts", []))

    # ---- events and log ----------------------------------------------------------------------
    def _push_event(self, ev: Event) -> None:
        try:
            self._events.put_nowait(ev)
        except queue.Full:
            self._events_lost += 1  # the reader thread never waits for a handle nobody reads

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Yield this sandbox's events (network requests, file operations) as they arrive; stop
        when none arrives for ``timeout`` seconds (None: wait until the sandbox is closed). A
        handle keeps at most EVENT_QUEUE_MAX unread events; past it an Event("dropped", count)
        says how many were lost."""
        while True:
            if self._events_lost:
                lost, self._events_lost = self._events_lost, 0
                yield Event("dropped", self.id, count=lost)
            try:
                ev = self._events.get(timeout=0.2 if timeout is None else timeout)
            except queue.Empty:
                if timeout is not None or self._closed:
                    return
                continue
            yield ev

    def log(self, *, timeout: Optional[float] = None) -> str:
        """The sandbox's log so far (its last 16 MiB); bytes that are not UTF-8 appear as U+FFFD."""
        return self.log_bytes(timeout=timeout).decode("utf-8", errors="replace")

    def log_bytes(self, *, timeout: Optional[float] = None) -> bytes:
        """The sandbox's log so far (its last 16 MiB), exactly as written."""
        return _unb64(self.call("log", {}, timeout).get("content"))

    # ---- life cycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the sandbox (it stays listed as stopped, with its log, until ``remove`` or
        ``matchlock rm``). Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client._wait(self._client._request("close", {"sandbox": self.id}))
        finally:
            self._client._forget(self)

    def _close_quietly(self) -> None:
        try:
            self.close()
        except MatchlockError:
            pass

    def remove(self) -> None:
        """Stop the sandbox if it runs, then remove its record and directory (``matchlock rm``).
        Also works after ``close``."""
        self.close()
        r = subprocess.run([self._client.binary, "rm", self.id], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
        if r.returncode != 0:
            raise MatchlockError(f"matchlock rm {self.id}: {r.stderr.strip()}")


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

    def __init__(self, sandbox: SandboxHandle, method: str, out: Optional[Callable[[bytes], None]],
                 err: Optional[Callable[[bytes], None]]) -> None:
        self._sb = sandbox
        self._client = sandbox._client
        self._method = method
        self._out, self._err = out, err
        self._bufs: Dict[str, List[bytes]] = {"stdout": [], "stderr": []}
        self._ready = threading.Event()
        self._call: "Optional[_Call]" = None

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
        self._call = self._sb._request(self._method, params, handler=self._on_notify)
        # Either ready arrives, or the request fails (its answer is then queued).
        while not self._ready.wait(0.05):
            if not self._call.q.empty():
                self._client._wait(self._call)  # raises the error
                self._ready.set()  # finished without ready: nothing more to write

    @property
    def id(self) -> int:
        """The request id of this process."""
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


