"""Argo CD health checks (Lua, run with lupa) agree with kstatus and Flux on the sample statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_testlib import DEPLOY

SAMPLES = sorted((Path(__file__).parent / "samples").glob("*.yaml"))
# One script for both kinds (they share the status contract); each kind's samples run through it.
HEALTH_SCRIPTS = {
    "RKE2Cluster": DEPLOY / "argocd" / "health.lua",
    "RKE2Node": DEPLOY / "argocd" / "health.lua",
}


def _to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def argocd_health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Run a health script the way Argo CD does: `obj` global in, table with status/message out."""
    import lupa

    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _to_lua(lua, obj)
    result = lua.execute(script)
    return str(result["status"]), str(result["message"] or "")


def _condition(obj: dict[str, Any], ctype: str) -> str | None:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == ctype:
            return str(c["status"])
    return None


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus (sigs.k8s.io/cli-utils) for custom resources, as the brief states the rule."""
    if obj["metadata"].get("generation") != obj.get("status", {}).get("observedGeneration"):
        return "InProgress"
    if _condition(obj, "Reconciling") == "True":
        return "InProgress"
    if _condition(obj, "Stalled") == "True":
        return "Failed"
    return "Current"


def flux_ready(obj: dict[str, Any]) -> bool:
    """Flux: Ready=True, and only when the status speaks of the current generation."""
    observed = obj.get("status", {}).get("observedGeneration")
    return _condition(obj, "Ready") == "True" and observed == obj["metadata"].get("generation")


def _load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return doc["object"], doc["expected"]


def test_samples_cover_every_argocd_outcome_for_both_kinds() -> None:
    seen = {(_load(p)[0]["kind"], _load(p)[1]["argocd"]) for p in SAMPLES}
    for kind in HEALTH_SCRIPTS:
        assert {"Healthy", "Progressing", "Degraded", "Suspended"} <= {s for k, s in seen if k == kind}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_argocd_health_check(sample: Path) -> None:
    obj, expected = _load(sample)
    status, message = argocd_health(HEALTH_SCRIPTS[obj["kind"]].read_text(), obj)
    assert status == expected["argocd"]
    if "message" in expected:
        assert message == expected["message"]
    assert message, "Argo CD shows the message: it must never be empty"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_kstatus_and_flux_agree_with_the_samples(sample: Path) -> None:
    obj, expected = _load(sample)
    assert kstatus(obj) == expected["kstatus"]
    assert flux_ready(obj) is expected["fluxReady"]
    # Whatever Argo CD calls Healthy, Flux counts Ready and kstatus Current, and the reverse
    # for Degraded/Failed: the three tools never contradict each other on these samples.
    argocd = expected["argocd"]
    assert (argocd == "Healthy") == flux_ready(obj)
    assert (argocd == "Degraded") == (kstatus(obj) == "Failed")


@pytest.mark.parametrize("kind", sorted(HEALTH_SCRIPTS))
def test_argocd_cm_patch_carries_the_scripts(kind: str) -> None:
    patch = yaml.safe_load((DEPLOY / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"][f"resource.customizations.health.rke2fleet.io_{kind}"] == HEALTH_SCRIPTS[kind].read_text()

