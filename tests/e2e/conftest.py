"""Fixtures for the end-to-end tests: sandbox + real operator under Kopf + emulator.

Every test's operator log, Events and statuses are scanned for secret material at teardown.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2fleet_sandbox.world import Sandbox
from tests.e2e.harness import NS, Kube, Operator


def secret_needles(kube: Kube, sandbox: Sandbox) -> dict[str, str]:
    """Distinctive pieces of every secret in play: a leak of any of them is a failure."""
    needles: dict[str, str] = {}
    pem_lines = [ln for ln in sandbox.client_key_pem().splitlines() if len(ln) > 40 and "PRIVATE KEY" not in ln]
    for i, ln in enumerate(pem_lines):
        needles[f"ssh private key line {i}"] = ln
    for s in kube.core.list_namespaced_secret(NS).items:
        for key, raw in (s.data or {}).items():
            value = base64.b64decode(raw).decode(errors="replace")
            if key == "token":
                needles[f"token {s.metadata.name}"] = value.strip()
                if "::" in value:
                    needles[f"token password {s.metadata.name}"] = value.strip().rsplit(":", 1)[-1]
            elif key in ("password", "auth", "identitytoken"):  # registry credentials
                needles[f"{key} {s.metadata.name}"] = value.strip()
            elif key == "value":
                doc = yaml.safe_load(value)
                user = doc["users"][0]["user"]
                for field in ("client-key-data", "client-certificate-data", "token"):
                    if user.get(field):
                        needles[f"kubeconfig {field}"] = str(user[field])[:60]
    return {k: v for k, v in needles.items() if len(v) >= 16}


def scan_for_secrets(kube: Kube, sandbox: Sandbox, texts: dict[str, str]) -> list[str]:
    needles = secret_needles(kube, sandbox)
    found = []
    for where, text in texts.items():
        for what, needle in needles.items():
            if needle in text:
                found.append(f"{what} found in {where}")
    return found


class E2E:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sandbox: Sandbox | None = None
        self.kube: Kube | None = None
        self.operators: list[Operator] = []

    def up(self, servers: int, agents: int, **kw: Any) -> Sandbox:
        self.sandbox = Sandbox.up(self.tmp / "sandbox", servers, agents, **kw)
        if kw.get("emulator", True):
            assert self.sandbox.kubeconfig_path is not None
            self.kube = Kube(self.sandbox.kubeconfig_path)
        return self.sandbox

    def operator(self, *args: str, log: str = "operator.log", **env: str) -> Operator:
        assert self.sandbox and self.sandbox.kubeconfig_path
        op = Operator(self.sandbox.kubeconfig_path, self.tmp / log, args=args, **env).start()
        self.operators.append(op)
        return op

    def texts(self) -> dict[str, str]:
        assert self.kube
        # "operator log" is every operator's log together (several replicas write one each).
        logs = sorted(self.tmp.glob("operator*.log"))
        texts = {"operator log": "\n".join(p.read_text(errors="replace") for p in logs)}
        texts["events"] = "\n".join(f"{e.reason} {e.message}" for e in self.kube.events())
        for plural in ("rke2clusters", "rke2nodes"):
            items = self.kube.custom.list_namespaced_custom_object("rke2fleet.io", "v1alpha1", NS, plural)["items"]
            texts[f"{plural} status"] = json.dumps([i.get("status") for i in items])
        return texts

    def teardown(self, check_secrets: bool) -> None:
        for op in self.operators:
            op.stop()
        try:
            if check_secrets and self.kube and self.sandbox:
                leaks = scan_for_secrets(self.kube, self.sandbox, self.texts())
                assert not leaks, leaks
        finally:
            if self.kube:
                self.kube.close()
            if self.sandbox:
                self.sandbox.down()


@pytest.fixture
def e2e(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[E2E]:
    env = E2E(tmp_path)
    yield env
    failed = getattr(request.node, "rep_call", None)
    env.teardown(check_secrets=not (failed and failed.failed))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
