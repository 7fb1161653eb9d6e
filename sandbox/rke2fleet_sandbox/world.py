"""The `Sandbox`: sshd hosts, installer endpoint, load balancer and API emulator, up and down.

Synchronous on purpose: pytest fixtures, the demo and the CLI all call it, and everything it
starts runs as separate processes in their own sessions, so `up` returns while the sandbox
keeps running (also after the calling process exits) and `Sandbox.load(state_dir)` +
`down()` ends it from anywhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from rke2fleet_sandbox import hosts as H
from rke2fleet_sandbox import network as N
from rke2fleet_sandbox.loadbalancer import DEFAULT_PORTS, await_ready, start_load_balancer
from rke2fleet_sandbox.netns import net_namespace
from rke2fleet_sandbox.state import (
    DEFAULT_STATE_DIR,
    ProcessRecord,
    RuntimeRecord,
    SandboxHost,
    SiteRecord,
    StateLayout,
    read_runtime,
    write_state,
)

if TYPE_CHECKING:
    from rke2fleet_sandbox.installer import InstallerHandle

NET_LOCK = "\0rke2fleet-sandbox-net"
FIRST_HOST_OCTET = 10
LB_OCTET = 2
INSTALLER_OCTET = 1
HOSTS_PER_BLOCK = 240  # 127.0.N.10-249 (or a site's /24)
MAX_SHARED_HOSTS = 2000  # a shared sandbox's hosts span consecutive 127.0.N.0/24 blocks
INSTALLER_PORT = 8088
START_TIMEOUT = 20.0

HostRef = SandboxHost | str


class Sandbox:
    """A running sandbox. Build it with `Sandbox.up(...)` or `Sandbox.load(state_dir)`."""

    def __init__(self, layout: StateLayout, record: RuntimeRecord) -> None:
        self.layout = layout
        self.record = record
        # Popen handles of children of *this* process, reaped on down() (no zombies in pytest).
        self._children: list[subprocess.Popen[bytes]] = []
        # The installer endpoint's handle, in the process that ran `up` only.
        self.installer: InstallerHandle | None = None

    # ------------------------------------------------------------ public view

    @property
    def state_dir(self) -> Path:
        return self.layout.root

    @property
    def hosts(self) -> list[SandboxHost]:
        return self.record.hosts

    @property
    def servers(self) -> list[SandboxHost]:
        return [h for h in self.hosts if h.role == "server"]

    @property
    def agents(self) -> list[SandboxHost]:
        return [h for h in self.hosts if h.role == "agent"]

    def host(self, ref: HostRef) -> SandboxHost:
        """A cluster host, or the bastion (by its name, "bastion"): both take the host verbs."""
        name = ref if isinstance(ref, str) else ref.name
        for h in self._all_hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def _all_hosts(self) -> list[SandboxHost]:
        return [*self.hosts, *([self.record.bastion] if self.record.bastion else [])]

    @property
    def network(self) -> str:
        """"shared", "isolated" or "bastion" (see `rke2fleet_sandbox.network`)."""
        return self.record.network

    @property
    def site(self) -> SiteRecord | None:
        """The hosts' network namespace (None with network "shared")."""
        return self.record.site

    @property
    def bastion(self) -> SandboxHost | None:
        """The jump host of network "bastion" (address, port, user, host_key_line), else None.
        It takes the sandbox's client key (`client_key_path`)."""
        return self.record.bastion

    @property
    def bastion_known_hosts(self) -> str:
        """A known_hosts text pinning the bastion's key ("" without a bastion)."""
        return self.bastion.known_hosts_line() + "\n" if self.bastion else ""

    def bastion_logins(self) -> int:
        """SSH logins the bastion accepted so far (from its sshd log): one per client connection,
        however many hosts that connection reaches."""
        return N.bastion_logins(self._bastion_log)

    def bastion_channels(self) -> list[str]:
        """`address:port` of every forwarding (direct-tcpip) channel the bastion opened, in order."""
        return N.bastion_channels(self._bastion_log)

    @property
    def _bastion_log(self) -> Path:
        return self.layout.logs / "bastion.sshd.log"

    @property
    def client_key_path(self) -> Path:
        return self.layout.client_key

    def client_key_pem(self) -> str:
        return self.layout.client_key.read_text()

    @property
    def installer_url(self) -> str:
        return self.record.installer_url

    @property
    def kubeconfig_path(self) -> Path | None:
        return Path(self.record.kubeconfig) if self.record.kubeconfig else None

    @property
    def load_balancer_address(self) -> str:
        return self.record.load_balancer

    @property
    def sandbox_json_path(self) -> Path:
        return self.layout.sandbox_json

    def known_hosts(self) -> str:
        """A known_hosts text pinning every host's key (by its address; not the bastion's)."""
        return "".join(h.known_hosts_line() + "\n" for h in self.hosts)

    def run_on_host(
        self, host: HostRef, shell_cmd: str, *, timeout: float = 30.0, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return H.run_on_host(self.host(host), shell_cmd, timeout=timeout, input=input)

    def host_pids(self, host: HostRef) -> list[int]:
        """The host's processes (empty once the host is gone)."""
        h = self.host(host)
        if not H.owns_namespace(h):
            return []
        return H.pids_in_namespaces([h.mnt_ns])[h.mnt_ns]

    def save(self) -> None:
        write_state(self.layout, self.record)

    def _adopt(self, proc: subprocess.Popen[bytes]) -> ProcessRecord:
        self._children.append(proc)
        return ProcessRecord.of(proc.pid)

    def _reap(self) -> None:
        for proc in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5 if proc.poll() is None else 0)
        self._children = [p for p in self._children if p.returncode is None]

    # ------------------------------------------------------------ faults (see faults.py)

    def stop_sshd(self, host: HostRef) -> None:
        from rke2fleet_sandbox.faults import stop_sshd

        stop_sshd(self, self.host(host))

    def kill_sshd(self, host: HostRef) -> None:
        from rke2fleet_sandbox.faults import kill_sshd

        kill_sshd(self, self.host(host))

    def start_sshd(self, host: HostRef) -> None:
        from rke2fleet_sandbox.faults import start_sshd

        start_sshd(self, self.host(host))

    def freeze(self, host: HostRef) -> None:
        from rke2fleet_sandbox.faults import freeze

        freeze(self, self.host(host))

    def thaw(self, host: HostRef) -> None:
        from rke2fleet_sandbox.faults import thaw

        thaw(self, self.host(host))

    def replace_host_key(self, host: HostRef) -> str:
        from rke2fleet_sandbox.faults import replace_host_key

        return replace_host_key(self, self.host(host))

    def fail_next_start(self, host: HostRef, enabled: bool = True) -> None:
        from rke2fleet_sandbox.faults import fail_next_start

        fail_next_start(self.host(host), enabled)

    def set_start_delay(self, host: HostRef, seconds: float | None) -> None:
        from rke2fleet_sandbox.faults import set_start_delay

        set_start_delay(self.host(host), seconds)

    def fail_snapshot(self, host: HostRef, enabled: bool = True) -> None:
        from rke2fleet_sandbox import hostfaults

        hostfaults.fail_snapshot(self.host(host).faults_dir, enabled)

    def break_cni(self, host: HostRef, enabled: bool = True) -> None:
        """The host's Node stays NotReady (CNI not initialized) while its rke2 unit is active."""
        from rke2fleet_sandbox.faults import break_cni

        break_cni(self.host(host), enabled)

    def set_node_ready_delay(self, host: HostRef, seconds: float | None) -> None:
        """Seconds between the host's rke2 unit being active and its Node Ready, from its next start."""
        from rke2fleet_sandbox.faults import set_node_ready_delay

        set_node_ready_delay(self.host(host), seconds)

    def age_certificates(self, host: HostRef, days: float) -> str:
        """Move notBefore/notAfter of the host's RKE2 leaf certificates `days` back (a start inside
        the renewal window then renews them)."""
        from rke2fleet_sandbox.faults import age_certificates

        return age_certificates(self, self.host(host), days)

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def load(cls, state_dir: Path | str = DEFAULT_STATE_DIR) -> Sandbox:
        layout = StateLayout(Path(state_dir).resolve())
        if not layout.runtime_json.exists():
            raise H.SandboxError(f"no sandbox in {layout.root}")
        return cls(layout, read_runtime(layout))

    def running(self) -> bool:
        """True while any host namespace or service process is alive."""
        if any(rec.alive() for rec in self.record.services.values()):
            return True
        if self.record.site is not None and self.record.site.holder.alive():
            return True
        return any(H.owns_namespace(h) for h in self._all_hosts)

    @classmethod
    def up(
        cls,
        state_dir: Path | str,
        servers: int,
        agents: int,
        *,
        sudo_hosts: int = 0,
        emulator: bool = True,
        load_balancer: bool = True,
        installer: bool = True,
        node_ready_delay: float = H.DEFAULT_NODE_READY_DELAY,
        learner_delay: float = H.DEFAULT_LEARNER_DELAY,
        network: str = "shared",
        sftp: bool = True,
    ) -> Sandbox:
        """Start `servers` + `agents` hosts (the last `sudo_hosts` of them log in as `fleet`).

        `network`: "shared" (the machine's network namespace), "isolated" (an air-gapped site the
        root namespace reaches but that reaches nothing outside itself) or "bastion" (the site
        reachable only through `sandbox.bastion`'s sshd); see `rke2fleet_sandbox.network`.

        `node_ready_delay`: seconds a Node stays NotReady after its rke2 unit is active;
        `learner_delay`: seconds before a joining server's etcd learner can be promoted.
        Raises `SandboxError` (after tearing down what it started) if anything fails.
        """
        if node_ready_delay < 0 or learner_delay < 0:
            raise ValueError("node_ready_delay and learner_delay must be >= 0")
        if servers < 0 or agents < 0 or not 0 <= sudo_hosts <= servers + agents:
            raise ValueError("servers, agents >= 0 and sudo_hosts <= servers + agents")
        if servers + agents > (HOSTS_PER_BLOCK if network != "shared" else MAX_SHARED_HOSTS):
            raise ValueError(f"at most {HOSTS_PER_BLOCK} hosts per site, {MAX_SHARED_HOSTS} per shared sandbox")
        if network not in N.NETWORKS:
            raise ValueError(f"network must be one of {', '.join(N.NETWORKS)}")
        layout = StateLayout(Path(state_dir).resolve())
        _prepare_state_dir(layout)
        sandbox = cls(layout, RuntimeRecord())
        try:
            sandbox._start(servers, agents, sudo_hosts, emulator, load_balancer, installer,
                           node_ready_delay, learner_delay, network, sftp)
        except BaseException:
            sandbox.down()
            raise
        return sandbox

    def _start(
        self,
        servers: int,
        agents: int,
        sudo_hosts: int,
        emulator: bool,
        load_balancer: bool,
        installer: bool,
        node_ready_delay: float = H.DEFAULT_NODE_READY_DELAY,
        learner_delay: float = H.DEFAULT_LEARNER_DELAY,
        network: str = "shared",
        sftp: bool = True,
    ) -> None:
        layout = self.layout
        # sshds, holders and keys per host: at hundreds of hosts the start takes longer.
        deadline = time.monotonic() + START_TIMEOUT + 0.2 * (servers + agents)
        names = [("server", f"server-{i + 1}") for i in range(servers)]
        names += [("agent", f"agent-{i + 1}") for i in range(agents)]
        if sudo_hosts:
            H.ensure_sudo_user()
        emu_proc = self._start_emulator() if emulator else None
        keygens = [_keygen_async(layout.client_key, "rke2fleet-sandbox-client")]
        with_lb = load_balancer and servers > 0
        with _net_lock():
            site = self._start_site(network) if network != "shared" else None
            # In a site, only the installer (root namespace) needs a 127.0.N.0/24 block.
            net = _free_net_block(0 if site else len(names), with_lb and site is None, installer)
            lb_address = site.address(N.LB_OCTET) if site else f"127.0.{net}.{LB_OCTET}"
            plans = [
                H.HostPlan(
                    name=name,
                    role=role,
                    address=site.address(N.FIRST_HOST_OCTET + i) if site else _host_address(net, i),
                    user=H.SUDO_USER if i >= len(names) - sudo_hosts else "root",
                )
                for i, (role, name) in enumerate(names)
            ]
            bastion = None
            if site is not None and network == "bastion":
                bastion = H.HostPlan("bastion", H.BASTION_ROLE, site.address(N.BASTION_OCTET), "root")
            everyone = [*plans, bastion] if bastion else plans
            keygens += [_keygen_async(H.host_key_path(layout, p.name), p.name) for p in everyone]
            for proc in keygens:
                if proc.wait() != 0:
                    raise H.SandboxError("ssh-keygen failed")
            docker_io = f"http://127.0.{net}.{INSTALLER_OCTET}:{INSTALLER_PORT}" if installer else None
            # Behind a bastion, the client key logs in from the bastion's addresses only.
            only_from = (site.address(N.BASTION_OCTET), site.address(N.BASTION_INNER_OCTET)) if bastion and site else ()
            seeds = [H.write_host_files(
                layout, p, plans, node_ready_delay=node_ready_delay, learner_delay=learner_delay, docker_io=docker_io,
                authorized_from=only_from) for p in plans]  # fmt: skip
            holders = [
                H.start_holder(layout, p, seed, netns_pid=site.holder.pid) if site else H.start_holder(layout, p, seed)
                for p, seed in zip(plans, seeds, strict=True)
            ]
            if bastion is not None:
                # Its own network namespace: the site's only door, and not a router.
                seed = H.write_host_files(layout, bastion, plans)
                holders.append(H.start_holder(layout, bastion, seed, new_netns=True))
            self._record_hosts(everyone, holders, bastion, site)
            for host in self.record.hosts:  # hardened hosts: no SFTP subsystem (the bastion keeps its own)
                host.sftp = sftp
            if site is not None:
                N.build_site(site, [p.address for p in plans], load_balancer=with_lb, bastion=self.record.bastion)
            sshds = []
            for host in self._all_hosts:
                proc = H.start_sshd(layout, host)
                host.sshd = self._adopt(proc)
                sshds.append(proc)
            lb = None
            if with_lb:
                lb = start_load_balancer(
                    lb_address,
                    [h.address for h in self.servers],
                    log_path=str(layout.logs / "lb.log"),
                    netns_pid=site.holder.pid if site else None,
                )
                self.record.services["loadBalancer"] = self._adopt(lb)
            if installer:
                self._start_installer(f"127.0.{net}.{INSTALLER_OCTET}")
            for host, proc in zip(self._all_hosts, sshds, strict=True):
                H.wait_listening(host.address, host.port, deadline, proc, netns_pid=H.reach_from(host))
            if lb is not None:
                await_ready(lb, "load balancer")
                self.record.load_balancer = lb_address
        if emu_proc is not None:
            self._await_emulator(emu_proc, deadline)
        self.save()

    def _record_hosts(
        self,
        plans: Sequence[H.HostPlan],
        holders: Sequence[subprocess.Popen[bytes]],
        bastion: H.HostPlan | None,
        site: SiteRecord | None,
    ) -> None:
        """Record each host (the bastion apart), then wait for its namespaces."""
        layout = self.layout
        for plan, holder in zip(plans, holders, strict=True):
            record = self._adopt(holder)
            # Record the host before waiting on it, so a failure still tears it down.
            host = SandboxHost(
                name=plan.name,
                role=plan.role,
                address=plan.address,
                port=plan.port,
                user=plan.user,
                host_key_line=H.public_key_line(
                    H.host_key_path(layout, plan.name).with_suffix(".pub")
                ),
                holder=record,
                mnt_ns="",
                faults_dir=str(layout.faults_dir(plan.name)),
                via="bastion" if bastion and plan is not bastion else "",
            )
            if plan is bastion:
                self.record.bastion = host
            else:
                self.record.hosts.append(host)
            host.mnt_ns = H.await_holder(holder, plan.name)
            if site is not None:
                host.net_ns = _await_net_ns(holder.pid, plan.name, site.net_ns if plan is not bastion else None)

    def _start_site(self, network: str) -> SiteRecord:
        """The site's namespace holder, recorded before it is waited on (a failure tears it down)."""
        number = N.free_site_number()
        proc = N.start_site_holder(self.layout)
        site = SiteRecord(mode=network, block=f"{N.SITE_PREFIX}.{number}", holder=self._adopt(proc), net_ns="")
        self.record.network, self.record.site = network, site
        site.net_ns = N.await_site_holder(proc)
        return site

    # ------------------------------------------------------------ services

    def _start_emulator(self) -> subprocess.Popen[bytes]:
        """Start the API emulator without waiting (its import takes the longest of all)."""
        if importlib.util.find_spec("rke2fleet_sandbox.emulator") is None:
            raise H.SandboxError("the API emulator (rke2fleet_sandbox.emulator) is not available")
        with open(self.layout.logs / "emulator.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rke2fleet_sandbox.emulator", "--host", "127.0.0.1", "--port", "0",
                 "--kubeconfig", str(self.layout.kubeconfig), "--ready-file", str(self._emulator_ready)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        self.record.services["emulator"] = self._adopt(proc)
        return proc

    @property
    def _emulator_ready(self) -> Path:
        return self.layout.root / "emulator.ready"

    def _await_emulator(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        while not self._emulator_ready.exists():
            if proc.poll() is not None:
                raise H.SandboxError(
                    f"the API emulator exited with {proc.returncode} (see logs/emulator.log)"
                )
            if time.monotonic() > deadline:
                raise H.SandboxError("the API emulator did not come up (see logs/emulator.log)")
            time.sleep(0.02)
        self.record.kubeconfig = str(self.layout.kubeconfig)

    def _start_installer(self, address: str) -> None:
        from rke2fleet_sandbox.installer import start_installer

        try:
            handle = start_installer(self.layout.root, host=address, port=INSTALLER_PORT)
        except (RuntimeError, OSError) as exc:
            raise H.SandboxError(f"the installer endpoint did not start: {exc}") from exc
        self.installer = handle
        if handle.process is not None:
            self._adopt(handle.process)
        self.record.services["installer"] = ProcessRecord.of(handle.pid)
        self.record.installer_url = handle.url

    def set_installer_fault(self, mode: str | None) -> None:
        """`"fail"`: the endpoint answers 500; `"hang"`: it accepts and never answers; None: healthy."""
        from rke2fleet_sandbox.installer import set_installer_fault

        set_installer_fault(self.layout.root, mode)

    # ------------------------------------------------------------ teardown

    def down(self) -> list[int]:
        """End every process of the sandbox and remove its state directory.

        Returns the pids that would not die (empty on success); the state directory is kept
        in that case so that a second `down()` can retry.
        """
        # First the site's veth end in the root namespace (only if provably ours: see remove_root_link).
        link_gone = N.remove_root_link(self.record.site, self.record.bastion, self.hosts)
        for rec in self.record.services.values():
            H.stop_process(rec, signal.SIGTERM)
        left = H.end_hosts(self._all_hosts)
        # Holders whose namespace was never recorded (failure during setup).
        for host in self._all_hosts:
            H.stop_process(host.holder, signal.SIGKILL)
        left += N.end_site(self.record.site)
        self._reap()
        if not left and link_gone:
            _remove_state_dir(self.layout)
        return left

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()


# ---------------------------------------------------------------- helpers


def _prepare_state_dir(layout: StateLayout) -> None:
    root = layout.root
    if root.exists() and any(root.iterdir()):
        if not layout.marker.exists():
            raise H.SandboxError(f"{root} is not empty and is not a sandbox state directory")
        if layout.runtime_json.exists():
            old = Sandbox.load(root)
            if old.running():
                raise H.SandboxError(f"a sandbox is already running in {root}: `down` it first")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    layout.marker.write_text("rke2fleet sandbox state directory: removed by `rke2fleet sandbox down`\n")
    layout.logs.mkdir(exist_ok=True)
    layout.datastore.mkdir(exist_ok=True)


def _remove_state_dir(layout: StateLayout) -> None:
    if layout.marker.exists():
        shutil.rmtree(layout.root, ignore_errors=True)


def _await_net_ns(pid: int, name: str, expected: str | None) -> str:
    """The network namespace of a host's holder: the site's (`expected`), or one of its own (None)."""
    ns = net_namespace(pid)
    if ns is None:
        raise H.SandboxError(f"host {name}: holder is gone")
    if expected is None and ns == net_namespace(os.getpid()):
        raise H.SandboxError(f"host {name}: holder has no network namespace of its own")
    if expected is not None and ns != expected:
        raise H.SandboxError(f"host {name}: holder is not in the network site")
    return ns


def _keygen_async(path: Path, comment: str) -> subprocess.Popen[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_suffix(".pub")):
        stale.unlink(missing_ok=True)
    return subprocess.Popen(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def _net_lock(timeout: float = 60.0) -> Iterator[None]:
    """Serialise address allocation between sandboxes started at the same time on this machine.

    An abstract unix socket name is the lock: the kernel releases it when its holder exits,
    and it leaves no file behind.
    """
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lock:
        while True:
            try:
                lock.bind(NET_LOCK)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise H.SandboxError("another sandbox holds the address lock for too long") from None
                time.sleep(0.02)
        yield


def bindable(address: str, port: int) -> bool:
    """Nothing listens on (address, port) yet."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def _host_address(net: int, index: int) -> str:
    """Host `index` of a shared sandbox: 240 a block, from 127.0.N.10 on into 127.0.N+1.10, ...."""
    return f"127.0.{net + index // HOSTS_PER_BLOCK}.{FIRST_HOST_OCTET + index % HOSTS_PER_BLOCK}"


def _free_net_block(hosts: int, with_lb: bool, with_installer: bool) -> int:
    """The first 127.0.N.0/24 whose host, balancer and installer addresses are all free (N >= 1);
    over 240 hosts, the hosts go on into the blocks after it."""
    for net in range(1, 255):
        if net + (hosts - 1) // HOSTS_PER_BLOCK > 254:
            break
        addresses: list[tuple[str, int]] = [(_host_address(net, i), 22) for i in range(hosts)]
        if with_lb:
            addresses += [(f"127.0.{net}.{LB_OCTET}", port) for port in DEFAULT_PORTS]
        if with_installer:
            addresses.append((f"127.0.{net}.{INSTALLER_OCTET}", INSTALLER_PORT))
        if all(bindable(a, p) for a, p in addresses):
            return net
    raise H.SandboxError("no free 127.0.N.0/24 block for the sandbox hosts")


def hosts_table(hosts: Sequence[SandboxHost]) -> list[str]:
    return [f"{h.name:<12} {h.role:<7} {h.address}:{h.port:<5} {h.user:<6} {h.host_key_line}" for h in hosts]

