"""RKE2Node handlers: Kopf registrations, each a call into the engine and the translation of its
outcome (status patch, Events, metrics, retry)."""

from __future__ import annotations

import time
from typing import Any

import kopf

from rke2fleet import GROUP, VERSION, metrics
from rke2fleet.api import parse_duration
from rke2fleet.config import SETTINGS
from rke2fleet.engine.node_pass import node_pass
from rke2fleet.engine.outcome import NodeOutcome
from rke2fleet.engine.records import NodeRecord
from rke2fleet.engine.removal import remove_node
from rke2fleet.handlers import indexes
from rke2fleet.handlers.observe import observed
from rke2fleet.handlers.parked import tended
from rke2fleet.handlers.state import FleetState
from rke2fleet.handlers.status import export_node, post_events, write_node, write_status

TIMER_GAP = 0.1  # Kopf's own sleep between two ticks; the tick's wait is in node_tick


def record_of(name: str, namespace: str, kw: dict[str, Any]) -> NodeRecord:
    meta = kw["meta"]
    return NodeRecord(
        namespace=namespace,
        name=name,
        spec=dict(kw["spec"]),
        status=dict(kw["status"]),
        generation=meta.get("generation"),
        deleting=bool(meta.get("deletionTimestamp")),
    )


async def reconcile(
    fleet: FleetState, record: NodeRecord, kw: dict[str, Any], *, timer: bool
) -> tuple[float | None, float | None]:
    """One pass; the delay after which to retry (None when settled), and when a settled node's
    next pass is due sooner than its drift interval (None: not sooner)."""
    fleet.store.bind(kw)
    out: NodeOutcome = await node_pass(fleet.engine, record, timer=timer)
    fleet.seen_stamp[record.key] = indexes.desired_stamp(out.cluster)
    write_node(kw["patch"], record.status, record.generation, out)
    post_events(kw["body"], fleet.engine.memory.new_events(record.key, out.events))
    export_node(record.namespace, record.cluster, record.name, record.role, record.status, out)
    if out.permanent:
        raise kopf.PermanentError(out.permanent)
    if out.host_actions:
        kw["logger"].info("node %s: %s", record.name, "; ".join(out.status.plan or []) or "converged")
    return out.retry_after, out.look_again


@kopf.on.resume(GROUP, VERSION, "rke2nodes", when=tended)
@kopf.on.create(GROUP, VERSION, "rke2nodes", when=tended)
@kopf.on.update(GROUP, VERSION, "rke2nodes", field="spec", when=tended)
async def node_changed(*, memo: Any, name: str, namespace: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    record = record_of(name, namespace, kw)
    with observed("RKE2Node", namespace, name):
        async with fleet.node_locks[record.key]:
            delay, again = await reconcile(fleet, record, kw, timer=False)
        fleet.next_pass[record.key] = time.monotonic() + (delay or again or _drift_interval(fleet, record))
        if delay is not None:
            raise kopf.TemporaryError("not converged yet; see status", delay=delay)


@kopf.timer(GROUP, VERSION, "rke2nodes", interval=TIMER_GAP, initial_delay=SETTINGS.node_tick,
            when=tended)  # fmt: skip
async def node_tick(*, memo: Any, name: str, namespace: Any, spec: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    stopped = kw["stopped"]  # Kopf's stop flag of timers and daemons (not in its TimerFn protocol)
    record = record_of(name, namespace, {**kw, "spec": spec})
    # The tick waits here rather than in Kopf's sleep, so that a change of the cluster's desired
    # state (see indexes.clusters) wakes every node of it at once.
    await fleet.until_woken(record.cluster_key, SETTINGS.node_tick, stopped)
    lock = fleet.node_locks[record.key]
    if stopped or lock.locked():
        return
    fleet.store.bind(kw)
    due = time.monotonic() >= fleet.next_pass.get(record.key, 0.0)
    woken = fleet.seen_stamp.get(record.key) != indexes.desired_stamp(fleet.store.cluster(*record.cluster_key))
    poked = record.key in fleet.poked  # the cluster reports this node differently from its status
    if not (due or woken or poked):
        return
    fleet.poked.discard(record.key)
    with observed("RKE2Node", namespace, name):
        async with lock:
            delay, again = await reconcile(fleet, record, {**kw, "spec": spec}, timer=not woken)
    # Not settled (waiting for its turn, retrying a failure): come back soon, not in a drift interval.
    later = delay if delay is not None else again or _drift_interval(fleet, record)
    fleet.next_pass[record.key] = time.monotonic() + later


@kopf.on.delete(GROUP, VERSION, "rke2nodes", when=tended)
async def node_deleted(*, memo: Any, name: str, namespace: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    record = record_of(name, namespace, kw)
    fleet.store.bind(kw)
    async with fleet.node_locks[record.key]:
        out = await remove_node(fleet.engine, record)
    post_events(kw["body"], out.events)
    if out.retry_after is not None:
        if out.status is not None:
            write_status(kw["patch"], record.status, record.generation, out.status.model_dump(
                exclude_unset=True, by_alias=True, mode="json"), out.conditions)  # fmt: skip
        raise kopf.TemporaryError(out.message, delay=out.retry_after)
    kw["logger"].info("node %s removed", name)
    fleet.forget_node(record.key)
    metrics.forget_node(namespace, record.cluster, name)


def _drift_interval(fleet: FleetState, record: NodeRecord) -> float:
    """The node's cluster's driftCheckInterval in seconds (5 minutes when unknown)."""
    crec = fleet.store.cluster(*record.cluster_key)
    try:
        return parse_duration(str((crec.spec if crec else {}).get("driftCheckInterval", "5m")))
    except ValueError:
        return 300.0
