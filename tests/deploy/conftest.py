"""Fixtures for the deploy/ tests: rendered kustomize and Helm manifests, the generator module."""

from __future__ import annotations

import importlib.util
import subprocess
from types import ModuleType
from typing import Any

import pytest
import yaml
from deploy_testlib import DEPLOY, tool


@pytest.fixture(scope="session")
def sync_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_sync_generated", DEPLOY / "sync_generated.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kustomize_objects() -> list[dict[str, Any]]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(DEPLOY / "kustomize" / "base")],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="session")
def helm_rendered() -> dict[str, str]:
    import helm_python

    chart = helm_python.Chart.load(str(DEPLOY / "helm" / "rke2fleet"))
    rendered: dict[str, str] = chart.render(name="rke2fleet", namespace="rke2fleet-system", is_install=True)
    return rendered


@pytest.fixture(scope="session")
def helm_objects(helm_rendered: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for text in helm_rendered.values() for doc in yaml.safe_load_all(text) if doc]
