"""Parked nodes: RKE2Nodes of a paused cluster that this operator has never taken on.

Kopf writes to every object its handlers match: a finalizer (for the delete handler and the
timer), its last-handled annotation (for the change handlers), then our status. A node that was
never taken on has no host state to clean up and nothing to reconcile while its cluster is
paused, so those handlers do not match it; one event handler writes its status (one write, and
none when the status already says so). Our finalizer is the mark of a node taken on: Kopf adds
it before any handler of ours runs, so a node without it has never been reached over SSH.

When the cluster is unpaused, its pass touches each parked node's status: the watch event that
follows is Kopf's cue to evaluate the filters again, now matching, and to take the node on.
"""

from __future__ import annotations

from typing import Any

import kopf

from rke2fleet import GROUP, VERSION
from rke2fleet.api.conditions import Cond, status_patch
from rke2fleet.engine.memory import ClusterKey
from rke2fleet.handlers.shards import finalizer, mine
from rke2fleet.handlers.state import FleetState
from rke2fleet.handlers.status import write_status


def _paused(clusters: Any, namespace: Any, spec: Any) -> bool:
    try:
        entries = clusters[(namespace, str((spec or {}).get("cluster") or ""))]
    except KeyError:
        return False
    return any(bool(c.spec.get("paused")) and not c.deleting for c in entries)


def parked(**kw: Any) -> bool:
    """Kopf's `when=` filter: a node of its cluster's shard, paused, and never taken on."""
    return (
        mine(**kw)
        and finalizer() not in (kw["meta"].get("finalizers") or ())
        and _paused(kw["clusters"], kw["namespace"], kw["spec"])
    )


def tended(**kw: Any) -> bool:
    """Kopf's `when=` filter of the node handlers: every node of the shard but parked ones."""
    return mine(**kw) and not parked(**kw)


@kopf.on.event(GROUP, VERSION, "rke2nodes", when=parked)
async def node_parked(*, memo: Any, name: str, namespace: Any, type: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    if type == "DELETED":
        fleet.parked.discard((namespace, name))
        return
    fleet.parked.add((namespace, name))
    msg = f"cluster {kw['spec'].get('cluster')} is paused"
    conditions = [Cond("Ready", False, "Paused", msg)]
    write_status(kw["patch"], kw["status"], kw["meta"].get("generation"), {"phase": "Paused"}, conditions)
    if kw["patch"]:
        await fleet.parked_writes.turn()


async def release_parked(fleet: FleetState, ckey: ClusterKey) -> None:
    """The cluster is no longer paused: its parked nodes are to be taken on (see above)."""
    if not fleet.parked:
        return
    namespace, cluster = ckey
    for record in fleet.store.nodes(namespace, cluster):
        if record.key not in fleet.parked:
            continue
        msg = f"cluster {cluster} is no longer paused"
        resumed = [Cond("Ready", None, "Resumed", msg)]
        patch = status_patch(record.status, record.generation, {"phase": "Pending"}, resumed)
        await fleet.store.patch_status("rke2nodes", namespace, record.name, patch)
        fleet.parked.discard(record.key)
