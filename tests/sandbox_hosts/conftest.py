"""Fixtures for the sandbox-host tests: real sshd hosts, torn down even when a test fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rke2fleet.sandbox import Sandbox
from rke2fleet.sandbox.hosts import pids_in_namespaces


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


def assert_gone(namespaces: list[str], state_dir: Path) -> None:
    """Nothing of the sandbox is left: no process in its namespaces, no state directory."""
    left = pids_in_namespaces(namespaces)
    assert not any(left.values()), f"processes left behind: {left}"
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
        namespaces = [h.mnt_ns for h in sandbox.hosts]
        assert sandbox.down() == []
        assert_gone(namespaces, sandbox.state_dir)


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
