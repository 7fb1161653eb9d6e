"""How GitOps tools read our status: Argo CD (the shipped Lua health check, run with lupa),
kstatus (Flux health checks, `kubectl wait`-style tooling) and Flux's Ready.

The end-to-end tests judge the objects of live runs with these and record them as the samples
tests/deploy/test_argocd_health.py replays (RKE2FLEET_CAPTURE_SAMPLES=1 rewrites them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
HEALTH_LUA = REPO / "deploy" / "argocd" / "health.lua"
SAMPLES = REPO / "tests" / "deploy" / "samples"
CAPTURE = os.environ.get("RKE2FLEET_CAPTURE_SAMPLES") == "1"
# Argo CD calls these Degraded while the operator retries; kstatus has no such state (InProgress).
DEGRADED_PHASES = ("Degraded", "NotReady", "Unreachable")


def _to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def argocd_health(obj: dict[str, Any], script: str | None = None) -> tuple[str, str]:
    """Run the health script the way Argo CD does: `obj` global in, table with status/message out."""
    import lupa

    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _to_lua(lua, obj)
    result = lua.execute(script if script is not None else HEALTH_LUA.read_text())
    return str(result["status"]), str(result["message"] or "")


def _condition(obj: dict[str, Any], ctype: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return str(c["status"])
    return None


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus (sigs.k8s.io/cli-utils) for custom resources."""
    if obj["metadata"].get("generation") != (obj.get("status") or {}).get("observedGeneration"):
        return "InProgress"
    if _condition(obj, "Reconciling") == "True":
        return "InProgress"
    if _condition(obj, "Stalled") == "True":
        return "Failed"
    return "Current"


def flux_ready(obj: dict[str, Any]) -> bool:
    """Flux: Ready=True, and only when the status speaks of the current generation."""
    observed = (obj.get("status") or {}).get("observedGeneration")
    return _condition(obj, "Ready") == "True" and observed == obj["metadata"].get("generation")


def judge(obj: dict[str, Any]) -> dict[str, Any]:
    argocd, message = argocd_health(obj)
    return {"argocd": argocd, "kstatus": kstatus(obj), "fluxReady": flux_ready(obj), "message": message}


def check_agreement(obj: dict[str, Any], seen: dict[str, Any]) -> None:
    """The three tools never contradict each other: Healthy ⇔ Flux Ready (⇒ kstatus Current);
    Degraded ⇔ kstatus Failed, or a degraded phase that kstatus sees as still in progress."""
    assert seen["message"], "Argo CD shows the message: it must never be empty"
    assert (seen["argocd"] == "Healthy") == seen["fluxReady"]
    if seen["fluxReady"]:
        assert seen["kstatus"] == "Current"
    phase = (obj.get("status") or {}).get("phase")
    degraded = seen["kstatus"] == "Failed" or (phase in DEGRADED_PHASES and seen["kstatus"] == "InProgress")
    assert (seen["argocd"] == "Degraded") == degraded, (seen, phase)


def assert_gitops(obj: dict[str, Any], sample: str, *, argocd: str, kstatus: str, flux: bool, why: str = "") -> None:
    """Judge a live object as the three tools would, assert the outcome, and (when capturing)
    record it as `tests/deploy/samples/<sample>.yaml`."""
    seen = judge(obj)
    expected = {"argocd": argocd, "kstatus": kstatus, "fluxReady": flux}
    assert {k: seen[k] for k in expected} == expected, (sample, seen, obj.get("status"))
    check_agreement(obj, seen)
    if CAPTURE:
        kept = {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "generation") if k in obj["metadata"]},
            "status": obj.get("status"),
        }
        if "spec" in obj and obj["kind"] == "RKE2Node":
            kept["spec"] = {k: obj["spec"][k] for k in ("cluster", "role") if k in obj["spec"]}
        doc = {"expected": {**expected, "message": seen["message"]}, "object": kept}
        header = f"# Captured from a live end-to-end run: {why or sample}\n"
        (SAMPLES / f"{sample}.yaml").write_text(header + yaml.safe_dump(doc, sort_keys=False, width=120))
