"""RKE2Snapshot and RKE2Restore: etcd snapshots and restores of an RKE2Cluster, as objects
(reference §10): creating one does it, its status records it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rke2fleet.api.common import Condition, DNSSubdomain, SpecModel, StatusModel
from rke2fleet.api.status import CONDITIONS_LIST_MAP

SnapshotPhase = Literal["Pending", "Taking", "Ready", "Failed"]
RestorePhase = Literal[
    "Pending", "Stopping", "Resetting", "StartingServer", "RejoiningServers", "StartingAgents", "Done", "Failed"
]


class RKE2SnapshotSpec(SpecModel):
    """An etcd snapshot of a cluster, taken once when the object is created."""

    cluster: DNSSubdomain = Field(description="Name of the RKE2Cluster (same namespace).")
    node: DNSSubdomain | None = Field(
        default=None,
        description="RKE2Node (a server) to take it on; default a serving server, the init server first.",
    )


class RKE2SnapshotStatus(StatusModel):
    observed_generation: int | None = Field(default=None, description="metadata.generation last reconciled.")
    phase: SnapshotPhase | None = Field(default=None, description="Pending, Taking, Ready or Failed.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready (the file exists), Stalled.", json_schema_extra=CONDITIONS_LIST_MAP
    )
    snapshot_name: str | None = Field(default=None, description="The snapshot's name on the node.")
    node: str | None = Field(default=None, description="RKE2Node the snapshot was taken on (and is kept on).")
    location: str | None = Field(default=None, description="Where it is: file:// URL on the node.")
    size: int | None = Field(default=None, description="Size in bytes.")
    taken_at: str | None = Field(default=None, description="RFC 3339 time it was taken.")
    source: Literal["OnDemand", "PreUpgrade"] | None = Field(
        default=None, description="OnDemand (created by a person), or PreUpgrade (by the operator before an upgrade)."
    )


class RKE2RestoreSpec(SpecModel):
    """Restore a cluster from one of its snapshots (RKE2's documented procedure): every node's
    service stopped, cluster-reset from the snapshot on its node, that server started, the other
    servers' databases removed and them rejoined one at a time, then the agents started. The
    cluster's normal reconcile is paused meanwhile."""

    cluster: DNSSubdomain = Field(description="Name of the RKE2Cluster (same namespace).")
    snapshot: DNSSubdomain = Field(description="Name of the RKE2Snapshot (same namespace, phase Ready).")


class RKE2RestoreStatus(StatusModel):
    observed_generation: int | None = Field(default=None, description="metadata.generation last reconciled.")
    phase: RestorePhase | None = Field(default=None, description="The step under way (each survives a restart).")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready (restored), Stalled.", json_schema_extra=CONDITIONS_LIST_MAP
    )
    node: str | None = Field(default=None, description="The server the snapshot was restored on.")
    snapshot_path: str | None = Field(default=None, description="The snapshot's file on that server.")
    stopped: list[str] = Field(default_factory=list, description="Nodes whose service was stopped.")
    rejoined: list[str] = Field(default_factory=list, description="Servers and agents back in the cluster.")
    started_at: str | None = Field(default=None, description="RFC 3339 time the restore started.")
    finished_at: str | None = Field(default=None, description="RFC 3339 time it was done.")
