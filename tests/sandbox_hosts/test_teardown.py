"""Teardown leaves nothing behind; the CLI's sandbox outlives the CLI; up + down timing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rke2fleet_sandbox import Sandbox, SandboxError
from rke2fleet_sandbox.hosts import pids_in_namespaces
from rke2fleet_sandbox.state import ProcessRecord

from .conftest import MakeSandbox, Snapshot, assert_gone, no_sandbox_mounts_here

pytestmark = pytest.mark.sandbox


def test_down_ends_every_process_of_every_host(tmp_path: Path) -> None:
    sandbox = Sandbox.up(tmp_path / "sb", 2, 1, sudo_hosts=1, emulator=False, installer=False)
    namespaces = [h.mnt_ns for h in sandbox.hosts]
    host = sandbox.servers[0]
    # Processes a host starts on its own (a detached service, a frozen one) are ended too.
    sandbox.run_on_host(host, "setsid sleep 600 </dev/null >/dev/null 2>&1 &")
    sandbox.run_on_host(sandbox.agents[0], "setsid sleep 600 </dev/null >/dev/null 2>&1 &")
    sandbox.freeze(sandbox.agents[0])
    assert len(pids_in_namespaces(namespaces)[host.mnt_ns]) >= 3  # holder, sshd, the detached sleep
    services = list(sandbox.record.services.values())
    assert services, "the load balancer runs"
    before = Snapshot(sandbox)
    assert sandbox.down() == []
    assert_gone(before, sandbox.state_dir)
    assert not any(rec.alive() for rec in services)
    assert no_sandbox_mounts_here()


def test_down_from_another_process_view(tmp_path: Path) -> None:
    """`Sandbox.load(dir).down()` (what `rke2fleet sandbox down` does) needs no Popen handles."""
    first = Sandbox.up(tmp_path / "sb", 1, 1, emulator=False, installer=False)
    try:
        again = Sandbox.load(first.state_dir)
        assert [h.public() for h in again.hosts] == [h.public() for h in first.hosts]
        before = Snapshot(again)
        assert again.down() == []
        assert_gone(before, first.state_dir)
    finally:
        first.down()


def test_up_refuses_a_running_sandbox_and_foreign_directories(
    make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    running = make_sandbox(1, 0)
    with pytest.raises(SandboxError, match="already running"):
        Sandbox.up(running.state_dir, 1, 0, emulator=False, installer=False)
    assert running.running()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious").write_text("keep me")
    with pytest.raises(SandboxError, match="not a sandbox state directory"):
        Sandbox.up(foreign, 1, 0, emulator=False, installer=False)
    assert (foreign / "precious").read_text() == "keep me"


def test_failed_up_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose sshd cannot start fails `up`, and what was started is ended."""
    from rke2fleet_sandbox import hosts

    started: list[ProcessRecord] = []
    real_start_holder = hosts.start_holder

    def recording_start_holder(*args: Any) -> subprocess.Popen[bytes]:
        proc = real_start_holder(*args)
        started.append(ProcessRecord.of(proc.pid))
        return proc

    monkeypatch.setattr(hosts, "start_holder", recording_start_holder)
    monkeypatch.setattr(hosts, "SSHD", "/nonexistent/sshd")
    with pytest.raises(SandboxError, match="sshd"):
        Sandbox.up(tmp_path / "sb", 2, 0, emulator=False, installer=False)
    assert len(started) == 2
    assert not [rec.pid for rec in started if rec.alive()]
    assert not (tmp_path / "sb").exists()
    assert no_sandbox_mounts_here()


def test_cli_up_status_down(tmp_path: Path) -> None:
    state = tmp_path / "cli"
    rke2fleet = [sys.executable, "-m", "rke2fleet", "sandbox"]
    up = subprocess.run(
        [*rke2fleet, "up", "--servers", "2", "--agents", "1", "--sudo-hosts", "1",
         "--no-emulator", "--no-installer", "--state-dir", str(state),
         "--node-ready-delay", "0.25", "--learner-delay", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        doc = json.loads((state / "sandbox.json").read_text())
        assert set(doc) == {"hosts", "clientKey", "installerURL", "kubeconfig", "loadBalancer"}
        for host in doc["hosts"]:
            assert set(host) == {"name", "role", "address", "port", "user", "hostKey"}
            assert f"{host['address']}:{host['port']}" in up.stdout
            assert host["hostKey"] in up.stdout
        assert [h["user"] for h in doc["hosts"]] == ["root", "root", "fleet"]
        assert doc["loadBalancer"] in up.stdout
        host_json = json.loads((state / "hosts" / "agent-1" / "run" / "host.json").read_text())
        assert (host_json["nodeReadyDelay"], host_json["learnerPromoteDelay"]) == (0.25, 2.0)
        assert Path(doc["clientKey"]).stat().st_mode & 0o077 == 0
        assert "PRIVATE KEY" not in up.stdout + up.stderr
        # The hosts outlive the CLI process that started them.
        running = Sandbox.load(state)
        assert all(running.host_pids(h) for h in running.hosts)
        before = Snapshot(running)
        status = subprocess.run([*rke2fleet, "status", "--state-dir", str(state)],
                                capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        down = subprocess.run([*rke2fleet, "down", "--state-dir", str(state)],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert_gone(before, state)
    gone = subprocess.run([*rke2fleet, "status", "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert gone.returncode == 1


def test_five_hosts_up_and_down_timing(tmp_path: Path) -> None:
    """The whole sandbox: hosts, installer endpoint, load balancer and API emulator."""
    started = time.monotonic()
    sandbox = Sandbox.up(tmp_path / "sb", 3, 2, emulator=True, installer=True)
    up_s = time.monotonic() - started
    before = Snapshot(sandbox)
    started = time.monotonic()
    assert sandbox.down() == []
    down_s = time.monotonic() - started
    assert_gone(before, tmp_path / "sb")
    print(f"\n5 hosts + installer + load balancer + emulator: up {up_s:.2f} s, down {down_s:.2f} s")
