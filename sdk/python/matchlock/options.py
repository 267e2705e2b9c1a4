"""What a sandbox is made of: `SandboxOptions` (a dataclass, also given to ``Client.create`` as
keyword arguments) and the chained `Sandbox` builder, both turned into the `create` request's
params here and nowhere else."""

import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union


@dataclass(frozen=True)
class Mount:
    """A host folder shown in the sandbox (``matchlock run -v HOST:GUEST:MODE``).

    ``mode`` is ``"overlay"`` (the default: the sandbox writes its own copy, the host folder
    stays byte-for-byte unchanged), ``"rw"`` (writes go to the host folder) or ``"ro"``
    (writes fail with EROFS). ``guest`` defaults to ``/workspace``. A ``host`` of ``@NAME`` is
    the named volume NAME. The server judges the values (an existing directory, an absolute
    guest path, ...).
    """

    host: str
    guest: str = "/workspace"
    mode: str = "overlay"

    def params(self) -> Dict[str, str]:
        # The server's working directory is ours, but say exactly which folder is meant. A host
        # "@NAME" is a named volume (Sandbox.with_volume), not a path.
        host = self.host if self.host.startswith("@") else os.path.abspath(self.host)
        return {"host": host, "guest": self.guest, "mode": self.mode}


@dataclass(frozen=True)
class Secret:
    """A secret: the guest sees a placeholder in ``$name``; the real ``value`` is swapped in only
    in traffic to ``hosts``."""

    name: str
    value: str = field(repr=False)
    hosts: Tuple[str, ...]


@dataclass
class SandboxOptions:
    """Everything ``Client.create`` accepts; each field maps to one field of spec/rpc.md's
    ``create`` (None / empty: the server's default). Values are not judged here: the server
    has the one validator (shared with ``matchlock run``), so an out-of-range value makes
    ``create`` raise RPCError(INVALID_PARAMS) with the words the CLI prints, e.g. "cpus 0:
    expected a number from 0.1 to 16 (--cpus, resources.cpus)"."""

    image: str
    cpus: Optional[float] = None  #: 0.1 to 16
    memory_mb: Optional[int] = None  #: 64 to 65536
    disk_size_mb: Optional[int] = None  #: the writable disk, 64 to 1048576 (default 8192, sparse)
    timeout_seconds: Optional[int] = None  #: lifetime; the sandbox is stopped afterwards
    env: Dict[str, str] = field(default_factory=dict)
    allowed_hosts: List[str] = field(default_factory=list)  #: GLOB[:PORT|:*], as --allow-host
    add_hosts: Dict[str, str] = field(default_factory=dict)  #: /etc/hosts entries, name -> ip
    block_private_ips: Optional[bool] = None  #: default True
    no_network: bool = False
    secrets: List[Secret] = field(default_factory=list)
    hostname: Optional[str] = None
    upstream_ca: List[str] = field(default_factory=list)  #: more CA files (PEM) trusted upstream
    user: Optional[str] = None  #: default user of commands (name or uid[:gid])
    working_dir: Optional[str] = None
    entrypoint: Optional[List[str]] = None
    cmd: Optional[List[str]] = None
    launch_entrypoint: bool = False  #: start the image's entrypoint/cmd in the background
    mounts: List[Mount] = field(default_factory=list)
    port_forwards: List[Tuple[int, int]] = field(default_factory=list)  #: (local, remote) after start
    platform: Optional[str] = None  #: the guest's, "linux/amd64" or "linux/arm64" (default: the host's)

    @classmethod
    def of(cls, image: Union[str, "SandboxOptions", "Sandbox"], **kwargs: Any) -> "SandboxOptions":
        """Options from an image and keyword arguments, a SandboxOptions, or a Sandbox builder."""
        if isinstance(image, Sandbox):
            base = image.options
        elif isinstance(image, SandboxOptions):
            base = image
        else:
            return cls(image, **kwargs)
        if not kwargs:
            return base
        names = {f.name for f in fields(cls)}
        unknown = set(kwargs) - names
        if unknown:
            raise TypeError(f"unknown sandbox option(s): {', '.join(sorted(unknown))}")
        merged = {f.name: getattr(base, f.name) for f in fields(cls)}
        merged.update(kwargs)
        return cls(**merged)

    def create_params(self) -> Dict[str, Any]:
        """The params of the ``create`` request, as spec/rpc.md defines them."""
        if not self.image:
            raise ValueError("a sandbox needs an image")
        p: Dict[str, Any] = {"image": self.image}
        if self.env:
            p["env"] = dict(self.env)
        res = {k: v for k, v in (("cpus", self.cpus), ("memory_mb", self.memory_mb),
                                 ("disk_size_mb", self.disk_size_mb), ("timeout_seconds", self.timeout_seconds))
               if v is not None}
        if res:
            p["resources"] = res
        net: Dict[str, Any] = {}
        if self.allowed_hosts:
            net["allowed_hosts"] = list(self.allowed_hosts)
        if self.add_hosts:
            net["add_hosts"] = [{"host": h, "ip": ip} for h, ip in self.add_hosts.items()]
        if self.block_private_ips is not None:
            net["block_private_ips"] = self.block_private_ips
        if self.no_network:
            net["no_network"] = True
        if self.secrets:
            net["secrets"] = {s.name: {"value": s.value, "hosts": list(s.hosts)} for s in self.secrets}
        if self.hostname:
            net["hostname"] = self.hostname
        if self.upstream_ca:
            net["upstream_ca"] = [os.path.abspath(f) for f in self.upstream_ca]
        if net:
            p["network"] = net
        ic: Dict[str, Any] = {}
        for key in ("user", "working_dir", "entrypoint", "cmd"):
            v = getattr(self, key)
            if v is not None:
                ic[key] = list(v) if isinstance(v, (list, tuple)) else v
        if ic:
            p["image_config"] = ic
        if self.launch_entrypoint:
            p["launch_entrypoint"] = True
        if self.platform:
            p["platform"] = self.platform
        if self.mounts:
            p["mounts"] = [(m if isinstance(m, Mount) else Mount(**m)).params() for m in self.mounts]
        return p


class Sandbox:
    """A chained builder of SandboxOptions, for those who prefer it to keyword arguments.

    >>> sb = Sandbox("build/rootfs-busybox").with_cpus(1).with_memory(256).with_env("A", "1")
    >>> sb.create_params()["resources"]["memory_mb"]
    256

    Nothing starts until ``Client.launch(sandbox)`` (or ``Client.create(sandbox)``).
    """

    def __init__(self, image: str, *, mounts: Iterable[Union[Mount, Mapping[str, str]]] = ()) -> None:
        """``mounts``: host folders, each a Mount or a dict ``{host, guest?, mode?}``."""
        if not image:
            raise ValueError("Sandbox needs an image")
        self.options = SandboxOptions(image)
        for m in mounts:
            self.options.mounts.append(m if isinstance(m, Mount) else Mount(**m))

    @property
    def image(self) -> str:
        return self.options.image

    def with_mount(self, host: str, guest: str = "/workspace", mode: str = "overlay") -> "Sandbox":
        """Show host folder ``host`` at ``guest`` (see Mount for the modes)."""
        self.options.mounts.append(Mount(host, guest, mode))
        return self

    def with_volume(self, name: str, guest: str, mode: str = "rw") -> "Sandbox":
        """Attach the named volume ``name`` (``matchlock volume create NAME``) at ``guest``,
        ``mode`` ``"rw"`` (one sandbox at a time) or ``"ro"``. Its contents outlive the sandbox."""
        self.options.mounts.append(Mount("@" + name, guest, mode))
        return self

    @property
    def mounts(self) -> List[Mount]:
        return list(self.options.mounts)

    def with_cpus(self, cpus: float) -> "Sandbox":
        self.options.cpus = cpus
        return self

    def with_memory(self, memory_mb: int) -> "Sandbox":
        self.options.memory_mb = int(memory_mb)
        return self

    def with_disk_size(self, disk_size_mb: int) -> "Sandbox":
        """Size in MiB of the sandbox's writable disk, 64 to 1048576; default 8192 (sparse)."""
        self.options.disk_size_mb = int(disk_size_mb)
        return self

    def with_timeout(self, seconds: int) -> "Sandbox":
        self.options.timeout_seconds = int(seconds)
        return self

    def with_env(self, name: str, value: str) -> "Sandbox":
        self.options.env[name] = value
        return self

    def with_user(self, user: str) -> "Sandbox":
        self.options.user = user
        return self

    def with_working_dir(self, path: str) -> "Sandbox":
        self.options.working_dir = path
        return self

    def with_entrypoint(self, *argv: str) -> "Sandbox":
        self.options.entrypoint = list(argv)
        return self

    def with_hostname(self, hostname: str) -> "Sandbox":
        self.options.hostname = hostname
        return self

    def allow_host(self, *hosts: str) -> "Sandbox":
        self.options.allowed_hosts.extend(hosts)
        return self

    def add_host(self, host: str, ip: str) -> "Sandbox":
        self.options.add_hosts[host] = ip
        return self

    def allow_private_ips(self) -> "Sandbox":
        self.options.block_private_ips = False
        return self

    def with_no_network(self) -> "Sandbox":
        self.options.no_network = True
        return self

    def add_secret(self, name: str, value: str, *hosts: str) -> "Sandbox":
        if not hosts:
            raise ValueError("add_secret needs at least one host the secret may be sent to")
        self.options.secrets = [s for s in self.options.secrets if s.name != name] + [Secret(name, value, hosts)]
        return self

    def with_port_forward(self, local_port: int, remote_port: int) -> "Sandbox":
        self.options.port_forwards.append((int(local_port), int(remote_port)))
        return self

    @property
    def port_forwards(self) -> List[Tuple[int, int]]:
        return list(self.options.port_forwards)

    def create_params(self) -> Dict[str, Any]:
        return self.options.create_params()

    def __repr__(self) -> str:
        # Never show secret values.
        return f"Sandbox({self.image!r}, secrets={sorted(s.name for s in self.options.secrets)})"
