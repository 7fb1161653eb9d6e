"""Fixtures for the sandbox-host tests: real sshd hosts, torn down even when a test fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rke2fleet_sandbox import Sandbox
from rke2fleet_sandbox.hosts import pids_in_namespaces
from rke2fleet_sandbox.netns import pids_in_net_namespaces
from rke2fleet_sandbox.network import ifindex
from rke2fleet_sandbox.state import process_start_time


def _can_run_hosts() -> str | None:
    if os.geteuid() != 0:
        return "sandbox hosts need root"
    for tool in ("unshare", "nsenter", "/usr/sbin/sshd", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    return None


SKIP_REASON = _can_run_hosts()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if SKIP_REASON is None:
        return
    for item in items:
        if item.get_closest_marker("sandbox") is not None and "sandbox_hosts" in str(item.path):
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


class Snapshot:
    """Every process of a sandbox's hosts just before `down()`, with their namespaces.

    Namespace inodes are recycled (other sandboxes may run on this machine at the same time),
    so "nothing left in namespace N" means: no process in N that started before `down()`.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        hosts = [*sandbox.hosts, *([sandbox.bastion] if sandbox.bastion else [])]
        self.namespaces = [h.mnt_ns for h in hosts]
        # A process that ends between the listing and the read of its start time has none:
        # leave it out, or `None == None` would later count it as a survivor.
        starts = {pid: process_start_time(pid) for h in hosts for pid in sandbox.host_pids(h)}
        # A network site (network "isolated" / "bastion"): its namespaces and root veth end.
        site = sandbox.site
        self.net_namespaces = sorted({h.net_ns for h in hosts if h.net_ns} | ({site.net_ns} if site else set()))
        if site is not None:
            starts.update({pid: process_start_time(pid) for pid in pids_in_net_namespaces([site.net_ns])[site.net_ns]})
        # (name, interface index): indexes are not reused, so this tells our link from a later one.
        self.links = {site.link: ifindex(site.link)} if site is not None and ifindex(site.link) is not None else {}
        self.processes = {pid: start for pid, start in starts.items() if start is not None}
        self.ticks = _ticks_now()


def _ticks_now() -> int:
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return int(uptime * os.sysconf("SC_CLK_TCK"))


def assert_gone(before: Snapshot, state_dir: Path) -> None:
    """Nothing of the sandbox is left: no process of its hosts, no state directory."""
    # A process that was exiting on its own at the snapshot (an sshd child whose client just
    # left), or one SIGKILLed by down() on a loaded machine, may still show in /proc for a
    # moment: give it a few seconds to be gone before calling it left behind.
    deadline = time.monotonic() + 10.0
    while survivors := [pid for pid, start in before.processes.items() if process_start_time(pid) == start]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not survivors, f"processes left behind: {survivors}"
    now_in = pids_in_namespaces(before.namespaces)
    old = [
        pid
        for pids in now_in.values()
        for pid in pids
        if (start := process_start_time(pid)) is not None and start <= before.ticks
    ]
    assert not old, f"processes left in the hosts' namespaces: {old}"
    in_site = [
        pid
        for pids in pids_in_net_namespaces(before.net_namespaces).values()
        for pid in pids
        if (start := process_start_time(pid)) is not None and start <= before.ticks
    ]
    assert not in_site, f"processes left in the site's network namespaces: {in_site}"
    links = [name for name, index in before.links.items() if ifindex(name) == index]
    assert not links, f"veth left in the root namespace: {links}"
    assert not state_dir.exists(), f"{state_dir} still exists"


def no_sandbox_mounts_here() -> bool:
    return "rke2fleet-" not in Path("/proc/self/mountinfo").read_text()


MakeSandbox = Callable[..., Sandbox]


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[MakeSandbox]:
    """Factory: `make_sandbox(servers, agents, **kw)`; every sandbox made is downed at teardown."""
    made: list[Sandbox] = []

    def make(servers: int, agents: int, **kwargs: object) -> Sandbox:
        kwargs.setdefault("emulator", False)
        kwargs.setdefault("installer", False)
        sandbox = Sandbox.up(tmp_path / f"sandbox{len(made)}", servers, agents, **kwargs)  # type: ignore[arg-type]
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        before = Snapshot(sandbox)
        assert sandbox.down() == []
        assert_gone(before, sandbox.state_dir)


@pytest.fixture
def sandbox(make_sandbox: MakeSandbox) -> Sandbox:
    """Two servers and one sudo agent, no emulator, no installer."""
    return make_sandbox(2, 1, sudo_hosts=1)


def ssh_argv(sandbox: Sandbox, host_name: str, known_hosts: Path, user: str | None = None) -> list[str]:
    """The real OpenSSH client, the machine's own config ignored, the host key strictly pinned."""
    host = sandbox.host(host_name)
    return [
        "ssh", "-F", "/dev/null", "-i", str(sandbox.client_key_path),
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
        "-p", str(host.port), f"{user or host.user}@{host.address}",
    ]  # fmt: skip


def ssh(
    sandbox: Sandbox, host_name: str, command: str, *, known_hosts: Path, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ssh_argv(sandbox, host_name, known_hosts, user), command],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.fixture
def known_hosts(sandbox: Sandbox, tmp_path: Path) -> Path:
    """The sandbox's host keys as an OpenSSH known_hosts file (for the `ssh` client)."""
    path = tmp_path / "known_hosts"
    path.write_text(sandbox.known_hosts())
    return path
