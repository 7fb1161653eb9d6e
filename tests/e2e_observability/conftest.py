"""Fixtures for the observability end-to-end tests: the `e2e` fixture of tests/e2e, reused as is.

Re-exporting the fixture and the report hook (which tells the fixture whether the test failed,
so the secret scan is skipped on failure) makes them apply to this folder too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import e2e, pytest_runtest_makereport
from tests.e2e_observability.prometheus_server import PrometheusServer

__all__ = ["e2e", "prometheus", "pytest_runtest_makereport"]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rke2fleet-rules.yaml"


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int], PrometheusServer]]:
    started: list[PrometheusServer] = []

    def start(metrics_port: int) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        server = PrometheusServer(workdir, [f"127.0.0.1:{metrics_port}"], [RULES])
        started.append(server)
        return server.start()

    yield start
    procs = [s.proc for s in started]
    for server in started:
        server.stop()
    assert all(p is None or p.poll() is not None for p in procs), "prometheus still running"

