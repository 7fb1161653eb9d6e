"""The examples pass the generated CRD schemas (as a JSON-schema validator sees them), the models and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from rke2fleet.api import RKE2ClusterSpec, RKE2NodeSpec, parse_cluster_spec, parse_node_spec
from rke2fleet.api.manifests import validate_files

from .conftest import EXAMPLES, REPO, run_cli


def checked_in_schemas() -> dict[str, dict[str, Any]]:
    """openAPIV3Schema per kind, read from the checked-in CRD files (what a cluster would get)."""
    out = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        out[crd["spec"]["names"]["kind"]] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return out


def our_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") in ("RKE2Cluster", "RKE2Node")]


def test_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"single-server.yaml", "ha-cluster.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_matches_crd_schema(path: Path) -> None:
    schemas = checked_in_schemas()
    docs = our_documents(path)
    assert docs
    for doc in docs:
        jsonschema.Draft7Validator(schemas[doc["kind"]]).validate(doc)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_with_models(path: Path) -> None:
    for doc in our_documents(path):
        if doc["kind"] == "RKE2Cluster":
            assert isinstance(parse_cluster_spec(doc["spec"]), RKE2ClusterSpec)
        else:
            assert isinstance(parse_node_spec(doc["spec"]), RKE2NodeSpec)
    assert validate_files([str(path)]) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_cli(path: Path) -> None:
    result = run_cli("validate", "-f", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_ha_example_shape() -> None:
    docs = our_documents(REPO / "examples" / "ha-cluster.yaml")
    roles = [d["spec"]["role"] for d in docs if d["kind"] == "RKE2Node"]
    assert sorted(roles) == ["agent", "agent", "server", "server", "server"]
    (cluster,) = [parse_cluster_spec(d["spec"]) for d in docs if d["kind"] == "RKE2Cluster"]
    assert cluster.registration_address and cluster.tls_san


def test_schema_validator_is_not_vacuous() -> None:
    """The same schemas reject a broken copy of an example, so the passes above mean something."""
    schemas = checked_in_schemas()
    doc = our_documents(REPO / "examples" / "ha-cluster.yaml")[0]
    doc["spec"]["ssh"]["port"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schemas["RKE2Cluster"]).validate(doc)


def test_defaults_roundtrip() -> None:
    """A parsed spec dumps to camelCase and parses back unchanged (what the operator relies on)."""
    doc = our_documents(REPO / "examples" / "single-server.yaml")[0]
    spec = parse_cluster_spec(doc["spec"])
    dumped = spec.model_dump(exclude_none=True)
    assert dumped["ssh"]["privateKeySecretRef"] == {"name": "fleet-ssh", "key": "ssh-privatekey"}
    assert dumped["ssh"]["hostKeyPolicy"] == "Strict" and dumped["upgrade"]["drainTimeout"] == "5m"
    assert parse_cluster_spec(dumped) == spec
