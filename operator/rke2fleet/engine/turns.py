"""Turn-taking: which node of a cluster may be disrupted (installed, started, restarted) now.

A pass claims its node's turn (Memory.busy) before it disrupts it and releases it at its end;
waits are bounded and read only the store's listing (no SSH, no API call). The rules themselves
are reconcile.ordering's; who serves is read fresh from the cluster when it runs already.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from rke2fleet.api import RKE2ClusterSpec
from rke2fleet.engine.core import Engine
from rke2fleet.engine.records import NodeRecord
from rke2fleet.reconcile.health import ClusterHealth
from rke2fleet.reconcile.ordering import GoAhead, NodeView, may_disrupt

BRINGUP_BATCH = 50  # reference §5: agents in batches of at most 50
TURN_WAIT = 60.0  # bounded: a pass holds a worker (no limit on them) while it waits
TURN_POLL = 0.2
# Node phases that mean RKE2 was started on it by us (installed or beyond).
STARTED_PHASES = frozenset({"Installing", "Configuring", "Starting", "Draining", "Ready", "NotReady"})
# The init server's phases after which agents stage: it is starting or runs, or it is stuck
# (then waiting helps nothing: its own failure is in its status).
INIT_STARTING = frozenset({"Starting", "Ready", "Failed", "Unreachable"})


def node_views(records: Sequence[NodeRecord], busy: set[str], health: ClusterHealth | None = None) -> list[NodeView]:
    """`health` (a fresh read of the cluster's Nodes): who serves is taken from it, not from
    the statuses the last passes wrote."""
    views = []
    for r in records:
        up = health.serving(r.node_name, r.role) if health is not None and health.available else r.serving
        views.append(
            NodeView(
                name=r.name,
                role=r.role,
                address=str(r.spec.get("address", "")),
                ready=up,
                # Only what RKE2 itself did counts: a host that never answered has not started,
                # and a staged one (installed and configured, waiting for its turn) has not either.
                started=r.phase != "Staged" and (bool(r.status.get("installedVersion")) or r.phase in STARTED_PHASES),
                busy=r.name in busy,
                running=r.status.get("runningVersion"),
                failed=r.phase == "Failed",
            )
        )
    return views


def verdict(
    me: str,
    records: Sequence[NodeRecord],
    busy: set[str],
    init: str | None,
    cluster: RKE2ClusterSpec,
    *,
    upgrade_to: str | None = None,
    health: ClusterHealth | None = None,
    rolling: bool = False,
) -> GoAhead:
    """`upgrade_to`: a live node changes version; `rolling`: a change rolls through live nodes in
    the rollout's batches (a restart for new config, a new join token, new certificates);
    otherwise the bring-up's order."""
    views = node_views(records, busy, health)
    view = next((v for v in views if v.name == me), None)
    if view is None:
        return GoAhead(False, "node not in the cluster's index yet")
    if upgrade_to:
        return may_disrupt(
            view,
            views,
            init,
            agent_batch=cluster.upgrade.agent_concurrency,
            server_batch=cluster.upgrade.server_concurrency,
            upgrade_to=upgrade_to,
            live=True,
        )
    if rolling:
        return may_disrupt(view, views, init, agent_batch=cluster.upgrade.agent_concurrency,
                           server_batch=cluster.upgrade.server_concurrency, live=True)  # fmt: skip
    return may_disrupt(view, views, init, agent_batch=BRINGUP_BATCH)


async def until(condition: Callable[[], bool], wait: float = TURN_WAIT) -> bool:
    """Poll an in-memory condition (the store's listing) until it holds (True) or `wait` passed."""
    deadline = time.monotonic() + wait
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(TURN_POLL)
    return True


def init_starting(records: Sequence[NodeRecord], init: str) -> bool:
    """The init server has installed and is starting (or runs): an agent stages after that, so
    the first server's download, on the bring-up's critical path, does not share the site's
    bandwidth, the mirror or (in the sandbox) the CPUs with every agent's."""
    me = next((r for r in records if r.name == init), None)
    return me is None or me.phase in INIT_STARTING or bool(me.status.get("runningVersion"))


async def await_turn(engine: Engine, record: NodeRecord, init: str, cluster: RKE2ClusterSpec) -> bool:
    """Until the cluster's ordering would let this node start (True), or the wait is over. No
    SSH and no API call: the store's listing only. The pass still claims the turn itself."""
    ns, cname = record.cluster_key

    def my_turn() -> bool:
        busy = engine.memory.busy[record.cluster_key]
        return verdict(record.name, engine.store.nodes(ns, cname), busy, init, cluster).allowed

    return await until(my_turn)
