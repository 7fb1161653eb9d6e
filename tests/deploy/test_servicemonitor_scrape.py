"""Our ServiceMonitors, scraped the way the Prometheus Operator configures Prometheus, by Debian's
real `prometheus`: the operator's own `namespace` label (the RKE2Cluster's) survives because of
`honorLabels: true`; without it the scrape turns it into `exported_namespace`.

There is no Kubernetes here, so no Kubernetes service discovery: each target is a static target
carrying the `__meta_kubernetes_*` labels the endpoints discovery gives a Service's endpoint
(taken from the rendered Service and Deployment), and the relabeling is what prometheus-operator
generates for a ServiceMonitor endpoint. `scrape_config` below ports `generateServiceMonitorConfig`
(pkg/prometheus/promcfg.go, prometheus-operator commit 6adcebc5076c, default settings: role
endpoints, relabel selector mechanism, one shard; its golden file
TestServiceMonitorWithDefaultServiceDiscoveryRole.golden has the same rules in the same order).
The one change: a 1 s scrape interval instead of the ServiceMonitor's 30 s, to keep the test short.

The endpoint scraped is the operator's real metrics server (rke2fleet.metrics) on its real registry.
"""

from __future__ import annotations

import copy
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_testlib import DEPLOY, one, render_helm
from tests.e2e.harness import free_port
from tests.e2e_observability.prometheus_server import PROMETHEUS, PrometheusServer

from rke2fleet import metrics

RULES = DEPLOY / "prometheus" / "rke2fleet-rules.yaml"
SHARD = "0"  # $(SHARD), substituted by prometheus-operator's config reloader: shard 0 of 1


def _sanitize(name: str) -> str:
    """prometheus-operator's sanitizeLabelName."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def scrape_config(monitor: dict[str, Any], index: int = 0) -> dict[str, Any]:
    """The scrape job prometheus-operator generates for endpoint `index` of a ServiceMonitor, without
    its kubernetes_sd_configs (role endpoints, the monitor's namespace), which the caller replaces."""
    meta, spec = monitor["metadata"], monitor["spec"]
    endpoint = spec["endpoints"][index]
    # What this port covers; anything else in our ServiceMonitors must be ported first.
    assert set(spec) <= {"selector", "endpoints", "jobLabel", "targetLabels", "podTargetLabels"}, spec
    assert set(spec["selector"]) == {"matchLabels"}, spec["selector"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "honorLabels"}, endpoint

    config: dict[str, Any] = {
        "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
    }
    if "interval" in endpoint:
        config["scrape_interval"] = endpoint["interval"]
    if "scrapeTimeout" in endpoint:
        config["scrape_timeout"] = endpoint["scrapeTimeout"]
    if "path" in endpoint:
        config["metrics_path"] = endpoint["path"]

    relabel: list[dict[str, Any]] = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
    for key, value in sorted(spec["selector"]["matchLabels"].items()):
        relabel.append({
            "action": "keep",
            "source_labels": [f"__meta_kubernetes_service_label_{_sanitize(key)}",
                              f"__meta_kubernetes_service_labelpresent_{_sanitize(key)}"],
            "regex": f"({value});true",
        })  # fmt: skip
    if "port" in endpoint:
        relabel.append({"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"],
                        "regex": endpoint["port"]})  # fmt: skip
    address_target = ["__meta_kubernetes_endpoint_address_target_kind",
                      "__meta_kubernetes_endpoint_address_target_name"]  # fmt: skip
    relabel += [
        {"source_labels": address_target, "separator": ";", "regex": "Node;(.*)", "replacement": "${1}",
         "target_label": "node"},
        {"source_labels": address_target, "separator": ";", "regex": "Pod;(.*)", "replacement": "${1}",
         "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
    ]  # fmt: skip
    for label in spec.get("targetLabels", []):
        relabel.append({"source_labels": [f"__meta_kubernetes_service_label_{_sanitize(label)}"],
                        "target_label": _sanitize(label), "regex": "(.+)", "replacement": "${1}"})  # fmt: skip
    for label in spec.get("podTargetLabels", []):
        relabel.append({"source_labels": [f"__meta_kubernetes_pod_label_{_sanitize(label)}"],
                        "target_label": _sanitize(label), "regex": "(.+)", "replacement": "${1}"})  # fmt: skip
    relabel.append({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"})
    if spec.get("jobLabel"):
        relabel.append({"source_labels": [f"__meta_kubernetes_service_label_{_sanitize(spec['jobLabel'])}"],
                        "target_label": "job", "regex": "(.+)", "replacement": "${1}"})  # fmt: skip
    if "port" in endpoint:
        relabel.append({"target_label": "endpoint", "replacement": endpoint["port"]})
    relabel += [  # sharding, one shard
        {"source_labels": ["__address__", "__tmp_hash"], "target_label": "__tmp_hash", "regex": "(.+);",
         "replacement": "$1", "action": "replace"},
        {"source_labels": ["__tmp_hash"], "target_label": "__tmp_hash", "modulus": 1, "action": "hashmod"},
        {"source_labels": ["__tmp_hash", "__tmp_disable_sharding"], "regex": f"{SHARD};|.+;.+", "action": "keep"},
    ]  # fmt: skip
    config["relabel_configs"] = relabel
    return config


def endpoint_target(objects: list[dict[str, Any]], address: str, pod: str) -> dict[str, Any]:
    """A static target with the labels Kubernetes endpoints discovery gives one ready pod behind the
    rendered Service: the Service's namespace, name and labels, the port's name, the pod and container."""
    service = one(objects, "Service")
    [port] = service["spec"]["ports"]
    pod_spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    [container] = [c for c in pod_spec["containers"] if port["targetPort"] in {p["name"] for p in c["ports"]}]
    labels = {
        "__meta_kubernetes_namespace": service["metadata"]["namespace"],
        "__meta_kubernetes_service_name": service["metadata"]["name"],
        "__meta_kubernetes_endpoint_port_name": port["name"],
        "__meta_kubernetes_endpoint_port_protocol": port["protocol"],
        "__meta_kubernetes_endpoint_ready": "true",
        "__meta_kubernetes_endpoint_address_target_kind": "Pod",
        "__meta_kubernetes_endpoint_address_target_name": pod,
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_container_name": container["name"],
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_ready": "true",
    }
    for key, value in service["metadata"]["labels"].items():
        labels[f"__meta_kubernetes_service_label_{_sanitize(key)}"] = value
        labels[f"__meta_kubernetes_service_labelpresent_{_sanitize(key)}"] = "true"
    return {"targets": [address], "labels": labels}


def _alert_expr(name: str) -> str:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    [rule] = [r for r in rules if r.get("alert") == name]
    expr: str = rule["expr"]
    return expr


@pytest.fixture(scope="module")
def metrics_port() -> Iterator[int]:
    """The operator's metrics endpoint with one Ready cluster `fleet/prod` and one reconcile counted."""
    metrics.set_cluster_state("fleet", "prod", "Ready", {("server", "ready"): 1}, upgrading=False)
    metrics.mark_reconciled("RKE2Cluster", "fleet", "prod")
    metrics.observe_reconcile("RKE2Cluster", "ok", 0.2)  # a counter and a histogram: no _created series
    metrics.set_leader(True)
    server = metrics.start_metrics_server(0, host="127.0.0.1")
    yield server.port
    server.stop()
    metrics.set_leader(False)
    metrics.forget_cluster("fleet", "prod")


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory,
    metrics_port: int,
    kustomize_monitored_objects: list[dict[str, Any]],
) -> Iterator[PrometheusServer]:
    """One Prometheus, three ServiceMonitor jobs: kustomize's (a leader and a standby pod), the chart's
    (a leader; release `x` in namespace `ops`, so its objects' names differ from kustomize's), and
    kustomize's with honorLabels removed (a leader). Pods are told apart by `pod`."""
    helm_objects = render_helm(name="x", namespace="ops")
    assert Path(PROMETHEUS).exists(), "prometheus missing: apt-get install prometheus"
    leader = f"127.0.0.1:{metrics_port}"
    standby = f"127.0.0.1:{free_port()}"  # a standby pod that is down (a standby up serves rke2fleet_leader 0)

    kustomize_monitor = one(kustomize_monitored_objects, "ServiceMonitor")
    without_honor = copy.deepcopy(kustomize_monitor)
    without_honor["metadata"]["name"] = "rke2fleet-without-honorlabels"
    del without_honor["spec"]["endpoints"][0]["honorLabels"]
    jobs = [
        (kustomize_monitor, kustomize_monitored_objects,
         [endpoint_target(kustomize_monitored_objects, leader, "kustomize-leader"),
          endpoint_target(kustomize_monitored_objects, standby, "kustomize-standby")]),
        (one(helm_objects, "ServiceMonitor"), helm_objects, [endpoint_target(helm_objects, leader, "helm-leader")]),
        (without_honor, kustomize_monitored_objects,
         [endpoint_target(kustomize_monitored_objects, leader, "no-honor-leader")]),
    ]  # fmt: skip
    scrape_configs = []
    for monitor, _objects, targets in jobs:
        job = scrape_config(monitor)
        job["scrape_interval"] = job["scrape_timeout"] = "1s"  # instead of 30s: the test's only change
        job["static_configs"] = targets  # instead of kubernetes_sd_configs (role endpoints)
        scrape_configs.append(job)

    workdir = tmp_path_factory.mktemp("prometheus")
    server = PrometheusServer(workdir, [])
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": scrape_configs}  # fmt: skip
    server.config.write_text(yaml.safe_dump(config, sort_keys=False))
    server.start()
    try:
        pods = {"kustomize-leader", "kustomize-standby", "helm-leader", "no-honor-leader"}
        ready = 'rke2fleet_cluster_phase{cluster="prod", phase="Ready"}'
        server.wait("every target scraped once",
                    lambda: {r["metric"]["pod"] for r in server.query('up{job="rke2fleet"}')} == pods)  # fmt: skip
        server.wait("the leaders' series ingested", lambda: len(server.query(ready)) == 3)
        yield server
    finally:
        server.stop()


def _by_pod(result: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {r["metric"]["pod"]: r["metric"] for r in result}


def test_honor_labels_keep_the_operators_namespace_label(prometheus: PrometheusServer) -> None:
    ready = _by_pod(prometheus.query('rke2fleet_cluster_phase{cluster="prod", phase="Ready"}'))
    for pod, service in (("kustomize-leader", "rke2fleet-metrics"), ("helm-leader", "x-rke2fleet-metrics")):
        assert ready[pod] == {
            "__name__": "rke2fleet_cluster_phase", "namespace": "fleet", "cluster": "prod", "phase": "Ready",
            # Target labels as the Prometheus Operator sets them; job from jobLabel (the Service's
            # app.kubernetes.io/name), not from the Service's name, which Helm prefixes with the release.
            "job": "rke2fleet", "service": service, "endpoint": "metrics", "pod": pod, "container": "operator",
            "instance": ready[pod]["instance"],
        }  # fmt: skip
    # The brief's example series: the `name` label beside `namespace`.
    stale = _by_pod(prometheus.query('rke2fleet_last_successful_reconcile_timestamp_seconds{name="prod"}'))
    assert stale["kustomize-leader"]["namespace"] == stale["helm-leader"]["namespace"] == "fleet"
    # The rules' grouping finds the cluster under its own namespace.
    grouped = prometheus.query(
        'max by (namespace, cluster) (rke2fleet_cluster_phase{phase="Ready", pod!~"no-honor.*"})'
    )
    assert [r["metric"] for r in grouped] == [{"namespace": "fleet", "cluster": "prod"}]


def test_without_honor_labels_the_namespace_becomes_exported_namespace(prometheus: PrometheusServer) -> None:
    """What the test above would see without honorLabels: so it can fail."""
    ready = _by_pod(prometheus.query('rke2fleet_cluster_phase{cluster="prod", phase="Ready"}'))
    assert ready["no-honor-leader"]["namespace"] == "rke2fleet-system"  # the Service's namespace
    assert ready["no-honor-leader"]["exported_namespace"] == "fleet"
    assert "exported_namespace" not in ready["kustomize-leader"]


def test_series_without_their_own_namespace_get_the_operators(prometheus: PrometheusServer) -> None:
    """honorLabels only settles clashes: the reconcile counter has no namespace label, so the target's stays."""
    counted = _by_pod(prometheus.query('rke2fleet_reconcile_total{kind="RKE2Cluster", result="ok"}'))
    assert counted["kustomize-leader"]["namespace"] == "rke2fleet-system"
    assert counted["helm-leader"]["namespace"] == "ops"


def test_no_created_series_are_exposed_or_stored(prometheus: PrometheusServer, metrics_port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        exposition = resp.read().decode()
    assert "rke2fleet_reconcile_total{" in exposition and "rke2fleet_reconcile_duration_seconds_bucket{" in exposition
    assert [line for line in exposition.splitlines() if "_created" in line] == []
    assert prometheus.query('{__name__=~".+_created"}') == []
    assert prometheus.query('rke2fleet_reconcile_duration_seconds_count{pod="kustomize-leader"}')


def test_a_standby_down_with_the_leader_up_raises_no_alert(prometheus: PrometheusServer) -> None:
    """The leader up and leading: a standby down alone is not RKE2FleetOperatorDown."""
    up = {pod: float(r["value"][1]) for pod, r in
          ((r["metric"]["pod"], r) for r in prometheus.query('up{job="rke2fleet"}'))}  # fmt: skip
    assert up == {"kustomize-leader": 1, "kustomize-standby": 0, "helm-leader": 1, "no-honor-leader": 1}
    assert prometheus.query(_alert_expr("RKE2FleetOperatorDown")) == []
