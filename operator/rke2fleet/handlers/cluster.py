"""RKE2Cluster handlers: Kopf registrations, each a call into the engine's cluster pass and the
translation of its outcome (status patch, Events, metrics, nodes to re-check)."""

from __future__ import annotations

from typing import Any

import kopf

from rke2fleet import GROUP, VERSION, metrics
from rke2fleet.config import SETTINGS
from rke2fleet.engine.cluster_pass import cluster_pass
from rke2fleet.engine.records import ClusterRecord
from rke2fleet.handlers.observe import observed
from rke2fleet.handlers.parked import release_parked
from rke2fleet.handlers.shards import mine
from rke2fleet.handlers.state import FleetState
from rke2fleet.handlers.status import export_cluster, post_events, write_cluster

CLUSTER_GAP = 0.1  # Kopf's own sleep between two passes; the tick's wait is in cluster_tick


def record_of(name: str, namespace: str, kw: dict[str, Any]) -> ClusterRecord:
    meta = kw["meta"]
    return ClusterRecord(
        namespace=namespace,
        name=name,
        spec=dict(kw["spec"]),
        status=dict(kw["status"]),
        uid=str(kw.get("uid") or ""),
        generation=meta.get("generation"),
        deleting=bool(meta.get("deletionTimestamp")),
    )


async def reconcile(fleet: FleetState, record: ClusterRecord, kw: dict[str, Any]) -> None:
    fleet.store.bind(kw)
    out = await cluster_pass(fleet.engine, record)
    export_cluster(record.namespace, record.name, out)
    write_cluster(kw["patch"], record.status, record.generation, out)
    post_events(kw["body"], out.events)
    for name in out.recheck:
        fleet.poke((record.namespace, name), record.key)
    if not record.spec.get("paused"):  # as handlers.parked reads it
        await release_parked(fleet, record.key)
    if out.permanent:
        raise kopf.PermanentError(out.permanent)


@kopf.on.resume(GROUP, VERSION, "rke2clusters", when=mine)
@kopf.on.create(GROUP, VERSION, "rke2clusters", when=mine)
@kopf.on.update(GROUP, VERSION, "rke2clusters", field="spec", when=mine)
async def cluster_changed(*, memo: Any, name: str, namespace: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    record = record_of(name, namespace, kw)
    with observed("RKE2Cluster", namespace, name):
        async with fleet.cluster_locks[record.key]:
            await reconcile(fleet, record, kw)


@kopf.timer(GROUP, VERSION, "rke2clusters", interval=CLUSTER_GAP, initial_delay=CLUSTER_GAP,
            when=mine)  # fmt: skip
async def cluster_tick(*, memo: Any, name: str, namespace: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    stopped = kw["stopped"]  # Kopf's stop flag of timers and daemons (not in its TimerFn protocol)
    key = (namespace, name)
    # A pass every cluster tick, or as soon as one of its nodes changed (indexes.nodes marks the
    # cluster dirty), at most one per CLUSTER_GAP + pass: a bring-up's bursts are batched.
    await fleet.until_cluster_dirty(key, SETTINGS.cluster_tick, stopped)
    lock = fleet.cluster_locks[key]
    if stopped:
        return
    if lock.locked():  # the handler's pass may have read the nodes before the change: look again
        fleet.mark_cluster_dirty(key)
        return
    async with lock:
        try:
            with observed("RKE2Cluster", namespace, name):
                await reconcile(fleet, record_of(name, namespace, kw), kw)
        except kopf.PermanentError:
            pass  # already in status; the timer keeps looking for a fixed spec


@kopf.on.delete(GROUP, VERSION, "rke2clusters", when=mine)
async def cluster_deleted(*, name: str, namespace: Any, memo: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    remaining = [r.name for r in fleet.store.bind(kw).nodes(namespace, name)]
    if remaining:
        raise kopf.TemporaryError(f"waiting for its RKE2Nodes to be deleted: {', '.join(sorted(remaining))}", delay=5)
    metrics.forget_cluster(namespace, name)
    fleet.forget_cluster((namespace, name))
