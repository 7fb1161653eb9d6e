"""The steady-state figures' arithmetic, without a sandbox: addresses past one /24, CPU of a
process tree, the drift pass of each host, the linearity row."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from fleetbench import hostcpu
from fleetbench.steady import PassResult, bursts
from fleetbench.steady_report import linearity_row, steady_rows

from rke2fleet_sandbox.world import _host_address


def test_hosts_past_240_go_on_into_the_next_block() -> None:
    assert _host_address(3, 0) == "127.0.3.10"
    assert _host_address(3, 239) == "127.0.3.249"
    assert _host_address(3, 240) == "127.0.4.10"
    assert len({_host_address(3, i) for i in range(500)}) == 500


def test_a_tree_counts_what_its_live_processes_reaped() -> None:
    # The child's work (~1 s of CPU) dwarfs what it may have spent before `before` is read, on a
    # loaded machine too.
    shell = subprocess.Popen(["sh", "-c", "sleep 0.3; python3 -c 'sum(range(100_000_000))'; sleep 5"])
    try:
        before = hostcpu.tree_cpu_s([shell.pid])
        deadline = time.monotonic() + 20
        while hostcpu.tree_cpu_s([shell.pid]) - before < 0.2 and time.monotonic() < deadline:
            time.sleep(0.1)
        # The child is reaped by the live shell: its CPU is in the shell's cutime, still counted.
        assert hostcpu.tree_cpu_s([shell.pid]) - before >= 0.2
        assert hostcpu.tree_cpu_s([os.getpid()]) >= hostcpu.tree_cpu_s([shell.pid])
    finally:
        shell.kill()
        shell.wait()


def test_the_drift_pass_is_the_burst_after_the_wake_burst() -> None:
    wake, drift = [0.0, 0.3], [10.2]
    assert bursts(wake + drift)[1:2] == [drift]
    assert bursts(wake)[1:2] == []


def _wake(hosts: int, seconds: float, operator: float, missed: int = 0) -> PassResult:
    return PassResult(hosts=hosts, kind="wake", seconds=seconds, passes=hosts - missed, sessions=hosts - missed,
                      max_per_pass=1, hosts_missed=missed, node_writes=0, operator_cpu_s=operator,
                      hosts_cpu_s=hosts * 0.02, missed=["agent-7"] if missed else [])  # fmt: skip


def test_linearity_is_per_host_cost_at_the_largest_over_the_smallest_scale() -> None:
    row = linearity_row([_wake(200, 4.0, 2.0), _wake(500, 12.5, 5.0)])
    assert row is not None
    assert "wall time 1.25" in row[1] and "operator CPU 1.00" in row[1] and "hosts' CPU 1.00" in row[1]


def test_a_host_without_a_pass_is_a_failure() -> None:
    rows = steady_rows([_wake(200, 4.0, 2.0, missed=1)], 0.03)
    assert ("FAILED", "steady wake pass, 200 hosts: 1 hosts without a pass (agent-7)", "") in rows
