"""matchlock: run untrusted code in disposable micro-VMs from Python.

The SDK spawns ``matchlock rpc`` and speaks JSON-RPC 2.0 over its stdio. Standard library only.
One client drives up to 16 sandboxes at once::

    from matchlock import Client

    with Client() as c:
        with c.create("build/rootfs-busybox", memory_mb=256) as sb:
            r = sb.exec(["echo", "hello"])
            print(r.exit_code, r.stdout)
"""

from .client import Client, find_binary
from .errors import (CANCELLED, ERROR_CODES, EXEC_FAILED, FILE_FAILED, INTERNAL_ERROR, INVALID_PARAMS,
                     INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, SANDBOX_FAILED, MatchlockError, RPCError)
from .handle import EVENT_QUEUE_MAX, FILE_CHUNK, READ_FILE_MAX, Files, Process, SandboxHandle
from .options import Mount, Sandbox, SandboxOptions, Secret
from .types import Event, ExecResult, FileInfo, PortBinding

__version__ = "0.2.0"

__all__ = [
    "Client", "SandboxHandle", "Files", "Process", "Sandbox", "SandboxOptions", "Mount", "Secret", "Event",
    "ExecResult", "FileInfo", "PortBinding", "find_binary", "FILE_CHUNK", "READ_FILE_MAX", "EVENT_QUEUE_MAX",
    "MatchlockError", "RPCError", "ERROR_CODES", "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND",
    "INVALID_PARAMS", "INTERNAL_ERROR", "SANDBOX_FAILED", "EXEC_FAILED", "FILE_FAILED", "CANCELLED",
]
