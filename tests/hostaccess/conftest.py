"""Plain OpenSSH sshd fixtures for the host-access tests.

Each host is a real ``/usr/sbin/sshd`` on its own 127.0.3.X address, started inside a private
mount namespace only so that root's ``~/.bashrc`` (which runs pyenv, ~80 ms per exec) can be
replaced by an empty file for its sessions. Files are written only under a temporary directory.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest
from pydantic import SecretBytes

from rke2fleet.hostaccess import HostTarget, SSHPool

SUDO_USER = "fleetsudo"
_ADDRESSES = itertools.count(random.randint(10, 120))


def _write_key(path: Path, algorithm: str = "ssh-ed25519") -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key(algorithm)
    key.write_private_key(str(path))
    key.write_public_key(str(path) + ".pub")
    os.chmod(path, 0o600)
    return key


def _listening(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((address, port)) == 0


class SshdHost:
    """One sshd; ``start``/``stop``/``restart`` with a given host key, ``freeze``/``thaw``."""

    def __init__(self, workdir: Path, address: str, authorized_keys: Path) -> None:
        self.workdir = workdir
        self.address = address
        self.port = 22
        self.authorized_keys = authorized_keys
        self.log = workdir / f"sshd-{address}.log"
        self.empty_bashrc = workdir / "empty-bashrc"
        self.empty_bashrc.write_text("")
        self.host_key_path = workdir / f"host-{address}-ed25519"
        self.host_key = _write_key(self.host_key_path)
        self.proc: subprocess.Popen[bytes] | None = None
        self.mnt_ns: str | None = None

    @property
    def public_key_line(self) -> str:
        return " ".join(Path(str(self.host_key_path) + ".pub").read_text().split()[:2])

    def new_host_key(self, algorithm: str = "ssh-ed25519") -> Path:
        path = self.workdir / f"host-{self.address}-{algorithm}-{random.randint(0, 1 << 30)}"
        self.host_key = _write_key(path, algorithm)
        self.host_key_path = path
        return path

    def start(self) -> None:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        sshd = (
            f"/usr/sbin/sshd -D -e -f /dev/null -o ListenAddress={self.address} -o Port={self.port}"
            f" -o HostKey={self.host_key_path} -o AuthorizedKeysFile={self.authorized_keys}"
            " -o PermitRootLogin=prohibit-password -o StrictModes=no -o UsePAM=no"
            " -o 'Subsystem=sftp internal-sftp'"
            f" -o PidFile={self.workdir}/sshd-{self.address}.pid -o LogLevel=VERBOSE"
        )
        inner = f'mount --bind "$0" /root/.bashrc && exec {sshd}'
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", inner, str(self.empty_bashrc)],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 5
        while not _listening(self.address, self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd on {self.address} did not start:\n{self.log.read_text()}")
            time.sleep(0.02)
        self.mnt_ns = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")

    def _namespace_pids(self) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/mnt") == self.mnt_ns:
                        pids.append(int(entry))
        return pids

    def stop(self) -> None:
        """Kill the listener and every session process of this host (found by mount namespace)."""
        if self.proc is None:
            return
        for pid in self._namespace_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def accepted_logins(self) -> int:
        return self.log.read_text().count("Accepted publickey")


@pytest.fixture(scope="session")
def sudo_user() -> str:
    """A non-root user with passwordless sudo (created once, left in place: it is idempotent)."""
    if shutil.which("sudo") is None:
        pytest.skip("sudo is not installed")
    try:
        pwd.getpwnam(SUDO_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", SUDO_USER], check=True)
    # useradd locks the account ("!"), and sshd without PAM refuses locked accounts even for
    # public keys: "*" means no password login possible, but not locked.
    subprocess.run(["usermod", "-p", "*", SUDO_USER], check=True)
    sudoers = Path(f"/etc/sudoers.d/{SUDO_USER}")
    if not sudoers.exists():
        sudoers.write_text(f"{SUDO_USER} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
    return SUDO_USER


@pytest.fixture
def workdir() -> Iterator[Path]:
    # World-traversable: sshd reads AuthorizedKeysFile as the logging-in user.
    path = Path(tempfile.mkdtemp(prefix="rke2fleet-hostaccess-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def client_key(workdir: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    keys = workdir / "authorized_keys"
    keys.write_bytes(key.export_public_key())
    keys.chmod(0o644)
    return key


@pytest.fixture
def sshd(workdir: Path, client_key: asyncssh.SSHKey) -> Iterator[SshdHost]:
    host = SshdHost(workdir, f"127.0.3.{next(_ADDRESSES)}", workdir / "authorized_keys")
    host.start()
    yield host
    host.stop()


def make_target(host: SshdHost, key: asyncssh.SSHKey, **overrides: object) -> HostTarget:
    fields: dict[str, object] = {
        "address": host.address,
        "port": host.port,
        "private_key": SecretBytes(key.export_private_key()),
        "pinned_keys": (host.public_key_line,),
        "connect_timeout": 3.0,
        "command_timeout": 20.0,
    }
    fields.update(overrides)
    return HostTarget(**fields)  # type: ignore[arg-type]


@pytest.fixture
def target(sshd: SshdHost, client_key: asyncssh.SSHKey) -> HostTarget:
    return make_target(sshd, client_key)


@pytest.fixture
async def pool() -> AsyncIterator[SSHPool]:
    the_pool = SSHPool()
    yield the_pool
    await the_pool.close()
