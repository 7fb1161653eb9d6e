"""Rendered kustomize and Helm manifests validate against Kubernetes schemas and are least-privilege."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_testlib import EXPECTED_RULES, KUSTOMIZE, by_kind, container_args, one, render_helm

K8S_VERSION = "1.33.0"
# Types whose schema kubernetes-validate does not ship (Prometheus Operator CRDs): checked
# structurally below and, for PrometheusRule, with promtool (test_rules_and_dashboard.py).
NO_SCHEMA = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
# The base applies on any cluster: nothing from the Prometheus Operator in it.
BASE_KINDS = {
    "Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
    "Role", "RoleBinding", "Deployment", "PodDisruptionBudget", "Service",
}
# The monitoring component (kustomize) and the chart's default serviceMonitor/prometheusRule/grafanaDashboard.
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
NAMESPACED_KINDS = {"ServiceAccount", "Role", "RoleBinding", "Deployment", "PodDisruptionBudget", "Service",
                    *MONITORING_KINDS}  # fmt: skip


def _validate_all(objects: list[dict[str, Any]]) -> list[str]:
    validated = []
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in NO_SCHEMA:
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        validated.append(obj["kind"])
    return validated


def test_kustomize_base_renders_every_object_and_nothing_of_the_prometheus_operator(
    kustomize_objects: list[dict[str, Any]],
) -> None:
    assert {o["kind"] for o in kustomize_objects} == BASE_KINDS
    assert not [o for o in kustomize_objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    namespaced = [o for o in kustomize_objects if o["kind"] in NAMESPACED_KINDS]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"rke2fleet-system"}
    assert len(by_kind(kustomize_objects, "CustomResourceDefinition")) == 4


def test_monitoring_is_a_component_the_monitored_overlay_adds(
    kustomize_objects: list[dict[str, Any]], kustomize_monitored_objects: list[dict[str, Any]]
) -> None:
    component = yaml.safe_load((KUSTOMIZE / "components" / "monitoring" / "kustomization.yaml").read_text())
    assert (component["apiVersion"], component["kind"]) == ("kustomize.config.k8s.io/v1alpha1", "Component")
    assert {o["kind"] for o in kustomize_monitored_objects} == BASE_KINDS | MONITORING_KINDS
    added = [o for o in kustomize_monitored_objects if o not in kustomize_objects]
    assert {o["kind"] for o in added} == MONITORING_KINDS
    assert {o["metadata"]["namespace"] for o in added} == {"rke2fleet-system"}
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "rke2fleet" for o in added)
    # The component adds and changes nothing else.
    assert [o for o in kustomize_monitored_objects if o["kind"] not in MONITORING_KINDS] == kustomize_objects


def test_helm_renders_the_same_kinds_without_namespace_and_crds(helm_objects: list[dict[str, Any]]) -> None:
    # Helm creates the namespace (--create-namespace) and installs crds/ outside the templates.
    assert {o["kind"] for o in helm_objects} == (BASE_KINDS | MONITORING_KINDS) - {
        "Namespace", "CustomResourceDefinition"
    }


def test_manifests_validate_against_kubernetes_schemas(objects: list[dict[str, Any]]) -> None:
    validated = _validate_all(objects)
    assert {"Deployment", "ClusterRole", "Role", "RoleBinding", "PodDisruptionBudget", "Service", "ConfigMap",
            "ServiceAccount"} <= set(validated)  # fmt: skip


def test_validation_catches_a_bad_deployment(kustomize_objects: list[dict[str, Any]]) -> None:
    import copy

    bad = copy.deepcopy(one(kustomize_objects, "Deployment"))
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = "10001"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_deployment_security_settings(objects: list[dict[str, Any]]) -> None:
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8000, "health": 8080}
    assert container["command"] + container["args"] == [
        "rke2fleet", "run", "-A", "--leader-elect", "--lease-name", "rke2fleet",
        "--metrics-port", "8000", "--health-port", "8080",
    ]
    [tmp_mount] = container["volumeMounts"]
    assert tmp_mount["mountPath"] == "/tmp"
    assert {v["name"]: "emptyDir" in v for v in pod["volumes"]} == {tmp_mount["name"]: True}


def test_rbac_is_exactly_the_least_privilege_list(objects: list[dict[str, Any]]) -> None:
    role = one(objects, "ClusterRole")
    assert role["rules"] == EXPECTED_RULES
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key]
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    [subject] = binding["subjects"]
    sa = one(objects, "ServiceAccount")
    assert (subject["name"], subject["namespace"]) == (sa["metadata"]["name"], sa["metadata"]["namespace"])
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_service_and_servicemonitor_select_the_operator(objects: list[dict[str, Any]]) -> None:
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    # The operator's own `namespace` label survives the scrape (test_servicemonitor_scrape.py shows
    # it with a real Prometheus), and job="rke2fleet" comes from the Service's name label.
    assert endpoint["honorLabels"] is True
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "rke2fleet"


def test_helm_values_switch_namespaces_and_optional_objects() -> None:
    values = {"watch": {"allNamespaces": False, "namespaces": ["fleet-a", "fleet-b"]},
              "serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}}  # fmt: skip
    objects = render_helm(values, name="x", namespace="ops")
    assert not by_kind(objects, "ServiceMonitor") and not by_kind(objects, "PrometheusRule")
    args = container_args(objects)
    assert args[:5] == ["run", "--namespace", "fleet-a", "--namespace", "fleet-b"]
    _validate_all(objects)


def test_helm_lint_strict_reports_no_warning() -> None:
    import helm_python
    from deploy_testlib import CHART

    report = helm_python.lint(str(CHART), strict=True)
    assert report["errors"] == []
    # severity 1 is informational ("icon is recommended"); 2 warning, 3 error.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
