"""Argo CD health checks (Lua, run with lupa) agree with kstatus and Flux on the sample statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_testlib import DEPLOY
from tests.gitops_health import SAMPLES as SAMPLE_DIR
from tests.gitops_health import argocd_health, check_agreement, flux_ready, kstatus

# Every sample is an object seen in a live end-to-end run (tests/e2e, see tests/gitops_health.py).
SAMPLES = sorted(SAMPLE_DIR.glob("*.yaml"))
# One script for both kinds (they share the status contract); each kind's samples run through it.
HEALTH_SCRIPTS = {
    "RKE2Cluster": DEPLOY / "argocd" / "health.lua",
    "RKE2Node": DEPLOY / "argocd" / "health.lua",
}


def _load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return doc["object"], doc["expected"]


def test_samples_were_captured_live_and_cover_every_argocd_outcome_for_both_kinds() -> None:
    assert all(p.read_text().startswith("# Captured from a live end-to-end run") for p in SAMPLES)
    seen = {(_load(p)[0]["kind"], _load(p)[1]["argocd"]) for p in SAMPLES}
    for kind in HEALTH_SCRIPTS:
        assert {"Healthy", "Progressing", "Degraded", "Suspended"} <= {s for k, s in seen if k == kind}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_argocd_health_check(sample: Path) -> None:
    obj, expected = _load(sample)
    status, message = argocd_health(obj, HEALTH_SCRIPTS[obj["kind"]].read_text())
    assert status == expected["argocd"]
    assert message == expected["message"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_kstatus_and_flux_agree_with_the_samples(sample: Path) -> None:
    obj, expected = _load(sample)
    assert kstatus(obj) == expected["kstatus"]
    assert flux_ready(obj) is expected["fluxReady"]
    check_agreement(obj, {**expected, "message": expected["message"]})


@pytest.mark.parametrize("kind", sorted(HEALTH_SCRIPTS))
def test_argocd_cm_patch_carries_the_scripts(kind: str) -> None:
    patch = yaml.safe_load((DEPLOY / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"][f"resource.customizations.health.rke2fleet.io_{kind}"] == HEALTH_SCRIPTS[kind].read_text()

