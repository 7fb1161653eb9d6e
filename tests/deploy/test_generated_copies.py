"""The copies kustomize and Helm read (CRDs, rules, dashboard, Argo CD patch) equal their sources."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from deploy_testlib import DEPLOY, REPO


def test_generated_files_match_their_sources(sync_module: ModuleType) -> None:
    stale = sync_module.stale_files()
    assert stale == [], f"run `python deploy/sync_generated.py`; stale: {stale}"


def test_crds_are_shipped_in_kustomize_and_helm_byte_for_byte() -> None:
    sources = sorted((REPO / "crds").glob("*.yaml"))
    assert sources, "crds/ holds no CRD (run `make crds`)"
    for target in (DEPLOY / "kustomize" / "base" / "crds", DEPLOY / "helm" / "rke2fleet" / "crds"):
        assert sorted(p.name for p in target.glob("*.yaml") if p.name != "kustomization.yaml") == [
            p.name for p in sources
        ]
        for src in sources:
            assert (target / src.name).read_bytes() == src.read_bytes(), f"{target / src.name} drifted"


def test_drift_is_detected(sync_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: a changed CRD, a removed CRD and an edited copy are all reported."""
    fake_crds = tmp_path / "crds"
    shutil.copytree(REPO / "crds", fake_crds)
    first = sorted(fake_crds.glob("*.yaml"))[0]
    doc = yaml.safe_load(first.read_text())
    doc["spec"]["names"]["shortNames"] = ["drifted"]
    first.write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(sync_module, "CRDS", fake_crds)
    stale = sync_module.stale_files()
    assert f"deploy/kustomize/base/crds/{first.name}" in stale
    assert f"deploy/helm/rke2fleet/crds/{first.name}" in stale

    first.unlink()
    stale = sync_module.stale_files()
    assert any(line.startswith(f"deploy/helm/rke2fleet/crds/{first.name}") and "no longer" in line
               for line in stale)


def test_helm_loads_the_crds_from_its_crds_directory() -> None:
    import helm_python

    chart = helm_python.Chart.load(str(DEPLOY / "helm" / "rke2fleet"))
    shipped = {Path(c["name"]).name: c["data"] for c in chart.crds}
    assert shipped == {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}


def test_rule_and_dashboard_drift_is_detected_in_the_monitoring_component(
    sync_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PrometheusRule and dashboard copies live in the kustomize monitoring component now."""
    rules = tmp_path / "rke2fleet-rules.yaml"
    rules.write_text(sync_module.RULES.read_text().replace("for: 15m", "for: 16m", 1))
    dashboard = tmp_path / "rke2fleet-dashboard.json"
    dashboard.write_text(sync_module.DASHBOARD.read_text().replace('"rke2fleet"', '"rke2fleet-edited"', 1))
    monkeypatch.setattr(sync_module, "RULES", rules)
    monkeypatch.setattr(sync_module, "DASHBOARD", dashboard)
    assert sorted(sync_module.stale_files()) == [
        "deploy/helm/rke2fleet/files/rke2fleet-dashboard.json",
        "deploy/helm/rke2fleet/files/rke2fleet-rules.yaml",
        "deploy/kustomize/components/monitoring/grafana-dashboard-configmap.yaml",
        "deploy/kustomize/components/monitoring/prometheusrule.yaml",
    ]
