"""Helpers shared by the deploy tests (a unique module name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent

METRIC_NAME = re.compile(r"\brke2fleet_[a-z_]+")
SERIES_SUFFIX = re.compile(r"_(bucket|sum|count|created)$")


def tool(name: str) -> str:
    """A tool from the venv (installed by the `test` extra); missing means the install is broken."""
    path = BIN / name
    assert path.exists(), f"{name} not found in {BIN}: pip install -e '.[test]'"
    return str(path)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def metric_names_in(promql: str) -> set[str]:
    """rke2fleet_* names a PromQL expression reads, with histogram/counter series suffixes stripped."""
    return {SERIES_SUFFIX.sub("", name) for name in METRIC_NAME.findall(promql)}
