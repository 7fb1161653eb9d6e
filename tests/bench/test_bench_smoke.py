"""A tiny run of `make bench` (no timing assertions), so the script cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(400)]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fleet_bench.py"
RUN_TIMEOUT = 270  # about 60 s on an idle 2-core machine; much more while other suites load it


def test_tiny_bench_run_prints_the_table_and_measures_every_part(tmp_path: Path) -> None:
    out_json = tmp_path / "figures.json"
    out_md = tmp_path / "table.md"
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), "--servers", "1", "--agents", "1", "--scale", "2", "--objects", "20",
         "--load-rounds", "1", "--load-shards", "1,2", "--rounds", "1", "--drift", "3",
         "--workdir", str(tmp_path / "work"), "--json", str(out_json), "--markdown", str(out_md)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the bench takes its sandboxes and operator down
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"the tiny bench run took over {RUN_TIMEOUT}s:\n{stdout[-3000:]}{stderr[-3000:]}")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    for row in ("converge round 1: operator", "converge round 1: floor", "converge round 1: ansible",
                "converge: operator / floor", "steady wake pass, 2 hosts",
                "steady drift pass, 2 hosts", "control plane: 20 RKE2Nodes",
                "floor: Kopf alone, same 20 objects (tick 2 s)",
                "floor: Kopf watching only, same 20 objects", "loop lag p99: operator / watch-only floor, round 1",
                "control plane: shard 0/2 of 20 RKE2Nodes"):  # fmt: skip
        assert row in stdout, stdout
    figures = json.loads(out_json.read_text())
    assert [c["tool"] for c in figures["converge"]] == ["operator", "floor", "ansible"]
    assert all(c["seconds"] > 0 for c in figures["converge"])
    # Counted on the hosts: the floor runs 2 commands per host (install + config, enable --now).
    floor_costs = figures["converge"][1]["costs"]
    assert [(c["role"], c["commands"]) for c in floor_costs] == [("server", 2.0), ("agent", 2.0)]
    wake = next(p for p in figures["steady"] if p["kind"] == "wake")
    # Counted on the hosts: every host saw its pass, and nothing was counted twice.
    assert wake["hosts"] == 2 and wake["hosts_missed"] == 0 and wake["sessions"] >= wake["passes"] >= 2
    # The operator, then Kopf alone (the floor) and Kopf watching only, each probed over a window
    # as long as the operator's.
    operator, floor, watch, shard = figures["load"]
    assert (operator["subject"], floor["subject"], watch["subject"]) == ("operator", "floor", "watch")
    assert shard["subject"] == "operator" and shard["shards"] == 2
    # A paused node never taken on costs one write (its status), counted by the emulator.
    assert operator["parked_nodes"] == 18 and operator["parked_writes"] == 18
    for load in (operator, floor, watch):
        assert load["objects"] == 20 and load["probes"] > 10 and load["peak_rss_mb"] > 20
    assert floor["window_s"] >= operator["seconds"] and watch["window_s"] >= operator["seconds"]
    assert watch["writes_by_kind"] == {}  # it only watches
    assert out_md.read_text().startswith("| measure | value | target |")
    # Every sandbox was taken down: nothing left in the work directory's sandboxes.
    assert not list((tmp_path / "work").glob("sandbox-*/runtime.json"))
    # The join token never reaches the output.
    inventory = json.loads((tmp_path / "work" / "inventory-ansible1.json").read_text())
    token_line = next(ln for ln in inventory["all"]["children"]["first_server"]["hosts"]["server-1"]["rke2_config"]
                      .splitlines() if ln.startswith("token:"))  # fmt: skip
    token = token_line.split(":", 1)[1].strip()
    assert token and token not in stdout and token not in stderr
