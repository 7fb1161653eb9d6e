"""`rke2fleet demo` end to end, as `make demo` runs it: real sandbox hosts, emulator and operator."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rke2fleet_sandbox.world import Sandbox
from tests.demo.conftest import DemoRun, assert_nothing_left, snapshot_host_processes

pytestmark = [pytest.mark.sandbox]

NODES = {"server-1", "server-2", "server-3", "agent-1", "agent-2"}
READY_BUDGET = 120.0  # the issue: Ready in under 2 minutes


def kubectl_nodes(output: str) -> dict[str, str]:
    """The `kubectl get nodes` table the demo printed: node name → STATUS."""
    lines = output.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("`kubectl get nodes -o wide` on "))
    header = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("NAME "))
    assert lines[header].split()[:2] == ["NAME", "STATUS"]
    table: dict[str, str] = {}
    for line in lines[header + 1 :]:
        cells = line.split()
        if len(cells) < 5 or not cells[4].startswith("v"):
            break
        table[cells[0]] = cells[1]
    return table


def time_to_ready(output: str) -> float:
    match = re.search(r"cluster demo Ready ([0-9.]+)s after it was applied \(([0-9.]+)s since", output)
    assert match, output
    print(f"\ndemo: cluster Ready {match[1]}s after apply, {match[2]}s after `rke2fleet demo` started")
    return float(match[1])


def assert_no_secret_material(run: DemoRun, ready: bool = True) -> None:
    assert run.client_key, "the client key was never seen in the state directory"
    key_lines = [ln for ln in run.client_key.splitlines() if len(ln) > 20 and "PRIVATE KEY" not in ln]
    assert key_lines
    assert not [ln for ln in key_lines if ln in run.output], "private key material in the demo output"
    assert "PRIVATE KEY" not in run.output
    assert "ssh-privatekey:" not in run.output  # the Secret's data is described, never shown
    if ready:
        assert "client-key-data: <elided>" in run.output
        assert "client-certificate-data: <elided>" in run.output


def test_demo_reaches_ready_prints_the_result_and_cleans_up(demo_state_dir: Path) -> None:
    # A sandbox left running in the state directory (say by `demo --keep`) is taken down first.
    old = Sandbox.up(demo_state_dir, 1, 0, emulator=False, installer=False, load_balancer=False)
    try:
        run = DemoRun(["demo", "--state-dir", str(demo_state_dir)], demo_state_dir)
        try:
            run.wait_for_line("starting a sandbox of 3 servers")
            assert not old.running(), "the earlier sandbox is still running"
            code = run.wait()
        finally:
            run.kill()
    finally:
        if old.running():  # else the directory is the demo's now: the fixture ends what is there
            old.down()
    out = run.output
    assert code == 0, out
    assert f"a sandbox is already running in {demo_state_dir}" in out
    elapsed = time_to_ready(out)
    assert elapsed < READY_BUDGET, out

    # Live progress, not a TTY: change lines only (no cursor movement), ending with the cluster Ready.
    assert "\x1b[" not in out
    assert "cluster demo: phase Ready, servers 3/3, agents 2/2" in out
    for node in NODES:
        assert re.search(rf"^{node} +\w+ +127\.0\.\d+\.\d+ +Ready +v1\.35\.7\+rke2r1 +v1\.35\.7\+rke2r1 +True$",
                         out, re.M), f"{node} not shown Ready:\n{out}"  # fmt: skip
    change_lines = [ln for ln in out.splitlines() if re.match(r"^\[ *[0-9.]+s\] ", ln)]
    assert len(change_lines) == len(set(change_lines)), "a line repeated without a change"

    # What was applied: the HA cluster on the load balancer, pinned host keys, written to the state dir.
    assert f"applying {demo_state_dir}/demo-cluster.yaml:" in out
    assert re.search(r"registrationAddress: 127\.0\.\d+\.2$", out, re.M)
    assert out.count("hostKey: ssh-ed25519 ") == len(NODES)

    # The result: the kubeconfig Secret (URL on the load balancer, names, CA) and kubectl's view.
    assert "kubeconfig Secret default/demo-kubeconfig" in out
    assert re.search(r"server: https://127\.0\.\d+\.2:6443$", out, re.M)
    assert "current-context: demo" in out
    assert re.search(r"certificate-authority-data: <present, \d+ chars>", out)
    assert kubectl_nodes(out) == dict.fromkeys(NODES, "Ready")
    assert_no_secret_material(run)

    assert "cleaned up: operator stopped, sandbox down" in out
    assert run.record is not None and "operator" in run.record.services
    assert_nothing_left(run.record, demo_state_dir, run.host_processes)


def test_demo_keep_leaves_it_reachable_until_sandbox_down(demo_state_dir: Path) -> None:
    run = DemoRun(["demo", "--keep", "--state-dir", str(demo_state_dir)], demo_state_dir)
    try:
        code = run.wait()
    finally:
        run.kill()
    out = run.output
    assert code == 0, out
    time_to_ready(out)
    assert "left running (--keep):" in out and "cleaned up" not in out

    sandbox = Sandbox.load(demo_state_dir)
    assert sandbox.running()
    operator_pid = int(re.search(r"operator: +pid (\d+), log ", out)[1])  # type: ignore[index]
    assert sandbox.record.services["operator"].pid == operator_pid
    assert sandbox.record.services["operator"].alive()

    # The printed ssh command works as printed, with the host key strictly checked.
    ssh_line = re.search(r"ssh to a host: +(ssh .*)$", out, re.M)[1]  # type: ignore[index]
    argv = shlex.split(ssh_line)
    result = subprocess.run(
        [argv[0], "-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
         "-o", "GlobalKnownHostsFile=/dev/null", *argv[1:], "hostname"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "server-1"
    assert f"export KUBECONFIG={demo_state_dir}/kubeconfig.yaml" in out

    seen = snapshot_host_processes(sandbox.record)
    down = subprocess.run(
        [sys.executable, "-m", "rke2fleet", "sandbox", "down", "--state-dir", str(demo_state_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert_nothing_left(sandbox.record, demo_state_dir, seen)


def test_ctrl_c_cleans_up(demo_state_dir: Path) -> None:
    run = DemoRun(["demo", "--state-dir", str(demo_state_dir)], demo_state_dir)
    try:
        run.wait_for_line("cluster demo: phase Provisioning")
        run.proc.send_signal(signal.SIGINT)
        code = run.wait(120)
    finally:
        run.kill()
    out = run.output
    assert code == 130, out
    assert "interrupted: cleaning up" in out and "Traceback" not in out
    assert run.record is not None and "operator" in run.record.services
    assert_nothing_left(run.record, demo_state_dir, run.host_processes)


def test_not_ready_in_time_is_a_clear_error_with_the_log_tail(demo_state_dir: Path) -> None:
    # 1 s after the cluster is applied: three servers, one after the other, take longer than that
    # (3 s was enough for the whole 3+2 bring-up once the operator got faster).
    run = DemoRun(["demo", "--state-dir", str(demo_state_dir)], demo_state_dir, env={"RKE2FLEET_DEMO_TIMEOUT": "1"})
    try:
        code = run.wait()
    finally:
        run.kill()
    out = run.output
    assert code == 1, out
    assert "demo failed: the cluster was not Ready after 1s" in out and "Traceback" not in out
    assert re.search(r"^cluster demo: phase \w+, servers", out, re.M)  # the last table
    assert "lines of the operator log" in out and "kopf" in out
    assert_no_secret_material(run, ready=False)
    assert run.record is not None
    assert_nothing_left(run.record, demo_state_dir, run.host_processes)


def test_not_root_is_one_plain_sentence(tmp_path: Path) -> None:
    nobody = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "rke2fleet", "demo", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60, check=False, cwd="/",
    )  # fmt: skip
    assert nobody.returncode == 1, nobody.stdout + nobody.stderr
    assert "Traceback" not in nobody.stderr
    assert nobody.stderr.strip().startswith("demo failed: the sandbox hosts need root")
    assert "run `make demo`, which installs what is needed" in nobody.stderr
    assert not (tmp_path / "state").exists()
