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

ClusterPhase = Literal["Pending", "Provisioning", "Ready", "Degraded", "Failed", "Paused", "Restoring"]
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
    "Restoring",
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


class TokenRotation(StatusModel):
    """A change of the join token, done the RKE2 way: `rke2 token rotate` on a server, then every
    node's config.yaml and a restart, servers one at a time, then agents."""

    phase: Literal["Rotating", "Servers", "Agents", "Done", "Failed"] | None = Field(
        default=None,
        description="Rotating: `rke2 token rotate` runs on `server`; Servers, Agents: those restart with "
        "the new token; Done; Failed: see the TokenReady condition.",
    )
    server: str | None = Field(default=None, description="The server the rotation ran on.")
    done: list[str] = Field(default_factory=list, description="Nodes that run with the new token.")
    started_at: str | None = Field(default=None, description="RFC 3339 time the rotation started.")


class AddonStatus(StatusModel):
    """One add-on manifest of spec.addons, or one on its way out."""

    name: str = Field(description="metadata.name of the HelmChart or HelmChartConfig.")
    kind: str = Field(description="HelmChart or HelmChartConfig.")
    namespace: str = Field(default="kube-system", description="Its namespace.")
    file: str = Field(description="Its file in each server's manifests directory.")
    state: Literal["Applied", "Pending", "Removing"] = Field(
        description="Applied: on every server; Pending: not on every server yet; Removing: dropped from "
        "spec.addons, being removed from the servers, then deleted from the cluster."
    )


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
    token_rotation: TokenRotation | None = Field(default=None, description="Current or last token rotation.")
    last_snapshot: str | None = Field(
        default=None, description="Name of the last etcd snapshot the operator took."
    )
    addons: list[AddonStatus] | None = Field(default=None, description="The add-on manifests and where they are.")


class CertificatesStatus(StatusModel):
    """The node's leaf certificate that expires first."""

    not_after: str | None = Field(default=None, description="RFC 3339 time it expires.")
    certificate: str | None = Field(default=None, description="Which certificate (its file).")
    checked_at: str | None = Field(default=None, description="RFC 3339 time the dates were read.")


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
    certificates: CertificatesStatus | None = Field(
        default=None, description="The first leaf certificate to expire on the node."
    )
    cordoned: bool | None = Field(
        default=None,
        description="True while the operator holds the node cordoned for an upgrade; it uncordons it afterwards.",
    )
    addons: list[str] | None = Field(
        default=None, description="A server's add-on files (of spec.addons) in its manifests directory."
    )
