/**
 * What a sandbox is made of: the options object of Client.create, turned into the `create`
 * request's params here and nowhere else. Values are not judged here: the server has the one
 * validator (shared with `matchlock run`), so an out-of-range value makes create throw an
 * RpcError INVALID_PARAMS with the words the CLI prints, e.g. "cpus 0: expected a number from
 * 0.1 to 16 (--cpus, resources.cpus)".
 */
import * as path from "path";
import { Hooks, hooksWire } from "./hooks";

/**
 * A host folder shown in the sandbox (`matchlock run -v HOST:GUEST:MODE`). `mode` is "overlay"
 * (the default: the sandbox writes its own copy), "rw" or "ro"; `guest` defaults to
 * /workspace; a `host` of "@NAME" is the named volume NAME.
 */
export interface Mount {
  host: string;
  guest?: string;
  mode?: "overlay" | "rw" | "ro";
}

/** A secret: the guest sees a placeholder in $name; the value is swapped in only for hosts. */
export interface Secret {
  name: string;
  value: string;
  hosts: string[];
}

export interface PortForward {
  localPort: number;
  remotePort: number;
}

export interface SandboxOptions {
  /** A root filesystem path or an OCI reference. */
  image: string;
  /** 0.1 to 16. */
  cpus?: number;
  /** 64 to 65536. */
  memoryMb?: number;
  /** The writable disk in MiB, 64 to 1048576 (default 8192, sparse). */
  diskSizeMb?: number;
  /** Lifetime; the sandbox is stopped afterwards. */
  timeoutSeconds?: number;
  env?: Record<string, string>;
  /** GLOB[:PORT|:*], as --allow-host. */
  allowedHosts?: string[];
  /** /etc/hosts entries, name -> ip. */
  addHosts?: Record<string, string>;
  /** Let allowed hosts resolve to private, loopback and link-local addresses. */
  allowPrivateIps?: boolean;
  /** No network at all, not even DNS. */
  noNetwork?: boolean;
  secrets?: Secret[];
  hostname?: string;
  /** More CA files (PEM) the proxy trusts for upstream HTTPS (--upstream-ca). */
  upstreamCa?: string[];
  /** The guest's platform, "linux/amd64" or "linux/arm64" (default: the host's). */
  platform?: string;
  /** Default user of commands (name or uid[:gid]). */
  user?: string;
  workingDir?: string;
  entrypoint?: string[];
  cmd?: string[];
  /** Start the image's entrypoint and cmd in the background. */
  launchEntrypoint?: boolean;
  mounts?: Mount[];
  /** Set up once the sandbox runs. */
  portForwards?: PortForward[];
  /** Network and file rules and callbacks, in force from the first instruction (hooks.ts). */
  hooks?: Hooks;
}

/** The params of the create request, as spec/rpc.md defines them. */
export function createParams(o: SandboxOptions): Record<string, unknown> {
  if (!o.image) throw new TypeError("a sandbox needs an image");
  const p: Record<string, unknown> = { image: o.image };
  if (o.env && Object.keys(o.env).length) p.env = { ...o.env };
  const res: Record<string, number> = {};
  if (o.cpus !== undefined) res.cpus = o.cpus;
  if (o.memoryMb !== undefined) res.memory_mb = o.memoryMb;
  if (o.diskSizeMb !== undefined) res.disk_size_mb = o.diskSizeMb;
  if (o.timeoutSeconds !== undefined) res.timeout_seconds = o.timeoutSeconds;
  if (Object.keys(res).length) p.resources = res;
  const net: Record<string, unknown> = {};
  if (o.allowedHosts?.length) net.allowed_hosts = [...o.allowedHosts];
  if (o.addHosts && Object.keys(o.addHosts).length) {
    net.add_hosts = Object.entries(o.addHosts).map(([host, ip]) => ({ host, ip }));
  }
  if (o.allowPrivateIps) net.block_private_ips = false;
  if (o.noNetwork) net.no_network = true;
  if (o.secrets?.length) {
    const s: Record<string, unknown> = {};
    for (const x of o.secrets) s[x.name] = { value: x.value, hosts: [...x.hosts] };
    net.secrets = s;
  }
  if (o.hostname) net.hostname = o.hostname;
  if (o.upstreamCa?.length) net.upstream_ca = o.upstreamCa.map((f) => path.resolve(f));
  if (Object.keys(net).length) p.network = net;
  const ic: Record<string, unknown> = {};
  if (o.user) ic.user = o.user;
  if (o.workingDir) ic.working_dir = o.workingDir;
  if (o.entrypoint) ic.entrypoint = [...o.entrypoint];
  if (o.cmd) ic.cmd = [...o.cmd];
  if (Object.keys(ic).length) p.image_config = ic;
  if (o.launchEntrypoint) p.launch_entrypoint = true;
  if (o.platform) p.platform = o.platform;
  if (o.mounts?.length) {
    p.mounts = o.mounts.map((m) => {
      // The server's working directory is ours, but say exactly which folder is meant. A host
      // "@NAME" is a named volume, not a path.
      const e: Record<string, string> = { host: m.host.startsWith("@") ? m.host : path.resolve(m.host) };
      if (m.guest) e.guest = m.guest;
      if (m.mode) e.mode = m.mode;
      return e;
    });
  }
  if (o.hooks) p.hooks = hooksWire(o.hooks);
  return p;
}
