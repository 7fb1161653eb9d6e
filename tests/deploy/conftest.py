"""Fixtures for the deploy/ tests: rendered kustomize and Helm manifests, the generator module."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import pytest
from deploy_testlib import DEPLOY, KUSTOMIZE, render_helm, render_kustomize


@pytest.fixture(scope="session")
def sync_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_sync_generated", DEPLOY / "sync_generated.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kustomize_objects() -> list[dict[str, Any]]:
    """The base: what `kubectl apply -k deploy/kustomize/base` applies (no Prometheus Operator kinds)."""
    return render_kustomize(KUSTOMIZE / "base")


@pytest.fixture(scope="session")
def kustomize_monitored_objects() -> list[dict[str, Any]]:
    """The base plus the monitoring component (deploy/kustomize/monitored)."""
    return render_kustomize(KUSTOMIZE / "monitored")


@pytest.fixture(scope="session")
def kustomize_namespaced_objects() -> list[dict[str, Any]]:
    """Namespaced mode for the example namespace `fleet` (deploy/kustomize/namespaced)."""
    return render_kustomize(KUSTOMIZE / "namespaced")


@pytest.fixture(scope="session")
def helm_objects() -> list[dict[str, Any]]:
    """The chart with its default values, release `rke2fleet` in `rke2fleet-system`."""
    return render_helm()


@pytest.fixture(params=["kustomize", "helm"])
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """Kustomize base + monitoring component, and the chart with its defaults: the same objects."""
    fixture = "kustomize_monitored_objects" if request.param == "kustomize" else "helm_objects"
    found: list[dict[str, Any]] = request.getfixturevalue(fixture)
    return found
