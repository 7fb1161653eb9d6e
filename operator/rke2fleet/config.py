"""The operator's own settings, read once at start-up (the few knobs tests and the benchmark turn;
everything about a cluster is in its RKE2Cluster spec)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Settings:
    # How often each node's timer looks at its cluster (a pass runs when the node's drift
    # interval has elapsed or the cluster's desired state changed).
    node_tick: float = 20.0
    # How often a cluster is looked at when none of its nodes changed.
    cluster_tick: float = 5.0
    metrics_port: int = 0  # 0: no metrics endpoint
    # Where air-gap release assets are cached once fetched ("": a directory under the temp dir).
    artifact_cache: str = ""
    # This process's shard of the fleet (rke2fleet run --shard INDEX/COUNT).
    shard_index: int = 0
    shard_count: int = 1
    # Status writes per second to parked nodes (handlers.parked): a paused cluster's nodes show
    # Paused a little later, and the API server and our event loop take them as a stream, not
    # as a burst of thousands at start-up (client-go's controllers rate-limit their writes too).
    parked_write_rate: float = 200.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            node_tick=float(env.get("RKE2FLEET_NODE_TICK", cls.node_tick)),
            cluster_tick=float(env.get("RKE2FLEET_CLUSTER_TICK", cls.cluster_tick)),
            artifact_cache=env.get("RKE2FLEET_ARTIFACT_CACHE", ""),
            parked_write_rate=float(env.get("RKE2FLEET_PARKED_WRITE_RATE", cls.parked_write_rate)),
        )


SETTINGS = Settings.from_env()


def configure(**changes: object) -> Settings:
    """Set what the command line decides (before the handlers are registered)."""
    global SETTINGS
    SETTINGS = replace(SETTINGS, **changes)  # type: ignore[arg-type]
    return SETTINGS
