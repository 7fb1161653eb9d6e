"""A real Prometheus (Debian's) scrapes the metrics endpoint; queries go through its HTTP API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rke2fleet import metrics

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.fixture
def metrics_endpoint() -> Iterator[int]:
    server = metrics.start_metrics_server(0, host="127.0.0.1")
    yield server.port
    server.stop()


@pytest.fixture
def prometheus(tmp_path: Path, metrics_endpoint: int) -> Iterator[int]:
    assert Path(PROMETHEUS).exists(), "prometheus missing: apt-get install prometheus"
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: rke2fleet\n    static_configs: [{{targets: ['127.0.0.1:{metrics_endpoint}']}}]\n"
    )
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"),
    )
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(port: int, promql: str, expected_count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            result = _query(port, promql)
        except OSError:
            result = []
        if len(result) == expected_count:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{promql}: expected {expected_count} series, last saw {result}")


@pytest.mark.timeout(90)
def test_prometheus_sees_node_ready_and_forgotten_nodes_go_stale(prometheus: int) -> None:
    nodes = [("prom-s1", "server"), ("prom-s2", "server"), ("prom-a1", "agent")]
    for node, role in nodes:
        metrics.set_node_state("prom", "lab", node, role, True, "v1.36.3+rke2r1", "v1.36.3+rke2r1")
    metrics.set_node_state("prom", "lab", "prom-a2", "agent", False, None, None)

    ready = _wait_for(prometheus, 'rke2fleet_node_ready{namespace="prom"} == 1', expected_count=3)
    assert {r["metric"]["node"] for r in ready} == {n for n, _ in nodes}
    assert all(r["metric"]["job"] == "rke2fleet" for r in ready)

    # A deleted node disappears from the exposition; Prometheus marks it stale on the next scrape.
    metrics.forget_node("prom", "lab", "prom-a2")
    _wait_for(prometheus, 'rke2fleet_node_ready{namespace="prom"}', expected_count=3)
