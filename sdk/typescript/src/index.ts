/**
 * matchlock: run untrusted code in disposable micro-VMs from Node.js (>= 18). The client spawns
 * `matchlock rpc` and speaks JSON-RPC 2.0 over its stdio (spec/rpc.md); no runtime dependencies.
 */
export { Client, findBinary } from "./client";
export type { ClientOptions, CallOptions, Request } from "./client";
export { ErrorCode, MatchlockError, RpcError, isCode } from "./errors";
export type { ErrorCodeName } from "./errors";
export { createParams } from "./options";
export type { SandboxOptions, Mount, Secret, PortForward } from "./options";
export { SandboxHandle, Files, Process, SandboxEvent, FILE_CHUNK, READ_FILE_MAX, EVENT_QUEUE_MAX } from "./sandbox";
export type { Command, ExecOptions, StreamOptions, ExecResult, FileInfo, PortBinding, NetworkEvent } from "./sandbox";
export { allow, block, hooksWire } from "./hooks";
export type {
  Hooks, HooksInForce, NetworkRule, FileRule, FileOp, NetworkRequest, NetworkDecision, FileRequest, HookContext,
  NetworkCallback, FileCallback, RewriteCallback,
} from "./hooks";
