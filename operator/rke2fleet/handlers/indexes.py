"""Kopf indexes: the operator's in-memory view of its objects, kept current by the watches.

Handlers read clusters and sibling nodes from here instead of listing the API.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from rke2fleet import GROUP, VERSION
from rke2fleet.reconcile.health import ClusterHealth
from rke2fleet.reconcile.ordering import NodeView

WAKE_DELAY = 0.05  # after the index store holds the new entry (Kopf stores it once we return)

# The index functions are async although they never await: Kopf runs sync handlers in a thread
# pool, and a thread hop per watch event is costly at 1,000 objects (and `clusters` needs the loop).


@kopf.index(GROUP, VERSION, "rke2clusters")
async def clusters(
    *, namespace: Any, name: str, spec: Any, status: Any, uid: str, meta: Any, memo: Any, **_: Any
) -> Any:
    entry = {
        "spec": dict(spec),
        "status": dict(status),
        "uid": uid,
        "generation": meta.get("generation"),
        "deleting": bool(meta.get("deletionTimestamp")),
    }
    fleet = getattr(memo, "fleet", None)
    if fleet is not None:
        # A change of what shapes the nodes' desired state wakes their timers now, not at their
        # next tick: a spec change or an approved version starts moving at once.
        key, stamp = (namespace, name), desired_stamp(entry)
        if fleet.cluster_stamps.get(key, stamp) != stamp:
            asyncio.get_running_loop().call_later(WAKE_DELAY, fleet.wake_nodes, key)
        fleet.cluster_stamps[key] = stamp
    return {(namespace, name): entry}


def desired_stamp(centry: Any | None) -> tuple[Any, ...]:
    """What of the cluster shapes every node's desired state: when it changes, nodes re-plan."""
    if centry is None:
        return ()
    st = centry["status"]
    return (centry["generation"], st.get("targetVersion"), st.get("initServer"), st.get("tokenSecretName"))


@kopf.index(GROUP, VERSION, "rke2nodes")
async def nodes(*, namespace: Any, name: str, spec: Any, status: Any, meta: Any, memo: Any, **_: Any) -> Any:
    ckey = (namespace, spec.get("cluster"))
    entry = {
        "name": name,
        "spec": dict(spec),
        "status": dict(status),
        "deleting": bool(meta.get("deletionTimestamp")),
    }
    fleet = getattr(memo, "fleet", None)
    if fleet is not None:
        # The cluster's counts, phase and rollout follow its nodes at once, not at its next tick.
        stamp = summary_stamp(entry, meta.get("generation"))
        if fleet.node_stamps.get((namespace, name)) != stamp:
            fleet.node_stamps[(namespace, name)] = stamp
            asyncio.get_running_loop().call_later(WAKE_DELAY, fleet.mark_cluster_dirty, ckey)
    return {ckey: entry}


def summary_stamp(entry: Any, generation: Any) -> tuple[Any, ...]:
    """What of a node its cluster's status is made of (counts, phase, rollout, init server)."""
    st = entry["status"]
    return (
        generation,
        st.get("phase"),
        condition_true(st, "Ready"),
        serving(entry),
        st.get("runningVersion"),
        st.get("installedVersion"),
        st.get("lastError") if st.get("phase") == "Failed" else None,
        entry["deleting"],
    )


STARTED_PHASES = frozenset({"Installing", "Configuring", "Starting", "Draining", "Ready", "NotReady"})


def condition(status: Any, type_: str) -> Any | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def condition_true(status: Any, type_: str) -> bool:
    c = condition(status, type_)
    return c is not None and bool(c.get("status") == "True")


def node_name(entry: Any) -> str:
    """The Kubernetes Node name of an RKE2Node index entry."""
    return str(entry["spec"].get("nodeName") or entry["name"])


def serving(entry: Any) -> bool:
    """As its last pass saw it: the node runs its part of the cluster (unit active, its Node
    Ready, a server a voting etcd member), whether or not a change is pending for it."""
    st = entry["status"]
    if not (condition_true(st, "ServiceActive") and condition_true(st, "NodeReady")):
        return False
    if entry["spec"].get("role") != "server":
        return True
    etcd = condition(st, "EtcdVoter") or {}
    return etcd.get("status") == "True" or etcd.get("reason") == "NotReported"


def node_views(entries: Any, busy: set[str], health: ClusterHealth | None = None) -> list[NodeView]:
    """`health` (a fresh read of the cluster's Nodes): who serves is taken from it, not from
    the statuses the last passes wrote."""
    views = []
    for e in entries:
        st = e["status"]
        role = str(e["spec"].get("role", ""))
        up = health.serving(node_name(e), role) if health is not None and health.available else serving(e)
        views.append(
            NodeView(
                name=e["name"],
                role=role,
                address=str(e["spec"].get("address", "")),
                ready=up,
                # Only what RKE2 itself did counts: a host that never answered has not started,
                # and a staged one (installed and configured, waiting for its turn) has not either.
                started=st.get("phase") != "Staged"
                and (bool(st.get("installedVersion")) or st.get("phase") in STARTED_PHASES),
                busy=e["name"] in busy,
                running=st.get("runningVersion"),
                failed=st.get("phase") == "Failed",
            )
        )
    return views


def one(index: Any, key: Any) -> Any | None:
    try:
        store = index[key]
    except KeyError:
        return None
    for value in store:
        return value
    return None


def many(index: Any, key: Any) -> list[Any]:
    try:
        return list(index[key])
    except KeyError:
        return []
