"""The sandbox's state directory: its layout, the records of what runs, and `sandbox.json`.

Two files describe a running sandbox. `sandbox.json` is the public face (the keys the issue
names, for people and scripts). `runtime.json` is private: process ids with their start times
(so a recycled pid is never mistaken for ours) and the mount namespace of every host, which is
what teardown uses to find every process a host ever started.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path("/var/tmp/rke2fleet-sandbox")
MARKER = ".rke2fleet-sandbox"


@dataclass(frozen=True)
class StateLayout:
    """Where each piece lives under the state directory (all absolute)."""

    root: Path

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def sandbox_json(self) -> Path:
        return self.root / "sandbox.json"

    @property
    def runtime_json(self) -> Path:
        return self.root / "runtime.json"

    @property
    def client_key(self) -> Path:
        return self.root / "client_ed25519"

    @property
    def client_pub(self) -> Path:
        return self.root / "client_ed25519.pub"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig.yaml"

    @property
    def datastore(self) -> Path:
        return self.root / "datastore"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def host_dir(self, name: str) -> Path:
        return self.root / "hosts" / name

    def faults_dir(self, name: str) -> Path:
        return self.root / "faults" / name


@dataclass(frozen=True)
class ProcessRecord:
    """A process we started, identified by pid *and* kernel start time."""

    pid: int
    start_time: int

    @classmethod
    def of(cls, pid: int) -> ProcessRecord:
        return cls(pid=pid, start_time=process_start_time(pid) or 0)

    def alive(self) -> bool:
        return self.start_time != 0 and process_start_time(self.pid) == self.start_time


@dataclass
class SandboxHost:
    """One sshd host. `mnt_ns` is the `mnt:[inode]` link every process of the host shares."""

    name: str
    role: str
    address: str
    port: int
    user: str
    host_key_line: str
    holder: ProcessRecord
    mnt_ns: str
    faults_dir: str
    sshd: ProcessRecord | None = None
    # The `net:[inode]` of a host living in a network site (network "isolated" / "bastion"); "" when
    # it shares the machine's network namespace (network "shared").
    net_ns: str = ""
    # The name of the jump host in front of it ("bastion"), "" when the root namespace reaches it.
    via: str = ""
    # False: sshd without an SFTP subsystem, as hardened hosts run it.
    sftp: bool = True

    @property
    def pid(self) -> int:
        """The namespace holder: `nsenter -t <pid> -m -u` (plus `-n` in a site) enters the host."""
        return self.holder.pid

    @property
    def sudo(self) -> bool:
        return self.user != "root"

    def known_hosts_line(self) -> str:
        target = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{target} {self.host_key_line}"

    def public(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "role": self.role,
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "hostKey": self.host_key_line,
        }
        if self.via:
            doc["via"] = self.via
        return doc

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SandboxHost:
        h = dict(raw)
        sshd = h.pop("sshd", None)
        holder = ProcessRecord(**h.pop("holder"))
        return cls(**h, holder=holder, sshd=ProcessRecord(**sshd) if sshd else None)


@dataclass
class SiteRecord:
    """The network namespace a sandbox's hosts share (network "isolated" or "bastion").

    `holder` (an `unshare -n` sleeper) keeps the namespace alive; the namespace, and the veth pairs
    with an end in it, go with the last process in it. `link` is the veth end in the root namespace
    and `link_peer` which namespace holds its other end: "site", or "bastion" (the bastion's own
    namespace, the site's only way in). Interface indexes are not reused (until they wrap), so
    `link_index` proves the link with that name is still ours.
    """

    mode: str
    block: str  # the site's /24 without its last octet: "10.213.5"
    holder: ProcessRecord
    net_ns: str
    link: str = ""
    link_peer: str = "site"
    link_index: int = 0  # its ifindex: (name, index) tells it from a later link of the same name

    def address(self, octet: int) -> str:
        return f"{self.block}.{octet}"

    @property
    def subnet(self) -> str:
        return f"{self.block}.0/24"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SiteRecord:
        s = dict(raw)
        holder = ProcessRecord(**s.pop("holder"))
        return cls(**s, holder=holder)


@dataclass
class RuntimeRecord:
    """Everything `down()` needs, also from another process than the one that ran `up()`."""

    hosts: list[SandboxHost] = field(default_factory=list)
    services: dict[str, ProcessRecord] = field(default_factory=dict)
    installer_url: str = ""
    kubeconfig: str = ""
    load_balancer: str = ""
    network: str = "shared"
    site: SiteRecord | None = None
    bastion: SandboxHost | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RuntimeRecord:
        raw = json.loads(text)
        hosts = [SandboxHost.from_dict(h) for h in raw.get("hosts", [])]
        site, bastion = raw.get("site"), raw.get("bastion")
        services = {k: ProcessRecord(**v) for k, v in raw.get("services", {}).items()}
        return cls(
            hosts=hosts,
            services=services,
            installer_url=raw.get("installer_url", ""),
            kubeconfig=raw.get("kubeconfig", ""),
            load_balancer=raw.get("load_balancer", ""),
            network=raw.get("network", "shared"),
            site=SiteRecord.from_dict(site) if site else None,
            bastion=SandboxHost.from_dict(bastion) if bastion else None,
        )


def sandbox_document(layout: StateLayout, record: RuntimeRecord) -> dict[str, Any]:
    """The public `sandbox.json`, keys exactly as the issue names them."""
    doc: dict[str, Any] = {
        "hosts": [h.public() for h in record.hosts],
        "clientKey": str(layout.client_key),
        "installerURL": record.installer_url,
        "kubeconfig": record.kubeconfig,
        "loadBalancer": record.load_balancer,
    }
    # Sites only: a "shared" sandbox's document is exactly the issue's.
    if record.site is not None:
        doc["network"] = record.network
        doc["siteSubnet"] = record.site.subnet
    if record.bastion is not None:
        doc["bastion"] = record.bastion.public()
    return doc


def write_state(layout: StateLayout, record: RuntimeRecord) -> None:
    atomic_write(layout.runtime_json, record.to_json().encode(), 0o600)
    doc = json.dumps(sandbox_document(layout, record), indent=2) + "\n"
    atomic_write(layout.sandbox_json, doc.encode(), 0o644)


def read_runtime(layout: StateLayout) -> RuntimeRecord:
    return RuntimeRecord.from_json(layout.runtime_json.read_text())


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), None if the pid is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])
