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
    kustomize_monitored_objects: list[dict[str, Any]], helm_objects: list[dict[str, Any]]
) -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert one(kustomize_monitored_objects, "PrometheusRule")["spec"]["groups"] == groups
    assert one(helm_objects, "PrometheusRule")["spec"]["groups"] == groups


def test_dashboard_configmaps_equal_the_json(
    kustomize_monitored_objects: list[dict[str, Any]], helm_objects: list[dict[str, Any]]
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for objects in (kustomize_monitored_objects, helm_objects):
        [cm] = [o for o in objects if o["kind"] == "ConfigMap" and "grafana" in o["metadata"]["name"]]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"]["rke2fleet-dashboard.json"]) == dashboard


# RKE2FleetOperatorDown, unit-tested with `promtool test rules` on made-up `up` series: job
# "rke2fleet" is what our ServiceMonitor produces (test_servicemonitor_scrape.py shows it).
def _up(namespace: str, pod: str, values: str) -> dict[str, str]:
    return {"series": f'up{{job="rke2fleet", namespace="{namespace}", pod="{pod}"}}', "values": values}


def _leads(namespace: str, pod: str, values: str) -> dict[str, str]:
    return {"series": f'rke2fleet_leader{{job="rke2fleet", namespace="{namespace}", pod="{pod}"}}',
            "values": values}  # fmt: skip


def _operator_down_case(name: str, series: list[dict[str, str]], expected: dict[str, list[dict[str, str]]]
                        ) -> dict[str, Any]:  # fmt: skip
    """A promtool test case; `expected` maps an eval time to the labels of the alerts firing then."""
    [rule] = [r for r in _rules() if r.get("alert") == "RKE2FleetOperatorDown"]
    description = rule["annotations"]["description"]

    def alert(labels: dict[str, str]) -> dict[str, Any]:
        where = f" in {labels['namespace']}" if "namespace" in labels else ""
        return {"exp_labels": {"severity": "critical", **labels},
                "exp_annotations": {"summary": f"rke2fleet operator{where} down or not scraped for 5 minutes",
                                    "description": description}}  # fmt: skip

    return {
        "name": name, "interval": "1m", "input_series": series,
        "alert_rule_test": [{"eval_time": at, "alertname": "RKE2FleetOperatorDown",
                             "exp_alerts": [alert(labels) for labels in firing]}
                            for at, firing in expected.items()],
    }  # fmt: skip


OPERATOR_DOWN_CASES = [
    _operator_down_case(  # both replicas scraped: the leader with rke2fleet_leader 1, the standby 0
        "leader and standby up",
        [_up("rke2fleet-system", "a", "1x20"), _leads("rke2fleet-system", "a", "1x20"),
         _up("rke2fleet-system", "b", "1x20"), _leads("rke2fleet-system", "b", "0x20")],
        {"10m": [], "20m": []}),
    _operator_down_case(  # a standby down alone is not an outage
        "leader up, standby down",
        [_up("rke2fleet-system", "a", "1x20"), _leads("rke2fleet-system", "a", "1x20"),
         _up("rke2fleet-system", "b", "0x20")],
        {"10m": [], "20m": []}),
    _operator_down_case(  # a leader change: nobody leads for 3 minutes, then the other pod does
        "handover shorter than 5 minutes",
        [_up("rke2fleet-system", "a", "1 1 1 0 0 0 0 0 0 0 0 0 0 0 0"),
         _leads("rke2fleet-system", "a", "1 1 1 _ _ _ _ _ _ _ _ _ _ _ _"),
         _up("rke2fleet-system", "b", "1x15"), _leads("rke2fleet-system", "b", "0 0 0 0 0 0 1 1 1 1 1 1 1 1 1")],
        {"5m": [], "8m": [], "14m": []}),
    _operator_down_case(  # replicas up, none holds the lease (e.g. the API refuses its writes)
        "nobody leads",
        [_up("rke2fleet-system", "a", "1x20"), _leads("rke2fleet-system", "a", "0x20"),
         _up("rke2fleet-system", "b", "1x20"), _leads("rke2fleet-system", "b", "0x20")],
        {"4m": [], "6m": [{"namespace": "rke2fleet-system"}]}),
    _operator_down_case(
        "every pod down", [_up("rke2fleet-system", "a", "0x20"), _up("rke2fleet-system", "b", "0x20")],
        {"4m": [], "6m": [{"namespace": "rke2fleet-system"}]}),
    _operator_down_case(  # no target at all: pods gone, or the ServiceMonitor not picked up
        "not scraped", [{"series": 'up{job="node-exporter", instance="n1"}', "values": "1x20"}],
        {"4m": [], "6m": [{"job": "rke2fleet"}]}),
    _operator_down_case(  # two installs (namespaced mode, one per team): the one down is named
        "one of two installs down", [_up("team-a", "a", "1x20"), _leads("team-a", "a", "1x20"),
                                     _up("team-b", "b", "0x20")],
        {"6m": [{"namespace": "team-b"}]}),
]


def _promtool_test(tmp_path: Path, cases: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    tests = tmp_path / "operator-down-test.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": cases}))
    return subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)


def test_operator_down_alert_unit_tests_pass(tmp_path: Path) -> None:
    result = _promtool_test(tmp_path, OPERATOR_DOWN_CASES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_operator_down_alert_unit_tests_can_fail(tmp_path: Path) -> None:
    """Expecting silence while every pod is down makes promtool fail: the cases above check something."""
    wrong = _operator_down_case("every pod down, wrongly expected quiet",
                                [_up("rke2fleet-system", "a", "0x20")], {"6m": []})  # fmt: skip
    result = _promtool_test(tmp_path, [wrong])
    assert result.returncode != 0
    assert "RKE2FleetOperatorDown" in result.stdout + result.stderr
