"""The ClusterRole in deploy/ against every API call the real operator made in an end-to-end
run (bring-up, status, Events, token and kubeconfig Secrets, an on-demand snapshot, a refused
restore, an upgrade with its pre-upgrade snapshot, finalizers, Retain deletion, cluster
deletion), as recorded by the emulator's audit log; Kopf's /healthz on the way."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from rke2fleet_sandbox.manifests import cluster_manifests
from tests.e2e.conftest import E2E
from tests.e2e.harness import NS, Kube, audit, reset_audit, sh
from tests.e2e_observability.health_operator import HealthOperator

pytestmark = [pytest.mark.sandbox]

SOURCE_ANNOTATION = "rke2fleet.io/source-sha256"  # the digest of rke2.yaml the Secret was made from

ROOT = Path(__file__).resolve().parents[2]
# The test's own client identifies itself so its calls can be told apart from the operator's.
TEST_USER_AGENT = "rke2fleet-e2e-observability-test"


def _rbac_coverage() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_rbac_coverage", ROOT / "deploy" / "rbac_coverage.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _retain(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for doc in docs:
        if doc["kind"] == "RKE2Node":
            doc["spec"]["deletionPolicy"] = "Retain"
    return docs


def _wait_gone(kube: Kube, op: HealthOperator, objects: list[tuple[str, str]], timeout: float = 20) -> str | None:
    """Wait for deleted objects to disappear; None when they did, else what holds them.

    Known flake (not RBAC): when a node's Kopf timer run ends at the moment its deletion is
    processed, Kopf logs "Deletion is processed" but never removes the finalizer (compare
    nolar/kopf#1305). The audit and the operator log are kept in the test's tmp dir.
    """
    try:
        kube.wait("deleted objects gone", lambda: all(kube.get(p, n) is None for p, n in objects), timeout)
        return None
    except AssertionError:
        held = {}
        for plural, name in objects:
            meta = (kube.get(plural, name) or {}).get("metadata") or {}
            if meta:
                held[f"{plural}/{name}"] = (meta.get("finalizers"), meta.get("deletionTimestamp"))
        (op.log_path.parent / "audit-at-timeout.json").write_text(json.dumps(audit(kube.kubeconfig)))
        return f"not deleted after {timeout:.0f}s: {held}"


def day2(kube: Kube) -> None:
    def obj(kind: str, name: str, **spec: str) -> dict[str, Any]:
        return {"apiVersion": "rke2fleet.io/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": NS},
                "spec": {"cluster": "rbac", **spec}}  # fmt: skip

    def phase(plural: str, name: str) -> Any:
        return ((kube.get(plural, name) or {}).get("status") or {}).get("phase")

    custom = kube.custom
    custom.create_namespaced_custom_object("rke2fleet.io", "v1alpha1", NS, "rke2snapshots", obj("RKE2Snapshot", "rb"))
    kube.wait("snapshot taken", lambda: phase("rke2snapshots", "rb") == "Ready", timeout=60)
    restore = obj("RKE2Restore", "nope", snapshot="missing")
    custom.create_namespaced_custom_object("rke2fleet.io", "v1alpha1", NS, "rke2restores", restore)
    kube.wait("restore refused", lambda: phase("rke2restores", "nope") == "Failed", timeout=30)
    kube.delete("rke2snapshots", "rb")
    kube.wait("snapshot deleted", lambda: kube.get("rke2snapshots", "rb") is None, timeout=30)
    kube.patch_spec("rke2clusters", "rbac", {"version": "v1.36.3+rke2r1"})
    kube.wait("pre-upgrade snapshot recorded",
              lambda: phase("rke2snapshots", "rbac-pre-upgrade-v1.36.3-rke2r1") == "Ready", timeout=60)  # fmt: skip

    def upgraded() -> bool:
        st = (kube.get("rke2clusters", "rbac") or {}).get("status") or {}
        return st.get("phase") == "Ready" and (st.get("rollout") or {}).get("phase") in (None, "Done")

    kube.wait("upgrade done", upgraded, timeout=120)


@pytest.mark.timeout(500)
def test_cluster_role_allows_every_recorded_call_and_nothing_more(e2e: E2E, tmp_path: Path) -> None:
    rbac = _rbac_coverage()
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube and sb.kubeconfig_path
    kube.client.user_agent = TEST_USER_AGENT
    # driftCheckInterval 2s: the kubeconfig Secret is re-checked (and re-published) that often.
    docs = cluster_manifests(sb, "rbac", extra_spec={"driftCheckInterval": "2s"})
    kube.apply(_retain(docs))  # what a user does, before the operator runs
    reset_audit(sb.kubeconfig_path)

    op = HealthOperator(sb.kubeconfig_path, tmp_path / "operator.log").start()
    e2e.operators.append(op)  # stopped by the fixture
    kube.wait_phase("rke2clusters", "rbac", "Ready", timeout=60)
    assert kube.secret("rbac-token") and kube.secret("rbac-kubeconfig")
    assert kube.wait("/healthz answers 200", lambda: op.healthz()[0] == 200, timeout=10)

    # A kubeconfig Secret that no longer matches its source is re-published (a patch of the Secret).
    kube.core.patch_namespaced_secret(
        "rbac-kubeconfig", NS, {"metadata": {"annotations": {SOURCE_ANNOTATION: "edited-by-hand"}}}
    )
    kube.wait(
        "kubeconfig Secret re-published",
        lambda: kube.secret_object("rbac-kubeconfig").metadata.annotations[SOURCE_ANNOTATION] != "edited-by-hand",
        timeout=15,
    )

    # Day 2: a snapshot taken and deleted (its file with it), a restore refused before anything is
    # stopped, an upgrade whose pre-upgrade snapshot the operator records as an RKE2Snapshot.
    day2(kube)

    # Retain: the objects go (finalizers removed), the hosts keep RKE2.
    agent, server = sb.agents[0], sb.servers[0]
    kube.delete("rke2nodes", agent.name)
    stuck = _wait_gone(kube, op, [("rke2nodes", agent.name)])
    if stuck is None:
        kube.delete("rke2clusters", "rbac")  # waits for its last node, like `kubectl delete -f`
        kube.delete("rke2nodes", server.name)
        stuck = _wait_gone(kube, op, [("rke2nodes", server.name), ("rke2clusters", "rbac")])
    assert sh(sb, agent, "test -f /etc/rancher/rke2/config.yaml && echo kept").strip() == "kept"

    entries = audit(sb.kubeconfig_path)
    calls = [e for e in entries if e.get("userAgent") != TEST_USER_AGENT]
    (tmp_path / "operator-audit.json").write_text(json.dumps(calls))
    print("operator clients:", dict(Counter(str(e.get("userAgent")).split(" ")[0] for e in calls)))
    needed = rbac.used(calls)
    print("permissions used:", sorted(needed))

    # The run did exercise what the role is for (otherwise "nothing unused" would prove little).
    exercised = {
        ("rke2fleet.io", "rke2clusters", "watch"),
        ("rke2fleet.io", "rke2nodes", "patch"),  # finalizers, Kopf's annotations
        ("rke2fleet.io", "rke2clusters/status", "patch"),
        ("rke2fleet.io", "rke2nodes/status", "patch"),
        ("", "secrets", "create"),  # token and kubeconfig
        ("", "secrets", "patch"),  # kubeconfig re-published
        ("", "events", "create"),
    }
    assert exercised <= needed, sorted(exercised - needed)
    assert not [e for e in calls if int(e.get("code") or 0) >= 500], "emulator errors in the run"

    missing, unused = rbac.compare(rbac.load_cluster_role_rules(), calls)
    assert missing == [], f"calls the ClusterRole does not allow: {missing}"
    assert unused == [], f"ClusterRole permissions no call used: {unused}"
    # Kopf re-checks a timer that was running at deletion every second (runner settings), so
    # no finalizer is left behind (the role was checked above against every call up to here).
    assert stuck is None, f"finalizer left after Kopf processed the deletion: {stuck}"
