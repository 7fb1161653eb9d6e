"""Fixtures: the emulator in the test's event loop, and a thin JSON client over plain HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rke2fleet_sandbox.emulator import RunningEmulator, serve_emulator

CLUSTERS = "/apis/rke2fleet.io/v1alpha1/namespaces/default/rke2clusters"
NODES = "/apis/rke2fleet.io/v1alpha1/namespaces/default/rke2nodes"


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def call(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                   params: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
        async with self.session.request(method, self.url + path, data=data, params=params,
                                        headers={"Content-Type": content_type}) as rsp:
            text = await rsp.text()
            return rsp.status, (json.loads(text) if text.strip().startswith(("{", "[")) else text)

    async def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, payload = await self.call(method, path, body, **kwargs)
        assert status in (200, 201), (status, payload)
        return payload

    async def merge(self, path: str, patch: Any) -> tuple[int, Any]:
        return await self.call("PATCH", path, patch, content_type="application/merge-patch+json")

    async def jsonpatch(self, path: str, ops: Any) -> tuple[int, Any]:
        return await self.call("PATCH", path, ops, content_type="application/json-patch+json")


def cluster(name: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "rke2fleet.io/v1alpha1", "kind": "RKE2Cluster",
                            "metadata": {"name": name}, "spec": {"version": "v1.35.7+rke2r1"}}
    body.update(extra)
    return body


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[RunningEmulator]:
    async with serve_emulator(kubeconfig_path=tmp_path / "kubeconfig") as emulator:
        yield emulator


@pytest.fixture
async def api(running: RunningEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, running.url)
