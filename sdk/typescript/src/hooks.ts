/**
 * Hooks: rules and callbacks on a sandbox's HTTPS requests and host-folder file operations
 * (spec/rpc.md "Hooks"). Rules are evaluated by matchlock itself (in the TLS proxy and the file
 * service); a rule with a `callback` (a file rule with `rewrite`) makes the server ask this
 * client, over the same `matchlock rpc` connection, and wait at most `callbackTimeoutMs` for the
 * answer. No answer in time, a callback that throws (or rejects), or a client that went away:
 * the request is refused (403) or the file operation fails (EACCES).
 *
 *     const sb = await client.create({
 *       image, mounts: [{ host: dir, mode: "rw" }],
 *       hooks: {
 *         network: [{ name: "no-admin", path: "/admin/**", action: "block" },
 *                   { name: "tag", path: "/v1/*", callback: async (rq) => allow({ "x-tag": "1" }) }],
 *         files: [{ name: "locked", ops: ["write", "create"], path: "/workspace/ro/**", action: "block" }],
 *       },
 *     });
 *     await sb.setHooks({ network: [] }); // change them on the running sandbox
 *
 * Callbacks may be async and may call the client; several may run at once. Each client answers
 * for the sandboxes it created or set hooks on.
 */
import type { CallOptions, Client } from "./client";
import { MatchlockError } from "./errors";

/**
 * What a network callback is asked about: the request as the rules left it. Secret values never
 * appear here: hooks run before the proxy puts them in (headers hold placeholders).
 */
export interface NetworkRequest {
  sandbox: string;
  rule: string;
  method: string;
  host: string;
  port: number;
  /** With its query. */
  path: string;
  /** Names lower case. */
  headers: Record<string, string>;
}

/** A network callback's answer. */
export interface NetworkDecision {
  action: "allow" | "block";
  setHeaders?: Record<string, string>;
  deleteHeaders?: string[];
}

/** Let the request go, with these header edits. */
export function allow(setHeaders?: Record<string, string>, deleteHeaders?: string[]): NetworkDecision {
  return { action: "allow", setHeaders, deleteHeaders };
}

/** Refuse the request (the guest gets 403). */
export function block(): NetworkDecision {
  return { action: "block" };
}

export type FileOp = "read" | "write" | "create" | "mkdir" | "remove" | "rename" | "setattr";

/** What a file callback is asked about (guest paths). */
export interface FileRequest {
  sandbox: string;
  rule: string;
  op: FileOp;
  path: string;
  /** A rename's target, or a hard link's existing name. */
  path2?: string;
  /** Rewrite rules: where the write goes. */
  offset: number;
  /** Rewrite rules: the bytes the guest writes. */
  data?: Buffer;
}

/** Given to every callback: `signal` fires when the server stops waiting for the answer. */
export interface HookContext {
  signal: AbortSignal;
}

type MaybePromise<T> = T | Promise<T>;
/** Returns a decision, true/undefined (allow) or false (block). */
export type NetworkCallback = (rq: NetworkRequest, ctx: HookContext) => MaybePromise<NetworkDecision | boolean | void>;
/** Returns true/undefined (allow) or false (block). */
export type FileCallback = (rq: FileRequest, ctx: HookContext) => MaybePromise<boolean | void>;
/** Returns the bytes to write instead, or null/undefined for the guest's own bytes. */
export type RewriteCallback = (rq: FileRequest, ctx: HookContext) => MaybePromise<Uint8Array | string | null | void>;

/**
 * A rule on intercepted HTTPS requests (spec/rpc.md explains each field). `action` none: edits
 * only. Giving `callback` makes it a callback rule (`action` "callback" or left out).
 */
export interface NetworkRule {
  /** 1-64 characters; a callback rule without one is named "ts-network-INDEX". */
  name?: string;
  action?: "allow" | "block" | "callback";
  hosts?: string[];
  methods?: string[];
  /** A glob over the path (no query). */
  path?: string;
  setHeaders?: Record<string, string>;
  deleteHeaders?: string[];
  setQuery?: Record<string, string>;
  deleteQuery?: string[];
  rewritePath?: string;
  setResponseHeaders?: Record<string, string>;
  deleteResponseHeaders?: string[];
  bodyReplacements?: Array<{ find: string; replace: string }>;
  callback?: NetworkCallback;
}

/**
 * A rule on file operations in host folders mounted "rw". Phase "before" (the default): `action`
 * allow or block, or a `callback`, or a `rewrite` (ops exactly ["write"]); phase "after": a
 * `file` event once the operation is done.
 */
export interface FileRule {
  /** 1-64 characters; a callback or rewrite rule without one is named "ts-file-INDEX". */
  name?: string;
  ops?: FileOp[];
  /** A glob over the guest path. */
  path?: string;
  phase?: "before" | "after";
  action?: "allow" | "block" | "callback" | "rewrite" | "event";
  callback?: FileCallback;
  rewrite?: RewriteCallback;
}

/**
 * A sandbox's hooks. A member left out stays as it was on the sandbox (a new one has none); a
 * member given replaces that whole list.
 */
export interface Hooks {
  network?: NetworkRule[];
  files?: FileRule[];
  /** 1-60000 (the server's default: 5000). */
  callbackTimeoutMs?: number;
}

/** The hooks in force on a sandbox, as the server states them (rules in spec/rpc.md's form). */
export interface HooksInForce {
  network: Array<Record<string, unknown>>;
  files: Array<Record<string, unknown>>;
  callback_timeout_ms: number;
}

/** Rules with their callbacks found by the name the server will ask with. */
class HookSet {
  readonly network = new Map<string, NetworkCallback>();
  readonly files = new Map<string, { callback?: FileCallback; rewrite?: RewriteCallback }>();
  /** What `create`'s `hooks` and `hooks_set` take: the members h gives. */
  readonly wire: Record<string, unknown> = {};

  constructor(readonly hooks: Hooks) {
    if (hooks.network) this.wire.network = hooks.network.map((r, i) => this.networkRule(r, i));
    if (hooks.files) this.wire.files = hooks.files.map((r, i) => this.fileRule(r, i));
    if (hooks.callbackTimeoutMs !== undefined) this.wire.callback_timeout_ms = hooks.callbackTimeoutMs;
  }

  private networkRule(r: NetworkRule, i: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const name = r.name ?? (r.callback ? `ts-network-${i}` : undefined);
    if (name !== undefined) out.name = name;
    if (r.callback) {
      if (r.action !== undefined && r.action !== "callback") throw new TypeError(`network rule ${name}: a callback rule's action is "callback", not "${r.action}"`);
      if (this.network.has(name!)) throw new TypeError(`network rule ${name}: two callback rules of that name`);
      this.network.set(name!, r.callback);
      out.action = "callback";
    } else if (r.action !== undefined) {
      out.action = r.action;
    }
    copy(out, "hosts", r.hosts);
    copy(out, "methods", r.methods);
    if (r.path !== undefined) out.path = r.path;
    copy(out, "set_headers", r.setHeaders);
    copy(out, "delete_headers", r.deleteHeaders);
    copy(out, "set_query", r.setQuery);
    copy(out, "delete_query", r.deleteQuery);
    if (r.rewritePath !== undefined) out.rewrite_path = r.rewritePath;
    copy(out, "set_response_headers", r.setResponseHeaders);
    copy(out, "delete_response_headers", r.deleteResponseHeaders);
    if (r.bodyReplacements?.length) out.body_replacements = r.bodyReplacements.map((b) => ({ find: b.find, replace: b.replace }));
    return out;
  }

  private fileRule(r: FileRule, i: number): Record<string, unknown> {
    const out: Record<string, unknown> = { phase: r.phase ?? "before" };
    const asks = r.callback ? "callback" : r.rewrite ? "rewrite" : undefined;
    const name = r.name ?? (asks ? `ts-file-${i}` : undefined);
    if (name !== undefined) out.name = name;
    copy(out, "ops", r.ops);
    if (r.path !== undefined) out.path = r.path;
    if (asks) {
      if (r.callback && r.rewrite) throw new TypeError(`file rule ${name}: give a callback or a rewrite, not both`);
      if (r.action !== undefined && r.action !== asks) throw new TypeError(`file rule ${name}: a ${asks} rule's action is "${asks}", not "${r.action}"`);
      if (this.files.has(name!)) throw new TypeError(`file rule ${name}: two callback rules of that name`);
      this.files.set(name!, { callback: r.callback, rewrite: r.rewrite });
      out.action = asks;
    } else if (r.action !== undefined) {
      out.action = r.action;
    }
    return out;
  }

  /** The answer to one question (throws: the question is refused). */
  async answer(q: Record<string, any>, ctx: HookContext): Promise<Record<string, unknown>> {
    const rule = String(q.rule ?? "");
    const sandbox = String(q.sandbox ?? "");
    if (q.kind === "network") {
      const fn = this.network.get(rule);
      if (!fn) throw new MatchlockError(`no network callback for rule ${JSON.stringify(rule)}`);
      const headers: Record<string, string> = {};
      if (q.headers && typeof q.headers === "object") for (const [k, v] of Object.entries(q.headers)) headers[k] = String(v);
      const rq: NetworkRequest = { sandbox, rule, method: String(q.method ?? ""), host: String(q.host ?? ""), port: Number(q.port ?? 0), path: String(q.path ?? ""), headers };
      let d = await fn(rq, ctx);
      if (d === undefined || d === true) d = allow();
      else if (d === false) d = block();
      if (d.action !== "allow" && d.action !== "block") throw new MatchlockError(`network callback ${rule}: action ${JSON.stringify(d.action)} is neither "allow" nor "block"`);
      const out: Record<string, unknown> = { action: d.action };
      copy(out, "set_headers", d.setHeaders);
      copy(out, "delete_headers", d.deleteHeaders);
      return out;
    }
    if (q.kind === "file") {
      const f = this.files.get(rule);
      if (!f) throw new MatchlockError(`no file callback for rule ${JSON.stringify(rule)}`);
      const rq: FileRequest = { sandbox, rule, op: String(q.op ?? "") as FileOp, path: String(q.path ?? ""), offset: Number(q.offset ?? 0) };
      if (typeof q.path2 === "string") rq.path2 = q.path2;
      if (typeof q.data === "string") rq.data = Buffer.from(q.data, "base64");
      if (f.rewrite) {
        const data = await f.rewrite(rq, ctx);
        const out: Record<string, unknown> = { action: "allow" };
        if (data !== undefined && data !== null) out.data = Buffer.from(data as Uint8Array).toString("base64");
        return out;
      }
      return { action: (await f.callback!(rq, ctx)) === false ? "block" : "allow" };
    }
    throw new MatchlockError(`a hook question of unknown kind ${JSON.stringify(q.kind)}`);
  }
}

function copy(out: Record<string, unknown>, key: string, v: Record<string, string> | string[] | undefined): void {
  if (Array.isArray(v)) {
    if (v.length) out[key] = [...v];
  } else if (v && Object.keys(v).length) {
    out[key] = { ...v };
  }
}

/** The server's default wait for an answer (spec/rpc.md), when a question does not say. */
const DEFAULT_TIMEOUT_MS = 5000;

/** One client's callbacks, by sandbox, and the creates with hooks it is waiting on. */
class Registry {
  /** By sandbox id; an entry goes when its handle closes (forgetHooks), so at most the 16 a server holds. */
  private readonly sets = new Map<string, HookSet>();
  /** Creates with hooks not answered yet: their sandbox may ask before its id is known here. */
  private starting = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly client: Client) {}

  install(sandbox: string, set: HookSet | undefined): void {
    if (set) this.sets.set(sandbox, set);
    else this.sets.delete(sandbox);
  }

  async create(params: Record<string, unknown>, hooks: Hooks, callOpts: CallOptions): Promise<string> {
    const set = new HookSet(hooks);
    this.starting++;
    try {
      const res = await this.client.call<{ id: string }>("create", { ...params, hooks: set.wire }, callOpts);
      this.sets.set(String(res.id), set);
      return String(res.id);
    } finally {
      this.starting--;
      this.waiters.splice(0).forEach((w) => w());
    }
  }

  /** The callbacks of sandbox, waiting (at most timeoutMs) for a create still unanswered. */
  async setFor(sandbox: string, timeoutMs: number): Promise<HookSet> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.sets.get(sandbox);
      if (s) return s;
      const left = deadline - Date.now();
      if (this.starting === 0 || left <= 0) throw new MatchlockError(`this client has no hooks for sandbox ${sandbox}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Answers one server request (method "hook"); throws to refuse it. */
  async serve(method: string, q: Record<string, any>): Promise<unknown> {
    if (method !== "hook") throw new MatchlockError(`unknown server request ${method}`);
    const timeoutMs = Number(q.timeout_ms) > 0 ? Number(q.timeout_ms) : DEFAULT_TIMEOUT_MS;
    const signal = AbortSignal.timeout(timeoutMs);
    const set = await this.setFor(String(q.sandbox ?? ""), timeoutMs);
    return set.answer(q, { signal });
  }

  async set(sandbox: string, hooks: Hooks, opts: CallOptions): Promise<HooksInForce> {
    const given = new HookSet(hooks); // throws on a bad rule before anything is sent
    const prev = this.sets.get(sandbox);
    const old = prev?.hooks;
    // A member left out stays as it was on the server, and so do its callbacks here. They answer
    // as soon as the server may ask; an invalid document changes nothing, here as there.
    this.install(sandbox, new HookSet({ network: hooks.network ?? old?.network, files: hooks.files ?? old?.files, callbackTimeoutMs: hooks.callbackTimeoutMs ?? old?.callbackTimeoutMs }));
    try {
      return await this.client.call<HooksInForce>("hooks_set", { sandbox, hooks: given.wire }, opts);
    } catch (e) {
      this.install(sandbox, prev);
      throw e;
    }
  }
}

const registries = new WeakMap<Client, Registry>();

function registry(client: Client): Registry {
  let r = registries.get(client);
  if (!r) {
    const made = new Registry(client);
    client._serveRequests((method, params) => made.serve(method, params));
    registries.set(client, made);
    r = made;
  }
  return r;
}

/** @internal Client.create with `hooks`: in force, and answered here, from the first instruction. */
export function createWithHooks(client: Client, params: Record<string, unknown>, hooks: Hooks, callOpts: CallOptions): Promise<string> {
  return registry(client).create(params, hooks, callOpts);
}

/** @internal A sandbox handle closed: its callbacks go. */
export function forgetHooks(client: Client, sandbox: string): void {
  registries.get(client)?.install(sandbox, undefined);
}

/** @internal SandboxHandle.setHooks. */
export function setHooks(client: Client, sandbox: string, hooks: Hooks, opts: CallOptions): Promise<HooksInForce> {
  return registry(client).set(sandbox, hooks, opts);
}

/** The wire form of hooks (`create`'s `hooks`, `hooks_set`'s `hooks`), as spec/rpc.md has it. */
export function hooksWire(hooks: Hooks): Record<string, unknown> {
  return new HookSet(hooks).wire;
}
