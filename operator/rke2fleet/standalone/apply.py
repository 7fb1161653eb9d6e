"""`rke2fleet apply`: the engine's cluster and node passes in a loop, as the operator runs them
(same join order, health gates, rollouts and drift repair), until the cluster converges, a node
fails, or the time is up. Statuses and generated Secrets go to the state directory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from rke2fleet.api.conditions import status_patch
from rke2fleet.engine.cluster_pass import cluster_pass
from rke2fleet.engine.core import Engine, close, connect
from rke2fleet.engine.node_pass import node_pass
from rke2fleet.engine.outcome import ClusterOutcome, fields_of
from rke2fleet.engine.records import ClusterRecord
from rke2fleet.standalone.manifests import Manifests
from rke2fleet.standalone.progress import Progress, ready_message
from rke2fleet.standalone.state import FileStore, StateDir

CLUSTER_TICK = 1.0
UNREACHABLE_TRIES = 3  # passes in a row a host may not answer before apply gives up


def desired_stamp(crec: ClusterRecord | None) -> tuple[Any, ...]:
    """What of the cluster shapes its nodes' desired state (as handlers.indexes.desired_stamp)."""
    st = crec.status if crec else {}
    return (st.get("targetVersion"), st.get("initServer"), st.get("tokenSecretName"))


class Converge:
    def __init__(self, engine: Engine, store: FileStore, progress: Progress) -> None:
        self.engine, self.store, self.progress = engine, store, progress
        self.m = store.manifests
        self.wake = {name: asyncio.Event() for name in self.m.nodes}
        self.dirty = asyncio.Event()
        self.settled: dict[str, bool] = dict.fromkeys(self.m.nodes, False)
        self.failure: str | None = None
        self.cluster_ready = False
        self.cluster_pass_since: float | None = None  # when the pass under way started

    async def cluster_loop(self) -> None:
        stamp = desired_stamp(None)
        while True:
            crec = self.store.cluster(self.m.namespace, self.m.name)
            assert crec is not None
            self.cluster_pass_since = time.monotonic()
            out = await cluster_pass(self.engine, crec)
            self.cluster_pass_since = None
            await self.write_cluster(crec, out)
            now = self.store.cluster(self.m.namespace, self.m.name)
            ready = next((c for c in out.conditions if c.type == "Ready"), None)
            self.cluster_ready = bool(ready and ready.status) and out.status.phase == "Ready"
            self.progress.cluster_phase(str(out.status.phase or ""), ready.message if ready else "")
            if out.permanent or out.status.phase == "Failed":
                self.failure = f"RKE2Cluster {self.m.name}: {ready.message if ready else out.permanent}"
                return
            if desired_stamp(now) != stamp:
                stamp = desired_stamp(now)
                for event in self.wake.values():
                    event.set()
            for name in out.recheck:
                self.wake[name].set()
            self.dirty.clear()
            await _first(self.dirty, CLUSTER_TICK)

    async def write_cluster(self, crec: ClusterRecord, out: ClusterOutcome) -> None:
        patch = status_patch(crec.status, crec.generation, fields_of(out.status), out.conditions)
        if patch:
            await self.store.patch_status("rke2clusters", crec.namespace, crec.name, patch)
        for event in out.events:
            if event.type == "Warning":
                self.progress.warning(crec.name, event.reason, event.message)

    async def node_loop(self, name: str) -> None:
        unreachable = 0
        while True:
            record = self.store.node(name)
            self.wake[name].clear()
            out = await node_pass(self.engine, record, timer=False)
            old = {**record.status, **out.progress}
            patch = status_patch(old, record.generation, fields_of(out.status), out.conditions)
            if patch:
                await self.store.patch_status("rke2nodes", record.namespace, name, patch)
            status = self.store.node(name).status
            self.progress.node(name, status)
            if status.get("hostKey"):
                self.keep_host_key(name, str(status["hostKey"]))
            for event in self.engine.memory.new_events(record.key, out.events):
                if event.type == "Warning":
                    self.progress.warning(name, event.reason, event.message)
            self.dirty.set()
            unreachable = unreachable + 1 if status.get("phase") == "Unreachable" else 0
            if out.permanent or status.get("phase") == "Failed" or unreachable >= UNREACHABLE_TRIES:
                self.failure = f"{name}: {ready_message(status) or status.get('lastError') or status.get('phase')}"
                return
            self.settled[name] = out.retry_after is None and status.get("phase") == "Ready"
            await _first(self.wake[name], None if self.settled[name] else out.retry_after)

    def keep_host_key(self, name: str, key: str) -> None:
        """A host key accepted on first contact (AcceptNew), for `rke2fleet export`."""
        spec = self.m.nodes[name]["spec"]
        port = spec.get("port") or (self.m.cluster["spec"].get("ssh") or {}).get("port") or 22
        entry = {"address": spec.get("address"), "port": int(port), "key": key}
        if self.store.state.read("hostkeys", f"{name}.json") != entry:
            self.store.state.write(entry, "hostkeys", f"{name}.json")

    def converged(self) -> bool:
        return self.cluster_ready and all(self.settled.values())


async def _first(event: asyncio.Event, timeout: float | None) -> None:  # noqa: ASYNC109 - a poll interval
    # Not wait_for: on Python 3.11 it swallows a cancellation that lands as the event is set, and
    # the node loop that should end with the run waits on forever (an `apply` hung at its end).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


async def converge(engine: Engine, store: FileStore, progress: Progress, timeout: float) -> str | None:  # noqa: ASYNC109
    """None when the cluster converged; else why not."""
    run = Converge(engine, store, progress)
    for name, doc in sorted(store.manifests.nodes.items()):
        progress.add(name, str(doc["spec"].get("role")))
    tasks = [asyncio.ensure_future(run.cluster_loop())]
    tasks += [asyncio.ensure_future(run.node_loop(name)) for name in sorted(store.manifests.nodes)]
    deadline = time.monotonic() + timeout
    try:
        while not run.converged():
            if run.failure:
                return run.failure
            crashed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception()), None)
            if crashed is not None:
                exc = crashed.exception()
                return f"internal error: {type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                waiting = [n for n, done in run.settled.items() if not done]
                why = f"not converged within {timeout:.0f}s; not Ready: {', '.join(waiting) or 'the cluster'}"
                if run.cluster_pass_since is not None:
                    why += f" (the cluster pass under way for {time.monotonic() - run.cluster_pass_since:.0f}s)"
                return why
            await asyncio.sleep(0.2)
        return None
    finally:
        pending = set(tasks)
        while pending:  # a task that went on past one cancellation is cancelled again
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=5)
        await asyncio.gather(*tasks, return_exceptions=True)


async def apply(manifests: Manifests, state: StateDir, progress: Progress, *, timeout: float) -> str | None:  # noqa: ASYNC109
    store = FileStore(manifests, state)
    engine = connect(store)
    try:
        return await converge(engine, store, progress, timeout)
    finally:
        await close(engine)
