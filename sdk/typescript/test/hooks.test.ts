// TypeScript SDK hook tests (src/hooks.ts). Unit: the wire form, and the client's answers to
// "hook" requests against a scripted stand-in for `matchlock rpc`. Live (mirroring
// tests/sdk/test_hooks_python.py): a real sandbox from build/matchlock with a rw host folder at
// /workspace reaches a loopback HTTPS upstream (tests/sdk/hooks_upstream.py) through the proxy.
import { strict as assert } from "assert";
import { ChildProcess, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { after, before, beforeEach, describe, test } from "node:test";
import { Client, ErrorCode, FileRequest, Hooks, NetworkRequest, RpcError, SandboxEvent, SandboxHandle, allow, block, createParams, hooksWire, isCode } from "../src/index";

const ROOT = process.env.MATCHLOCK_REPO_ROOT ?? path.resolve(__dirname, "..", "..", "..", "..");
const BIN = process.env.MATCHLOCK_BIN ?? path.join(ROOT, "build", "matchlock");
const IMAGE = process.env.MATCHLOCK_TEST_IMAGE ?? path.join(ROOT, "build", "rootfs-busybox");

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll until fn returns something (bounded). */
async function until<T>(fn: () => T | undefined, what: string, ms = 10000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting ${what}`);
    await sleep(50);
  }
}

// A stand-in for `matchlock rpc`: asks a "hook" question before answering create (a sandbox may
// ask before its id is known), and on `ask` sends params.q as a question and answers with the
// client's reply (result or error) to it. hooks_set answers its params.
const FAKE_SERVER = `
const rl = require("readline").createInterface({ input: process.stdin });
const waiting = new Map();
let n = 0;
const send = (o) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", ...o }) + "\\n");
const ask = (q) => new Promise((resolve) => { const id = "hook-" + n++; waiting.set(id, resolve); send({ id, method: "hook", params: q }); });
let early;
rl.on("line", (line) => {
  const m = JSON.parse(line);
  if (m.method === undefined) { waiting.get(m.id)?.(m); waiting.delete(m.id); return; }
  const p = m.params || {};
  if (m.method === "create") {
    early = ask({ sandbox: "sb1", kind: "network", rule: "cb", method: "GET", host: "early.test", port: 443, path: "/", headers: {}, timeout_ms: 5000 });
    setTimeout(() => send({ id: m.id, result: { id: "sb1" } }), 100);
  } else if (m.method === "early") early.then((r) => send({ id: m.id, result: r }));
  else if (m.method === "ask") ask(p.q).then((r) => send({ id: m.id, result: r }));
  else if (m.method === "hooks_set") send({ id: m.id, result: p });
  else send({ id: m.id, result: {} });
});
`;

describe("hooks unit", () => {
  test("wire form of rules", () => {
    const h: Hooks = {
      network: [
        { path: "/x", callback: () => undefined },
        { hosts: ["a.test"], deleteQuery: ["k"], setHeaders: { "X-A": "1" }, rewritePath: "/y", bodyReplacements: [{ find: "a", replace: "b" }] },
        { name: "no", path: "/admin/**", action: "block" },
      ],
      files: [{ ops: ["write"], rewrite: () => null }, { name: "audit", phase: "after", ops: ["create"], path: "/workspace/*" }],
      callbackTimeoutMs: 100,
    };
    const want = {
      network: [
        { name: "ts-network-0", action: "callback", path: "/x" },
        { hosts: ["a.test"], set_headers: { "X-A": "1" }, delete_query: ["k"], rewrite_path: "/y", body_replacements: [{ find: "a", replace: "b" }] },
        { name: "no", action: "block", path: "/admin/**" },
      ],
      files: [
        { phase: "before", name: "ts-file-0", ops: ["write"], action: "rewrite" },
        { phase: "after", name: "audit", ops: ["create"], path: "/workspace/*" },
      ],
      callback_timeout_ms: 100,
    };
    assert.deepEqual(hooksWire(h), want);
    assert.deepEqual(createParams({ image: "/img", hooks: h }), { image: "/img", hooks: want });
    assert.deepEqual(hooksWire({ files: [] }), { files: [] });
    assert.throws(() => hooksWire({ network: [{ name: "a", callback: () => true }, { name: "a", callback: () => true }] }), /two callback rules/);
    assert.throws(() => hooksWire({ network: [{ action: "block", callback: () => true }] }), /action is "callback"/);
  });

  test("the client answers hook requests: async, throwing, unknown, file and rewrite", async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ts-hooks-fake-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const bin = path.join(dir, "fake-matchlock");
    fs.writeFileSync(bin, `#!${process.execPath}\n${FAKE_SERVER}`, { mode: 0o755 });
    const client = new Client({ binary: bin });
    t.after(() => client.close());
    const asked: Array<NetworkRequest | FileRequest> = [];
    const sb = await client.create({
      image: "/img",
      hooks: {
        network: [
          {
            name: "cb",
            callback: async (rq, ctx) => {
              asked.push(rq);
              assert.ok(!ctx.signal.aborted);
              await sleep(20);
              return allow({ "x-seen": rq.host }, ["cookie"]);
            },
          },
          { name: "no", callback: () => block() },
          { name: "boom", callback: () => Promise.reject(new Error("kaput")) },
          { name: "bad", callback: () => ({ action: "maybe" }) as any },
        ],
        files: [
          { name: "rw", ops: ["write"], rewrite: (rq) => (asked.push(rq), Buffer.concat([Buffer.from("X:"), rq.data!])) },
          { name: "keep", ops: ["write"], rewrite: () => undefined },
          { name: "guard", callback: (rq) => rq.path !== "/w/deny" },
        ],
      },
    });
    const ask = (q: Record<string, unknown>) => sb.call("ask", { q: { sandbox: "sb1", timeout_ms: 5000, ...q } });
    // Asked before create answered: held until the sandbox's id was known, then answered.
    assert.deepEqual((await sb.call("early")).result, { action: "allow", set_headers: { "x-seen": "early.test" }, delete_headers: ["cookie"] });
    assert.deepEqual((await ask({ kind: "network", rule: "cb", host: "h", headers: { "x-k": "v" } })).result.action, "allow");
    assert.deepEqual((asked[1] as NetworkRequest).headers, { "x-k": "v" });
    assert.deepEqual((await ask({ kind: "network", rule: "no" })).result, { action: "block" });
    for (const [q, why] of [
      [{ kind: "network", rule: "boom" }, /kaput/],
      [{ kind: "network", rule: "bad" }, /neither "allow" nor "block"/],
      [{ kind: "network", rule: "ghost" }, /no network callback for rule "ghost"/],
      [{ kind: "disk", rule: "cb" }, /unknown kind/],
      [{ kind: "network", rule: "cb", sandbox: "other" }, /no hooks for sandbox other/],
    ] as const) {
      const r = await ask(q);
      assert.equal(r.result, undefined, JSON.stringify(q));
      assert.equal(r.error.code, ErrorCode.INTERNAL_ERROR);
      assert.match(r.error.message, why);
    }
    const data = Buffer.from("hello\n").toString("base64");
    assert.deepEqual((await ask({ kind: "file", rule: "rw", op: "write", path: "/w/f", offset: 6, data })).result, { action: "allow", data: Buffer.from("X:hello\n").toString("base64") });
    assert.deepEqual(asked[2], { sandbox: "sb1", rule: "rw", op: "write", path: "/w/f", offset: 6, data: Buffer.from("hello\n") });
    assert.deepEqual((await ask({ kind: "file", rule: "keep", op: "write", path: "/w/f", data })).result, { action: "allow" });
    assert.deepEqual((await ask({ kind: "file", rule: "guard", op: "create", path: "/w/deny" })).result, { action: "block" });
    assert.deepEqual((await ask({ kind: "file", rule: "guard", op: "create", path: "/w/ok" })).result, { action: "allow" });
    // setHooks sends only the members given; the others' callbacks still answer.
    const sent = await sb.setHooks({ files: [] });
    assert.deepEqual(sent, { sandbox: "sb1", hooks: { files: [] } } as any);
    assert.equal((await ask({ kind: "network", rule: "no" })).result.action, "block");
    assert.match((await ask({ kind: "file", rule: "guard", path: "/w/ok" })).error.message, /no file callback/);
    // A closed handle's callbacks are gone.
    await sb.close();
    const gone = await client.call("ask", { q: { sandbox: "sb1", kind: "network", rule: "no", timeout_ms: 5000 } });
    assert.match(gone.error.message, /no hooks for sandbox sb1/);
  });
});

const live = fs.existsSync(BIN) && fs.existsSync(IMAGE);
const REAL = "sk-live-" + crypto.randomBytes(8).toString("hex");

describe("hooks on a live sandbox", { skip: live ? false : `no ${BIN} or ${IMAGE}` }, () => {
  let tmp: string;
  let srv: ChildProcess;
  let logPath: string;
  let mark = 0;
  let work: string;
  let url: string;
  let client: Client;
  let sb: SandboxHandle;
  const seen: NetworkRequest[] = [];
  const events: SandboxEvent[] = [];
  const stopEvents = new AbortController();

  const rules = (): Hooks => ({
    network: [
      { name: "no-admin", path: "/admin/**", action: "block" },
      {
        name: "cb",
        path: "/cb",
        callback: async (rq) => {
          seen.push(rq);
          await sleep(10); // an async callback
          return allow({ "X-From-Callback": "cb-" + rq.method }, ["x-drop"]);
        },
      },
      { name: "boom", path: "/boom", callback: () => { throw new Error("refuse me"); } },
      { name: "slow", path: "/slow", callback: () => sleep(4000).then(() => true) },
    ],
    files: [
      { name: "locked", ops: ["write", "create", "remove"], path: "/workspace/locked/**", action: "block" },
      { name: "veto", ops: ["create"], path: "/workspace/veto-*", callback: (rq) => !rq.path.endsWith("-no") },
    ],
    callbackTimeoutMs: 1500,
  });

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ts-hooks-"));
    const up = path.join(tmp, "up");
    fs.mkdirSync(up);
    srv = spawn("python3", [path.join(ROOT, "tests", "sdk", "hooks_upstream.py"), up], { stdio: "inherit" });
    const port = await until(() => (fs.existsSync(path.join(up, "port")) ? fs.readFileSync(path.join(up, "port"), "utf8") : undefined), "for the upstream");
    logPath = path.join(up, "requests.log");
    work = path.join(tmp, "work");
    fs.mkdirSync(path.join(work, "locked"), { recursive: true });
    fs.writeFileSync(path.join(work, "locked", "keep.txt"), "original\n");
    // The proxy (in `matchlock rpc`) trusts the upstream's test CA through OpenSSL's default path.
    process.env.SSL_CERT_FILE = path.join(up, "ca.pem");
    const host = `api.test:${port}`;
    url = `https://${host}`;
    client = new Client({ binary: BIN });
    sb = await client.create({
      image: IMAGE,
      allowedHosts: [host],
      addHosts: { "api.test": "127.0.0.1" },
      secrets: [{ name: "API_KEY", value: REAL, hosts: [host] }],
      mounts: [{ host: work, guest: "/workspace", mode: "rw" }],
      hooks: rules(),
    });
    (async () => {
      for await (const ev of sb.events({ signal: stopEvents.signal })) events.push(ev);
    })();
  });

  after(async () => {
    stopEvents.abort();
    await client?.close();
    srv?.kill();
    delete process.env.SSL_CERT_FILE;
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  beforeEach(async () => {
    await sb.setHooks(rules()); // a test may have changed them
    fs.closeSync(fs.openSync(logPath, "a"));
    mark = fs.statSync(logPath).size;
  });

  const upstream = () => fs.readFileSync(logPath).subarray(mark).toString();

  const wget = async (p: string, ...headers: string[]) => {
    const hs = headers.map((h) => `--header "${h}"`).join(" ");
    return (await sb.exec(`wget -q -S -O - ${hs} '${url}${p}' 2>&1; echo rc=$?`)).stdout.toString();
  };

  const event = (pred: (e: Record<string, any>) => boolean, what: string) =>
    until(() => events.find((e) => pred(e.raw as Record<string, any>))?.raw as Record<string, any> | undefined, what);

  test("a network rule blocks a path: 403 and the upstream never sees it", async () => {
    assert.match(await wget("/admin/users"), /403 Forbidden/);
    assert.doesNotMatch(upstream(), /\/admin/);
    const e = await event((e) => e.type === "network" && e.network?.blocked && String(e.network.url).includes("/admin/users"), "for the blocked request");
    assert.match(e.network.block_reason, /hook rule no-admin/);
    assert.match(await wget("/public/../admin/x"), /403 Forbidden/);
    assert.doesNotMatch(upstream(), /admin/);
    assert.match(await wget("/ok"), /rc=0/);
    assert.match(upstream(), /GET \/ok HTTP/);
  });

  test("a callback rewrites a request header and sees only the secret's placeholder", async () => {
    seen.length = 0;
    const out = await wget("/cb", "X-Key: $API_KEY", "X-Drop: 1");
    assert.match(out, /rc=0/);
    const log = upstream();
    assert.match(log, /x-from-callback: cb-GET/i);
    assert.doesNotMatch(log, /x-drop/i);
    // Secrets are put in after the hooks: the upstream gets the value, the callback the placeholder.
    assert.ok(log.includes(`X-Key: ${REAL}`), log);
    const rq = seen[seen.length - 1];
    assert.deepEqual([rq.rule, rq.path, rq.host, rq.sandbox], ["cb", "/cb", "api.test", sb.id]);
    assert.match(rq.headers["x-key"], /^SANDBOX_SECRET_/);
    assert.ok(!JSON.stringify(rq).includes(REAL));
  });

  test("a throwing or hanging callback fails closed", async () => {
    assert.match(await wget("/boom"), /403 Forbidden/);
    assert.match(await wget("/slow"), /403 Forbidden/);
    assert.doesNotMatch(upstream(), /\/boom|\/slow/);
    const e = await event((e) => e.type === "network" && String(e.network?.url).includes("/slow"), "for the refused request");
    assert.match(e.network.block_reason, /no answer/);
  });

  test("a file rule blocks writes under a path: the guest gets an error, the host file stays", async () => {
    const r = await sb.exec(
      "echo bad > /workspace/locked/keep.txt; echo new > /workspace/locked/new.txt; rm -f /workspace/locked/keep.txt; cat /workspace/locked/keep.txt",
    );
    assert.equal(r.stdout.toString(), "original\n");
    assert.match(r.stderr.toString(), /Permission denied/);
    assert.equal(fs.readFileSync(path.join(work, "locked", "keep.txt"), "utf8"), "original\n");
    assert.ok(!fs.existsSync(path.join(work, "locked", "new.txt")));
    const e = await event((e) => e.type === "file" && e.file?.path === "/workspace/locked/new.txt", "for the blocked create");
    assert.deepEqual([e.file.blocked, e.file.rule], [true, "locked"]);
    // A file callback decides too.
    const v = await sb.exec("echo 1 > /workspace/veto-ok && echo 2 > /workspace/veto-no");
    assert.notEqual(v.exitCode, 0);
    assert.ok(fs.existsSync(path.join(work, "veto-ok")));
    assert.ok(!fs.existsSync(path.join(work, "veto-no")));
  });

  test("setHooks and getHooks on the running sandbox; invalid rules change nothing", async () => {
    const now = await sb.setHooks({ network: [{ name: "all", action: "block" }] });
    assert.deepEqual(now.network.map((r) => r.name), ["all"]);
    assert.deepEqual(now.files.map((r) => r.name), ["locked", "veto"]); // left out: kept
    assert.match(await wget("/ok"), /403 Forbidden/);
    assert.deepEqual((await sb.getHooks()).network.map((r) => r.name), ["all"]);
    await assert.rejects(
      sb.setHooks({ network: [{ name: "x", setHeaders: { Host: "evil" } }] }),
      (e: unknown) => isCode(e, ErrorCode.INVALID_PARAMS) && /set_headers/.test((e as RpcError).message),
    );
    assert.deepEqual((await sb.getHooks()).network.map((r) => r.name), ["all"]);
  });
});
