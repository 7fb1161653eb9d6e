"""Status models: written by the operator, read leniently (extra fields are ignored)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from rke2fleet.api.common import Condition, StatusModel

# Conditions are a map keyed by type, so server-side apply merges them entry by entry.
CONDITIONS_LIST_MAP: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}

ClusterPhase = Literal["Pending", "Provisioning", "Ready", "Degraded", "Failed", "Paused"]
NodePhase = Literal[
    "Pending",
    "Staged",
    "Connecting",
    "Installing",
    "Configuring",
    "Starting",
    "Draining",
    "Ready",
    "NotReady",
    "Failed",
    "Unreachable",
    "Deleting",
    "Paused",
]


class RolloutHalt(StatusModel):
    """Why a rollout stopped."""

    node: str = Field(default="", description="Node whose upgrade failed.")
    reason: str = Field(default="", description="What went wrong (never contains secrets).")


class RolloutStatus(StatusModel):
    """Progress of a version or config rollout; may carry further fields written by newer operators."""

    model_config = ConfigDict(extra="allow")

    target_version: str | None = Field(default=None, description="Version being rolled out.")
    phase: str | None = Field(default=None, description="Servers, Agents, Done or Halted.")
    done: list[str] = Field(default_factory=list, description="Nodes already at the target.")
    current: list[str] = Field(default_factory=list, description="Nodes being upgraded now.")
    halted: RolloutHalt | None = Field(default=None, description="Set when the rollout stopped on a failure.")


class RKE2ClusterStatus(StatusModel):
    """Observed state of an RKE2Cluster."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last reconciled.")
    phase: ClusterPhase | None = Field(default=None, description="Summary phase of the cluster.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Detailed conditions, one per type.",
        json_schema_extra=CONDITIONS_LIST_MAP,
    )
    target_version: str | None = Field(
        default=None,
        description="RKE2 version the cluster converges to (resolved from the channel if needed).",
    )
    servers: str | None = Field(default=None, description="Ready/desired servers, e.g. 3/3.")
    agents: str | None = Field(default=None, description="Ready/desired agents, e.g. 2/2.")
    ready_servers: int | None = Field(default=None, description="Servers whose node is Ready.")
    desired_servers: int | None = Field(default=None, description="RKE2Node objects with role server.")
    ready_agents: int | None = Field(default=None, description="Agents whose node is Ready.")
    desired_agents: int | None = Field(default=None, description="RKE2Node objects with role agent.")
    init_server: str | None = Field(default=None, description="RKE2Node that bootstrapped the cluster.")
    token_secret_name: str | None = Field(default=None, description="Secret holding the join token.")
    kubeconfig_secret_name: str | None = Field(
        default=None, description="Secret holding an admin kubeconfig pointing at the registration address."
    )
    rollout: RolloutStatus | None = Field(default=None, description="Current or last rollout.")
    last_snapshot: str | None = Field(
        default=None, description="Name of the last etcd snapshot the operator took."
    )


class RKE2NodeStatus(StatusModel):
    """Observed state of an RKE2Node."""

    observed_generation: int | None = Field(default=None, description="metadata.generation last reconciled.")
    phase: NodePhase | None = Field(default=None, description="Summary phase of the node.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Detailed conditions, one per type.",
        json_schema_extra=CONDITIONS_LIST_MAP,
    )
    installed_version: str | None = Field(default=None, description="Version of the rke2 binary on the host.")
    running_version: str | None = Field(default=None, description="Version the node runs (kubelet version).")
    config_hash: str | None = Field(default=None, description="Hash of the config.yaml last written.")
    last_error: str | None = Field(default=None, description="Last error, redacted of secrets.")
    plan: list[str] = Field(default_factory=list, description="Actions planned or being applied, in order.")
    host_key: str | None = Field(
        default=None, description="Host key recorded on first contact under AcceptNew."
    )
    os: str | None = Field(
        default=None, description="Operating system of the host (os-release ID and version)."
    )
    arch: str | None = Field(default=None, description="Machine architecture (amd64, arm64, s390x).")
    cordoned: bool | None = Field(
        default=None,
        description="True while the operator holds the node cordoned for an upgrade; it uncordons it afterwards.",
    )
