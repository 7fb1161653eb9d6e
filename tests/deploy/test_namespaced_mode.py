"""Namespaced mode: the operator watches listed namespaces, and its namespaced permissions (the
rke2fleet.io kinds, their status and finalizers, Secrets, Events) are a Role per listed namespace;
the ClusterRole keeps only CRDs and namespaces (what Kopf needs cluster-wide, see its "Scopes"
docs). In particular no ClusterRole grants anything on Secrets then."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from deploy_testlib import (
    EXPECTED_RULES,
    KUSTOMIZE,
    NAMESPACED_MODE_CLUSTER_RULES,
    NAMESPACED_RULES,
    by_kind,
    container_args,
    one,
    render_helm,
    render_kustomize,
)
from helm_python.errors import HelmRenderError

K8S_VERSION = "1.33.0"
NO_SCHEMA = {"ServiceMonitor", "PrometheusRule"}  # as in test_manifests.py


def _operator_roles(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The operator's Roles (not the leader-election one) by namespace."""
    return {r["metadata"]["namespace"]: r for r in by_kind(objects, "Role")
            if not any("leases" in rule["resources"] for rule in r["rules"])}  # fmt: skip


def _cluster_grants(objects: list[dict[str, Any]], resource: str) -> list[dict[str, Any]]:
    return [rule for role in by_kind(objects, "ClusterRole") for rule in role["rules"] if resource in rule["resources"]]


def _check_namespaced(objects: list[dict[str, Any]], namespaces: list[str]) -> None:
    sa = one(objects, "ServiceAccount")
    assert one(objects, "ClusterRole")["rules"] == NAMESPACED_MODE_CLUSTER_RULES
    assert _cluster_grants(objects, "secrets") == []
    roles = _operator_roles(objects)
    assert sorted(roles) == sorted(namespaces)
    bindings = {b["metadata"]["namespace"]: b for b in by_kind(objects, "RoleBinding")
                if b["roleRef"]["name"] in {r["metadata"]["name"] for r in roles.values()}}  # fmt: skip
    assert sorted(bindings) == sorted(namespaces)
    for ns in namespaces:
        assert roles[ns]["rules"] == NAMESPACED_RULES
        binding = bindings[ns]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": roles[ns]["metadata"]["name"]}  # fmt: skip
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                        "namespace": sa["metadata"]["namespace"]}]  # fmt: skip
    args = container_args(objects)
    assert "-A" not in args and "--all-namespaces" not in args
    watched = [args[i + 1] for i, a in enumerate(args) if a == "--namespace"]
    assert watched == namespaces
    for obj in objects:
        if obj["kind"] not in NO_SCHEMA:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("all_namespaces", [True, False], ids=["all-namespaces", "namespaced"])
def test_helm_secrets_are_cluster_wide_only_when_watching_every_namespace(all_namespaces: bool) -> None:
    watch = {"allNamespaces": True} if all_namespaces else {"allNamespaces": False, "namespaces": ["a", "b"]}
    objects = render_helm({"watch": watch})
    if all_namespaces:
        assert one(objects, "ClusterRole")["rules"] == EXPECTED_RULES
        assert _cluster_grants(objects, "secrets") and _operator_roles(objects) == {}
    else:
        _check_namespaced(objects, ["a", "b"])


def test_helm_namespaced_mode_gives_each_listed_namespace_its_role() -> None:
    objects = render_helm({"watch": {"allNamespaces": False, "namespaces": ["team-a", "team-b", "team-c"]}},
                          name="x", namespace="ops")  # fmt: skip
    _check_namespaced(objects, ["team-a", "team-b", "team-c"])
    assert {r["metadata"]["name"] for r in _operator_roles(objects).values()} == {"x-rke2fleet-operator"}
    # Leader election is unchanged: its Lease is in the operator's own namespace.
    [lease_role] = [r for r in by_kind(objects, "Role") if r["metadata"]["namespace"] == "ops"]
    assert lease_role["rules"][0]["resources"] == ["leases"]


@pytest.mark.parametrize("namespaces, message", [
    ([], "needs watch.namespaces"),
    (["team-*"], "is a pattern"),
    (["!kube-system"], "is a pattern"),
])  # fmt: skip
def test_helm_refuses_namespaced_mode_without_namespace_names(namespaces: list[str], message: str) -> None:
    """A Role needs a namespace name; no namespaces at all would make the operator watch all of them."""
    with pytest.raises(HelmRenderError, match=message):
        render_helm({"watch": {"allNamespaces": False, "namespaces": namespaces}})


def test_kustomize_namespaced_overlay(
    kustomize_namespaced_objects: list[dict[str, Any]], kustomize_objects: list[dict[str, Any]]
) -> None:
    _check_namespaced(kustomize_namespaced_objects, ["fleet"])
    assert container_args(kustomize_namespaced_objects) == [
        "run", "--namespace", "fleet", "--leader-elect", "--lease-name", "rke2fleet",
        "--metrics-port", "8000", "--health-port", "8080",
    ]  # fmt: skip
    # Nothing else differs from the base: only the ClusterRole's rules, the args and the added Role(Binding).
    def comparable(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [o for o in objects if o["kind"] not in {"ClusterRole", "Deployment"}
                and o["metadata"].get("namespace") != "fleet"]  # fmt: skip

    assert comparable(kustomize_namespaced_objects) == comparable(kustomize_objects)
    base_deployment = one(kustomize_objects, "Deployment")
    deployment = one(kustomize_namespaced_objects, "Deployment")
    [base_container], [container] = (d["spec"]["template"]["spec"]["containers"] for d in (base_deployment, deployment))
    assert {k: v for k, v in container.items() if k != "args"} == {
        k: v for k, v in base_container.items() if k != "args"
    }


def test_kustomize_namespaced_overlay_takes_the_monitoring_component(tmp_path: Path) -> None:
    """Namespaced mode and monitoring compose; the component moves no Role out of `fleet`."""
    def rel(path: Path) -> str:  # kustomize wants relative paths to other kustomizations
        return os.path.relpath(path, tmp_path)

    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{rel(KUSTOMIZE / 'namespaced')}]\n"
        f"components: [{rel(KUSTOMIZE / 'components' / 'monitoring')}]\n"
    )
    objects = render_kustomize(tmp_path)
    _check_namespaced(objects, ["fleet"])
    assert {o["metadata"]["namespace"] for o in objects if o["kind"] in {"ServiceMonitor", "PrometheusRule"}} == {
        "rke2fleet-system"
    }
