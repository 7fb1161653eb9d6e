"""Kopf's liveness endpoint (`--health-port`, the Deployment's probes) answers on a real port."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest

from tests.e2e.conftest import E2E
from tests.e2e_observability.health_operator import HealthOperator

pytestmark = [pytest.mark.sandbox]


def _answers(op: HealthOperator) -> bool:
    try:
        op.healthz()
    except (OSError, urllib.error.URLError):
        return False
    return True


@pytest.mark.timeout(200)
def test_healthz_answers_200_while_running_and_goes_away_on_stop(e2e: E2E, tmp_path: Path) -> None:
    sb = e2e.up(0, 0)  # the API emulator only: liveness does not depend on any host
    kube = e2e.kube
    assert kube and sb.kubeconfig_path
    op = HealthOperator(sb.kubeconfig_path, tmp_path / "operator.log").start()
    e2e.operators.append(op)

    status, body = kube.wait("/healthz answers", lambda: _answers(op) and op.healthz(), timeout=20)
    assert status == 200
    assert isinstance(json.loads(body), dict)  # Kopf's probe results
    assert op.metric("rke2fleet_reconcile_total") == 0  # nothing to reconcile, yet alive

    op.stop()
    assert not _answers(op), "/healthz still answers after the operator stopped"
