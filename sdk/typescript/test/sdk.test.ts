// TypeScript SDK tests: unit checks, then real sandboxes from build/matchlock (MATCHLOCK_BIN,
// MATCHLOCK_TEST_IMAGE). Run: tests/sdk/run_ts, or `npm test` here with those set.
import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { after, before, describe, test } from "node:test";
import { Client, ErrorCode, MatchlockError, RpcError, SandboxHandle, createParams, isCode } from "../src/index";

// The repository (spec/rpc.md, build/): tests/sdk/run_ts builds a copy of this folder elsewhere.
const ROOT = process.env.MATCHLOCK_REPO_ROOT ?? path.resolve(__dirname, "..", "..", "..", "..");
const BIN = process.env.MATCHLOCK_BIN ?? path.join(ROOT, "build", "matchlock");
const IMAGE = process.env.MATCHLOCK_TEST_IMAGE ?? path.join(ROOT, "build", "rootfs-busybox");

describe("unit", () => {
  test("error codes match spec/rpc.md's table", () => {
    const spec = fs.readFileSync(path.join(ROOT, "spec", "rpc.md"), "utf8");
    const table: Record<string, number> = {};
    for (const m of spec.matchAll(/^\| (-\d+) \| ([A-Z_]+) \|/gm)) table[m[2]] = Number(m[1]);
    assert.equal(Object.keys(table).length, 9);
    assert.deepEqual({ ...ErrorCode }, table);
  });

  test("create params", () => {
    assert.deepEqual(
      createParams({
        image: "/img", cpus: 2, memoryMb: 256, diskSizeMb: 1024, timeoutSeconds: 60, env: { A: "1" },
        allowedHosts: ["api.example.com"], addHosts: { db: "10.0.0.5" }, allowPrivateIps: true,
        secrets: [{ name: "KEY", value: "s3cret", hosts: ["api.example.com"] }], hostname: "box", user: "1000",
        entrypoint: ["/bin/sh", "-c"], launchEntrypoint: true, mounts: [{ host: "/h" }, { host: "@vol", guest: "/d", mode: "ro" }],
      }),
      {
        image: "/img", env: { A: "1" }, resources: { cpus: 2, memory_mb: 256, disk_size_mb: 1024, timeout_seconds: 60 },
        network: {
          allowed_hosts: ["api.example.com"], add_hosts: [{ host: "db", ip: "10.0.0.5" }], block_private_ips: false,
          secrets: { KEY: { value: "s3cret", hosts: ["api.example.com"] } }, hostname: "box",
        },
        image_config: { user: "1000", entrypoint: ["/bin/sh", "-c"] }, launch_entrypoint: true,
        mounts: [{ host: "/h" }, { host: "@vol", guest: "/d", mode: "ro" }],
      },
    );
    assert.deepEqual(createParams({ image: "/img" }), { image: "/img" });
    assert.deepEqual(createParams({ image: "/img", noNetwork: true }), { image: "/img", network: { no_network: true } });
  });

  test("a missing binary is a MatchlockError", async () => {
    const c = new Client({ binary: "/no/such/matchlock" });
    await assert.rejects(c.create({ image: IMAGE }), (e: unknown) => e instanceof MatchlockError && !(e instanceof RpcError));
    await c.close();
  });
});

const live = fs.existsSync(BIN) && fs.existsSync(IMAGE);

describe("sandboxes", { skip: live ? false : `no ${BIN} or ${IMAGE}` }, () => {
  let client: Client;
  let a: SandboxHandle;
  let b: SandboxHandle;

  before(async () => {
    client = new Client({ binary: BIN });
    [a, b] = await Promise.all([
      client.create({ image: IMAGE, hostname: "alpha", env: { WHO: "a" }, memoryMb: 256 }),
      client.create({ image: IMAGE, hostname: "beta", env: { WHO: "b" } }),
    ]);
  });

  after(async () => {
    await client.close();
  });

  test("two sandboxes driven at once from one client", async () => {
    assert.deepEqual(client.sandboxes.map((h) => h.id).sort(), [a.id, b.id].sort());
    const run = async (sb: SandboxHandle) => {
      await sb.files.write("/tmp/mine", sb.id);
      return (await sb.exec("sleep 1; echo $(hostname) $WHO $(cat /tmp/mine)")).stdout.toString();
    };
    const [ra, rb] = await Promise.all([run(a), run(b)]);
    assert.equal(ra, `alpha a ${a.id}\n`);
    assert.equal(rb, `beta b ${b.id}\n`);
  });

  test("an aborted long exec is cancelled and both stay usable", async () => {
    const chunks: Buffer[] = [];
    const ac = new AbortController();
    const p = a.execStream("echo started; sleep 120", {
      signal: ac.signal,
      onStdout: (c) => {
        chunks.push(c);
        ac.abort(new Error("enough"));
      },
    });
    await assert.rejects(p, (e: unknown) => isCode(e, ErrorCode.CANCELLED) && (e as Error & { cause?: Error }).cause?.message === "enough");
    assert.equal(Buffer.concat(chunks).toString(), "started\n");
    await assert.rejects(b.exec("sleep 120", { signal: AbortSignal.timeout(1000) }), (e: unknown) => isCode(e, ErrorCode.CANCELLED));
    assert.equal((await a.exec(["echo", "ok"])).stdout.toString(), "ok\n");
    assert.equal((await b.exec("echo ok")).stdout.toString(), "ok\n");
  });

  test("exit codes, stderr, env and working dir", async () => {
    const r = await a.exec("echo out; echo err >&2; pwd; echo $X; exit 7", { env: { X: "y" }, workingDir: "/tmp" });
    assert.equal(r.exitCode, 7);
    assert.equal(r.stdout.toString(), "out\n/tmp\ny\n");
    assert.equal(r.stderr.toString(), "err\n");
  });

  test("files of any size, list and remove", async () => {
    const data = Buffer.alloc(5 << 20);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE((i ^ 0x9e3779b9) >>> 0, i);
    await a.files.write("/tmp/d/big", data);
    assert.ok((await a.files.read("/tmp/d/big")).equals(data));
    assert.deepEqual((await a.files.list("/tmp/d")).map((f) => [f.name, f.size, f.isDir]), [["big", data.length, false]]);
    await a.files.remove("/tmp/d/big");
    assert.deepEqual(await a.files.list("/tmp/d"), []);
    await assert.rejects(b.files.read("/tmp/d/big"), (e: unknown) => isCode(e, ErrorCode.FILE_FAILED));
    await assert.rejects(a.files.read("/tmp/d", { maxBytes: 0 }), RpcError);
  });

  test("exec pipe and interactive", async () => {
    const p = await b.execPipe(["sed", "s/^/got: /"]);
    p.write("one\ntwo\n");
    p.closeStdin();
    assert.equal((await p.wait()).stdout.toString(), "got: one\ngot: two\n");
    const { PassThrough } = await import("stream");
    const stdin = new PassThrough();
    const out: Buffer[] = [];
    const stdout = new PassThrough();
    stdout.on("data", (c: Buffer) => out.push(c));
    stdin.end("exit 5\n");
    const code = await b.execInteractive("sh", { stdin, stdout, rows: 30, cols: 100 });
    assert.equal(code, 5);
  });

  test("port forward round trip", async () => {
    await b.exec("mkdir -p /www && echo forwarded-ok > /www/i.html");
    await b.execStream("httpd -p 8080 -h /www"); // busybox httpd daemonizes
    const [bind] = await b.portForward(0, 8080);
    assert.equal(bind.remotePort, 8080);
    const http = await import("http");
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: bind.address, port: bind.localPort, path: "/i.html", timeout: 30000 }, (res) => {
          let s = "";
          res.on("data", (c) => (s += c)).on("end", () => resolve(s));
        })
        .on("error", reject)
        .on("timeout", () => reject(new Error("timeout")));
    });
    assert.equal(body, "forwarded-ok\n");
  });

  test("allow-list, port forward refusal and log", async () => {
    assert.ok((await a.allowListAdd(["ts-sdk.test"])).includes("ts-sdk.test"));
    assert.ok(!(await a.allowListDelete(["ts-sdk.test"])).includes("ts-sdk.test"));
    await assert.rejects(a.portForward(0, 0), (e: unknown) => isCode(e, ErrorCode.INVALID_PARAMS));
    assert.ok((await a.log()).length > 0);
  });

  test("network events reach their own handle", async () => {
    await b.exec("nslookup -type=A q1.denied.test >/dev/null 2>&1");
    let got;
    for await (const ev of b.events({ signal: AbortSignal.timeout(10000) })) {
      if (ev.type === "network") {
        got = ev;
        break;
      }
    }
    assert.ok(got, "no event");
    assert.equal(got.sandbox, b.id);
    assert.equal(got.network?.blocked, true);
    const forA = [];
    for await (const ev of a.events({ signal: AbortSignal.timeout(300) })) if (ev.type === "network") forA.push(ev);
    assert.deepEqual(forA, []);
  });

  test("close, then remove; a closed handle refuses; bad options are the server's words", async () => {
    const c = await client.create({ image: IMAGE });
    const id = c.id;
    await c.close();
    assert.ok(c.isClosed);
    await assert.rejects(c.exec("true"), /closed/);
    await c.close();
    await c.remove();
    assert.ok(!execFileSync(BIN, ["ls"]).toString().includes(id));
    await assert.rejects(client.create({ image: IMAGE, cpus: 0 }), (e: unknown) => isCode(e, ErrorCode.INVALID_PARAMS) && /--cpus, resources\.cpus/.test((e as Error).message));
    await assert.rejects(client.create({ image: IMAGE, diskSizeMb: 10 }), (e: unknown) => isCode(e, ErrorCode.INVALID_PARAMS) && /disk_size_mb/.test((e as Error).message));
  });

  test("an aborted create leaves nothing behind", async () => {
    const before = client.sandboxes.length;
    await assert.rejects(client.create({ image: IMAGE }, { signal: AbortSignal.abort(new Error("no")) }), (e: unknown) => isCode(e, ErrorCode.CANCELLED));
    assert.equal(client.sandboxes.length, before);
  });
});
