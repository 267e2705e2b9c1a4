// matchlock TypeScript SDK example: two sandboxes from one client, exec, streaming, stdin, a
// file round trip and a command cancelled by an AbortSignal.
//
// tests/sdk/run_examples runs it the way a user would: `npm pack` of sdk/typescript, installed
// into a fresh folder, compiled with tsc, then `node quickstart.js ROOTFS`.
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Client, ErrorCode, isCode } from "matchlock";

async function main(): Promise<void> {
  let image = process.argv[2] ?? "build/rootfs-busybox";
  if (fs.existsSync(image)) image = path.resolve(image); // a local root filesystem
  const client = new Client(); // $MATCHLOCK_BIN, else matchlock on PATH
  try {
    const sb = await client.create({ image, memoryMb: 256, env: { GREETING: "hello" } });
    console.log("created", sb.id);

    // Run to completion: a string goes through sh -c, an array is argv with no shell.
    const r = await sb.exec("echo $GREETING from $(uname -n); echo oops >&2; exit 3");
    console.log(`exit=${r.exitCode} stdout=${JSON.stringify(r.stdout.toString())} stderr=${JSON.stringify(r.stderr.toString())}`);

    // Stream output as it is produced.
    await sb.execStream("for i in 1 2 3; do echo tick $i; sleep 0.2; done", {
      onStdout: (chunk) => process.stdout.write("streamed: " + chunk.toString()),
    });

    // Feed stdin.
    const p = await sb.execPipe(["sed", "s/^/guest says: /"]);
    p.write("one\ntwo\n");
    p.closeStdin();
    process.stdout.write((await p.wait()).stdout.toString());

    // Files of any size travel in chunks.
    const data = randomBytes(8 << 20);
    await sb.files.write("/tmp/data/blob.bin", data);
    console.log("round trip ok:", (await sb.files.read("/tmp/data/blob.bin")).equals(data));

    // A second sandbox on the same client, used at the same time.
    const other = await client.create({ image, hostname: "other" });
    const [mine, theirs] = await Promise.all([sb.exec(["hostname"]), other.exec(["hostname"])]);
    console.log("hostnames:", mine.stdout.toString().trim(), theirs.stdout.toString().trim());
    await other.close();

    // An AbortSignal cancels the command in the guest.
    try {
      await sb.exec("sleep 60", { signal: AbortSignal.timeout(1000) });
      throw new Error("expected a cancellation");
    } catch (e) {
      if (!isCode(e, ErrorCode.CANCELLED)) throw e;
      console.log("cancelled:", (e as Error).message);
    }
  } finally {
    await client.close(); // closes every sandbox still open
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
