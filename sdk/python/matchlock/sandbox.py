"""The `Sandbox` builder: describes a sandbox and produces the `create` request's params."""

import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union


@dataclass(frozen=True)
class Mount:
    """A host folder shown in the sandbox (``matchlock run -v HOST:GUEST:MODE``).

    ``mode`` is ``"overlay"`` (the default: the sandbox writes its own copy, the host folder
    stays byte-for-byte unchanged), ``"rw"`` (writes go to the host folder) or ``"ro"``
    (writes fail with EROFS). ``guest`` defaults to ``/workspace``. The server judges the
    values (an existing directory, an absolute guest path, ...).
    """

    host: str
    guest: str = "/workspace"
    mode: str = "overlay"

    def params(self) -> Dict[str, str]:
        # The server's working directory is ours, but say exactly which folder is meant. A host
        # "@NAME" is a named volume (Sandbox.with_volume), not a path.
        host = self.host if self.host.startswith("@") else os.path.abspath(self.host)
        return {"host": host, "guest": self.guest, "mode": self.mode}


class Sandbox:
    """A description of a sandbox to launch, built with chained ``with_*`` calls.

    >>> sb = Sandbox("build/rootfs-busybox").with_cpus(1).with_memory(256).with_env("A", "1")
    >>> sb.create_params()["resources"]["memory_mb"]
    256

    Nothing is started until ``Client.launch(sandbox)``. Values are not judged here: the
    server has the one validator (shared with ``matchlock run``), so an out-of-range value or a
    field the server does not implement makes ``launch`` raise RPCError(INVALID_PARAMS) with
    the same words the CLI prints, e.g. "cpus 0: expected a number from 0.1 to 16 (--cpus,
    resources.cpus)".
    """

    def __init__(self, image: str, *, mounts: Iterable[Union[Mount, Dict[str, str]]] = ()) -> None:
        """``mounts``: host folders, each a Mount or a dict ``{host, guest?, mode?}``."""
        if not image:
            raise ValueError("Sandbox needs an image")
        self.image = image
        self._resources: Dict[str, Any] = {}
        self._env: Dict[str, str] = {}
        self._allowed_hosts: List[str] = []
        self._add_hosts: List[Dict[str, str]] = []
        self._block_private_ips: Optional[bool] = None
        self._no_network = False
        self._secrets: Dict[str, Dict[str, Any]] = {}
        self._hostname: Optional[str] = None
        self._image_config: Dict[str, Any] = {}
        self._port_forwards: List[Tuple[int, int]] = []
        self._mounts: List[Mount] = []
        for m in mounts:
            self._mounts.append(m if isinstance(m, Mount) else Mount(**m))

    # ---- host folders --------------------------------------------------------------------
    def with_mount(self, host: str, guest: str = "/workspace", mode: str = "overlay") -> "Sandbox":
        """Show host folder ``host`` at ``guest`` (see Mount for the modes)."""
        self._mounts.append(Mount(host, guest, mode))
        return self

    def with_volume(self, name: str, guest: str, mode: str = "rw") -> "Sandbox":
        """Attach the named volume ``name`` (``matchlock volume create NAME``) at ``guest``,
        ``mode`` ``"rw"`` (one sandbox at a time) or ``"ro"``. Its contents outlive the sandbox."""
        self._mounts.append(Mount("@" + name, guest, mode))
        return self

    @property
    def mounts(self) -> List[Mount]:
        """The host folders, in order."""
        return list(self._mounts)

    # ---- resources -----------------------------------------------------------------------
    def with_cpus(self, cpus: float) -> "Sandbox":
        """Number of virtual CPUs, 0.1 to 16 (fractions limit CPU time)."""
        self._resources["cpus"] = cpus
        return self

    def with_memory(self, memory_mb: int) -> "Sandbox":
        """Guest memory in MiB, 64 to 65536."""
        self._resources["memory_mb"] = int(memory_mb)
        return self

    def with_disk_size(self, disk_size_mb: int) -> "Sandbox":
        """Size in MiB of the sandbox's writable disk (everything it writes), 64 to 1048576;
        default 8192. Sparse: only what is written takes host space."""
        self._resources["disk_size_mb"] = int(disk_size_mb)
        return self

    def with_timeout(self, seconds: int) -> "Sandbox":
        """Lifetime of the sandbox: it is stopped after this many seconds (at least 1)."""
        self._resources["timeout_seconds"] = int(seconds)
        return self

    # ---- environment and identity --------------------------------------------------------
    def with_env(self, name: str, value: str) -> "Sandbox":
        """An environment variable set for every command run in the sandbox."""
        self._env[name] = value
        return self

    def with_user(self, user: str) -> "Sandbox":
        """The default user (name or uid[:gid]) commands run as."""
        self._image_config["user"] = user
        return self

    def with_working_dir(self, path: str) -> "Sandbox":
        """The default working directory of commands."""
        self._image_config["working_dir"] = path
        return self

    def with_entrypoint(self, *argv: str) -> "Sandbox":
        """Override the image's entrypoint."""
        self._image_config["entrypoint"] = list(argv)
        return self

    def with_hostname(self, hostname: str) -> "Sandbox":
        """The guest's host name."""
        self._hostname = hostname
        return self

    # ---- network -------------------------------------------------------------------------
    def allow_host(self, *hosts: str) -> "Sandbox":
        """Allow outbound connections to these host names (wildcards such as ``*.x.com``)."""
        self._allowed_hosts.extend(hosts)
        return self

    def add_host(self, host: str, ip: str) -> "Sandbox":
        """A static /etc/hosts entry in the guest."""
        self._add_hosts.append({"host": host, "ip": ip})
        return self

    def allow_private_ips(self) -> "Sandbox":
        """Let allowed hosts resolve to private, loopback and link-local addresses."""
        self._block_private_ips = False
        return self

    def with_no_network(self) -> "Sandbox":
        """No network at all, not even DNS."""
        self._no_network = True
        return self

    def add_secret(self, name: str, value: str, *hosts: str) -> "Sandbox":
        """A secret: the guest sees a placeholder in ``$name``; the real value is swapped in
        only in traffic to ``hosts``."""
        if not hosts:
            raise ValueError("add_secret needs at least one host the secret may be sent to")
        self._secrets[name] = {"value": value, "hosts": list(hosts)}
        return self

    def with_port_forward(self, local_port: int, remote_port: int) -> "Sandbox":
        """Forward a host port to a guest port once the sandbox runs."""
        self._port_forwards.append((int(local_port), int(remote_port)))
        return self

    @property
    def port_forwards(self) -> List[Tuple[int, int]]:
        """The (local_port, remote_port) pairs to forward after launch."""
        return list(self._port_forwards)

    def create_params(self) -> Dict[str, Any]:
        """The params of the ``create`` request, as spec/rpc.md defines them."""
        p: Dict[str, Any] = {"image": self.image}
        if self._env:
            p["env"] = dict(self._env)
        if self._resources:
            p["resources"] = dict(self._resources)
        net: Dict[str, Any] = {}
        if self._allowed_hosts:
            net["allowed_hosts"] = list(self._allowed_hosts)
        if self._add_hosts:
            net["add_hosts"] = [dict(h) for h in self._add_hosts]
        if self._block_private_ips is not None:
            net["block_private_ips"] = self._block_private_ips
        if self._no_network:
            net["no_network"] = True
        if self._secrets:
            net["secrets"] = {k: {"value": v["value"], "hosts": list(v["hosts"])} for k, v in self._secrets.items()}
        if self._hostname:
            net["hostname"] = self._hostname
        if net:
            p["network"] = net
        if self._image_config:
            p["image_config"] = dict(self._image_config)
        if self._mounts:
            p["mounts"] = [m.params() for m in self._mounts]
        return p

    def __repr__(self) -> str:
        # Never show secret values.
        return f"Sandbox({self.image!r}, secrets={sorted(self._secrets)})"
