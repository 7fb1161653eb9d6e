"""Watch streams: resume from a list's resourceVersion, selectors, finalizer-held deletion, 410."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from rke2fleet_sandbox.emulator import RunningEmulator, serve_emulator
from tests.emulator.conftest import CLUSTERS, Api, cluster


class Stream:
    def __init__(self, content: Any) -> None:
        self.content = content

    async def next(self, within: float = 3.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.content.readline(), within)
        assert line, "the stream ended"
        event: dict[str, Any] = json.loads(line)
        return event

    async def silent(self, within: float = 0.3) -> bool:
        try:
            line = await asyncio.wait_for(self.content.readline(), within)
        except TimeoutError:
            return True
        return not line


@asynccontextmanager
async def watching(api: Api, path: str, **params: str) -> AsyncIterator[Stream]:
    async with api.session.get(api.url + path, params={"watch": "true", **params}) as rsp:
        assert rsp.status == 200
        yield Stream(rsp.content)


def summary(event: dict[str, Any]) -> tuple[str, str]:
    return event["type"], event["object"]["metadata"]["name"]


async def test_watch_from_list_version_sees_later_changes_only(api: Api) -> None:
    await api.ok("POST", CLUSTERS, cluster("before"))
    listed = await api.ok("GET", CLUSTERS)
    async with watching(api, CLUSTERS, resourceVersion=listed["metadata"]["resourceVersion"]) as stream:
        await api.ok("POST", CLUSTERS, cluster("after"))
        await api.merge(f"{CLUSTERS}/after", {"spec": {"version": "v2"}})
        await api.ok("DELETE", f"{CLUSTERS}/after")
        events = [await stream.next() for _ in range(3)]
        assert [summary(e) for e in events] == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert versions == sorted(versions) and len(set(versions)) == 3
        assert events[0]["object"]["kind"] == "RKE2Cluster"
        assert await stream.silent()


async def test_watch_replays_changes_made_before_it_connected(api: Api) -> None:
    listed = await api.ok("GET", CLUSTERS)
    await api.ok("POST", CLUSTERS, cluster("missed"))
    async with watching(api, CLUSTERS, resourceVersion=listed["metadata"]["resourceVersion"]) as stream:
        assert summary(await stream.next()) == ("ADDED", "missed")


async def test_watch_without_version_starts_with_existing_objects(api: Api) -> None:
    await api.ok("POST", CLUSTERS, cluster("old"))
    async with watching(api, CLUSTERS) as stream:
        assert summary(await stream.next()) == ("ADDED", "old")
        await api.ok("POST", CLUSTERS, cluster("new"))
        assert summary(await stream.next()) == ("ADDED", "new")


async def test_watch_label_selector_sees_objects_enter_and_leave(api: Api) -> None:
    listed = await api.ok("GET", CLUSTERS)
    async with watching(api, CLUSTERS, resourceVersion=listed["metadata"]["resourceVersion"],
                        labelSelector="fleet=yes") as stream:
        await api.ok("POST", CLUSTERS, cluster("other"))
        await api.ok("POST", CLUSTERS, cluster("mine", metadata={"name": "mine", "labels": {"fleet": "yes"}}))
        assert summary(await stream.next()) == ("ADDED", "mine")
        await api.merge(f"{CLUSTERS}/other", {"metadata": {"labels": {"fleet": "yes"}}})
        assert summary(await stream.next()) == ("ADDED", "other")
        await api.merge(f"{CLUSTERS}/mine", {"metadata": {"labels": {"fleet": "no"}}})
        assert summary(await stream.next()) == ("DELETED", "mine")
        await api.merge(f"{CLUSTERS}/mine", {"spec": {"version": "ignored"}})
        await api.merge(f"{CLUSTERS}/other", {"spec": {"version": "seen"}})
        event = await stream.next()
        assert summary(event) == ("MODIFIED", "other") and event["object"]["spec"]["version"] == "seen"


async def test_watch_sees_deletion_held_by_finalizer(api: Api) -> None:
    await api.ok("POST", CLUSTERS, cluster("a", metadata={"name": "a", "finalizers": ["f"]}))
    listed = await api.ok("GET", CLUSTERS)
    async with watching(api, CLUSTERS, resourceVersion=listed["metadata"]["resourceVersion"]) as stream:
        await api.ok("DELETE", f"{CLUSTERS}/a")
        event = await stream.next()
        assert summary(event) == ("MODIFIED", "a") and event["object"]["metadata"]["deletionTimestamp"]
        await api.merge(f"{CLUSTERS}/a", {"metadata": {"finalizers": []}})
        event = await stream.next()
        assert summary(event) == ("DELETED", "a") and event["object"]["metadata"]["finalizers"] == []


async def test_watch_by_field_selector_and_namespace(api: Api) -> None:
    await api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "other"}})
    listed = await api.ok("GET", CLUSTERS)
    async with watching(api, CLUSTERS, resourceVersion=listed["metadata"]["resourceVersion"],
                        fieldSelector="metadata.name=b") as stream:
        await api.ok("POST", "/apis/rke2fleet.io/v1alpha1/namespaces/other/rke2clusters", cluster("b"))
        await api.ok("POST", CLUSTERS, cluster("a"))
        await api.ok("POST", CLUSTERS, cluster("b"))
        assert summary(await stream.next()) == ("ADDED", "b")  # the one in "default"
        assert await stream.silent()


async def test_watch_from_expired_version_gets_410() -> None:
    async with serve_emulator() as running:
        running.emulator.store._history = type(running.emulator.store._history)(maxlen=3)
        await _expire(running)


async def _expire(running: RunningEmulator) -> None:
    import aiohttp
    async with aiohttp.ClientSession() as session:
        api = Api(session, running.url)
        first = await api.ok("POST", CLUSTERS, cluster("a"))
        for i in range(5):
            await api.merge(f"{CLUSTERS}/a", {"spec": {"version": f"v{i}"}})
        async with watching(api, CLUSTERS, resourceVersion=first["metadata"]["resourceVersion"]) as stream:
            event = await stream.next()
            assert event["type"] == "ERROR" and event["object"]["code"] == 410


async def test_watch_timeout_and_bookmarks(api: Api, running: RunningEmulator) -> None:
    running.emulator.bookmark_interval = 0.2
    listed = await api.ok("GET", CLUSTERS)
    async with watching(api, CLUSTERS, resourceVersion=listed["metadata"]["resourceVersion"],
                        allowWatchBookmarks="true", timeoutSeconds="1") as stream:
        event = await stream.next()
        assert event["type"] == "BOOKMARK"
        assert event["object"]["metadata"]["resourceVersion"] == listed["metadata"]["resourceVersion"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        while await stream.content.readline():
            pass
        assert loop.time() - started < 2.0  # the server closed the stream at timeoutSeconds


async def test_closed_watches_are_released(api: Api, running: RunningEmulator) -> None:
    async with watching(api, CLUSTERS):
        await asyncio.sleep(0.1)
        assert len(running.emulator.store._watchers) == 1
    for _ in range(80):  # the emulator notices the closed connection within its 5 s poll
        if not running.emulator.store._watchers:
            break
        await asyncio.sleep(0.1)
    assert not running.emulator.store._watchers
