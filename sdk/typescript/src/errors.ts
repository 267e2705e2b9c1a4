/**
 * JSON-RPC error codes of `matchlock rpc`: the table "Error codes" in spec/rpc.md (the Python
 * and Go SDKs use the same names; the tests compare ErrorCode with the table).
 */
export const ErrorCode = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  SANDBOX_FAILED: -32000,
  EXEC_FAILED: -32001,
  FILE_FAILED: -32002,
  CANCELLED: -32003,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;

/**
 * Base class of every error the SDK throws. Thrown directly when the `matchlock` binary cannot
 * be found or started, or when `matchlock rpc` dies or stops answering.
 */
export class MatchlockError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message);
    this.name = "MatchlockError";
    if (options && "cause" in options) {
      (this as { cause?: unknown }).cause = options.cause;
    }
  }
}

/**
 * The server answered a request with a JSON-RPC error. When a request was cancelled because its
 * AbortSignal fired, `code` is ErrorCode.CANCELLED and `cause` is the signal's reason.
 */
export class RpcError extends MatchlockError {
  readonly code: number;
  readonly method: string;
  readonly data: unknown;
  readonly serverMessage: string;

  constructor(code: number, message: string, method = "", data?: unknown) {
    super(`${method ? method + ": " : ""}${message} (code ${code})`);
    this.name = "RpcError";
    this.code = code;
    this.method = method;
    this.data = data;
    this.serverMessage = message;
  }
}

/** Whether err is an RpcError with this code. */
export function isCode(err: unknown, code: number): boolean {
  return err instanceof RpcError && err.code === code;
}
