"""The RBAC-versus-recorded-calls check works (the end-to-end suite feeds it the emulator's audit log)."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import pytest
from deploy_testlib import DEPLOY


@pytest.fixture(scope="module")
def rbac() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_rbac_coverage", DEPLOY / "rbac_coverage.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _call(verb: str, group: str, resource: str | None, sub: str | None = None) -> dict[str, Any]:
    return {"verb": verb, "apiGroup": group, "resource": resource, "subresource": sub}


# What Kopf + the operator do against a cluster with -A (tests/e2e_observability records the real list).
TYPICAL = [
    _call("get", "", None),  # discovery, not a resource call
    _call("list", "apiextensions.k8s.io", "customresourcedefinitions"),
    _call("watch", "apiextensions.k8s.io", "customresourcedefinitions"),
    *[_call(v, "rke2fleet.io", kind) for kind in ("rke2clusters", "rke2nodes") for v in ("list", "watch", "patch")],
    *[_call(v, "rke2fleet.io", "rke2snapshots") for v in ("list", "watch", "patch", "create")],
    *[_call(v, "rke2fleet.io", "rke2restores") for v in ("list", "watch", "patch")],
    *[_call("patch", "rke2fleet.io", kind, "status")
      for kind in ("rke2clusters", "rke2nodes", "rke2snapshots", "rke2restores")],
    *[_call(v, "", "secrets") for v in ("get", "create", "patch")],
    _call("create", "", "events"),
]


def test_role_matches_the_typical_calls(rbac: ModuleType) -> None:
    assert rbac.compare(rbac.load_cluster_role_rules(), TYPICAL) == ([], [])


def test_a_call_outside_the_role_is_reported(rbac: ModuleType) -> None:
    missing, _ = rbac.compare(rbac.load_cluster_role_rules(), [*TYPICAL, _call("delete", "", "secrets")])
    assert missing == [("", "secrets", "delete")]


def test_a_permission_never_used_is_reported(rbac: ModuleType) -> None:
    calls = [c for c in TYPICAL if not (c["resource"] == "secrets" and c["verb"] == "patch")]
    _, unused = rbac.compare(rbac.load_cluster_role_rules(), calls)
    assert unused == [("", "secrets", "patch")]


def test_wildcards_are_refused(rbac: ModuleType) -> None:
    with pytest.raises(ValueError, match="wildcard"):
        rbac.granted([{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}])
