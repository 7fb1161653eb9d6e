"""Kopf indexes: the operator's in-memory view of its objects, kept current by the watches.

The engine lists clusters and sibling nodes from here (store.kube) instead of the API. The index
functions also wake what depends on a change: a cluster's nodes when its desired state changes,
and a cluster's summary when one of its nodes changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from rke2fleet import GROUP, VERSION
from rke2fleet.engine.records import ClusterRecord, NodeRecord, ObjectRecord
from rke2fleet.handlers.shards import mine

WAKE_DELAY = 0.05  # after the index store holds the new entry (Kopf stores it once we return)

# The index functions are async although they never await: Kopf runs sync handlers in a thread
# pool, and a thread hop per watch event is costly at 1,000 objects (and `clusters` needs the loop).


@kopf.index(GROUP, VERSION, "rke2clusters", when=mine)
async def clusters(
    *, namespace: Any, name: str, spec: Any, status: Any, uid: str, meta: Any, memo: Any, **_: Any
) -> Any:
    record = ClusterRecord(
        namespace=namespace,
        name=name,
        spec=dict(spec),
        status=dict(status),
        uid=uid,
        generation=meta.get("generation"),
        deleting=bool(meta.get("deletionTimestamp")),
    )
    fleet = getattr(memo, "fleet", None)
    if fleet is not None:
        # A change of what shapes the nodes' desired state wakes their timers now, not at their
        # next tick: a spec change or an approved version starts moving at once.
        key, stamp = (namespace, name), desired_stamp(record)
        if fleet.cluster_stamps.get(key, stamp) != stamp:
            asyncio.get_running_loop().call_later(WAKE_DELAY, fleet.wake_nodes, key)
        fleet.cluster_stamps[key] = stamp
    return {(namespace, name): record}


def desired_stamp(record: ClusterRecord | None) -> tuple[Any, ...]:
    """What of the cluster shapes every node's desired state: when it changes, nodes re-plan."""
    if record is None:
        return ()
    st = record.status
    return (record.generation, st.get("targetVersion"), st.get("initServer"), st.get("tokenSecretName"))


@kopf.index(GROUP, VERSION, "rke2nodes", when=mine)
async def nodes(*, namespace: Any, name: str, spec: Any, status: Any, meta: Any, memo: Any, **_: Any) -> Any:
    record = NodeRecord(
        namespace=namespace,
        name=name,
        spec=dict(spec),
        status=dict(status),
        generation=meta.get("generation"),
        deleting=bool(meta.get("deletionTimestamp")),
    )
    fleet = getattr(memo, "fleet", None)
    if fleet is not None:
        # The cluster's counts, phase and rollout follow its nodes at once, not at its next tick.
        stamp = summary_stamp(record)
        if fleet.node_stamps.get((namespace, name)) != stamp:
            fleet.node_stamps[(namespace, name)] = stamp
            asyncio.get_running_loop().call_later(WAKE_DELAY, fleet.mark_cluster_dirty, record.cluster_key)
    return {record.cluster_key: record}


def summary_stamp(record: NodeRecord) -> tuple[Any, ...]:
    """What of a node its cluster's status is made of (counts, phase, rollout, init server)."""
    st = record.status
    return (
        record.generation,
        st.get("phase"),
        record.condition_true("Ready"),
        record.serving,
        st.get("runningVersion"),
        st.get("installedVersion"),
        st.get("lastError") if st.get("phase") == "Failed" else None,
        record.deleting,
    )


def object_record(namespace: Any, name: str, spec: Any, status: Any, meta: Any) -> ObjectRecord:
    return ObjectRecord(
        namespace=namespace,
        name=name,
        spec=dict(spec),
        status=dict(status),
        generation=meta.get("generation"),
        annotations=dict(meta.get("annotations") or {}),
        deleting=bool(meta.get("deletionTimestamp")),
    )


@kopf.index(GROUP, VERSION, "rke2snapshots", when=mine)
async def snapshots(*, namespace: Any, name: str, spec: Any, status: Any, meta: Any, **_: Any) -> Any:
    return {(namespace, name): object_record(namespace, name, spec, status, meta)}


@kopf.index(GROUP, VERSION, "rke2restores", when=mine)
async def restores(*, namespace: Any, name: str, spec: Any, status: Any, meta: Any, **_: Any) -> Any:
    record = object_record(namespace, name, spec, status, meta)
    return {record.cluster_key: record}
