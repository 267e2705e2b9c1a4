"""matchlock: run untrusted code in disposable micro-VMs from Python.

The SDK spawns ``matchlock rpc`` and speaks JSON-RPC 2.0 over its stdio. Standard library only.

    from matchlock import Client, Sandbox

    with Client() as c:
        c.launch(Sandbox("build/rootfs-busybox").with_memory(256))
        r = c.exec(["echo", "hello"])
        print(r.exit_code, r.stdout)
"""

from .client import FILE_CHUNK, READ_FILE_MAX, Client, ExecResult, FileInfo, PortBinding, Process, find_binary
from .errors import (CANCELLED, EXEC_FAILED, FILE_FAILED, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST,
                     METHOD_NOT_FOUND, PARSE_ERROR, SANDBOX_FAILED, MatchlockError, RPCError)
from .sandbox import Mount, Sandbox

__version__ = "0.1.0"

__all__ = [
    "Client", "Sandbox", "Mount", "ExecResult", "FileInfo", "PortBinding", "Process", "find_binary", "FILE_CHUNK",
    "MatchlockError", "RPCError", "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS",
    "INTERNAL_ERROR", "SANDBOX_FAILED", "EXEC_FAILED", "FILE_FAILED", "CANCELLED",
]
