"""The operator's own API calls (Secrets, status patches: `store.api.KubeApi`) against the
emulator over HTTP, with the credentials read from a kubeconfig like in production."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.config import kube_config

from rke2fleet.store.api import KubeApi
from rke2fleet_sandbox.emulator import RunningEmulator

from .conftest import CLUSTERS, Api, cluster

OWNER = {"name": "c1", "uid": "uid-1"}


@pytest.fixture
def kube(running: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> KubeApi:
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(running.kubeconfig_path))  # read at import
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return KubeApi()


async def test_secret_create_read_update(kube: KubeApi, api: Api) -> None:
    assert await kube.read_secret("default", "tok") is None
    assert await kube.read_secret_meta("default", "tok") is None
    wrote = await kube.apply_secret("default", "tok", {"token": b"s3cret"}, owner=OWNER, component="token",
                                    annotations={"a": "1"})
    assert wrote
    assert await kube.read_secret("default", "tok") == {"token": b"s3cret"}
    meta = await kube.read_secret_meta("default", "tok")
    assert meta is not None and meta["annotations"] == {"a": "1"} and meta["uid"]
    # create_only: an existing Secret is left alone
    assert not await kube.apply_secret("default", "tok", {"token": b"other"}, owner=OWNER, component="token",
                                       create_only=True)
    assert await kube.read_secret("default", "tok") == {"token": b"s3cret"}
    # else it is updated in place
    assert await kube.apply_secret("default", "tok", {"token": b"new"}, owner=OWNER, component="token")
    assert await kube.read_secret("default", "tok") == {"token": b"new"}
    raw = await api.ok("GET", "/api/v1/namespaces/default/secrets/tok")
    assert raw["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert raw["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "rke2fleet"


async def test_status_patch_and_errors_carry_no_body(kube: KubeApi, api: Api) -> None:
    await api.ok("POST", CLUSTERS, cluster("c1"))
    await kube.patch_status("rke2clusters", "default", "c1", {"phase": "Ready"})
    assert (await api.ok("GET", f"{CLUSTERS}/c1"))["status"]["phase"] == "Ready"
    with pytest.raises(ApiException) as info:
        await kube.patch_status("rke2clusters", "default", "missing", {"phase": "s3cret-value"})
    assert info.value.status == 404
    assert "missing" in str(info.value) and "s3cret-value" not in str(info.value)


def test_constructing_the_client_does_not_load_the_generated_apis(running: RunningEmulator) -> None:
    """Start-up cost: `CoreV1Api` builds thousands of models (about a second of CPU)."""
    import subprocess
    import sys

    code = ("import sys; from rke2fleet.store.api import KubeApi; KubeApi();"
            "print(any(m.startswith('kubernetes.client.api.core_v1_api') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"KUBECONFIG": str(running.kubeconfig_path), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "False"


async def test_concurrent_secret_reads_share_one_request(
    kube: KubeApi, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    read = kube._read

    def counted(namespace: str, name: str) -> Any:
        calls.append(name)
        return read(namespace, name)

    monkeypatch.setattr(kube, "_read", counted)
    await api.ok("POST", "/api/v1/namespaces/default/secrets", {"metadata": {"name": "key"}, "data": {"id": "YQ=="}})
    # Readers that allow it share the read in flight ...
    results = await asyncio.gather(*(kube.read_secret("default", "key", shared=True) for _ in range(10)))
    assert results == [{"id": b"a"}] * 10 and calls == ["key"]
    # ... but nothing is kept after it: the next read sees a change at once (a rotated token).
    await api.ok("PATCH", "/api/v1/namespaces/default/secrets/key", {"data": {"id": "Yg=="}},
                 content_type="application/merge-patch+json")
    assert await kube.read_secret("default", "key", shared=True) == {"id": b"b"}
    await api.ok("DELETE", "/api/v1/namespaces/default/secrets/key")
    assert await kube.read_secret("default", "key", shared=True) is None
    # Readers that do not allow it read on their own.
    calls.clear()
    await asyncio.gather(kube.read_secret("default", "key", shared=True), kube.read_secret("default", "key"))
    assert calls == ["key", "key"]
