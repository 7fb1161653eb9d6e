"""A tiny run of `make bench` (no timing assertions), so the script cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sandbox]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fleet_bench.py"


def test_tiny_bench_run_prints_the_table_and_measures_every_part(tmp_path: Path) -> None:
    out_json = tmp_path / "figures.json"
    out_md = tmp_path / "table.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--servers", "1", "--agents", "1", "--scale", "2", "--objects", "12",
         "--rounds", "1", "--drift", "3", "--workdir", str(tmp_path / "work"),
         "--json", str(out_json), "--markdown", str(out_md)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for row in ("converge round 1: operator", "converge round 1: ansible", "steady wake pass, 2 hosts",
                "steady drift pass, 2 hosts", "control plane: 12 RKE2Nodes"):  # fmt: skip
        assert row in proc.stdout, proc.stdout
    figures = json.loads(out_json.read_text())
    assert [c["tool"] for c in figures["converge"]] == ["operator", "ansible"]
    assert all(c["seconds"] > 0 for c in figures["converge"])
    wake = next(p for p in figures["steady"] if p["kind"] == "wake")
    # Counted on the hosts: every host saw its pass, and nothing was counted twice.
    assert wake["hosts"] == 2 and wake["hosts_missed"] == 0 and wake["sessions"] >= wake["passes"] >= 2
    load = figures["load"]
    assert load["probes"] > 10 and load["peak_rss_mb"] > 20
    assert out_md.read_text().startswith("| measure | value | target |")
    # Every sandbox was taken down: nothing left in the work directory's sandboxes.
    assert not list((tmp_path / "work").glob("sandbox-*/runtime.json"))
    # The join token never reaches the output.
    inventory = json.loads((tmp_path / "work" / "inventory-ansible1.json").read_text())
    token_line = next(ln for ln in inventory["all"]["children"]["first_server"]["hosts"]["server-1"]["rke2_config"]
                      .splitlines() if ln.startswith("token:"))  # fmt: skip
    token = token_line.split(":", 1)[1].strip()
    assert token and token not in proc.stdout and token not in proc.stderr
