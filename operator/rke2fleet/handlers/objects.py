"""RKE2Snapshot and RKE2Restore handlers: Kopf registrations, each a call into the engine's
snapshot or restore pass. Both are procedures the engine records in status as it goes; a timer
drives each until it is finished and a restarted operator picks it up from its status."""

from __future__ import annotations

import dataclasses
from typing import Any

import kopf

from rke2fleet import GROUP, VERSION
from rke2fleet.engine.outcome import ObjectOutcome
from rke2fleet.engine.records import ObjectRecord
from rke2fleet.engine.restore import FINISHED, restore_pass
from rke2fleet.engine.snapshots import delete_snapshot, snapshot_pass
from rke2fleet.handlers.indexes import object_record
from rke2fleet.handlers.shards import mine
from rke2fleet.handlers.state import FleetState
from rke2fleet.handlers.status import post_events

OBJECT_TICK = 2.0


def record_of(fleet: FleetState, name: str, namespace: Any, kw: dict[str, Any]) -> ObjectRecord:
    record = object_record(namespace, name, kw["spec"], kw["status"], kw["meta"])
    # What this process wrote last is newer than a body the watch may not have brought yet.
    written = fleet.object_status.get(str(kw["uid"]))
    return record if written is None else dataclasses.replace(record, status={**record.status, **written})


def unfinished(status: Any, **_: Any) -> bool:
    return status.get("phase") not in (*FINISHED, "Ready")


def unfinished_and_mine(**kw: Any) -> bool:
    return unfinished(**kw) and mine(**kw)


def remember(fleet: FleetState, out: ObjectOutcome, kw: dict[str, Any]) -> None:
    fleet.object_status[str(kw["uid"])] = out.stored
    post_events(kw["body"], out.events)


@kopf.timer(GROUP, VERSION, "rke2snapshots", interval=OBJECT_TICK, when=unfinished_and_mine)
async def snapshot_tick(*, memo: Any, name: str, namespace: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    fleet.store.bind(kw)
    record = record_of(fleet, name, namespace, kw)
    if record.deleting:
        return
    remember(fleet, await snapshot_pass(fleet.engine, record), kw)


@kopf.on.delete(GROUP, VERSION, "rke2snapshots", when=mine)
async def snapshot_deleted(*, memo: Any, name: str, namespace: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    fleet.store.bind(kw)
    post_events(kw["body"], await delete_snapshot(fleet.engine, record_of(fleet, name, namespace, kw)))
    fleet.object_status.pop(str(kw["uid"]), None)


@kopf.timer(GROUP, VERSION, "rke2restores", interval=OBJECT_TICK, when=unfinished_and_mine)
async def restore_tick(*, memo: Any, name: str, namespace: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    fleet.store.bind(kw)
    record = record_of(fleet, name, namespace, kw)
    if record.deleting:
        return
    out = await restore_pass(fleet.engine, record)
    remember(fleet, out, kw)
    if out.stored.get("phase") != record.phase:  # the nodes show (or leave) Restoring at once
        for node in fleet.store.nodes(namespace, record.cluster):
            fleet.poke(node.key, record.cluster_key)
        fleet.mark_cluster_dirty(record.cluster_key)
