"""Atomic remote writes and reads, as root and as a sudo user, each one command (no SFTP needed).

Files go only under the test's temporary directory: this sshd is not namespaced.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from rke2fleet.hostaccess import CommandFailed, HostTarget, SSHPool

from .conftest import SandboxSshd

TOKEN_CONFIG = b"token: K10abc::server:secret\nnode-name: a\n"


def leftovers(directory: Path, name: str) -> list[str]:
    return sorted(p for p in os.listdir(directory) if p != name)


async def test_root_write_sets_mode_owner_and_is_atomic(
    pool: SSHPool, target: HostTarget, workdir: Path
) -> None:
    path = workdir / "etc" / "rke2" / "config.yaml"  # directory missing: created
    assert await pool.write_file(target, str(path), TOKEN_CONFIG) is True
    info = path.stat()
    assert path.read_bytes() == TOKEN_CONFIG
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == 0 and info.st_gid == 0
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert leftovers(path.parent, "config.yaml") == []

    # Same content: nothing written, the very same inode and mtime.
    assert await pool.write_file(target, str(path), TOKEN_CONFIG) is False
    again = path.stat()
    assert (again.st_ino, again.st_mtime_ns) == (info.st_ino, info.st_mtime_ns)

    # New content: a new inode renamed over the old one.
    assert await pool.write_file(target, str(path), TOKEN_CONFIG + b"debug: true\n") is True
    assert path.read_bytes().endswith(b"debug: true\n")
    assert path.stat().st_ino != info.st_ino
    assert leftovers(path.parent, "config.yaml") == []


async def test_root_write_fixes_mode_and_owner_of_unchanged_content(
    pool: SSHPool, target: HostTarget, workdir: Path
) -> None:
    path = workdir / "f.yaml"
    path.write_bytes(b"same\n")
    path.chmod(0o644)
    assert await pool.write_file(target, str(path), b"same\n", mode=0o600) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    nobody = pwd.getpwnam("nobody")
    assert await pool.write_file(target, str(path), b"same\n", mode=0o640, owner="nobody", group="nogroup")
    info = path.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (nobody.pw_uid, 0o640)
    assert await pool.write_file(target, str(path), b"same\n", mode=0o640, owner="nobody", group="nogroup") is False


async def test_failed_write_leaves_no_partial_file(pool: SSHPool, target: HostTarget, workdir: Path) -> None:
    path = workdir / "ro" / "config.yaml"
    path.parent.mkdir()
    path.write_bytes(b"old\n")
    with pytest.raises(CommandFailed):
        await pool.write_file(target, str(path), b"new\n", owner="no-such-user-xyz")
    assert path.read_bytes() == b"old\n"
    assert leftovers(path.parent, "config.yaml") == []


async def test_read_file(pool: SSHPool, target: HostTarget, workdir: Path) -> None:
    data = bytes(range(256)) * 3
    (workdir / "blob").write_bytes(data)
    assert await pool.read_file(target, str(workdir / "blob")) == data
    assert await pool.read_file(target, str(workdir / "absent")) is None


def test_write_rejects_relative_paths_and_odd_names() -> None:
    from rke2fleet.hostaccess.files import _validate

    with pytest.raises(ValueError):
        _validate("etc/x", 0o600, "root", "root")
    with pytest.raises(ValueError):
        _validate("/etc/x", 0o600, "root; rm -rf /", "root")


# ----------------------------------------------------------------- non-root user with sudo


async def test_sudo_user_runs_privileged_commands(
    pool: SSHPool, sudo_target: HostTarget
) -> None:
    assert (await pool.run(sudo_target, ["id", "-un"])).stdout == "root\n"
    assert (await pool.run(sudo_target, ["id", "-un"], sudo=False)).stdout == f"{sudo_target.user}\n"
    assert (await pool.run(sudo_target, script="id -un; echo \"$0\"")).stdout.startswith("root\n")
    result = await pool.run(sudo_target, ["printf", "%s", "a 'b' $(c)"])
    assert result.stdout == "a 'b' $(c)"


async def test_sudo_user_writes_root_file_atomically(
    pool: SSHPool, sudo_target: HostTarget, workdir: Path
) -> None:
    home = Path(pwd.getpwnam(sudo_target.user).pw_dir)
    uploads_before = {p for p in os.listdir(home) if p.startswith(".rke2fleet-upload-")}
    path = workdir / "sudo" / "config.yaml"
    assert await pool.write_file(sudo_target, str(path), TOKEN_CONFIG) is True
    info = path.stat()
    assert path.read_bytes() == TOKEN_CONFIG
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o600, 0, 0)
    assert leftovers(path.parent, "config.yaml") == []
    assert {p for p in os.listdir(home) if p.startswith(".rke2fleet-upload-")} == uploads_before

    assert await pool.write_file(sudo_target, str(path), TOKEN_CONFIG) is False
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (info.st_ino, info.st_mtime_ns)

    assert await pool.write_file(sudo_target, str(path), b"v2\n") is True
    assert path.read_bytes() == b"v2\n" and path.stat().st_ino != info.st_ino
    assert leftovers(path.parent, "config.yaml") == []

    # Reading a root-only file goes through sudo too.
    assert await pool.read_file(sudo_target, str(path)) == b"v2\n"
    assert await pool.read_file(sudo_target, str(workdir / "absent")) is None


async def test_sudo_user_without_sudo_cannot_read_root_only_file(
    pool: SSHPool, sudo_target: HostTarget, workdir: Path
) -> None:
    path = workdir / "secret"
    path.write_bytes(b"x")
    path.chmod(0o600)
    with pytest.raises(CommandFailed):
        await pool.read_file(sudo_target, str(path), sudo=False)


@pytest.mark.parametrize("host", ["root", "sudo"])
async def test_config_yaml_in_the_hosts_private_etc_rancher(
    pool: SSHPool, target: HostTarget, sudo_target: HostTarget, sshd: SandboxSshd, sudo_sshd: SandboxSshd,
    host: str,
) -> None:
    """The real case: /etc/rancher/rke2/config.yaml (private to the sandbox host), root 0600."""
    chosen, box = (target, sshd) if host == "root" else (sudo_target, sudo_sshd)
    path = "/etc/rancher/rke2/config.yaml"
    assert await pool.write_file(chosen, path, TOKEN_CONFIG) is True
    seen = box.sandbox.run_on_host(box.name, f"stat -c '%a %U %G' {path}; ls -A /etc/rancher/rke2")
    assert seen.stdout.decode() == "600 root root\nconfig.yaml\n"
    assert await pool.write_file(chosen, path, TOKEN_CONFIG) is False
    assert await pool.read_file(chosen, path) == TOKEN_CONFIG


def test_write_script_renames_only_complete_content(tmp_path: Path) -> None:
    """The content comes on stdin: a cut connection ends it early. Only content whose sha256 is
    the one sent is renamed over the target; a short one is an error and leaves nothing behind."""
    import hashlib
    import subprocess

    from rke2fleet.hostaccess.files import _WRITE_SCRIPT

    path = tmp_path / "config.yaml"
    path.write_bytes(b"old\n")
    new = b"token: s3cret\n" * 100

    def write(data: bytes, digest: str) -> subprocess.CompletedProcess[bytes]:
        argv = ["sh", "-c", _WRITE_SCRIPT, "sh", str(path), "600", "root", "root", digest]
        return subprocess.run(argv, input=data, capture_output=True, check=False)

    short = write(new[:500], hashlib.sha256(new).hexdigest())
    assert short.returncode == 4 and b"incomplete" in short.stderr
    assert path.read_bytes() == b"old\n" and leftovers(tmp_path, "config.yaml") == []
    done = write(new, hashlib.sha256(new).hexdigest())
    assert (done.returncode, done.stdout) == (0, b"written\n")
    assert path.read_bytes() == new and leftovers(tmp_path, "config.yaml") == []
    assert write(new, hashlib.sha256(new).hexdigest()).stdout == b"unchanged\n"
