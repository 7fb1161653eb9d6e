"""A real Prometheus scrapes the real operator while it brings up a sandbox cluster; the node,
cluster and operator series are read back through Prometheus's HTTP API, and the alert rules
and dashboard queries are evaluated against those real series."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from rke2fleet_sandbox.manifests import cluster_manifests
from tests.e2e.conftest import E2E
from tests.e2e_observability.prometheus_server import PrometheusServer

pytestmark = [pytest.mark.sandbox]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rke2fleet-rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "rke2fleet-dashboard.json"
# Series only an unhealthy or changing fleet has: a healthy bring-up never creates them.
ONLY_ON_TROUBLE = {"rke2fleet_drift_detected_total", "rke2fleet_upgrade_halted"}
ERROR_RATIO_ALERTS = {"RKE2FleetReconcileErrors"}
METRIC_NAME = re.compile(r"\brke2fleet_[a-z0-9_]+")


def _base_metric(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_created"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _dashboard_queries(namespace: str, cluster: str) -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", []) if t.get("expr")]
    return [e.replace("$namespace", namespace).replace("$cluster", cluster) for e in exprs]


@pytest.mark.timeout(400)
def test_prometheus_sees_every_node_ready_and_rules_evaluate(
    e2e: E2E, prometheus: Callable[[int], PrometheusServer]
) -> None:
    sb = e2e.up(1, 2)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "obs"))
    started = time.monotonic()
    op = e2e.operator()
    prom = prometheus(op.metrics_port)

    # Every node Ready, one series each, as Prometheus stores them (not the exposition).
    expected = {h.name: h.role for h in sb.hosts}
    ready = prom.wait(
        "rke2fleet_node_ready == 1 for every node",
        lambda: (r := prom.query("rke2fleet_node_ready == 1")) and len(r) == len(expected) and r,
        timeout=90,
    )
    print(f"1+2 nodes Ready in Prometheus {time.monotonic() - started:.1f}s after operator start")
    assert {r["metric"]["node"]: r["metric"]["role"] for r in ready} == expected
    assert {(r["metric"]["namespace"], r["metric"]["cluster"], r["metric"]["job"]) for r in ready} == {
        ("default", "obs", "rke2fleet")
    }
    assert {n["metadata"]["name"] for n in kube.nodes()} == set(expected)

    phase = prom.wait(
        "cluster phase Ready", lambda: prom.query('rke2fleet_cluster_phase{phase="Ready"} == 1'), timeout=30
    )
    assert [(r["metric"]["namespace"], r["metric"]["cluster"]) for r in phase] == [("default", "obs")]
    assert (kube.get("rke2clusters", "obs") or {}).get("status", {}).get("phase") == "Ready"
    assert prom.query('rke2fleet_cluster_phase{phase!="Ready"} == 1') == []

    reconciles = prom.query('sum by (kind) (rke2fleet_reconcile_total{result="ok"}) > 0')
    assert {r["metric"]["kind"] for r in reconciles} == {"RKE2Cluster", "RKE2Node"}
    assert prom.query("sum(rke2fleet_reconcile_total) > 0")
    ssh_ok = prom.query('sum(rke2fleet_ssh_commands_total{result="ok"})')
    assert ssh_ok and float(ssh_ok[0]["value"][1]) > 0
    versions = prom.query("rke2fleet_node_version_info == 1")
    assert {r["metric"]["node"]: r["metric"]["running"] for r in versions} == dict.fromkeys(expected, "v1.35.7+rke2r1")

    # The alert rules are loaded and evaluate without error against the real series.
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule_names = {r.get("alert") or r.get("record") for g in groups for r in g["rules"]}

    def all_evaluated() -> list[dict[str, object]] | None:
        rules = prom.rules()
        done = all(r.get("health") in ("ok", "err") for r in rules) and len(rules) == len(rule_names)
        return rules if done else None

    rules = prom.wait("every rule evaluated", all_evaluated, timeout=20)
    assert {r["name"] for r in rules} == rule_names
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok" or r.get("lastError")}
    assert broken == {}

    # Once a Ready state is evaluated, a healthy cluster has no alert firing or pending. The error
    # ratio is the exception: the handlers count "waiting for the init server" as temporary_error,
    # so a normal bring-up crosses its 25% (see the report; the rule is not ours to change here).
    def quiet() -> dict[str, object] | None:
        states = {r["name"]: r.get("state") for r in prom.rules() if r["name"] not in ERROR_RATIO_ALERTS}
        return None if any(s != "inactive" for s in states.values()) else states

    prom.wait("no alert pending or firing on a Ready cluster", quiet, timeout=10)

    # Every metric the rules and the dashboard use is exported by the running operator, except
    # the few that only exist once something goes wrong (drift, a halted upgrade).
    # A first start's certificates are read by the node's pass a few seconds after it (off the
    # bring-up's path): every node has its expiry soon after the cluster is Ready.
    prom.wait(
        "certificate expiry of every node",
        lambda: len(prom.query("rke2fleet_certificate_expiry_timestamp_seconds")) == len(expected),
        timeout=40,
    )
    queries = _dashboard_queries("default", "obs")
    used = {_base_metric(m) for text in [*queries, *(r["query"] for r in rules)] for m in METRIC_NAME.findall(text)}
    seen = {
        _base_metric(r["metric"]["__name__"]) for r in prom.query('group by (__name__) ({__name__=~"rke2fleet_.+"})')
    }
    print(f"used by rules/dashboard but never exported in this run: {sorted(used - seen)}")
    assert used - seen <= ONLY_ON_TROUBLE, sorted(used - seen)

    # Every dashboard query runs; those about the healthy state return data (rate() needs two
    # scrapes of a series: a fast bring-up may be done before the second, so wait for it).
    def unexpected_empty() -> list[str]:
        empty = [q for q in queries if not prom.query(q)]
        return [q for q in empty if not re.search(r'drift|upgrade_halted|result!="ok"|== 0\b', q)]

    deadline = time.monotonic() + 30
    while (missing := unexpected_empty()) and time.monotonic() < deadline:
        time.sleep(1)
    assert missing == []
