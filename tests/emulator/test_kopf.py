"""The real Kopf operator against the emulator, in the same event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import kopf
import pytest

from rke2fleet_sandbox.emulator import serve_emulator
from tests.emulator.conftest import CLUSTERS, Api, cluster

FINALIZER = "rke2fleet.io/test-finalizer"


async def _until(probe: Any, within: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await probe()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


@pytest.mark.timeout(60)
async def test_kopf_create_and_finalizer_delete_handlers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []

    async with serve_emulator() as running, aiohttp.ClientSession() as session:
        api = Api(session, running.url)

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=running.url)

        @kopf.on.startup(registry=registry)
        def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.persistence.finalizer = FINALIZER
            settings.posting.level = logging.INFO
            settings.watching.server_timeout = 10

        @kopf.on.create("rke2fleet.io", "v1alpha1", "rke2clusters", registry=registry)
        def created(body: kopf.Body, spec: Any, patch: kopf.Patch, **_: Any) -> None:
            for _attempt in range(3):  # each Event is posted with generateName: names must not clash
                kopf.info(body, reason="Creating", message="creating")
            patch.status["phase"] = "Created"
            patch.status["seenVersion"] = spec["version"]

        @kopf.on.delete("rke2fleet.io", "v1alpha1", "rke2clusters", registry=registry)
        async def removing(name: str, **_: Any) -> None:
            await api.ok("POST", "/api/v1/namespaces/default/configmaps",
                         {"metadata": {"name": f"removed-{name}"}, "data": {"by": "kopf"}})
            deleted.append(name)

        stop = asyncio.Event()
        operator = asyncio.create_task(kopf.operator(registry=registry, clusterwide=True, standalone=True,
                                                     stop_flag=stop))
        try:
            await api.ok("POST", CLUSTERS, cluster("alpha"))

            async def reconciled() -> Any:
                obj = await api.ok("GET", f"{CLUSTERS}/alpha")
                return obj if (obj.get("status") or {}).get("phase") == "Created" else None

            obj = await _until(reconciled)
            assert obj["status"]["seenVersion"] == "v1.35.7+rke2r1"
            assert FINALIZER in obj["metadata"]["finalizers"]

            async def events_posted() -> Any:
                events = await api.ok("GET", "/api/v1/namespaces/default/events")
                return [e for e in events["items"] if e["involvedObject"]["name"] == "alpha"]

            events = await _until(events_posted)
            await asyncio.sleep(0.5)  # let the rest of the posts land
            events = await events_posted()
            assert len({e["metadata"]["name"] for e in events}) == 3
            assert all(e["metadata"]["name"].startswith("kopf-event-") for e in events)

            await api.ok("DELETE", f"{CLUSTERS}/alpha")

            async def gone() -> bool:
                status, _ = await api.call("GET", f"{CLUSTERS}/alpha")
                return status == 404

            await _until(gone)
            assert deleted == ["alpha"]
            marker = await api.ok("GET", "/api/v1/namespaces/default/configmaps/removed-alpha")
            assert marker["data"] == {"by": "kopf"}
            patches = [e for e in running.emulator.audit_log()
                       if e["verb"] == "patch" and e["resource"] == "rke2clusters"]
            assert patches and all(e["code"] in (200, 422) for e in patches)
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(operator, timeout=15)
