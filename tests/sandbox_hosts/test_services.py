"""The installer endpoint and the API emulator as `up` starts them, and the installer's fault switch."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import yaml

from rke2fleet_sandbox import Sandbox

from .conftest import MakeSandbox

pytestmark = pytest.mark.sandbox


def curl_on(sandbox: Sandbox, host_name: str, url: str, max_time: int = 5) -> tuple[int, bytes]:
    result = sandbox.run_on_host(host_name, f"curl -sf --max-time {max_time} {url}", timeout=max_time + 10)
    return result.returncode, result.stdout


def test_full_up_serves_installer_and_emulator(make_sandbox: MakeSandbox) -> None:
    sandbox: Sandbox = make_sandbox(1, 1, emulator=True, installer=True)
    doc = json.loads(sandbox.sandbox_json_path.read_text())
    assert doc["installerURL"] == sandbox.installer_url != ""
    code, script = curl_on(sandbox, sandbox.agents[0].name, sandbox.installer_url)
    assert code == 0
    assert script.startswith(b"#!/bin/sh")
    kubeconfig = yaml.safe_load(Path(doc["kubeconfig"]).read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    with urllib.request.urlopen(f"{server}/api", timeout=5) as response:
        assert json.load(response)["kind"] == "APIVersions"


def test_installer_fault_switch_fails_then_hangs_then_heals(make_sandbox: MakeSandbox) -> None:
    sandbox: Sandbox = make_sandbox(0, 1, installer=True)
    host = sandbox.agents[0].name
    sandbox.set_installer_fault("fail")
    assert curl_on(sandbox, host, sandbox.installer_url)[0] == 22  # curl -f: HTTP error
    sandbox.set_installer_fault("hang")
    assert curl_on(sandbox, host, sandbox.installer_url, max_time=1)[0] == 28  # curl: timed out
    sandbox.set_installer_fault(None)
    assert curl_on(sandbox, host, sandbox.installer_url)[0] == 0


def test_emulator_alone(make_sandbox: MakeSandbox) -> None:
    sandbox: Sandbox = make_sandbox(0, 0, emulator=True, installer=False)
    assert sandbox.hosts == []
    assert sandbox.load_balancer_address == ""
    assert sandbox.kubeconfig_path is not None and sandbox.kubeconfig_path.exists()
    emulator = sandbox.record.services["emulator"]
    sandbox.down()
    assert not emulator.alive()
