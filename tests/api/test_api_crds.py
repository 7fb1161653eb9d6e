"""The checked-in CRDs are exactly what the models generate, and are well-formed structural schemas."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2fleet import GROUP, VERSION
from rke2fleet.api.crdgen import crd_filename, crd_schema, generate_crds, render_crd

from .conftest import REPO, run_cli

# Keywords Kubernetes rejects (or that break structural schemas) in openAPIV3Schema.
FORBIDDEN = {
    "$ref",
    "$defs",
    "definitions",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "title",
    "const",
    "propertyNames",
    "patternProperties",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "uniqueItems",
}


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its dotted path."""
    out = [(path or "<root>", schema)]
    for name, sub in schema.get("properties", {}).items():
        out += walk(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        out += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += walk(schema["additionalProperties"], f"{path}.*")
    return out


@pytest.mark.parametrize("crd", generate_crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_checked_in_crd_matches_models(crd: dict[str, Any]) -> None:
    path = REPO / "crds" / crd_filename(crd)
    assert path.exists(), f"{path} missing: run `make crds`"
    assert path.read_text(encoding="utf-8") == render_crd(crd), f"{path} is stale: run `make crds`"


def test_cli_crds_writes_the_same_files(tmp_path: Path) -> None:
    result = run_cli("crds", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [
        "rke2fleet.io_rke2clusters.yaml", "rke2fleet.io_rke2nodes.yaml",
        "rke2fleet.io_rke2restores.yaml", "rke2fleet.io_rke2snapshots.yaml",
    ]
    for name in written:
        assert (tmp_path / name).read_text() == (REPO / "crds" / name).read_text()


@pytest.mark.parametrize(
    ("kind", "plural", "short", "columns"),
    [
        ("RKE2Cluster", "rke2clusters", "rkc", ["Version", "Servers", "Agents", "Ready", "Phase", "Age"]),
        ("RKE2Node", "rke2nodes", "rkn", ["Cluster", "Role", "Address", "Version", "Ready", "Phase", "Age"]),
        ("RKE2Snapshot", "rke2snapshots", "rks", ["Cluster", "Node", "Snapshot", "Size", "Phase", "Age"]),
        ("RKE2Restore", "rke2restores", "rkr", ["Cluster", "Snapshot", "Phase", "Age"]),
    ],
)
def test_crd_identity_and_columns(kind: str, plural: str, short: str, columns: list[str]) -> None:
    crd = next(c for c in generate_crds() if c["spec"]["names"]["kind"] == kind)
    loaded = yaml.safe_load((REPO / "crds" / f"{GROUP}_{plural}.yaml").read_text())
    assert loaded == crd
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["shortNames"] == [short]
    (version,) = crd["spec"]["versions"]
    assert version["name"] == VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == columns
    for column in version["additionalPrinterColumns"]:
        # `conditions[?(@.type=="Ready")]` picks list items: the path goes on inside them.
        path = re.sub(r'\[\?\(@\.type=="(\w+)"\)\]', r"[]", column["jsonPath"])
        field = path.lstrip(".").split(".")
        if field[0] in ("spec", "status"):  # the column points at a real schema property
            node = crd_schema(kind)
            for part in field:
                node = node["properties"][part.removesuffix("[]")]
                if part.endswith("[]"):
                    assert node["type"] == "array"
                    node = node["items"]
            assert node["type"] == column["type"]


@pytest.mark.parametrize("kind", ["RKE2Cluster", "RKE2Node"])
def test_every_property_has_a_description(kind: str) -> None:
    # Properties are what `kubectl explain` shows; list items and map values are not properties.
    nodes = walk(crd_schema(kind))
    properties = [(p, n) for p, n in nodes if p != "<root>" and not p.endswith(("[]", ".*"))]
    assert len(properties) > 30
    missing = [p for p, node in properties if not node.get("description")]
    assert missing == []


@pytest.mark.parametrize("kind", ["RKE2Cluster", "RKE2Node"])
def test_schema_is_structural(kind: str) -> None:
    for path, node in walk(crd_schema(kind)):
        bad = FORBIDDEN & node.keys()
        assert not bad, f"{path}: {bad}"
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path}: no type"
        assert "additionalProperties" not in node or "properties" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert "default" not in node or node["default"] is not None, path


def test_cluster_spec_has_exactly_one_of_rule() -> None:
    rules = crd_schema("RKE2Cluster")["properties"]["spec"]["x-kubernetes-validations"]
    assert rules == [
        {
            "rule": "has(self.version) != has(self.channel)",
            "message": "exactly one of spec.version or spec.channel must be set",
        },
        {
            "rule": "!has(self.install) || !has(self.install.airgap) || has(self.version)",
            "message": "an air-gapped install needs spec.version",
        },
    ]


@pytest.mark.parametrize("kind", ["RKE2Cluster", "RKE2Node"])
def test_free_form_only_in_config_values_rollout_and_addons(kind: str) -> None:
    free = sorted(p for p, n in walk(crd_schema(kind)) if n.get("x-kubernetes-preserve-unknown-fields"))
    expected = {
        "RKE2Cluster": ["spec.addons[]", "spec.agentConfig.*", "spec.serverConfig.*", "status.rollout"],
        "RKE2Node": ["spec.config.*"],
    }[kind]
    assert free == expected
