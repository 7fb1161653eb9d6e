"""Certificates near expiry, end to end: the operator reads their dates into status and the
expiry metric, a real Prometheus fires RKE2CertificateExpiresSoon from it; with rotateBeforeDays
covering them the operator rotates them (servers one at a time, then agents) and the alert
resolves."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from rke2fleet.api.conditions import parse_time
from tests.e2e.conftest import E2E
from tests.e2e.test_health import manifests, quorum_violations, ready_node, world_since
from tests.e2e_observability.prometheus_server import PrometheusServer

pytestmark = [pytest.mark.sandbox]

ALERT = 'ALERTS{alertname="RKE2CertificateExpiresSoon",alertstate="firing"}'
DAY = 86400.0


def days_left(kube: Any, name: str) -> float | None:
    certs = ((kube.get("rke2nodes", name) or {}).get("status") or {}).get("certificates") or {}
    if not certs.get("notAfter"):
        return None
    return (parse_time(certs["notAfter"]).timestamp() - time.time()) / DAY


@pytest.mark.timeout(600)
def test_certificates_near_expiry_alert_then_rotate_in_order(
    e2e: E2E, prometheus: Callable[[int], PrometheusServer]
) -> None:
    sb = e2e.up(3, 2)
    kube = e2e.kube
    assert kube
    # rotateBeforeDays 1 at first: the dates are watched, nothing is rotated yet.
    certs = {"rotateBeforeDays": 1, "checkInterval": "2s"}
    kube.apply(manifests(sb, "crt", certificates=certs, healthCheckInterval="2s", driftCheckInterval="2s"))
    op = e2e.operator()
    prom = prometheus(op.metrics_port)
    kube.wait_phase("rke2clusters", "crt", "Ready", timeout=120)
    fresh = kube.wait("dates read", lambda: all((d := days_left(kube, h.name)) and d > 300 for h in sb.hosts), 30)
    assert fresh
    assert prom.wait("expiry series", lambda: len(prom.query("rke2fleet_certificate_expiry_timestamp_seconds"))
                     == len(sb.hosts), 30)  # fmt: skip
    assert prom.query(ALERT) == []

    for h in sb.hosts:  # 365-day certificates, 345 days old: 20 days left
        sb.age_certificates(h, 345)
    kube.wait("20 days left in status", lambda: all((d := days_left(kube, h.name)) and d < 21 for h in sb.hosts), 30)
    firing = prom.wait("alert firing for every node", lambda: (r := prom.query(ALERT)) and len(r) == len(sb.hosts)
                       and r, 30)  # fmt: skip
    assert {r["metric"]["node"] for r in firing} == {h.name for h in sb.hosts}
    assert {h.name for h in sb.hosts if ready_node(kube, h.name)} == {h.name for h in sb.hosts}  # nothing rotated

    since = time.time()
    kube.patch_spec("rke2clusters", "crt", {"certificates": {"rotateBeforeDays": 60, "checkInterval": "2s"}})
    kube.wait("every node rotated", lambda: all((d := days_left(kube, h.name)) and d > 300 for h in sb.hosts), 240)
    kube.wait_phase("rke2clusters", "crt", "Ready", timeout=60)
    prom.wait("alert resolved", lambda: prom.query(ALERT) == [], 30)

    events = world_since(sb, since)
    downs = {h.name: [e["t"] for e in events if e["node"] == h.name and e["event"] == "down"] for h in sb.hosts}
    assert all(len(t) == 1 for t in downs.values()), downs  # each stopped once, for its rotation
    ups = {h.name: max(e["t"] for e in events if e["node"] == h.name and e["event"] == "ready") for h in sb.hosts}
    server_downs = sorted((downs[h.name][0], h.name) for h in sb.servers)
    for (_, a), (t1, _) in itertools.pairwise(server_downs):
        assert t1 > ups[a], f"two servers down at once ({a})"
    last_server = max(ups[h.name] for h in sb.servers)
    assert all(downs[h.name][0] > last_server for h in sb.agents), "an agent went before the servers"
    assert not quorum_violations(world_since(sb, 0))
    assert not [e for e in events if e["event"] == "start-refused"]
