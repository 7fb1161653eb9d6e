from __future__ import annotations

from collections.abc import Callable

import pytest
from metrics_scrape import scrape, series

from rke2fleet import metrics

NS = Callable[[], str]


def test_reconcile_and_ssh_counters_and_histograms() -> None:
    before = series("rke2fleet_reconcile_total", kind="RKE2Node", result="temporary_error")
    start = before[0][2] if before else 0.0
    metrics.observe_reconcile("RKE2Node", "temporary_error", 0.3)
    metrics.observe_reconcile("RKE2Node", "temporary_error", 0.2)
    [(_, _, value)] = series("rke2fleet_reconcile_total", kind="RKE2Node", result="temporary_error")
    assert value == start + 2
    [(_, _, le_half)] = series("rke2fleet_reconcile_duration_seconds_bucket", kind="RKE2Node", le="0.5")
    assert le_half >= 2

    metrics.observe_ssh_command("unreachable", 0.004)
    [(_, _, count)] = series("rke2fleet_ssh_commands_total", result="unreachable")
    assert count >= 1
    [(_, _, in_5ms)] = series("rke2fleet_ssh_command_duration_seconds_bucket", le="0.005")
    assert in_5ms >= 1


def test_unknown_enumerated_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="reconcile result"):
        metrics.observe_reconcile("RKE2Node", "boom", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        metrics.observe_reconcile("Pod", "ok", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        metrics.set_cluster_state("ns", "c", "Happy", {}, upgrading=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a Kubernetes object name"):
        metrics.set_node_state("ns", "c", "Bad Name", "agent", True, None, None)


def test_cluster_phase_is_one_hot_over_the_known_phases(unique_ns: NS) -> None:
    ns = unique_ns()
    metrics.set_cluster_state(ns, "prod", "Provisioning", {("server", "ready"): 1}, upgrading=False)
    metrics.set_cluster_state(ns, "prod", "Ready", {("server", "ready"): 3, ("agent", "not_ready"): 2}, True)
    phases = {s[1]["phase"]: s[2] for s in series("rke2fleet_cluster_phase", namespace=ns, cluster="prod")}
    assert phases == {
        "Pending": 0, "Provisioning": 0, "Ready": 1, "Degraded": 0, "Failed": 0, "Paused": 0, "Restoring": 0,
    }
    nodes = {
        (s[1]["role"], s[1]["state"]): s[2]
        for s in series("rke2fleet_cluster_nodes", namespace=ns, cluster="prod")
    }
    assert nodes == {("server", "ready"): 3, ("server", "not_ready"): 0, ("agent", "ready"): 0,
                     ("agent", "not_ready"): 2}
    [(_, _, upgrading)] = series("rke2fleet_upgrade_in_progress", namespace=ns, cluster="prod")
    assert upgrading == 1


def test_version_change_replaces_the_info_series(unique_ns: NS) -> None:
    ns = unique_ns()
    metrics.set_node_state(ns, "c1", "s1", "server", False, "v1.35.7+rke2r1", "v1.35.7+rke2r1")
    metrics.set_node_state(ns, "c1", "s1", "server", True, "v1.36.3+rke2r1", "v1.35.7+rke2r1")
    info = series("rke2fleet_node_version_info", namespace=ns, node="s1")
    assert [(s[1]["installed"], s[1]["running"], s[2]) for s in info] == [
        ("v1.36.3+rke2r1", "v1.35.7+rke2r1", 1.0)
    ]
    [(_, labels, ready)] = series("rke2fleet_node_ready", namespace=ns, node="s1")
    assert (labels["role"], ready) == ("server", 1.0)


def test_versions_that_are_not_rke2_versions_do_not_become_labels(unique_ns: NS) -> None:
    ns = unique_ns()
    metrics.set_node_state(ns, "c1", "a1", "agent", False, None, "rke2 version $(curl evil) oops")
    [(_, labels, _)] = series("rke2fleet_node_version_info", namespace=ns, node="a1")
    assert (labels["installed"], labels["running"]) == ("", "invalid")
    metrics.set_node_state(ns, "c1", "a1", "agent", False, "v1.36.4-rc1+rke2r1", None)
    [(_, labels, _)] = series("rke2fleet_node_version_info", namespace=ns, node="a1")
    assert (labels["installed"], labels["running"]) == ("v1.36.4-rc1+rke2r1", "")


def test_free_text_drift_kinds_are_counted_as_other(unique_ns: NS) -> None:
    ns = unique_ns()
    metrics.record_drift(ns, "c", "n", "config file changed on host 10.0.0.7!")
    metrics.record_drift(ns, "c", "n", "service")
    kinds = {s[1]["kind"]: s[2] for s in series("rke2fleet_drift_detected_total", namespace=ns)}
    assert kinds == {"other": 1.0, "service": 1.0}


def test_forget_node_removes_only_that_nodes_series(unique_ns: NS) -> None:
    ns = unique_ns()
    for node in ("n1", "n2"):
        metrics.set_node_state(ns, "c", node, "agent", True, "v1.36.3+rke2r1", "v1.36.3+rke2r1")
        metrics.set_node_reachable(ns, "c", node, True)
        metrics.record_drift(ns, "c", node, "config")
        metrics.mark_reconciled("RKE2Node", ns, node)
    metrics.forget_node(ns, "c", "n1")
    assert not [s for s in _everything(ns) if s[1].get("node") == "n1" or s[1].get("name") == "n1"]
    remaining = {s[0] for s in _everything(ns) if s[1].get("node") == "n2" or s[1].get("name") == "n2"}
    assert {
        "rke2fleet_node_ready",
        "rke2fleet_node_reachable",
        "rke2fleet_node_version_info",
        "rke2fleet_drift_detected_total",
        "rke2fleet_last_successful_reconcile_timestamp_seconds",
    } <= remaining


def test_a_role_change_or_a_forgotten_node_leaves_one_series_each(unique_ns: NS) -> None:
    ns = unique_ns()
    metrics.set_node_state(ns, "c", "n1", "agent", True, "v1.36.3+rke2r1", "v1.36.3+rke2r1")
    metrics.set_node_state(ns, "c", "n1", "server", False, "v1.36.3+rke2r1", "v1.36.3+rke2r1")
    [(_, labels, ready)] = series("rke2fleet_node_ready", namespace=ns, node="n1")
    assert (labels["role"], ready) == ("server", 0.0)
    metrics.forget_node(ns, "c", "n1")
    metrics.set_node_state(ns, "c", "n1", "agent", True, None, "v1.36.3+rke2r1")
    [(_, labels, _)] = series("rke2fleet_node_ready", namespace=ns, node="n1")
    assert labels["role"] == "agent"
    assert len(series("rke2fleet_node_version_info", namespace=ns, node="n1")) == 1


def test_forget_cluster_removes_the_cluster_and_its_nodes(unique_ns: NS) -> None:
    ns = unique_ns()
    for cluster in ("gone", "kept"):
        metrics.set_cluster_state(ns, cluster, "Ready", {("server", "ready"): 1}, upgrading=False)
        metrics.set_upgrade_halted(ns, cluster, False)
        metrics.set_node_state(ns, cluster, f"{cluster}-s1", "server", True, "v1.36.3+rke2r1", None)
        metrics.record_drift(ns, cluster, f"{cluster}-s1", "service")
        metrics.mark_reconciled("RKE2Cluster", ns, cluster)
        metrics.mark_reconciled("RKE2Node", ns, f"{cluster}-s1")
    metrics.forget_cluster(ns, "gone")
    leftovers = [s for s in _everything(ns) if "gone" in (s[1].get("cluster"), s[1].get("name"))
                 or s[1].get("name") == "gone-s1"]
    assert leftovers == []
    assert series("rke2fleet_cluster_phase", namespace=ns, cluster="kept")
    assert series("rke2fleet_node_ready", namespace=ns, node="kept-s1")
    assert series("rke2fleet_last_successful_reconcile_timestamp_seconds", namespace=ns, name="kept")


def test_mark_reconciled_sets_the_timestamp(unique_ns: NS) -> None:
    ns = unique_ns()
    metrics.mark_reconciled("RKE2Cluster", ns, "c", now=1_700_000_000.0)
    [(_, _, value)] = series(
        "rke2fleet_last_successful_reconcile_timestamp_seconds", kind="RKE2Cluster", namespace=ns, name="c"
    )
    assert value == 1_700_000_000.0


def test_exported_names_cover_the_issue_list_and_nothing_unprefixed() -> None:
    names = metrics.exported_metric_names()
    wanted = {
        "rke2fleet_reconcile_total", "rke2fleet_reconcile_duration_seconds", "rke2fleet_ssh_commands_total",
        "rke2fleet_ssh_command_duration_seconds", "rke2fleet_cluster_phase", "rke2fleet_cluster_nodes",
        "rke2fleet_node_ready", "rke2fleet_node_version_info", "rke2fleet_drift_detected_total",
        "rke2fleet_upgrade_in_progress", "rke2fleet_last_successful_reconcile_timestamp_seconds",
    }
    assert wanted <= names
    assert all(n.startswith("rke2fleet_") for n in names)


def _everything(ns: str) -> list[tuple[str, dict[str, str], float]]:
    return [s for s in scrape() if s[1].get("namespace") == ns]
