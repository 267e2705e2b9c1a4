/** A sandbox handle: one running sandbox of a Client, with its commands, files, ports,
 * allow-list, events and life cycle. */
import { execFile } from "child_process";
import type { Readable, Writable } from "stream";
import type { CallOptions, Client, Request } from "./client";
import { MatchlockError } from "./errors";
import { Hooks, HooksInForce, forgetHooks, setHooks } from "./hooks";

/** Raw bytes per write_file/read_file request (the server's lines are limited to 16 MiB). */
export const FILE_CHUNK = 4 << 20;
/** Files.read's default bound on a whole file. */
export const READ_FILE_MAX = 256 << 20;
/** Unread events a handle keeps; past it they are dropped and counted. */
export const EVENT_QUEUE_MAX = 4096;

/** A string runs through sh -c; an array is argv, with no shell. */
export type Command = string | string[];

export interface ExecOptions extends CallOptions {
  workingDir?: string;
  user?: string;
  env?: Record<string, string>;
}

export interface StreamOptions extends ExecOptions {
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

export interface ExecResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
  durationMs: number;
  /** The server kept only the first 16 MiB of stdout or stderr (exec only). */
  truncated: boolean;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

export interface FileInfo {
  /** UTF-8; bytes that are not UTF-8 appear as U+FFFD. */
  name: string;
  /** The name's exact bytes. */
  nameBytes: Buffer;
  size: number;
  mode: number;
  modTime: string;
  isDir: boolean;
}

export interface PortBinding {
  address: string;
  localPort: number;
  remotePort: number;
}

export interface NetworkEvent {
  method?: string;
  url?: string;
  host?: string;
  status_code?: number;
  request_bytes?: number;
  response_bytes?: number;
  duration_ms?: number;
  blocked?: boolean;
  block_reason?: string;
}

/** A server `event` (spec/rpc.md): type "network", "file" or "dropped" (count lost). */
export class SandboxEvent {
  constructor(
    readonly type: string,
    readonly sandbox: string | undefined,
    readonly timestamp: unknown,
    readonly network: NetworkEvent | undefined,
    readonly count: number,
    readonly raw: Record<string, unknown>,
  ) {}

  static from(p: Record<string, any>): SandboxEvent {
    const net = p.network && typeof p.network === "object" ? (p.network as NetworkEvent) : undefined;
    return new SandboxEvent(String(p.type ?? ""), typeof p.sandbox === "string" ? p.sandbox : undefined, p.timestamp, net, Number(p.count ?? 0), p);
  }
}

function b64(data: Uint8Array | string): string {
  return Buffer.from(data as any).toString("base64");
}

function unb64(s: unknown): Buffer {
  return typeof s === "string" && s ? Buffer.from(s, "base64") : Buffer.alloc(0);
}

function execParams(cmd: Command, o: ExecOptions): Record<string, unknown> {
  if (Array.isArray(cmd) && (cmd.length === 0 || !cmd.every((a) => typeof a === "string"))) {
    throw new TypeError("command must be a string or a non-empty array of strings");
  }
  const p: Record<string, unknown> = { command: cmd };
  if (o.workingDir) p.working_dir = o.workingDir;
  if (o.user) p.user = o.user;
  if (o.env && Object.keys(o.env).length) p.env = { ...o.env };
  return p;
}

/** A sandbox's files, of any size: large files travel in chunks of FILE_CHUNK bytes. */
export class Files {
  constructor(private readonly sb: SandboxHandle) {}

  /** Write a file in the guest (parents are created). */
  async write(path: string, content: Uint8Array | string, opts: CallOptions & { mode?: number } = {}): Promise<void> {
    const data = typeof content === "string" ? Buffer.from(content) : Buffer.from(content.buffer, content.byteOffset, content.byteLength);
    for (let off = 0; ; ) {
      const chunk = data.subarray(off, off + FILE_CHUNK);
      await this.sb.call("write_file", { path, content: b64(chunk), mode: opts.mode ?? 0o644, append: off > 0 }, opts);
      off += chunk.length;
      if (off >= data.length) return;
    }
  }

  /** Read a whole file; one larger than maxBytes (default READ_FILE_MAX) throws. */
  async read(path: string, opts: CallOptions & { maxBytes?: number } = {}): Promise<Buffer> {
    const max = opts.maxBytes ?? READ_FILE_MAX;
    const parts: Buffer[] = [];
    for (let off = 0; ; ) {
      const want = Math.min(FILE_CHUNK, max - off + 1); // one byte past the bound tells us it is larger
      const res = await this.sb.call("read_file", { path, offset: off, length: want }, opts);
      const chunk = unb64(res?.content);
      parts.push(chunk);
      off += chunk.length;
      if (off > max) throw new MatchlockError(`read_file ${path}: the file is larger than maxBytes=${max}`);
      if (chunk.length < want) return Buffer.concat(parts);
    }
  }

  /** The entries of a guest directory. */
  async list(path: string, opts: CallOptions = {}): Promise<FileInfo[]> {
    const res = await this.sb.call("list_files", { path }, opts);
    return (res?.files ?? []).map((f: any) => ({
      name: String(f.name),
      nameBytes: f.name_b64 !== undefined ? unb64(f.name_b64) : Buffer.from(String(f.name)),
      size: Number(f.size),
      mode: Number(f.mode),
      modTime: String(f.mod_time ?? ""),
      isDir: Boolean(f.is_dir),
    }));
  }

  /** Remove a file (or, with recursive, a directory tree). The protocol has no such request:
   * this runs the image's rm, so the image needs one. */
  async remove(path: string, opts: CallOptions & { recursive?: boolean } = {}): Promise<void> {
    const r = await this.sb.exec(["rm", "-f", ...(opts.recursive ? ["-r"] : []), "--", path], opts);
    if (r.exitCode !== 0) throw new MatchlockError(`remove ${path}: ${r.stderr.toString().trim()}`);
  }
}

/** A command started by execPipe (or execInteractive): write to its stdin, then wait. */
export class Process {
  private readonly out: Buffer[] = [];
  private readonly err: Buffer[] = [];
  private req!: Request;
  private ready!: Promise<void>;

  constructor(
    private readonly sb: SandboxHandle,
    private readonly method: "exec_pipe" | "exec_tty",
    private readonly onStdout?: (b: Buffer) => void,
    private readonly onStderr?: (b: Buffer) => void,
  ) {}

  /** @internal */
  _start(params: Record<string, unknown>, opts: CallOptions): Promise<void> {
    let gotReady!: () => void;
    this.ready = new Promise<void>((r) => (gotReady = r));
    this.req = this.sb._request(this.method, params, opts, (m, p) => {
      const kind = m.slice(m.lastIndexOf(".") + 1);
      if (kind === "ready") return gotReady();
      const data = unb64(p.data);
      if (kind === "stdout") (this.onStdout ? this.onStdout(data) : this.out.push(data));
      else if (kind === "stderr") (this.onStderr ? this.onStderr(data) : this.err.push(data));
    });
    // Either ready arrives, or the request ends (an error: thrown from here).
    return Promise.race([this.ready, this.req.result.then(() => undefined)]);
  }

  /** The request id of this process. */
  get id(): number {
    return this.req.id;
  }

  /** Send bytes to the process's stdin. */
  write(data: Uint8Array | string): void {
    const b = typeof data === "string" ? Buffer.from(data) : Buffer.from(data);
    for (let i = 0; i < b.length; i += FILE_CHUNK) {
      this.sb.client.notify(this.method + ".stdin", { id: this.id, data: b64(b.subarray(i, i + FILE_CHUNK)) });
    }
  }

  /** Close the process's stdin (it sees end of file). */
  closeStdin(): void {
    this.sb.client.notify(this.method + ".stdin_eof", { id: this.id });
  }

  /** Change the terminal size (execInteractive processes only). */
  resize(rows: number, cols: number): void {
    if (this.method === "exec_tty") this.sb.client.notify("exec_tty.resize", { id: this.id, rows, cols });
  }

  /** Terminate the process; wait then rejects with CANCELLED. */
  cancel(): Promise<boolean> {
    return this.sb.client.cancel(this.id);
  }

  /** Wait for the process to exit. Output not sent to a callback is in the result. */
  async wait(): Promise<ExecResult> {
    const res = await this.req.result;
    return {
      exitCode: Number(res.exit_code),
      stdout: Buffer.concat(this.out),
      stderr: Buffer.concat(this.err),
      durationMs: Number(res.duration_ms ?? 0),
      truncated: false,
      stdoutTruncated: false,
      stderrTruncated: false,
    };
  }
}

/**
 * One sandbox of a Client (from Client.create). Every method takes an options object with an
 * optional AbortSignal: when it fires, the request is cancelled on the server and the promise
 * rejects with RpcError CANCELLED (its cause is the signal's reason).
 */
export class SandboxHandle {
  readonly files: Files;
  private closed = false;
  private readonly queue: SandboxEvent[] = [];
  private readonly waiters: Array<() => void> = [];
  private lost = 0;

  constructor(
    readonly client: Client,
    readonly id: string,
    private readonly forget: () => void,
  ) {
    this.files = new Files(this);
    // For `await using sb = await client.create(...)` where the runtime has Symbol.asyncDispose.
    const dispose = (Symbol as { asyncDispose?: symbol }).asyncDispose;
    if (dispose) (this as any)[dispose] = () => this.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** @internal */
  _request(method: string, params: Record<string, unknown>, opts: CallOptions = {}, onNotify?: (m: string, p: Record<string, any>) => void): Request {
    if (this.closed) {
      return { id: 0, result: Promise.reject(new MatchlockError(`${method}: sandbox ${this.id} is closed`)) };
    }
    return this.client.request(method, { ...params, sandbox: this.id }, { signal: opts.signal, onNotify });
  }

  /** Send one raw JSON-RPC request for this sandbox and return its result. */
  call<T = any>(method: string, params: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<T> {
    return this._request(method, params, opts).result;
  }

  /** Run a command to completion; the first 16 MiB of stdout and stderr are kept. */
  async exec(cmd: Command, opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.call("exec", execParams(cmd, opts), opts);
    return {
      exitCode: Number(r.exit_code),
      stdout: unb64(r.stdout),
      stderr: unb64(r.stderr),
      durationMs: Number(r.duration_ms ?? 0),
      truncated: Boolean(r.truncated),
      stdoutTruncated: Boolean(r.stdout_truncated),
      stderrTruncated: Boolean(r.stderr_truncated),
    };
  }

  /** Run a command, giving its output to onStdout/onStderr as it arrives (unbounded). */
  async execStream(cmd: Command, opts: StreamOptions = {}): Promise<ExecResult> {
    const r = await this._request("exec_stream", execParams(cmd, opts), opts, (m, p) => {
      const fn = m.endsWith(".stdout") ? opts.onStdout : m.endsWith(".stderr") ? opts.onStderr : undefined;
      fn?.(unb64(p.data));
    }).result;
    const empty = Buffer.alloc(0);
    return { exitCode: Number(r.exit_code), stdout: empty, stderr: empty, durationMs: Number(r.duration_ms ?? 0), truncated: false, stdoutTruncated: false, stderrTruncated: false };
  }

  /** Start a command with a stdin pipe; resolves once it runs. */
  async execPipe(cmd: Command, opts: StreamOptions = {}): Promise<Process> {
    const p = new Process(this, "exec_pipe", opts.onStdout, opts.onStderr);
    await p._start(execParams(cmd, opts), opts);
    return p;
  }

  /**
   * Run a command on a pseudo-terminal of rows x cols, copying stdin to it and its output to
   * stdout until it exits; resolves to its exit code. Raw mode of a local terminal is the
   * caller's business.
   */
  async execInteractive(cmd: Command, opts: ExecOptions & { stdin?: Readable; stdout?: Writable; rows?: number; cols?: number } = {}): Promise<number> {
    const params = execParams(cmd, opts);
    params.rows = opts.rows ?? 24;
    params.cols = opts.cols ?? 80;
    const out = opts.stdout;
    const p = new Process(this, "exec_tty", out ? (b) => out.write(b) : undefined, undefined);
    await p._start(params, opts);
    const stdin = opts.stdin;
    const onData = (b: Buffer | string) => p.write(b);
    const onEnd = () => p.closeStdin();
    stdin?.on("data", onData).on("end", onEnd);
    try {
      return (await p.wait()).exitCode;
    } finally {
      stdin?.off("data", onData).off("end", onEnd);
    }
  }

  /** Forward a host port (0: any free one) to a guest port. */
  async portForward(localPort: number, remotePort: number, opts: CallOptions & { addresses?: string[] } = {}): Promise<PortBinding[]> {
    const params: Record<string, unknown> = { forwards: [{ local_port: localPort, remote_port: remotePort }] };
    if (opts.addresses?.length) params.addresses = [...opts.addresses];
    const r = await this.call("port_forward", params, opts);
    return (r?.bindings ?? []).map((b: any) => ({ address: String(b.address), localPort: Number(b.local_port), remotePort: Number(b.remote_port) }));
  }

  /** Allow more hosts (GLOB[:PORT|:*]) at run time; resolves to the whole allow-list. */
  async allowListAdd(hosts: string[], opts: CallOptions = {}): Promise<string[]> {
    return (await this.call("allow_list_add", { hosts }, opts))?.allowed_hosts ?? [];
  }

  /** Remove hosts from the allow-list; resolves to the whole allow-list. */
  async allowListDelete(hosts: string[], opts: CallOptions = {}): Promise<string[]> {
    return (await this.call("allow_list_delete", { hosts }, opts))?.allowed_hosts ?? [];
  }

  /**
   * Replace this sandbox's hooks (the members given; the others stay) and the callbacks this
   * client answers with; resolves to the hooks in force. An invalid document changes nothing
   * (RpcError INVALID_PARAMS naming the rule and field).
   */
  setHooks(hooks: Hooks, opts: CallOptions = {}): Promise<HooksInForce> {
    if (this.closed) return Promise.reject(new MatchlockError(`hooks_set: sandbox ${this.id} is closed`));
    return setHooks(this.client, this.id, hooks, opts);
  }

  /** The hooks in force on this sandbox. */
  getHooks(opts: CallOptions = {}): Promise<HooksInForce> {
    return this.call<HooksInForce>("hooks_get", {}, opts);
  }

  /** The sandbox's log so far (its last 16 MiB), exactly as written. */
  async log(opts: CallOptions = {}): Promise<Buffer> {
    return unb64((await this.call("log", {}, opts))?.content);
  }

  /** @internal */
  _pushEvent(ev: SandboxEvent): void {
    if (this.queue.length >= EVENT_QUEUE_MAX) {
      this.lost++; // the reader never waits for a handle nobody reads
      return;
    }
    this.queue.push(ev);
    this.waiters.splice(0).forEach((w) => w());
  }

  /** @internal */
  _closedByServer(): void {
    this.closed = true;
    this.forget();
    forgetHooks(this.client, this.id);
    this.waiters.splice(0).forEach((w) => w());
  }

  /**
   * This sandbox's events as they arrive, until the sandbox is closed or `signal` fires. Past
   * EVENT_QUEUE_MAX unread events, a "dropped" event says how many were lost.
   */
  async *events(opts: { signal?: AbortSignal } = {}): AsyncGenerator<SandboxEvent> {
    const signal = opts.signal;
    for (;;) {
      if (this.lost) {
        const n = this.lost;
        this.lost = 0;
        yield new SandboxEvent("dropped", this.id, undefined, undefined, n, {});
      }
      const ev = this.queue.shift();
      if (ev) {
        yield ev;
        continue;
      }
      if (this.closed || signal?.aborted) return;
      await new Promise<void>((resolve) => {
        // One listener per wait, removed on wake-up: a long-lived reader must not pile them up.
        const wake = () => {
          signal?.removeEventListener("abort", wake);
          resolve();
        };
        this.waiters.push(wake);
        signal?.addEventListener("abort", wake, { once: true });
      });
    }
  }

  /** Stop the sandbox; it stays listed as stopped until remove() or `matchlock rm`. Twice: nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.waiters.splice(0).forEach((w) => w());
    try {
      await this.client.call("close", { sandbox: this.id });
    } finally {
      this.forget();
      forgetHooks(this.client, this.id);
    }
  }

  /** Stop the sandbox if it runs, then remove its record and directory (`matchlock rm`). */
  async remove(): Promise<void> {
    await this.close();
    await new Promise<void>((resolve, reject) =>
      execFile(this.client.binary, ["rm", this.id], (err, _out, stderr) =>
        err ? reject(new MatchlockError(`matchlock rm ${this.id}: ${String(stderr).trim() || err.message}`)) : resolve(),
      ),
    );
  }
}
