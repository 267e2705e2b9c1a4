#!/usr/bin/env python3
"""Assemble small OCI images from tar layers or directories, with the standard library only.

  oci_image.py layout OUT.tar   [IMAGE OPTIONS]      an OCI image layout tarball
  oci_image.py docker-save OUT.tar [IMAGE OPTIONS]   a `docker save` archive
  oci_image.py push URL REPO:TAG [IMAGE OPTIONS]     push through the registry HTTP API
  oci_image.py push-index URL REPO:TAG --platform-image OS/ARCH=REPO:TAG ...

IMAGE OPTIONS: --layer TAR | --layer-dir DIR (repeatable, in order), --compress none|gzip|zstd,
--env K=V, --entrypoint ARG (repeatable), --cmd ARG (repeatable), --user U, --workdir D,
--arch A. Prints the manifest digest on stdout for push.
"""
import argparse, gzip, hashlib, io, json, os, subprocess, sys, tarfile, urllib.request

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = {"none": "application/vnd.oci.image.layer.v1.tar",
         "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
         "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def tar_dir(d):
    """A reproducible tar of directory d with root ownership, entries sorted."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for root, dirs, files in os.walk(d):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                p = os.path.join(root, name)
                ti = t.gettarinfo(p, os.path.relpath(p, d))
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = "root"
                if ti.isreg():
                    with open(p, "rb") as f:
                        t.addfile(ti, f)
                else:
                    t.addfile(ti)
    return buf.getvalue()


def compress(raw, how):
    if how == "gzip":
        return gzip.compress(raw, mtime=0)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c"], input=raw, stdout=subprocess.PIPE, check=True).stdout
    return raw


def build(a):
    """Returns (manifest bytes, config bytes, [(layer bytes, media type)])."""
    layers = []
    for kind, src in a.layers:
        raw = tar_dir(src) if kind == "dir" else open(src, "rb").read()
        layers.append((raw, compress(raw, a.compress), LAYER[a.compress]))
    cfg = {"Env": a.env or None, "Entrypoint": a.entrypoint or None, "Cmd": a.cmd or None}
    if a.user:
        cfg["User"] = a.user
    if a.workdir:
        cfg["WorkingDir"] = a.workdir
    config = json.dumps({"architecture": a.arch, "os": "linux", "created": "2024-01-02T03:04:05Z",
                         "config": {k: v for k, v in cfg.items() if v is not None},
                         "rootfs": {"type": "layers", "diff_ids": [sha(r) for r, _, _ in layers]}},
                        sort_keys=True).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
                           "layers": [{"mediaType": mt, "digest": sha(b), "size": len(b)}
                                      for _, b, mt in layers]}).encode()
    return manifest, config, [(b, mt) for _, b, mt in layers]


def add(t, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))


def write_layout(a):
    manifest, config, layers = build(a)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
                            "platform": {"os": "linux", "architecture": a.arch}}]}
    with tarfile.open(a.out, "w") as t:
        add(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(t, "index.json", json.dumps(index).encode())
        for b in [manifest, config] + [b for b, _ in layers]:
            add(t, "blobs/sha256/" + sha(b)[7:], b)


def write_docker_save(a):
    a.compress = "none"  # docker save stores uncompressed layer tars
    _, config, layers = build(a)
    cname = sha(config)[7:] + ".json"
    lnames = [sha(b)[7:] + "/layer.tar" for b, _ in layers]
    with tarfile.open(a.out, "w") as t:
        add(t, cname, config)
        for n, (b, _) in zip(lnames, layers):
            add(t, n, b)
        add(t, "manifest.json", json.dumps([{"Config": cname, "RepoTags": ["test:latest"],
                                             "Layers": lnames}]).encode())
        add(t, "repositories", b"{}")


def http(method, url, data=None, ctype=None):
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", OCI_MANIFEST + ", " + OCI_INDEX)
    if ctype:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req) as r:
        return r.status, dict(r.headers), r.read()


def push_blob(base, repo, b):
    d = sha(b)
    try:
        if http("HEAD", f"{base}/v2/{repo}/blobs/{d}")[0] == 200:
            return d
    except urllib.error.HTTPError:
        pass
    _, h, _ = http("POST", f"{base}/v2/{repo}/blobs/uploads/")
    loc = h["Location"]
    if loc.startswith("/"):
        loc = base + loc
    http("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + d, b, "application/octet-stream")
    return d


def push_manifest(base, repo, tag, body, mt):
    http("PUT", f"{base}/v2/{repo}/manifests/{tag}", body, mt)
    return sha(body)


def push(a):
    repo, tag = a.ref.rsplit(":", 1)
    manifest, config, layers = build(a)
    push_blob(a.url, repo, config)
    for b, _ in layers:
        push_blob(a.url, repo, b)
    print(push_manifest(a.url, repo, tag, manifest, OCI_MANIFEST))


def push_index(a):
    repo, tag = a.ref.rsplit(":", 1)
    entries = []
    for spec in a.platform_image:
        plat, ref = spec.split("=", 1)
        os_, arch = plat.split("/")
        r, t = ref.rsplit(":", 1)
        _, h, body = http("GET", f"{a.url}/v2/{r}/manifests/{t}")
        entries.append({"mediaType": OCI_MANIFEST, "digest": sha(body), "size": len(body),
                        "platform": {"os": os_, "architecture": arch}})
    print(push_manifest(a.url, repo, tag, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                      "manifests": entries}).encode(), OCI_INDEX))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["layout", "docker-save", "push", "push-index"])
    p.add_argument("target")
    p.add_argument("ref", nargs="?")
    p.add_argument("--layer", action="append", default=[])
    p.add_argument("--layer-dir", action="append", default=[])
    p.add_argument("--compress", choices=["none", "gzip", "zstd"], default="gzip")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--user")
    p.add_argument("--workdir")
    p.add_argument("--arch", default="amd64")
    p.add_argument("--platform-image", action="append", default=[])
    a = p.parse_args()
    # Keep --layer and --layer-dir in command-line order.
    order, argv = [], sys.argv
    for i, w in enumerate(argv):
        if w in ("--layer", "--layer-dir") and i + 1 < len(argv):
            order.append(("dir" if w == "--layer-dir" else "tar", argv[i + 1]))
    a.layers = order
    a.out = a.url = a.target
    {"layout": write_layout, "docker-save": write_docker_save, "push": push, "push-index": push_index}[a.mode](a)


if __name__ == "__main__":
    main()
