"""Hooks: rules and callbacks on a sandbox's HTTPS requests and host-folder file operations.

Rules are evaluated by matchlock itself (in the TLS proxy and the file service); a rule with a
``callback`` (or a file rule with ``rewrite``) makes the server ask this program, over the same
``matchlock rpc`` connection, and wait a bounded time (``callback_timeout_ms``) for the answer.
No answer in time, an exception in the callback, or a client that went away: the request is
refused (403) or the file operation fails (EACCES). spec/rpc.md "Hooks" is the protocol.

    from matchlock import Client, Sandbox, hooks

    h = hooks.Hooks(
        network=[hooks.NetworkRule(name="no-admin", path="/admin/**", action="block"),
                 hooks.NetworkRule(name="tag", path="/v1/*",
                                   callback=lambda rq: hooks.allow(set_headers={"x-tag": "1"}))],
        files=[hooks.FileRule(name="locked", ops=["write", "create"], path="/workspace/ro/**",
                              action="block")],
        on_event=print)
    with Client() as c:
        hooks.launch(c, Sandbox("build/rootfs-busybox").with_mount("/tmp/w", mode="rw"), h)
        ...
        hooks.set_hooks(c, h)  # change them on the running sandbox

Callbacks run on their own threads (several may run at once); they may call the client.
"""

import base64
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union

from .errors import MatchlockError

__all__ = [
    "NetworkRequest", "NetworkDecision", "FileRequest", "NetworkRule", "FileRule", "Hooks", "allow", "block",
    "install", "set_hooks", "get_hooks", "create_params", "launch",
]


@dataclass
class NetworkRequest:
    """What a network callback is asked about: the request as the rules left it. Secret values
    never appear here: hooks run before the proxy puts them in (headers hold placeholders)."""

    sandbox: str
    rule: str
    method: str
    host: str
    port: int
    path: str  #: with its query
    headers: Dict[str, str]  #: names lower case


@dataclass
class NetworkDecision:
    """A network callback's answer."""

    action: str = "allow"  #: "allow" or "block"
    set_headers: Dict[str, str] = field(default_factory=dict)
    delete_headers: List[str] = field(default_factory=list)

    def wire(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"action": self.action}
        if self.set_headers:
            out["set_headers"] = dict(self.set_headers)
        if self.delete_headers:
            out["delete_headers"] = list(self.delete_headers)
        return out


def allow(set_headers: Optional[Dict[str, str]] = None, delete_headers: Optional[List[str]] = None) -> NetworkDecision:
    """Let the request go, with these header edits."""
    return NetworkDecision("allow", dict(set_headers or {}), list(delete_headers or []))


def block() -> NetworkDecision:
    """Refuse the request (the guest gets 403)."""
    return NetworkDecision("block")


@dataclass
class FileRequest:
    """What a file callback is asked about (guest paths)."""

    sandbox: str
    rule: str
    op: str  #: read, write, create, mkdir, remove, rename, setattr
    path: str
    path2: Optional[str] = None  #: a rename's target
    offset: int = 0  #: rewrite rules: where the write goes
    data: Optional[bytes] = None  #: rewrite rules: the bytes the guest writes


NetworkCallback = Callable[[NetworkRequest], Union[NetworkDecision, bool, None]]
FileCallback = Callable[[FileRequest], Union[bool, None]]
RewriteCallback = Callable[[FileRequest], Optional[bytes]]


@dataclass
class NetworkRule:
    """A rule on intercepted HTTPS requests (see spec/rpc.md for each field).

    ``action``: "allow", "block", "callback" or None (edits only). Giving ``callback`` makes it a
    callback rule: the function gets a :class:`NetworkRequest` and returns a
    :class:`NetworkDecision`, True/None (allow) or False (block)."""

    name: str = ""
    action: Optional[str] = None
    hosts: List[str] = field(default_factory=list)
    methods: List[str] = field(default_factory=list)
    path: Optional[str] = None
    set_headers: Dict[str, str] = field(default_factory=dict)
    delete_headers: List[str] = field(default_factory=list)
    set_query: Dict[str, str] = field(default_factory=dict)
    delete_query: List[str] = field(default_factory=list)
    rewrite_path: Optional[str] = None
    set_response_headers: Dict[str, str] = field(default_factory=dict)
    delete_response_headers: List[str] = field(default_factory=list)
    body_replacements: List[Dict[str, str]] = field(default_factory=list)
    callback: Optional[NetworkCallback] = None

    def wire(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        action = "callback" if self.callback else self.action
        if action:
            out["action"] = action
        for key in ("hosts", "methods", "set_headers", "delete_headers", "set_query", "delete_query",
                    "set_response_headers", "delete_response_headers", "body_replacements"):
            value = getattr(self, key)
            if value:
                out[key] = value.copy()
        if self.path is not None:
            out["path"] = self.path
        if self.rewrite_path is not None:
            out["rewrite_path"] = self.rewrite_path
        return out


@dataclass
class FileRule:
    """A rule on file operations in host folders mounted ``rw``.

    ``phase``: "before" (``action`` allow/block, or a ``callback`` returning True/None to allow
    and False to block, or a ``rewrite`` getting each write and returning the bytes to write
    instead, None for as they are) or "after" (a ``file`` event once done)."""

    name: str = ""
    ops: List[str] = field(default_factory=list)
    path: Optional[str] = None
    phase: str = "before"
    action: Optional[str] = None
    callback: Optional[FileCallback] = None
    rewrite: Optional[RewriteCallback] = None

    def wire(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"phase": self.phase}
        if self.name:
            out["name"] = self.name
        if self.ops:
            out["ops"] = list(self.ops)
        if self.path is not None:
            out["path"] = self.path
        action = "rewrite" if self.rewrite else "callback" if self.callback else self.action
        if action:
            out["action"] = action
        return out


@dataclass
class Hooks:
    """A sandbox's rules, and what this program does when asked or told about them.

    ``on_event`` (optional) gets every ``event`` notification's params (network and file
    events, of every sandbox of the client) on the client's reader thread: keep it short."""

    network: List[NetworkRule] = field(default_factory=list)
    files: List[FileRule] = field(default_factory=list)
    callback_timeout_ms: Optional[int] = None
    on_event: Optional[Callable[[Dict[str, Any]], None]] = None

    def _named(self) -> None:
        # The server names unnamed rules "#N"; callbacks are found by name, so give them one.
        for i, r in enumerate(self.network):
            if (r.callback) and not r.name:
                r.name = f"py-network-{i}"
        for i, f in enumerate(self.files):
            if (f.callback or f.rewrite) and not f.name:
                f.name = f"py-file-{i}"

    def wire(self) -> Dict[str, Any]:
        """The document ``create``'s ``hooks`` and ``hooks_set`` take."""
        self._named()
        out: Dict[str, Any] = {"network": [r.wire() for r in self.network], "files": [f.wire() for f in self.files]}
        if self.callback_timeout_ms is not None:
            out["callback_timeout_ms"] = self.callback_timeout_ms
        return out

    def answer(self, q: Dict[str, Any]) -> Dict[str, Any]:
        """The answer to one question from the server (raises: the question is refused)."""
        kind, name = q.get("kind"), q.get("rule")
        if kind == "network":
            rule = next((r for r in self.network if r.name == name and r.callback), None)
            if rule is None:
                raise MatchlockError(f"no network callback for rule {name!r}")
            rq = NetworkRequest(str(q.get("sandbox", "")), str(name), str(q.get("method", "")), str(q.get("host", "")),
                                int(q.get("port", 0)), str(q.get("path", "")), dict(q.get("headers") or {}))
            d = rule.callback(rq)  # type: ignore[misc]
            if d is None or d is True:
                d = allow()
            elif d is False:
                d = block()
            return d.wire()
        if kind == "file":
            f = next((f for f in self.files if f.name == name and (f.callback or f.rewrite)), None)
            if f is None:
                raise MatchlockError(f"no file callback for rule {name!r}")
            data = q.get("data")
            rq2 = FileRequest(str(q.get("sandbox", "")), str(name), str(q.get("op", "")), str(q.get("path", "")),
                              q.get("path2"), int(q.get("offset", 0)),
                              base64.b64decode(data) if isinstance(data, str) else None)
            if f.rewrite:
                new = f.rewrite(rq2)
                out: Dict[str, Any] = {"action": "allow"}
                if new is not None:
                    out["data"] = base64.b64encode(bytes(new)).decode("ascii")
                return out
            ok = f.callback(rq2)  # type: ignore[misc]
            return {"action": "block" if ok is False else "allow"}
        raise MatchlockError(f"a hook question of unknown kind {kind!r}")


# The hooks installed on each client (a client serves the callbacks of its own sandboxes).
_installed: Dict[int, Hooks] = {}
_lock = threading.Lock()


def install(client: Any, hooks: Hooks) -> None:
    """Answer the server's questions on this client with ``hooks``' callbacks (replacing any)."""
    hooks._named()
    with _lock:
        _installed[id(client)] = hooks


def _reply(client: Any, msg_id: Any, hooks: Optional[Hooks], q: Dict[str, Any]) -> None:
    try:
        if hooks is None:
            raise MatchlockError("this client has no hooks installed")
        client._write({"id": msg_id, "result": hooks.answer(q)})
    except Exception as e:  # the callback failed: the server refuses (fail closed)
        try:
            client._write({"id": msg_id, "error": {"code": -32603, "message": f"hook callback failed: {e}"}})
        except MatchlockError:
            pass


def on_server_message(client: Any, msg: Dict[str, Any]) -> bool:
    """Called by the client for a message from the server that has a method and either an id (a
    question: answered on a thread of its own) or is an event. True when nothing else should
    look at it."""
    with _lock:
        hooks = _installed.get(id(client))
    if msg.get("method") == "event":
        if hooks is not None and hooks.on_event is not None and isinstance(msg.get("params"), dict):
            try:
                hooks.on_event(msg["params"])
            except Exception:  # a broken event sink must not break the client
                pass
        return False
    if msg.get("method") != "hook" or "id" not in msg:
        return False
    q = msg.get("params") if isinstance(msg.get("params"), dict) else {}
    threading.Thread(target=_reply, args=(client, msg["id"], hooks, q), name="matchlock-hook", daemon=True).start()
    return True


def set_hooks(client: Any, hooks: Hooks, sandbox: Optional[str] = None) -> Dict[str, Any]:
    """Replace a running sandbox's rules (and this client's callbacks); returns what is in force."""
    install(client, hooks)
    params: Dict[str, Any] = {"hooks": hooks.wire()}
    if sandbox:
        params["sandbox"] = sandbox
    return client.call("hooks_set", params)


def get_hooks(client: Any, sandbox: Optional[str] = None) -> Dict[str, Any]:
    """The rules in force on a running sandbox."""
    return client.call("hooks_get", {"sandbox": sandbox} if sandbox else {})


def create_params(params: Dict[str, Any], hooks: Hooks) -> Dict[str, Any]:
    """``create`` params with the hooks added."""
    out = dict(params)
    out["hooks"] = hooks.wire()
    return out


def launch(client: Any, sandbox: Any, hooks: Hooks) -> str:
    """Create the sandbox (a Sandbox, or ``create`` params as a dict) with its hooks in force
    from the first instruction; returns its id. (Port forwards of a Sandbox are not set up.)"""
    if getattr(client, "sandbox_id", None) is not None:
        raise MatchlockError(f"launch: this client already has sandbox {client.sandbox_id}")
    install(client, hooks)
    params = sandbox if isinstance(sandbox, dict) else sandbox.create_params()
    res = client.call("create", create_params(params, hooks))
    try:
        client.sandbox_id = res["id"]  # a client that remembers its one sandbox
    except AttributeError:
        pass  # a client whose sandbox_id is derived (read-only)
    return res["id"]
