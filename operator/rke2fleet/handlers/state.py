"""What the handlers keep between Kopf's calls: the engine, locks, and the timers' wake-ups.

Nothing here is needed for correctness across restarts (what must survive is in status).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from rke2fleet.config import SETTINGS
from rke2fleet.engine.core import Engine
from rke2fleet.engine.memory import ClusterKey, NodeKey
from rke2fleet.store.kube import KubeStore


@dataclass
class FleetState:
    engine: Engine
    store: KubeStore
    cluster_locks: defaultdict[ClusterKey, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    node_locks: defaultdict[NodeKey, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    next_pass: dict[NodeKey, float] = field(default_factory=dict)  # monotonic time of the next timer pass
    # Per node: the cluster's desired-state stamp its last pass saw (see indexes.desired_stamp).
    seen_stamp: dict[NodeKey, tuple[Any, ...]] = field(default_factory=dict)
    # Per cluster: the desired-state stamp last indexed, and the event its nodes' timers wait on.
    cluster_stamps: dict[ClusterKey, tuple[Any, ...]] = field(default_factory=dict)
    _wake: dict[ClusterKey, asyncio.Event] = field(default_factory=dict)
    # Per node: what of it the cluster's status is made of (see indexes.summary_stamp); a change
    # marks the cluster dirty, and its timer (the one consumer, so the mark can stay set while
    # it is busy) aggregates at once instead of at its next tick.
    node_stamps: dict[NodeKey, tuple[Any, ...]] = field(default_factory=dict)
    _cluster_dirty: dict[ClusterKey, asyncio.Event] = field(default_factory=dict)
    # Nodes to re-check at their next tick, whatever their drift interval: the cluster reports
    # them differently from their status.
    poked: set[NodeKey] = field(default_factory=set)
    # Nodes of paused clusters never taken on (see handlers.parked), and their writes' pace.
    parked: set[NodeKey] = field(default_factory=set)
    parked_writes: Pace = field(default_factory=lambda: Pace(SETTINGS.parked_write_rate))
    # Per RKE2Snapshot / RKE2Restore: the status its last pass wrote (newer than a body in flight).
    object_status: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid

    def poke(self, key: NodeKey, ckey: ClusterKey) -> None:
        self.poked.add(key)
        self.wake_nodes(ckey)

    def wake_nodes(self, ckey: ClusterKey) -> None:
        """Every node timer of the cluster waiting in `until_woken` goes on now."""
        event = self._wake.pop(ckey, None)
        if event is not None:
            event.set()

    async def until_woken(self, ckey: ClusterKey, timeout: float, stopped: Any) -> None:  # noqa: ASYNC109
        """Until `wake_nodes(ckey)`, `stopped` (Kopf's stop flag of the timer) or `timeout`."""
        await _first_of(self._wake.setdefault(ckey, asyncio.Event()), stopped, timeout)

    def mark_cluster_dirty(self, ckey: ClusterKey) -> None:
        self._cluster_dirty.setdefault(ckey, asyncio.Event()).set()

    async def until_cluster_dirty(self, ckey: ClusterKey, timeout: float, stopped: Any) -> None:  # noqa: ASYNC109
        """Until a node of the cluster changed (also while the caller was busy), `stopped` or
        `timeout`; the mark is cleared for the pass that follows."""
        dirty = self._cluster_dirty.setdefault(ckey, asyncio.Event())
        await _first_of(dirty, stopped, timeout)
        dirty.clear()

    def forget_node(self, key: NodeKey) -> None:
        for table in (self.next_pass, self.seen_stamp, self.node_stamps):
            table.pop(key, None)
        self.node_locks.pop(key, None)
        self.poked.discard(key)
        self.engine.memory.forget_node(key)

    def forget_cluster(self, ckey: ClusterKey) -> None:
        self.cluster_stamps.pop(ckey, None)
        self.engine.memory.forget_cluster(ckey)


class Pace:
    """At most `rate` turns a second, in the order asked: each caller sleeps until its slot."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate if rate > 0 else 0.0
        self.next_slot = 0.0

    async def turn(self) -> None:
        if not self.gap:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.gap
        if slot > now:
            await asyncio.sleep(slot - now)


async def _first_of(event: asyncio.Event, stopped: Any, timeout: float) -> None:  # noqa: ASYNC109
    waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
