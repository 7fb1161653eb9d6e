"""Two replicas with leader election, in both renderings: the Deployment's settings, the
PodDisruptionBudget, and a Lease Role that allows exactly the calls the operator's elector makes,
found by running the real elector (built from the rendered args and downward-API env as `rke2fleet
run` builds it) against a recording fake of the API."""

from __future__ import annotations

import re
from typing import Any

import pytest
from deploy_testlib import by_kind, container_args, one, render_helm
from helm_python.errors import HelmRenderError
from kubernetes.client.exceptions import ApiException

LEASES = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/(?P<ns>[^/]+)/leases(?:/(?P<name>[^/]+))?$")
VERBS = {"GET": "get", "POST": "create", "PUT": "update"}


def _pod_labels(objects: list[dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


def _lease_role(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [role] = [r for r in by_kind(objects, "Role")
              if any("leases" in rule["resources"] for rule in r["rules"])]  # fmt: skip
    return role


def test_two_replicas_roll_with_a_standby_first(objects: list[dict[str, Any]]) -> None:
    spec = one(objects, "Deployment")["spec"]
    assert spec["replicas"] == 2
    # A new pod may start before the old one leaves: it stays a standby until the lease is free.
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    args = container_args(objects)
    assert "--leader-elect" in args
    assert args[args.index("--lease-name") + 1] == "rke2fleet"


def test_pod_name_and_namespace_come_from_the_downward_api(objects: list[dict[str, Any]]) -> None:
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_replicas_prefer_different_nodes(objects: list[dict[str, Any]]) -> None:
    affinity = one(objects, "Deployment")["spec"]["template"]["spec"]["affinity"]
    assert set(affinity) == {"podAntiAffinity"}
    [term] = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == _pod_labels(objects)


def test_pod_disruption_budget_keeps_one_replica(objects: list[dict[str, Any]]) -> None:
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["metadata"]["namespace"] == one(objects, "Deployment")["metadata"]["namespace"]
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == _pod_labels(objects)


def test_lease_role_is_bound_to_the_operator_in_its_namespace(objects: list[dict[str, Any]]) -> None:
    role = _lease_role(objects)
    deployment = one(objects, "Deployment")
    assert role["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["rke2fleet"],
         "verbs": ["get", "update"]},
    ]  # fmt: skip
    [binding] = [b for b in by_kind(objects, "RoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]]
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    [subject] = binding["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": deployment["spec"]["template"]["spec"]["serviceAccountName"],
                       "namespace": deployment["metadata"]["namespace"]}  # fmt: skip


class RecordingLeaseApi:
    """Stands in for KubeApi: Leases in a dict, every call recorded as (method, path)."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._version = 0

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        self.calls.append((method, path))
        match = LEASES.match(path)
        assert match, path
        if method == "GET":
            if path not in self.leases:
                raise ApiException(status=404, reason="Not Found")
            return {**self.leases[path], "spec": dict(self.leases[path]["spec"])}
        self._version += 1
        key = path if method == "PUT" else f"{path}/{body['metadata']['name']}"
        self.leases[key] = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self._version)}}
        return self.leases[key]


def _elector(objects: list[dict[str, Any]], pod: str, api: RecordingLeaseApi,
             monkeypatch: pytest.MonkeyPatch) -> Any:  # fmt: skip
    """The elector `rke2fleet run` builds from the rendered args, in a pod of the rendered Deployment."""
    from rke2fleet.cli import build_parser
    from rke2fleet.handlers import runner

    monkeypatch.setenv("POD_NAME", pod)
    monkeypatch.setenv("POD_NAMESPACE", one(objects, "Deployment")["metadata"]["namespace"])
    monkeypatch.setattr("rke2fleet.store.lease.KubeApi", lambda: api)
    elector = runner._elector(build_parser().parse_args(container_args(objects)))
    assert elector is not None, "the rendered args do not enable leader election"
    return elector


def _allowed(rules: list[dict[str, Any]], verb: str, name: str | None) -> list[int]:
    """Indexes of the rules that allow `verb` on Lease `name` (None: a create, which has no name)."""
    return [i for i, rule in enumerate(rules)
            if rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
            and verb in rule["verbs"] and (not rule.get("resourceNames") or name in rule["resourceNames"])]  # fmt: skip


def test_lease_role_allows_exactly_what_the_elector_does(
    objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = RecordingLeaseApi()
    leader, standby = _elector(objects, "op-a", api, monkeypatch), _elector(objects, "op-b", api, monkeypatch)
    assert leader.try_acquire_or_renew()  # no Lease yet: created
    assert leader.try_acquire_or_renew()  # renewed
    assert not standby.try_acquire_or_renew()  # held by a leader that renews
    leader.release()  # shutdown: given up
    assert standby.try_acquire_or_renew()  # taken over

    role = _lease_role(objects)
    namespace = role["metadata"]["namespace"]
    used: set[tuple[int, str]] = set()
    for method, path in api.calls:
        match = LEASES.match(path)
        assert match and match["ns"] == namespace, f"{method} {path}: not in the Role's namespace {namespace}"
        verb = VERBS[method]
        allowing = _allowed(role["rules"], verb, match["name"])
        assert allowing, f"{method} {path} ({verb}) is not allowed by {role['rules']}"
        used |= {(i, verb) for i in allowing}
    granted = {(i, verb) for i, rule in enumerate(role["rules"]) for verb in rule["verbs"]}
    assert used == granted, f"granted but never used: {granted - used}"
    assert {m for m, _ in api.calls} == {"GET", "POST", "PUT"}


def test_helm_lease_name_follows_the_release() -> None:
    """Two releases in one namespace must not share a Lease: each elects its own leader."""
    objects = render_helm(name="team-a", namespace="ops")
    args = container_args(objects)
    assert args[args.index("--lease-name") + 1] == "team-a-rke2fleet"
    assert _lease_role(objects)["rules"][1]["resourceNames"] == ["team-a-rke2fleet"]


def test_helm_replicas_value_and_pdb() -> None:
    objects = render_helm({"replicas": 3})
    assert one(objects, "Deployment")["spec"]["replicas"] == 3
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_helm_without_leader_election_runs_one_replica_recreated() -> None:
    objects = render_helm({"replicas": 1, "leaderElection": {"enabled": False}})
    spec = one(objects, "Deployment")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert "--leader-elect" not in container_args(objects) and "--lease-name" not in container_args(objects)
    # No Lease permission, and no PDB (minAvailable 1 of 1 would block every drain of the node).
    assert not by_kind(objects, "Role") and not by_kind(objects, "PodDisruptionBudget")


def test_helm_refuses_several_replicas_without_leader_election() -> None:
    with pytest.raises(HelmRenderError, match=r"needs leaderElection\.enabled"):
        render_helm({"leaderElection": {"enabled": False}})  # replicas defaults to 2
