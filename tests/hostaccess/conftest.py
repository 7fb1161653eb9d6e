"""Host-access tests run against the project's sandbox hosts (real OpenSSH sshd in namespaces).

``SandboxSshd`` adapts one sandbox host to what these tests drive: its address and host key,
its sshd log, and the fault switches (kill sshd, freeze/thaw, re-key). Each test gets its own
small sandbox (one root host, one sudo host; no emulator, load balancer or installer).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest
from pydantic import SecretBytes

from rke2fleet.hostaccess import HostTarget, SSHPool
from rke2fleet_sandbox import Sandbox, SandboxHost


class SandboxSshd:
    def __init__(self, sandbox: Sandbox, host: SandboxHost, workdir: Path) -> None:
        self.sandbox = sandbox
        self.name = host.name
        self.workdir = workdir

    @property
    def host(self) -> SandboxHost:
        return self.sandbox.host(self.name)

    @property
    def address(self) -> str:
        return self.host.address

    @property
    def port(self) -> int:
        return self.host.port

    @property
    def user(self) -> str:
        return self.host.user

    @property
    def public_key_line(self) -> str:
        return " ".join(self.host.host_key_line.split()[:2])

    @property
    def host_pub(self) -> Path:
        """The current host key as a .pub file, for ssh-keygen."""
        path = self.workdir / f"{self.name}-host.pub"
        path.write_text(self.host.host_key_line + "\n")
        return path

    def accepted_logins(self) -> int:
        return (self.sandbox.layout.logs / f"{self.name}.sshd.log").read_text().count("Accepted publickey")

    def drop_sessions(self) -> None:
        """Kill the host's sshd session processes (not the listener): open connections die."""
        listener = self.host.sshd.pid if self.host.sshd else None
        for pid in self.sandbox.host_pids(self.name):
            with contextlib.suppress(OSError):
                if pid != listener and Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        self.sandbox.kill_sshd(self.name)

    def restart(self) -> None:
        self.sandbox.kill_sshd(self.name)
        self.drop_sessions()
        self.sandbox.start_sshd(self.name)

    def new_host_key(self) -> None:
        """Re-key the host and drop open connections (as a reboot into a re-imaged host does)."""
        self.sandbox.replace_host_key(self.name)
        self.drop_sessions()

    def freeze(self) -> None:
        self.sandbox.freeze(self.name)

    def thaw(self) -> None:
        self.sandbox.thaw(self.name)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A world-readable scratch directory on the shared filesystem (seen by every host)."""
    path = Path(tempfile.mkdtemp(prefix="rke2fleet-hostaccess-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sandbox(workdir: Path) -> Iterator[Sandbox]:
    sb = Sandbox.up(
        workdir / "sandbox", 2, 0, sudo_hosts=1, emulator=False, load_balancer=False, installer=False
    )
    try:
        yield sb
    finally:
        sb.down()


@pytest.fixture
def client_key(sandbox: Sandbox) -> asyncssh.SSHKey:
    return asyncssh.import_private_key(sandbox.client_key_pem())


@pytest.fixture
def sshd(sandbox: Sandbox, workdir: Path) -> SandboxSshd:
    """The root-login host."""
    return SandboxSshd(sandbox, next(h for h in sandbox.hosts if h.user == "root"), workdir)


@pytest.fixture
def sudo_sshd(sandbox: Sandbox, workdir: Path) -> SandboxSshd:
    """The host that logs in as a non-root user with passwordless sudo."""
    return SandboxSshd(sandbox, next(h for h in sandbox.hosts if h.user != "root"), workdir)


def make_target(host: SandboxSshd, key: asyncssh.SSHKey, **overrides: object) -> HostTarget:
    fields: dict[str, object] = {
        "address": host.address,
        "port": host.port,
        "user": host.user,
        "private_key": SecretBytes(key.export_private_key()),
        "pinned_keys": (host.public_key_line,),
        "connect_timeout": 3.0,
        "command_timeout": 20.0,
    }
    fields.update(overrides)
    return HostTarget(**fields)  # type: ignore[arg-type]


@pytest.fixture
def target(sshd: SandboxSshd, client_key: asyncssh.SSHKey) -> HostTarget:
    return make_target(sshd, client_key)


@pytest.fixture
def sudo_target(sudo_sshd: SandboxSshd, client_key: asyncssh.SSHKey) -> HostTarget:
    return make_target(sudo_sshd, client_key)


@pytest.fixture
async def pool() -> AsyncIterator[SSHPool]:
    the_pool = SSHPool()
    yield the_pool
    await the_pool.close()
