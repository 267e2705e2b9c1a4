/**
 * The client: spawns `matchlock rpc` and speaks JSON-RPC 2.0 over its stdio (spec/rpc.md). One
 * server process serves up to 16 sandboxes; every SandboxHandle's request names its sandbox.
 */
import { ChildProcessWithoutNullStreams, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import * as readline from "readline";
import { ErrorCode, MatchlockError, RpcError } from "./errors";
import { createWithHooks } from "./hooks";
import { SandboxOptions, createParams } from "./options";
import { SandboxHandle, SandboxEvent } from "./sandbox";

/** How long to wait for the server's answer after asking it to cancel a request. */
const CANCEL_GRACE_MS = 30_000;
/** Server log lines kept to explain a failure. */
const STDERR_TAIL = 5;

export interface ClientOptions {
  /** The matchlock executable; default $MATCHLOCK_BIN, else matchlock on PATH. */
  binary?: string;
  /** Receives the server's log lines (they are otherwise kept only to explain failures). */
  stderr?: (line: string) => void;
}

export interface CallOptions {
  /** When it fires, the request is cancelled on the server; the call rejects with RpcError CANCELLED. */
  signal?: AbortSignal;
}

type Notify = (method: string, params: Record<string, unknown>) => void;
/** Answers a request from the server (hooks.ts: method "hook"); a throw answers an error. */
type ServerRequestHandler = (method: string, params: Record<string, any>) => Promise<unknown>;

interface Pending {
  method: string;
  resolve: (v: any) => void;
  reject: (e: unknown) => void;
  onNotify?: Notify;
}

/** A request on the wire: its id (for cancel and stdin) and its answer. */
export interface Request<T = any> {
  id: number;
  result: Promise<T>;
}

/** The matchlock binary: $MATCHLOCK_BIN, else the first `matchlock` on PATH. */
export function findBinary(): string {
  const env = process.env.MATCHLOCK_BIN;
  if (env) {
    try {
      fs.accessSync(env, fs.constants.X_OK);
    } catch {
      throw new MatchlockError(`MATCHLOCK_BIN=${env} is not an executable file`);
    }
    return env;
  }
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, "matchlock");
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  throw new MatchlockError("cannot find the matchlock binary: put it on PATH or set MATCHLOCK_BIN");
}

/**
 * A connection to one `matchlock rpc` process, which serves up to 16 sandboxes at once:
 * `create` returns a SandboxHandle per sandbox. Requests overlap on the wire; one sandbox's slow
 * request never holds up another's.
 *
 *     const client = new Client();
 *     const sb = await client.create({ image: "build/rootfs-busybox", memoryMb: 256 });
 *     console.log((await sb.exec("echo hi")).stdout.toString());
 *     await client.close();
 */
export class Client {
  readonly binary: string;
  private readonly stderrSink?: (line: string) => void;
  private proc?: ChildProcessWithoutNullStreams;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private dead?: string;
  private readonly tail: string[] = [];
  private readonly handles = new Map<string, SandboxHandle>();
  private exited?: Promise<void>;
  private serverRequests?: ServerRequestHandler;

  constructor(opts: ClientOptions = {}) {
    this.binary = opts.binary ?? findBinary();
    this.stderrSink = opts.stderr;
  }

  /** Spawn `matchlock rpc` (done lazily by the first request). */
  start(): this {
    if (this.proc) return this;
    const proc = spawn(this.binary, ["rpc"], { stdio: ["pipe", "pipe", "pipe"] });
    this.proc = proc;
    let spawnError: Error | undefined;
    proc.on("error", (e) => {
      spawnError = e;
    });
    proc.stdin.on("error", () => {
      /* reported through the exit below */
    });
    readline.createInterface({ input: proc.stderr, crlfDelay: Infinity }).on("line", (line) => {
      this.tail.push(line);
      if (this.tail.length > STDERR_TAIL) this.tail.shift();
      this.stderrSink?.(line);
    });
    readline.createInterface({ input: proc.stdout, crlfDelay: Infinity }).on("line", (line) => this.onLine(line));
    this.exited = new Promise((resolve) => {
      proc.on("close", (code, sig) => {
        let why = spawnError
          ? `cannot start ${this.binary} rpc: ${spawnError.message}`
          : `matchlock rpc exited with ${sig ? "signal " + sig : "status " + code}`;
        if (this.tail.length) why += ": " + this.tail.join(" | ");
        this.dead = why;
        const calls = [...this.pending.values()];
        this.pending.clear();
        for (const c of calls) c.reject(new MatchlockError(`${c.method}: ${why}`));
        for (const h of this.handles.values()) h._closedByServer();
        resolve();
      });
    });
    return this;
  }

  private onLine(line: string): void {
    let msg: any;
    try {
      msg = JSON.parse(line);
    } catch {
      return; // stdout carries only protocol; ignore anything else
    }
    if (!msg || typeof msg !== "object") return;
    if (typeof msg.method === "string") {
      const params = msg.params && typeof msg.params === "object" ? msg.params : {};
      if (msg.id !== undefined && msg.id !== null) {
        this.answerServer(msg.id, msg.method, params);
        return;
      }
      if (msg.method === "event") {
        const ev = SandboxEvent.from(params);
        for (const h of this.handles.values()) {
          // "dropped" names no sandbox: every handle may have missed some.
          if (ev.sandbox === undefined || ev.sandbox === h.id) h._pushEvent(ev);
        }
        return;
      }
      this.pending.get(params.id)?.onNotify?.(msg.method, params);
      return;
    }
    const call = this.pending.get(msg.id);
    if (!call) return;
    this.pending.delete(msg.id);
    if (msg.error) {
      const e = msg.error;
      call.reject(new RpcError(Number(e.code ?? 0), String(e.message ?? ""), call.method, e.data));
    } else {
      call.resolve(msg.result);
    }
  }

  /** Answer a request of the server; an error answer (no handler, a throw) is its refusal. */
  private answerServer(id: unknown, method: string, params: Record<string, any>): void {
    const handler = this.serverRequests;
    const answer = handler ? handler(method, params) : Promise.reject(new MatchlockError(`this client does not answer ${method} requests`));
    answer.then(
      (result) => ({ id, result }),
      (e) => ({ id, error: { code: ErrorCode.INTERNAL_ERROR, message: `${method} failed: ${e instanceof Error ? e.message : String(e)}` } }),
    ).then((reply) => {
      try {
        this.write(reply);
      } catch {
        /* the server is gone: nobody waits for the answer */
      }
    });
  }

  /** @internal Who answers the server's requests (hooks.ts). */
  _serveRequests(handler: ServerRequestHandler): void {
    this.serverRequests = handler;
  }

  private write(obj: Record<string, unknown>): void {
    this.start();
    if (this.dead) throw new MatchlockError(`cannot talk to matchlock rpc: ${this.dead}`);
    this.proc!.stdin.write(JSON.stringify({ jsonrpc: "2.0", ...obj }) + "\n");
  }

  /** Send a request; `onNotify` receives its notifications (output, ready). */
  request<T = any>(method: string, params: Record<string, unknown>, opts: CallOptions & { onNotify?: Notify } = {}): Request<T> {
    this.start();
    const id = this.nextId++;
    const result = new Promise<T>((resolve, reject) => {
      if (this.dead) {
        reject(new MatchlockError(`${method}: ${this.dead}`));
        return;
      }
      this.pending.set(id, { method, resolve, reject, onNotify: opts.onNotify });
      try {
        this.write({ id, method, params });
      } catch (e) {
        this.pending.delete(id);
        reject(e);
      }
    });
    const signal = opts.signal;
    if (!signal) return { id, result };
    return { id, result: this.cancellable(id, method, result, signal) };
  }

  /** The answer to request id, cancelling it on the server when signal fires first. */
  private cancellable<T>(id: number, method: string, result: Promise<T>, signal: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let grace: NodeJS.Timeout | undefined;
      const onAbort = () => {
        this.cancel(id).catch(() => undefined);
        grace = setTimeout(() => {
          this.pending.delete(id);
          reject(new MatchlockError(`${method}: no answer ${CANCEL_GRACE_MS / 1000} s after cancel`, { cause: signal.reason }));
        }, CANCEL_GRACE_MS);
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
      result.then(
        (v) => {
          signal.removeEventListener("abort", onAbort);
          if (grace) clearTimeout(grace);
          resolve(v);
        },
        (e) => {
          signal.removeEventListener("abort", onAbort);
          if (grace) clearTimeout(grace);
          if (e instanceof RpcError && e.code === ErrorCode.CANCELLED && signal.aborted) {
            (e as { cause?: unknown }).cause = signal.reason;
          }
          reject(e);
        },
      );
    });
  }

  /** Send a notification (no answer). */
  notify(method: string, params: Record<string, unknown>): void {
    this.write({ method, params });
  }

  /** Send one raw JSON-RPC request and return its result (for methods without a helper). */
  call<T = any>(method: string, params: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<T> {
    return this.request<T>(method, params, opts).result;
  }

  /** Ask the server to cancel a running request; true if it was running. */
  async cancel(requestId: number): Promise<boolean> {
    const res = await this.call<{ cancelled?: boolean }>("cancel", { id: requestId });
    return Boolean(res?.cancelled);
  }

  /**
   * Create and start a sandbox; resolves to its handle once it runs. When `signal` fires first
   * the start is abandoned (nothing is left behind) and the promise rejects with CANCELLED.
   */
  async create(opts: SandboxOptions, callOpts: CallOptions = {}): Promise<SandboxHandle> {
    const params = createParams(opts);
    const res = { id: opts.hooks ? await createWithHooks(this, params, opts.hooks, callOpts) : (await this.call<{ id: string }>("create", params, callOpts)).id };
    if (callOpts.signal?.aborted) {
      // Started before the cancel could abandon it: the server stops it (spec/rpc.md, cancel).
      await this.call("close", { sandbox: res.id }).catch(() => undefined);
      const e = new RpcError(ErrorCode.CANCELLED, "cancelled", "create");
      (e as { cause?: unknown }).cause = callOpts.signal.reason;
      throw e;
    }
    const h = new SandboxHandle(this, String(res.id), () => this.handles.delete(h.id));
    this.handles.set(h.id, h);
    try {
      for (const f of opts.portForwards ?? []) await h.portForward(f.localPort, f.remotePort);
    } catch (e) {
      await h.close().catch(() => undefined);
      throw e;
    }
    return h;
  }

  /** Create a sandbox, run fn with it, and close it however fn ends. */
  async withSandbox<T>(opts: SandboxOptions, fn: (sb: SandboxHandle) => Promise<T>): Promise<T> {
    const sb = await this.create(opts);
    try {
      return await fn(sb);
    } finally {
      await sb.close();
    }
  }

  /**
   * The handle of a sandbox this server holds, by id: one this client made, or one made with a
   * raw call("create", ...) (which this client then tracks and closes).
   */
  handle(id: string): SandboxHandle {
    let h = this.handles.get(id);
    if (!h) {
      const made: SandboxHandle = new SandboxHandle(this, id, () => this.handles.delete(made.id));
      this.handles.set(id, made);
      h = made;
    }
    return h;
  }

  /** The sandboxes this client created that are not closed, oldest first. */
  get sandboxes(): SandboxHandle[] {
    return [...this.handles.values()];
  }

  /**
   * Stop every sandbox still open (at once) and end `matchlock rpc`. The sandboxes stay listed
   * as stopped (with their logs) until `matchlock rm ID`, `matchlock prune` or
   * SandboxHandle.remove.
   */
  async close(): Promise<void> {
    if (!this.proc) return;
    if (!this.dead) {
      await Promise.all(this.sandboxes.map((h) => h.close().catch(() => undefined)));
    }
    this.proc.stdin.end();
    const killer = setTimeout(() => this.proc?.kill("SIGKILL"), 30_000);
    await this.exited;
    clearTimeout(killer);
  }
}
