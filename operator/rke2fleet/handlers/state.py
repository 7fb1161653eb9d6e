"""In-process state of the single operator replica: locks, in-flight claims, caches.

Nothing here is needed for correctness across restarts: progress that must survive lives in
status. Claims only serialise passes inside this process.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from rke2fleet.handlers.kube import KubeApi
from rke2fleet.hostaccess import SSHPool

ClusterKey = tuple[str, str]  # (namespace, cluster)
NodeKey = tuple[str, str]  # (namespace, node object name)


@dataclass
class FleetState:
    pool: SSHPool
    kube: KubeApi
    cluster_locks: defaultdict[ClusterKey, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    node_locks: defaultdict[NodeKey, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    busy: defaultdict[ClusterKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    # Nodes whose desired state changed (cluster spec update): the next timer tick reconciles them.
    kubeconfig_checked: dict[ClusterKey, float] = field(default_factory=dict)
    next_pass: dict[NodeKey, float] = field(default_factory=dict)  # monotonic time of the next timer pass
    wake: defaultdict[ClusterKey, int] = field(default_factory=lambda: defaultdict(int))
    wake_seen: dict[NodeKey, int] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Fire-and-forget with a strong reference (asyncio keeps only weak ones)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    last_events: dict[NodeKey, set[tuple[str, str]]] = field(default_factory=dict)

    def new_events(self, key: NodeKey, events: list[Any]) -> list[Any]:
        """Events not already posted for the same standing problem (retries would repeat them)."""
        seen = self.last_events.setdefault(key, set())
        fresh = [e for e in events if e.type == "Normal" or (e.reason, e.message) not in seen]
        warnings = {(e.reason, e.message) for e in events if e.type == "Warning"}
        self.last_events[key] = warnings
        return fresh

    def wake_cluster(self, key: ClusterKey) -> None:
        """The cluster's desired state changed: every node re-plans at its next tick."""
        self.wake[key] += 1
