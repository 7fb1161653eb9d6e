"""Rendered kustomize and Helm manifests validate against Kubernetes schemas and are least-privilege."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from deploy_testlib import DEPLOY, by_kind, one

K8S_VERSION = "1.33.0"
# Types whose schema kubernetes-validate does not ship (Prometheus Operator CRDs): checked
# structurally below and, for PrometheusRule, with promtool (test_rules_and_dashboard.py).
NO_SCHEMA = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
EXPECTED_KINDS = {
    "Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
    "Deployment", "Service", "ServiceMonitor", "PrometheusRule", "ConfigMap",
}
EXPECTED_RULES = [  # what tests/e2e_observability records the operator calling, plus finalizers
    {"apiGroups": ["rke2fleet.io"], "resources": ["rke2clusters", "rke2nodes"], "verbs": ["list", "watch", "patch"]},
    {"apiGroups": ["rke2fleet.io"], "resources": ["rke2snapshots"], "verbs": ["list", "watch", "patch", "create"]},
    {"apiGroups": ["rke2fleet.io"], "resources": ["rke2restores"], "verbs": ["list", "watch", "patch"]},
    {"apiGroups": ["rke2fleet.io"],
     "resources": ["rke2clusters/status", "rke2nodes/status", "rke2snapshots/status", "rke2restores/status"],
     "verbs": ["patch"]},
    {"apiGroups": ["rke2fleet.io"], "resources": ["rke2clusters/finalizers", "rke2nodes/finalizers"],
     "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
]
NAMESPACES_RULE = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}


def _validate_all(objects: list[dict[str, Any]]) -> list[str]:
    validated = []
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in NO_SCHEMA:
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        validated.append(obj["kind"])
    return validated


@pytest.fixture(params=["kustomize", "helm"])
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    fixture = "kustomize_objects" if request.param == "kustomize" else "helm_objects"
    found: list[dict[str, Any]] = request.getfixturevalue(fixture)
    return found


def test_kustomize_renders_every_object(kustomize_objects: list[dict[str, Any]]) -> None:
    assert {o["kind"] for o in kustomize_objects} == EXPECTED_KINDS
    namespaced = [o for o in kustomize_objects if o["kind"] in {"ServiceAccount", "Deployment", "Service",
                                                                  "ServiceMonitor", "PrometheusRule", "ConfigMap"}]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"rke2fleet-system"}
    assert len(by_kind(kustomize_objects, "CustomResourceDefinition")) == 4


def test_helm_renders_the_same_kinds_without_namespace_and_crds(helm_objects: list[dict[str, Any]]) -> None:
    # Helm creates the namespace (--create-namespace) and installs crds/ outside the templates.
    assert {o["kind"] for o in helm_objects} == EXPECTED_KINDS - {"Namespace", "CustomResourceDefinition"}


def test_manifests_validate_against_kubernetes_schemas(objects: list[dict[str, Any]]) -> None:
    validated = _validate_all(objects)
    assert {"Deployment", "ClusterRole", "Service", "ConfigMap", "ServiceAccount"} <= set(validated)


def test_validation_catches_a_bad_deployment(kustomize_objects: list[dict[str, Any]]) -> None:
    import copy

    bad = copy.deepcopy(one(kustomize_objects, "Deployment"))
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = "10001"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_deployment_security_settings(objects: list[dict[str, Any]]) -> None:
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
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
        "rke2fleet", "run", "-A", "--metrics-port", "8000", "--health-port", "8080"
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


def test_helm_watching_listed_namespaces_adds_the_namespaces_rule() -> None:
    """Kopf lists and watches namespaces only when given namespaces instead of -A."""
    import helm_python
    import yaml

    chart = helm_python.Chart.load(str(DEPLOY / "helm" / "rke2fleet"))
    values = {"watch": {"allNamespaces": False, "namespaces": ["fleet-a"]}}
    rendered = chart.render(values, name="rke2fleet", namespace="rke2fleet-system", is_install=True)
    objects = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    assert one(objects, "ClusterRole")["rules"] == [*EXPECTED_RULES, NAMESPACES_RULE]
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "-A" not in args and args[1:3] == ["--namespace", "fleet-a"]


def test_service_and_servicemonitor_select_the_operator(objects: list[dict[str, Any]]) -> None:
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_helm_values_switch_namespaces_and_optional_objects() -> None:
    import helm_python
    import yaml
    from deploy_testlib import DEPLOY

    chart = helm_python.Chart.load(str(DEPLOY / "helm" / "rke2fleet"))
    values = {"watch": {"allNamespaces": False, "namespaces": ["fleet-a", "fleet-b"]},
              "serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}}
    rendered = chart.render(values, name="x", namespace="ops")
    objects = [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]
    assert not by_kind(objects, "ServiceMonitor") and not by_kind(objects, "PrometheusRule")
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:5] == ["run", "--namespace", "fleet-a", "--namespace", "fleet-b"]
    _validate_all(objects)


def test_helm_lint_strict_reports_no_warning() -> None:
    import helm_python
    from deploy_testlib import DEPLOY

    report = helm_python.lint(str(DEPLOY / "helm" / "rke2fleet"), strict=True)
    assert report["errors"] == []
    # severity 1 is informational ("icon is recommended"); 2 warning, 3 error.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
