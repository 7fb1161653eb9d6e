"""CustomResourceDefinitions generated from the models (the models are the single source).

pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 schema:
every node typed, no $ref, no anyOf-with-null, no `additionalProperties: false`
(pruning and strict field validation reject unknown fields instead), no titles.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from rke2fleet import GROUP, VERSION
from rke2fleet.api.cluster import RKE2ClusterSpec
from rke2fleet.api.node import RKE2NodeSpec
from rke2fleet.api.snapshot import RKE2RestoreSpec, RKE2RestoreStatus, RKE2SnapshotSpec, RKE2SnapshotStatus
from rke2fleet.api.status import RKE2ClusterStatus, RKE2NodeStatus

Schema = dict[str, Any]

# Keywords of JSON Schema that a Kubernetes structural schema does not accept.
_DROP = ("title", "$defs", "propertyNames", "examples", "const", "uniqueItems")


def _resolve(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_resolve(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**copy.deepcopy(target), **node}  # the referring field's description wins
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union of {len(branches)} types in a structural schema")
        node = {**branches[0], **node}
        if "$ref" in node:
            return _resolve(node, defs)
    if node.get("default", 0) is None:
        del node["default"]
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    elif node.get("additionalProperties") is True:
        del node["additionalProperties"]
        node["x-kubernetes-preserve-unknown-fields"] = True
    for key in _DROP:
        node.pop(key, None)
    out: Schema = {}
    # type and description first: the checked-in YAML reads like hand-written CRDs.
    for key in sorted(node, key=lambda k: (k != "type", k != "description")):
        value = node[key]
        if key in ("properties",):
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _resolve(value, defs)
        else:
            out[key] = value
    return out


def model_schema(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of one model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    result: Schema = _resolve(raw, defs)
    return result


_KINDS: dict[str, tuple[type[BaseModel], type[BaseModel], str]] = {
    "RKE2Cluster": (
        RKE2ClusterSpec,
        RKE2ClusterStatus,
        "An RKE2 cluster whose nodes the operator manages over SSH.",
    ),
    "RKE2Node": (RKE2NodeSpec, RKE2NodeStatus, "A host that is a server or agent of an RKE2Cluster."),
    "RKE2Snapshot": (RKE2SnapshotSpec, RKE2SnapshotStatus, "An etcd snapshot of an RKE2Cluster."),
    "RKE2Restore": (RKE2RestoreSpec, RKE2RestoreStatus, "A restore of an RKE2Cluster from one of its snapshots."),
}

_NAMES: dict[str, dict[str, Any]] = {
    "RKE2Cluster": {"plural": "rke2clusters", "singular": "rke2cluster", "shortNames": ["rkc"]},
    "RKE2Node": {"plural": "rke2nodes", "singular": "rke2node", "shortNames": ["rkn"]},
    "RKE2Snapshot": {"plural": "rke2snapshots", "singular": "rke2snapshot", "shortNames": ["rks"]},
    "RKE2Restore": {"plural": "rke2restores", "singular": "rke2restore", "shortNames": ["rkr"]},
}

_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_READY = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    "description": "The Ready condition: True, False or Unknown (cannot be checked).",
}
_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "RKE2Cluster": [
        {
            "name": "Version",
            "type": "string",
            "jsonPath": ".status.targetVersion",
            "description": "Target RKE2 version (spec.version, or resolved from spec.channel).",
        },
        {
            "name": "Servers",
            "type": "string",
            "jsonPath": ".status.servers",
            "description": "Ready/desired servers.",
        },
        {
            "name": "Agents",
            "type": "string",
            "jsonPath": ".status.agents",
            "description": "Ready/desired agents.",
        },
        _READY,
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        _AGE,
    ],
    "RKE2Node": [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
        {"name": "Role", "type": "string", "jsonPath": ".spec.role"},
        {"name": "Address", "type": "string", "jsonPath": ".spec.address"},
        {
            "name": "Version",
            "type": "string",
            "jsonPath": ".status.runningVersion",
            "description": "RKE2 version the node runs.",
        },
        _READY,
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        _AGE,
    ],
    "RKE2Snapshot": [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
        {"name": "Node", "type": "string", "jsonPath": ".status.node", "description": "Where it was taken (kept)."},
        {"name": "Snapshot", "type": "string", "jsonPath": ".status.snapshotName"},
        {"name": "Size", "type": "integer", "jsonPath": ".status.size", "description": "Bytes."},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        _AGE,
    ],
    "RKE2Restore": [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
        {"name": "Snapshot", "type": "string", "jsonPath": ".spec.snapshot"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        _AGE,
    ],
}


def crd_schema(kind: str) -> Schema:
    """The openAPIV3Schema of `kind` (RKE2Cluster or RKE2Node), as put in its CRD."""
    spec_model, status_model, description = _KINDS[kind]
    spec = model_schema(spec_model)
    status = model_schema(status_model)
    return {
        "type": "object",
        "description": description,
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object.",
            },
            "kind": {"type": "string", "description": "Kind is the REST resource this object represents."},
            "metadata": {"type": "object", "description": "Standard object metadata."},
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
    }


def generate_crd(kind: str) -> dict[str, Any]:
    names = {"kind": kind, "listKind": f"{kind}List", **_NAMES[kind], "categories": ["rke2fleet"]}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names['plural']}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _COLUMNS[kind],
                    "schema": {"openAPIV3Schema": crd_schema(kind)},
                }
            ],
        },
    }


def generate_crds() -> list[dict[str, Any]]:
    """Both CRDs, RKE2Cluster first."""
    return [generate_crd(kind) for kind in _KINDS]


HEADER = "# Generated from the pydantic models by `rke2fleet crds` (make crds). Do not edit.\n"


def crd_filename(crd: dict[str, Any]) -> str:
    return f"{GROUP}_{crd['spec']['names']['plural']}.yaml"


def render_crd(crd: dict[str, Any]) -> str:
    """Deterministic YAML text of one CRD, as checked in under crds/."""
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=100, allow_unicode=True)


def write_crds(outdir: str | Path) -> list[Path]:
    """Write `rke2fleet.io_<plural>.yaml` for each kind into `outdir`; returns the paths."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for crd in generate_crds():
        path = out / crd_filename(crd)
        path.write_text(render_crd(crd), encoding="utf-8")
        paths.append(path)
    return paths
