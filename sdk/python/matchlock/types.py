"""Plain results of the SDK's calls."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional


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
    """One entry of a directory listing."""

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
class Event:
    """A server ``event`` notification (spec/rpc.md): ``type`` is "network", "file" or "dropped"
    (``count`` events were lost because the client read too slowly). ``network`` holds the
    request's fields (method, url, host, status_code, request_bytes, response_bytes,
    duration_ms, blocked, block_reason); ``raw`` the whole notification."""

    type: str
    sandbox: Optional[str] = None
    timestamp: Any = None
    network: Optional[Dict[str, Any]] = None
    count: int = 0
    raw: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, p: Dict[str, Any]) -> "Event":
        net = p.get("network")
        return cls(str(p.get("type", "")), p.get("sandbox"), p.get("timestamp"),
                   net if isinstance(net, dict) else None, int(p.get("count", 0) or 0), p)
