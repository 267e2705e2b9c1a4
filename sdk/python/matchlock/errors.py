"""Exceptions raised by the matchlock SDK."""

from typing import Any, Optional

# JSON-RPC error codes of `matchlock rpc`: the table "Error codes" in spec/rpc.md (the Go and
# TypeScript SDKs use the same names; tests compare all three with the table).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SANDBOX_FAILED = -32000
EXEC_FAILED = -32001
FILE_FAILED = -32002
CANCELLED = -32003

#: Every code by its name in spec/rpc.md's table.
ERROR_CODES = {
    "PARSE_ERROR": PARSE_ERROR,
    "INVALID_REQUEST": INVALID_REQUEST,
    "METHOD_NOT_FOUND": METHOD_NOT_FOUND,
    "INVALID_PARAMS": INVALID_PARAMS,
    "INTERNAL_ERROR": INTERNAL_ERROR,
    "SANDBOX_FAILED": SANDBOX_FAILED,
    "EXEC_FAILED": EXEC_FAILED,
    "FILE_FAILED": FILE_FAILED,
    "CANCELLED": CANCELLED,
}


class MatchlockError(Exception):
    """Base class of every error the SDK raises.

    Raised directly when the `matchlock` binary cannot be found or started, or when the
    `matchlock rpc` process dies or stops answering.
    """


class RPCError(MatchlockError):
    """The server answered a request with a JSON-RPC error.

    Attributes:
        code: the JSON-RPC error code (for example ``CANCELLED`` = -32003).
        message: the server's explanation.
        method: the method of the failed request.
        data: the optional ``data`` member of the error.
    """

    def __init__(self, code: int, message: str, method: str = "", data: Optional[Any] = None) -> None:
        self.code = code
        self.message = message
        self.method = method
        self.data = data
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{message} (code {code})")
