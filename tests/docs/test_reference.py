"""docs/reference.md is what docs/gen_reference.py generates from the models (like the CRD drift test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import pytest
from pydantic import AfterValidator, BaseModel

from rke2fleet.api import RKE2ClusterSpec, RKE2NodeSpec
from rke2fleet.api.crdgen import generate_crd

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"


def test_checked_in_reference_is_what_the_models_generate(gen_reference: ModuleType) -> None:
    assert REFERENCE.read_text(encoding="utf-8") == gen_reference.render(), (
        "docs/reference.md is stale: run `python docs/gen_reference.py`"
    )


def _paths(schema: dict, prefix: str) -> list[str]:
    out = []
    for name, node in schema.get("properties", {}).items():
        out.append(prefix + name)
        child = node.get("items", {}) if node.get("type") == "array" else node
        sep = "[]." if node.get("type") == "array" else "."
        out += _paths(child, prefix + name + sep)
    return out


@pytest.mark.parametrize("kind", ["RKE2Cluster", "RKE2Node"])
def test_every_spec_and_status_field_has_a_row(kind: str, gen_reference: ModuleType) -> None:
    text = gen_reference.render()
    schema = generate_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    paths = _paths(schema["spec"], "spec.") + _paths(schema["status"], "status.")
    assert len(paths) > 10
    missing = [p for p in paths if f"| `{p}` |" not in text]
    assert not missing


def test_model_only_rules_appear_in_their_rows(gen_reference: ModuleType) -> None:
    rows = {line.split(" | ")[0].strip("| `"): line for line in gen_reference.render().splitlines()}
    # Rules with no schema keyword: they come from the models' validators.
    assert "not a URL" in rows["spec.registrationAddress"]
    assert "each entry: Kubernetes taint" in rows["spec.nodeTaints"]
    assert "server-only keys refused" in rows["spec.agentConfig"]
    assert "server-only keys refused" not in rows["spec.serverConfig"]
    assert "one of `Strict`, `AcceptNew`" in rows["spec.ssh.hostKeyPolicy"]
    assert "| `22` |" in rows["spec.ssh.port"]


def test_a_validator_without_a_sentence_stops_the_generator(gen_reference: ModuleType) -> None:
    def _check_something_new(v: str) -> str:
        return v

    class Probe(BaseModel):
        field: Annotated[str, AfterValidator(_check_something_new)]

    with pytest.raises(SystemExit, match="_check_something_new"):
        gen_reference._model_rules(Probe)
    assert gen_reference._model_rules(RKE2ClusterSpec) and gen_reference._model_rules(RKE2NodeSpec)


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    script = str(ROOT / "docs" / "gen_reference.py")
    stale = tmp_path / "reference.md"
    stale.write_text("old\n")
    res = subprocess.run([sys.executable, script, "--check", "--output", str(stale)], capture_output=True, text=True)
    assert res.returncode == 1 and "stale" in res.stderr
    assert subprocess.run([sys.executable, script, "--output", str(stale)], check=False).returncode == 0
    res = subprocess.run([sys.executable, script, "--check", "--output", str(stale)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert stale.read_text() == REFERENCE.read_text()
