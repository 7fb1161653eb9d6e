"""The benchmark's smoke test needs root (sandbox hosts) and ansible-core (the `bench` extra)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def _ansible_available() -> bool:
    return (Path(sys.executable).parent / "ansible-playbook").exists() or shutil.which("ansible-playbook") is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/bench" not in str(item.path):
            continue
        if os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="the sandbox needs root"))
        elif not _ansible_available():
            item.add_marker(pytest.mark.skip(reason="ansible-core missing: pip install -e '.[bench]'"))
