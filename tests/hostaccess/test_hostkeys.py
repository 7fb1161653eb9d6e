"""Host-key policies against a real sshd, and known_hosts parsing checked against ssh-keygen."""

from __future__ import annotations

import subprocess
from pathlib import Path

import asyncssh
import pytest

from rke2fleet.hostaccess import (
    HostKeyRejected,
    SSHPool,
    fingerprint,
    known_hosts_keys,
)

from .conftest import SandboxSshd, make_target


def keygen_fingerprint(public_key_file: Path) -> str:
    """The fingerprint as OpenSSH itself prints it (independent of our code)."""
    return subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]


def hash_known_hosts(path: Path) -> str:
    """Hash the file's host names with OpenSSH's own ssh-keygen -H and return the new text."""
    subprocess.run(["ssh-keygen", "-H", "-f", str(path)], check=True, capture_output=True)
    return path.read_text()


def host_pub(sshd: SandboxSshd) -> Path:
    return sshd.host_pub


def test_fingerprint_matches_ssh_keygen(sshd: SandboxSshd) -> None:
    assert fingerprint(sshd.public_key_line) == keygen_fingerprint(host_pub(sshd))


async def test_strict_with_the_pinned_key_connects(
    pool: SSHPool, sshd: SandboxSshd, client_key: asyncssh.SSHKey
) -> None:
    target = make_target(sshd, client_key, host_key_policy="Strict")
    assert (await pool.run(target, ["echo", "ok"])).stdout == "ok\n"
    assert pool.host_key(target) == sshd.public_key_line


async def test_strict_with_nothing_pinned_refuses_and_names_the_fingerprint(
    pool: SSHPool, sshd: SandboxSshd, client_key: asyncssh.SSHKey
) -> None:
    target = make_target(sshd, client_key, pinned_keys=())
    with pytest.raises(HostKeyRejected) as caught:
        await pool.run(target, ["true"])
    seen = keygen_fingerprint(host_pub(sshd))
    assert caught.value.reason == "unknown"
    assert caught.value.fingerprint_seen == seen
    assert seen in str(caught.value) and "spec.hostKey" in str(caught.value)
    assert sshd.accepted_logins() == 0


async def test_strict_with_a_wrong_pinned_key_refuses(
    pool: SSHPool, sshd: SandboxSshd, client_key: asyncssh.SSHKey
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    wrong = other.export_public_key().decode()
    target = make_target(sshd, client_key, pinned_keys=(wrong,))
    with pytest.raises(HostKeyRejected) as caught:
        await pool.run(target, ["true"])
    assert caught.value.reason == "changed"
    assert caught.value.fingerprint_seen == keygen_fingerprint(host_pub(sshd))
    assert fingerprint(wrong) not in str(caught.value)
    assert sshd.accepted_logins() == 0


async def test_strict_with_a_pinned_key_of_another_type_still_names_what_the_host_offers(
    pool: SSHPool, sshd: SandboxSshd, client_key: asyncssh.SSHKey
) -> None:
    """The host has no key of the pinned type, so negotiation fails; a probe learns its key."""
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048).export_public_key().decode()
    target = make_target(sshd, client_key, pinned_keys=(rsa,))
    with pytest.raises(HostKeyRejected) as caught:
        await pool.run(target, ["true"])
    assert caught.value.reason == "changed"
    assert caught.value.fingerprint_seen == keygen_fingerprint(host_pub(sshd))


async def test_accept_new_records_the_first_key_and_refuses_a_changed_one(
    pool: SSHPool, sshd: SandboxSshd, client_key: asyncssh.SSHKey
) -> None:
    first = make_target(sshd, client_key, pinned_keys=(), host_key_policy="AcceptNew")
    assert (await pool.run(first, ["echo", "hi"])).stdout == "hi\n"
    recorded = pool.accepted_key(first)
    assert recorded == sshd.public_key_line
    old_fingerprint = keygen_fingerprint(host_pub(sshd))

    # The caller records it in status; later passes present it as recorded_key.
    later = make_target(sshd, client_key, pinned_keys=(), host_key_policy="AcceptNew", recorded_key=recorded)
    assert (await pool.run(later, ["echo", "again"])).stdout == "again\n"
    assert pool.connects == 1  # the recorded key matches the open connection: reused

    sshd.new_host_key()  # also drops the pooled connection, so the pool must reconnect
    with pytest.raises(HostKeyRejected) as caught:
        await pool.run(later, ["true"])
    assert caught.value.reason == "changed"
    assert caught.value.fingerprint_seen == keygen_fingerprint(host_pub(sshd))
    assert caught.value.fingerprint_seen != old_fingerprint
    assert "re-keyed" in str(caught.value)


async def test_accept_new_with_a_pinned_key_behaves_like_strict(
    pool: SSHPool, sshd: SandboxSshd, client_key: asyncssh.SSHKey
) -> None:
    wrong = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    target = make_target(sshd, client_key, pinned_keys=(wrong,), host_key_policy="AcceptNew")
    with pytest.raises(HostKeyRejected):
        await pool.run(target, ["true"])
    assert pool.accepted_key(target) is None


async def test_open_connection_is_not_reused_for_a_target_that_does_not_trust_its_key(
    pool: SSHPool, sshd: SandboxSshd, client_key: asyncssh.SSHKey
) -> None:
    await pool.run(make_target(sshd, client_key), ["true"])
    wrong = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    with pytest.raises(HostKeyRejected):
        await pool.run(make_target(sshd, client_key, pinned_keys=(wrong,)), ["true"])


async def test_known_hosts_secret_text_pins_the_host(
    pool: SSHPool, sshd: SandboxSshd, client_key: asyncssh.SSHKey, workdir: Path
) -> None:
    known = workdir / "known_hosts"
    decoy = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known.write_text(f"other.example {decoy}\n{sshd.address} {sshd.public_key_line}\n")
    hashed = hash_known_hosts(known)
    assert sshd.address not in hashed and "|1|" in hashed
    pinned = known_hosts_keys(hashed, sshd.address, 22)
    assert pinned == (sshd.public_key_line,)
    target = make_target(sshd, client_key, pinned_keys=pinned)
    assert (await pool.run(target, ["echo", "ok"])).stdout == "ok\n"


def test_known_hosts_forms() -> None:
    keys = [asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip() for _ in range(6)]
    k = [" ".join(line.split()[:2]) for line in keys]
    text = "\n".join(
        [
            "# comment",
            f"10.0.0.1 {keys[0]}",
            f"[10.0.0.1]:2222 {keys[1]}",
            f"web-*,10.0.0.9 {keys[2]}",
            f"10.0.0.*,!10.0.0.5 {keys[3]}",
            f"@revoked 10.0.0.1 {keys[4]}",
            f"10.0.0.1 {keys[4]}",
            f"@cert-authority 10.0.0.1 {keys[5]}",
            "",
        ]
    )
    assert known_hosts_keys(text, "10.0.0.1", 22) == (k[0], k[3])
    assert known_hosts_keys(text, "10.0.0.1", 2222) == (k[1],)  # like OpenSSH: no port fallback
    assert known_hosts_keys(text, "web-3", 22) == (k[2],)
    assert known_hosts_keys(text, "10.0.0.5", 22) == ()
    assert known_hosts_keys(text, "10.0.0.7", 22) == (k[3],)


def test_known_hosts_hashed_with_port(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known = tmp_path / "known_hosts"
    known.write_text(f"[10.1.2.3]:2200 {key}\n")
    text = hash_known_hosts(known)
    assert text.startswith("|1|")
    assert known_hosts_keys(text, "10.1.2.3", 2200) == (" ".join(key.split()[:2]),)
    assert known_hosts_keys(text, "10.1.2.3", 22) == ()
