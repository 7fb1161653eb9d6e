"""In-process state of the single operator replica: locks, in-flight claims, caches.

Nothing here is needed for correctness across restarts: progress that must survive lives in
status. Claims only serialise passes inside this process.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from rke2fleet.handlers.kube import KubeApi
from rke2fleet.hostaccess import SSHPool
from rke2fleet.reconcile.health import HealthReader

ClusterKey = tuple[str, str]  # (namespace, cluster)
NodeKey = tuple[str, str]  # (namespace, node object name)


@dataclass
class FleetState:
    pool: SSHPool
    kube: KubeApi
    cluster_locks: defaultdict[ClusterKey, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    node_locks: defaultdict[NodeKey, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    busy: defaultdict[ClusterKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    # sha256 of each server's rke2.yaml as its last pass saw it (facts), so the cluster re-reads
    # the file only when it changed: no extra SSH command in a steady pass.
    kubeconfig_seen: dict[NodeKey, str] = field(default_factory=dict)
    next_pass: dict[NodeKey, float] = field(default_factory=dict)  # monotonic time of the next timer pass
    # Per node: the cluster's desired-state stamp its last pass saw (see indexes.desired_stamp).
    seen_stamp: dict[NodeKey, tuple[Any, ...]] = field(default_factory=dict)
    last_events: dict[NodeKey, set[tuple[str, str]]] = field(default_factory=dict)
    # Per cluster: the desired-state stamp last indexed, and the event its nodes' timers wait on.
    cluster_stamps: dict[ClusterKey, tuple[Any, ...]] = field(default_factory=dict)
    _wake: dict[ClusterKey, asyncio.Event] = field(default_factory=dict)
    # Per node: what of it the cluster's status is made of (see indexes.summary_stamp); a change
    # marks the cluster dirty, and its timer (the one consumer, so the mark can stay set while
    # it is busy) aggregates at once instead of at its next tick.
    node_stamps: dict[NodeKey, tuple[Any, ...]] = field(default_factory=dict)
    _cluster_dirty: dict[ClusterKey, asyncio.Event] = field(default_factory=dict)
    # Per cluster: its own view of its Nodes (shared reads), and the token its datastore is
    # encrypted with (tokens.password_sha256, as last read from a server; never stored).
    health: defaultdict[ClusterKey, HealthReader] = field(default_factory=lambda: defaultdict(HealthReader))
    cluster_tokens: dict[ClusterKey, str] = field(default_factory=dict)
    # Nodes to re-check at their next tick, whatever their drift interval: the cluster reports
    # them differently from their status.
    poked: set[NodeKey] = field(default_factory=set)

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

    def new_events(self, key: NodeKey, events: list[Any]) -> list[Any]:
        """Events not already posted for the same standing problem (retries would repeat them)."""
        seen = self.last_events.setdefault(key, set())
        fresh = [e for e in events if e.type == "Normal" or (e.reason, e.message) not in seen]
        self.last_events[key] = {(e.reason, e.message) for e in events if e.type == "Warning"}
        return fresh

    def forget_node(self, key: NodeKey) -> None:
        for table in (self.next_pass, self.seen_stamp, self.last_events, self.kubeconfig_seen, self.node_stamps):
            table.pop(key, None)
        self.node_locks.pop(key, None)
        self.poked.discard(key)

    def forget_cluster(self, ckey: ClusterKey) -> None:
        for table in (self.cluster_stamps, self.cluster_tokens, self.health):
            table.pop(ckey, None)


async def _first_of(event: asyncio.Event, stopped: Any, timeout: float) -> None:  # noqa: ASYNC109
    waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
