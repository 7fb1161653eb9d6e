"""Fixtures of the reliability and security suite.

`e2e` is the end-to-end fixture of tests/e2e (sandbox + the real operator under Kopf + the API
emulator) with a wider secret scan at teardown: besides the operator log, Events and statuses it
also scans the exception text in the log on its own, the emulator's log, every sandbox log (sshd,
installer, load balancer) and every object the emulator stores except the Secrets themselves
(Kopf's annotations, ConfigMaps, Events in full, the RKE2 objects in full).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2fleet_sandbox.world import Sandbox
from tests.e2e.conftest import E2E, pytest_runtest_makereport

__all__ = ["RelE2E", "e2e", "pytest_runtest_makereport"]

# A line of a Python traceback or a logged exception: what `exception text in logs` means here.
_EXC_LINE = re.compile(r"Traceback|Error|Exception|^\s+File \"|^\s{4}\S")


def emulator_url(kubeconfig: Path) -> str:
    return str(yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"])


def stored_objects(kubeconfig: Path) -> dict[str, Any]:
    """Every object the emulator serves, by resource, except Secrets (found by discovery)."""
    base = emulator_url(kubeconfig)

    def get(path: str) -> Any:
        return json.loads(urllib.request.urlopen(base + path, timeout=10).read())

    paths = ["/api/v1"]
    for group in get("/apis").get("groups", []):
        paths += [f"/apis/{v['groupVersion']}" for v in group.get("versions", [])]
    out: dict[str, Any] = {}
    for gv in paths:
        for res in get(gv).get("resources", []):
            name = res["name"]
            if "/" in name or name == "secrets" or "list" not in res.get("verbs", []):
                continue
            out[f"{gv}/{name}"] = get(f"{gv}/{name}").get("items", [])
    return out


def exception_text(log: str) -> str:
    return "\n".join(ln for ln in log.splitlines() if _EXC_LINE.search(ln))


class RelE2E(E2E):
    """The e2e environment, scanning more at teardown."""

    def texts(self) -> dict[str, str]:
        texts = super().texts()
        texts["exception text in the operator log"] = exception_text(texts["operator log"])
        sb: Sandbox | None = self.sandbox
        if sb is not None:
            for path in sorted(sb.layout.logs.glob("*.log")):
                texts[f"sandbox log {path.name}"] = path.read_text(errors="replace")
            if sb.kubeconfig_path is not None:
                for res, items in stored_objects(sb.kubeconfig_path).items():
                    texts[f"emulator objects {res}"] = json.dumps(items)
        return texts

    def scanned_sources(self) -> list[str]:
        """What the teardown scan reads (for the report)."""
        return sorted(self.texts())


@pytest.fixture
def e2e(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RelE2E]:
    env = RelE2E(tmp_path)
    yield env
    failed = getattr(request.node, "rep_call", None)
    env.teardown(check_secrets=not (failed and failed.failed))


@pytest.fixture(scope="module")
def hosts_sandbox() -> Iterator[Sandbox]:
    """Two bare sandbox hosts (one root login, one sudo login) for the direct host-access tests:
    no emulator, installer or load balancer. In a world-readable directory, since the sudo
    user's side reads from the shared filesystem too."""
    workdir = Path(tempfile.mkdtemp(prefix="rke2fleet-reliability-"))
    workdir.chmod(0o755)
    sb = Sandbox.up(workdir / "sandbox", 2, 0, sudo_hosts=1, emulator=False, load_balancer=False, installer=False)
    try:
        yield sb
    finally:
        sb.down()
        shutil.rmtree(workdir, ignore_errors=True)
