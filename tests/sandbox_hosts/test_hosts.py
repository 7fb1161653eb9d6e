"""Real sshd hosts: private filesystems, hostnames, pinned host keys, the sudo host, clean shells."""

from __future__ import annotations

import json
import time
from pathlib import Path

import asyncssh
import pytest

from rke2fleet_sandbox import Sandbox

from .conftest import ssh

pytestmark = pytest.mark.sandbox


def test_each_host_has_its_hostname_and_private_filesystems(sandbox: Sandbox, known_hosts: Path) -> None:
    a, b = sandbox.servers
    for host in (a, b):
        result = ssh(sandbox, host.name, "hostname", known_hosts=known_hosts)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == host.name

    marker = f"only-on-{a.name}"
    for directory in ("/etc/rancher", "/var/lib/rancher", "/usr/local", "/run/rke2fleet"):
        path = f"{directory}/{marker}"
        made = ssh(sandbox, a.name, f"touch {path} && ls {path}", known_hosts=known_hosts)
        assert made.returncode == 0, made.stderr
        on_b = ssh(sandbox, b.name, f"test -e {path}", known_hosts=known_hosts)
        assert on_b.returncode == 1, f"{path} leaked to {b.name}"
        assert not Path(path).exists(), f"{path} leaked to the machine"
    # What the machine has in /usr/local is not visible inside: it starts empty.
    assert ssh(sandbox, b.name, "ls -A /usr/local | wc -l", known_hosts=known_hosts).stdout.strip() == "0"


def test_host_json_tells_the_stand_ins_who_they_are(sandbox: Sandbox, known_hosts: Path) -> None:
    host = sandbox.servers[1]
    result = ssh(sandbox, host.name, "cat /run/rke2fleet/host.json", known_hosts=known_hosts)
    info = json.loads(result.stdout)
    assert info["name"] == host.name
    assert info["address"] == host.address
    assert info["stateDir"] == str(sandbox.state_dir)
    assert info["datastoreDir"] == str(sandbox.state_dir / "datastore")
    assert info["faultsDir"] == str(sandbox.state_dir / "faults" / host.name)
    assert Path(info["python"]).exists()
    assert Path(info["standinsDir"]).name == "standins"
    # the world's timing knobs (Sandbox.up's node_ready_delay / learner_delay defaults)
    assert (info["nodeReadyDelay"], info["learnerPromoteDelay"]) == (1.0, 1.0)


def test_systemctl_and_journalctl_are_the_shims_inside_only(sandbox: Sandbox) -> None:
    host = sandbox.servers[0]
    for tool in ("systemctl", "journalctl"):
        inside = sandbox.run_on_host(host, f"cat /usr/bin/{tool}")
        assert inside.returncode == 0
        assert f"standins/{tool}.py" in inside.stdout.decode()
        assert b"standins" not in Path(f"/usr/bin/{tool}").read_bytes()[:4096]


def test_a_wrongly_pinned_host_key_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    a, b = sandbox.servers
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"{a.address} {b.host_key_line}\n")
    result = ssh(sandbox, a.name, "true", known_hosts=wrong)
    assert result.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in result.stderr or "verification failed" in result.stderr


def test_sudo_host_logs_in_as_fleet_and_needs_sudo(sandbox: Sandbox, known_hosts: Path) -> None:
    (host,) = [h for h in sandbox.hosts if h.sudo]
    assert host.user == "fleet"
    who = ssh(sandbox, host.name, "id -un", known_hosts=known_hosts)
    assert who.stdout.strip() == "fleet"
    without = ssh(sandbox, host.name, "touch /etc/rancher/x", known_hosts=known_hosts)
    assert without.returncode != 0
    assert "Permission denied" in without.stderr
    sudo_cmd = "sudo -n touch /etc/rancher/x && sudo -n id -un"
    with_sudo = ssh(sandbox, host.name, sudo_cmd, known_hosts=known_hosts)
    assert with_sudo.returncode == 0, with_sudo.stderr
    assert with_sudo.stdout.strip() == "root"
    assert "unable to resolve host" not in with_sudo.stderr
    as_root = ssh(sandbox, host.name, "true", known_hosts=known_hosts, user="root")
    assert as_root.returncode == 255


def test_sudo_user_can_run_the_shims_interpreter(sandbox: Sandbox, known_hosts: Path) -> None:
    """A non-root `systemctl is-active` runs the sandbox's Python, which may live under /root."""
    (host,) = [h for h in sandbox.hosts if h.sudo]
    python = json.loads(sandbox.run_on_host(host, "cat /run/rke2fleet/host.json").stdout)["python"]
    result = ssh(sandbox, host.name, f"{python} -s -c 'import rke2fleet; print(42)'", known_hosts=known_hosts)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"
    assert ssh(sandbox, host.name, "wc -c < ~/.bashrc", known_hosts=known_hosts).stdout.strip() == "0"


def test_root_hosts_refuse_the_sudo_user(sandbox: Sandbox, known_hosts: Path) -> None:
    result = ssh(sandbox, sandbox.servers[0].name, "true", known_hosts=known_hosts, user="fleet")
    assert result.returncode == 255


async def test_exec_is_cheap_with_a_clean_bashrc(sandbox: Sandbox) -> None:
    host = sandbox.servers[0]
    assert sandbox.run_on_host(host, "wc -c < /root/.bashrc").stdout.strip() == b"0"
    async with asyncssh.connect(
        host.address, host.port, username=host.user,
        client_keys=[asyncssh.import_private_key(sandbox.client_key_pem())],
        known_hosts=asyncssh.import_known_hosts(sandbox.known_hosts()), agent_path=None,
    ) as conn:  # fmt: skip
        await conn.run("true", check=True)
        runs = 20
        started = time.monotonic()
        for _ in range(runs):
            await conn.run("true", check=True)
        per_exec = (time.monotonic() - started) / runs
    print(f"\nssh exec on an open connection: {per_exec * 1000:.1f} ms")


async def test_a_hardened_host_has_no_sftp_subsystem(tmp_path: Path) -> None:
    sb = Sandbox.up(tmp_path / "sb", 1, 0, emulator=False, load_balancer=False, installer=False, sftp=False)
    try:
        host = sb.servers[0]
        async with asyncssh.connect(
            host.address, host.port, username=host.user,
            client_keys=[asyncssh.import_private_key(sb.client_key_pem())],
            known_hosts=asyncssh.import_known_hosts(sb.known_hosts()), agent_path=None,
        ) as conn:  # fmt: skip
            assert (await conn.run("true", check=True)).exit_status == 0  # exec works
            with pytest.raises(asyncssh.Error):
                await conn.start_sftp_client()
        sb.stop_sshd(host)
        sb.start_sshd(host)  # a restarted sshd stays without it
        assert Sandbox.load(sb.state_dir).hosts[0].sftp is False
    finally:
        sb.down()
