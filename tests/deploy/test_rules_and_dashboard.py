"""Alert rules pass promtool; every metric the rules and the dashboard read is exported."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_testlib import DEPLOY, metric_names_in, one

from rke2fleet.metrics import exported_metric_names

RULES = DEPLOY / "prometheus" / "rke2fleet-rules.yaml"
DASHBOARD = DEPLOY / "grafana" / "rke2fleet-dashboard.json"
PROMTOOL = "/usr/bin/promtool"


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    variables = dashboard["templating"]["list"]
    exprs += [v["query"]["query"] for v in variables if isinstance(v.get("query"), dict)]
    return exprs


def _promtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_rules() -> None:
    assert Path(PROMTOOL).exists(), "promtool missing: apt-get install prometheus"
    result = _promtool_check(RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: rate(up[5m]\n")
    assert _promtool_check(broken).returncode != 0


def test_the_issue_alerts_exist() -> None:
    alerts = {r["alert"]: r for r in _rules()}
    assert alerts["RKE2ClusterNotReady"]["for"] == "15m"
    assert "rke2fleet_cluster_phase" in alerts["RKE2ClusterNotReady"]["expr"]
    assert "rke2fleet_node_reachable" in alerts["RKE2NodeUnreachable"]["expr"]
    assert "rke2fleet_upgrade_halted" in alerts["RKE2UpgradeHalted"]["expr"]
    assert "rke2fleet_drift_detected_total" in alerts["RKE2NodeRepeatedDrift"]["expr"]
    assert 'result=~"error|permanent_error"' in alerts["RKE2FleetReconcileErrors"]["expr"]  # waiting is not an error


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_used_is_exported(source: str) -> None:
    exprs = [r["expr"] for r in _rules()] if source == "rules" else _dashboard_exprs()
    used = set().union(*(metric_names_in(e) for e in exprs))
    assert used, f"no rke2fleet_ metric found in the {source}"
    assert used - exported_metric_names() == set()


def test_metric_name_parsing_catches_unknown_names() -> None:
    used = metric_names_in("rate(rke2fleet_reconcile_duration_seconds_bucket[5m]) + rke2fleet_nope_total")
    assert used == {"rke2fleet_reconcile_duration_seconds", "rke2fleet_nope_total"}
    assert "rke2fleet_nope_total" not in exported_metric_names()


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    titles = " | ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for wanted in ("cluster phases", "nodes ready by role", "versions", "reconcile rate", "reconcile errors",
                   "latency", "drift", "upgrades in progress"):
        assert wanted in titles


def test_prometheusrule_objects_carry_the_same_groups(
    kustomize_objects: list[dict[str, Any]], helm_objects: list[dict[str, Any]]
) -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert one(kustomize_objects, "PrometheusRule")["spec"]["groups"] == groups
    assert one(helm_objects, "PrometheusRule")["spec"]["groups"] == groups


def test_dashboard_configmaps_equal_the_json(
    kustomize_objects: list[dict[str, Any]], helm_objects: list[dict[str, Any]]
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for objects in (kustomize_objects, helm_objects):
        [cm] = [o for o in objects if o["kind"] == "ConfigMap" and "grafana" in o["metadata"]["name"]]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"]["rke2fleet-dashboard.json"]) == dashboard
