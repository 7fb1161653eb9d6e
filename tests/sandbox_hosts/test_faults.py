"""Host fault switches against real sshd processes: stop, kill, start, freeze/thaw, new host key."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

import asyncssh
import pytest

from rke2fleet_sandbox import Sandbox, SandboxHost

pytestmark = pytest.mark.sandbox


def connect(sandbox: Sandbox, host: SandboxHost, timeout: float = 5.0) -> asyncssh.SSHClientConnection:
    # asyncssh.connect returns an awaitable context manager; the tests await it.
    return asyncssh.connect(  # type: ignore[return-value]
        host.address, host.port, username=host.user,
        client_keys=[asyncssh.import_private_key(sandbox.client_key_pem())],
        known_hosts=asyncssh.import_known_hosts(sandbox.known_hosts()), agent_path=None,
        connect_timeout=timeout,
    )  # fmt: skip


async def test_stopped_sshd_refuses_new_connections_but_keeps_sessions(sandbox: Sandbox) -> None:
    host = sandbox.servers[0]
    async with connect(sandbox, host) as conn:
        sandbox.stop_sshd(host)
        with pytest.raises(OSError):
            await connect(sandbox, host)
        # An open session outlives its listener, as with `systemctl stop ssh`.
        result = await conn.run("hostname", check=True, timeout=5)
        assert str(result.stdout).strip() == host.name
    sandbox.start_sshd(host)
    async with connect(sandbox, host) as conn:
        assert (await conn.run("true", timeout=5)).exit_status == 0


async def test_killed_sshd_refuses_until_started(sandbox: Sandbox) -> None:
    host = sandbox.servers[1]
    old_sshd = host.sshd
    sandbox.kill_sshd(host)
    assert old_sshd is not None and not old_sshd.alive()
    with pytest.raises(OSError):
        await connect(sandbox, host)
    # The host itself (its namespace and private files) survived.
    assert sandbox.run_on_host(host, "hostname").stdout.strip() == host.name.encode()
    sandbox.start_sshd(host)
    async with connect(sandbox, host) as conn:
        assert (await conn.run("true", timeout=5)).exit_status == 0
    # The restarted sshd is recorded, so that another process can find it.
    assert Sandbox.load(sandbox.state_dir).host(host).sshd == host.sshd


async def test_frozen_host_hangs_connections_then_resumes(sandbox: Sandbox) -> None:
    host = sandbox.servers[0]
    async with connect(sandbox, host) as conn:
        sandbox.freeze(host)
        try:
            # A new connection neither succeeds nor is refused: it hangs.
            started = time.monotonic()
            with pytest.raises((asyncssh.Error, TimeoutError, OSError)) as failure:
                await connect(sandbox, host, timeout=1.0)
            assert time.monotonic() - started >= 0.9, f"failed fast instead of hanging: {failure.value!r}"
            # A command on an open connection hangs too ...
            pending = asyncio.ensure_future(conn.run("hostname", timeout=20))
            await asyncio.sleep(1.0)
            assert not pending.done()
        finally:
            sandbox.thaw(host)
        # ... and completes once the host is thawed.
        result = await asyncio.wait_for(pending, 10)
        assert str(result.stdout).strip() == host.name
    async with connect(sandbox, host) as conn:
        assert (await conn.run("true", timeout=5)).exit_status == 0


def test_frozen_host_accepts_tcp_but_sends_no_banner_until_thawed(sandbox: Sandbox) -> None:
    """The "host stops answering" switch, at the TCP level: the kernel completes the handshake on
    the frozen sshd's socket, but no SSH banner comes until the host is thawed."""
    host = sandbox.servers[1]
    sandbox.freeze(host)
    try:
        with socket.create_connection((host.address, host.port), timeout=2) as sock:  # accepted
            sock.settimeout(2.0)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                sock.recv(64)
            assert time.monotonic() - started >= 1.9
            sandbox.thaw(host)
            sock.settimeout(10.0)
            assert sock.recv(64).startswith(b"SSH-2.0-")  # the same connection, answered now
    finally:
        sandbox.thaw(host)


async def test_replaced_host_key_is_refused_under_the_old_pin(sandbox: Sandbox) -> None:
    host = sandbox.servers[0]
    old_known_hosts = sandbox.known_hosts()
    old_line = host.host_key_line
    new_line = sandbox.replace_host_key(host)
    assert new_line != old_line
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await asyncssh.connect(
            host.address, host.port, username=host.user,
            client_keys=[asyncssh.import_private_key(sandbox.client_key_pem())],
            known_hosts=asyncssh.import_known_hosts(old_known_hosts), agent_path=None,
        )  # fmt: skip
    async with connect(sandbox, host) as conn:  # the new pin, from the updated record
        assert (await conn.run("true", timeout=5)).exit_status == 0
    assert new_line in (sandbox.state_dir / "sandbox.json").read_text()


def test_service_fault_switches_write_what_the_stand_ins_read(sandbox: Sandbox) -> None:
    host = sandbox.agents[0]
    faults = Path(host.faults_dir)
    sandbox.fail_next_start(host)
    sandbox.set_start_delay(host, 2.5)
    assert (faults / "fail-next-start").exists()
    assert float((faults / "start-delay").read_text()) == 2.5
    # The stand-ins run as root inside the host: the faults dir must be reachable from there.
    inside = sandbox.run_on_host(host, f"cat {faults}/start-delay")
    assert inside.stdout.strip() == b"2.5"
    sandbox.fail_next_start(host, enabled=False)
    sandbox.set_start_delay(host, None)
    assert not (faults / "fail-next-start").exists()
    assert not (faults / "start-delay").exists()
    sandbox.break_cni(host)
    sandbox.set_node_ready_delay(host, 4.5)
    assert (faults / "cni-broken").exists() and float((faults / "node-ready-delay").read_text()) == 4.5
    sandbox.break_cni(host, enabled=False)
    sandbox.set_node_ready_delay(host, None)
    assert not (faults / "cni-broken").exists() and not (faults / "node-ready-delay").exists()


def test_age_certificates_rewrites_them_inside_the_host(sandbox: Sandbox) -> None:
    host = sandbox.agents[0]  # the sudo host: the ageing runs as root inside it all the same
    info = json.loads(sandbox.run_on_host(host, "cat /run/rke2fleet/host.json").stdout)
    script = f"{info['standinsDir']}/rke2_certs.py"
    made = sandbox.run_on_host(host, f"{sys.executable} -s {script} ensure --data-dir /var/lib/rancher/rke2 "
                                     f"--role agent --node {host.name} --address {host.address} --window 120")
    assert made.returncode == 0, made.stdout + made.stderr
    out = sandbox.age_certificates(host, 400)  # past notAfter: expired
    assert len(out.splitlines()) == 3 and "agent/client-kubelet.crt notAfter" in out
    index = json.loads(sandbox.run_on_host(host, "cat /var/lib/rancher/rke2/.sandbox-certificates.json").stdout)
    not_after = index["certificates"]["agent/client-kubelet.crt"]["notAfter"]
    assert abs(not_after - (time.time() - 35 * 86400)) < 120
    # private to the host: nothing of it on the machine
    assert not Path("/var/lib/rancher/rke2/.sandbox-certificates.json").exists()
