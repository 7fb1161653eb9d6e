"""RKE2Cluster spec: what to install where, how to reach hosts, how to roll out changes."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from rke2fleet.api.common import (
    Channel,
    Duration,
    Host,
    HttpURL,
    HttpURLOrEmpty,
    Port,
    RKE2Version,
    SecretKeySelector,
    SpecModel,
    UnixUser,
)
from rke2fleet.api.config import AgentConfig, ServerConfig
from rke2fleet.api.errors import rule_error
from rke2fleet.api.site import Addon, AirgapSpec, BastionSpec, ProxySpec, RegistriesSpec

HostKeyPolicy = Literal["Strict", "AcceptNew"]
DriftPolicy = Literal["Repair", "Report"]

DEFAULT_SCRIPT_URL = "https://get.rke2.io"


class SSHSpec(SpecModel):
    """How the operator logs in to the hosts of this cluster."""

    user: UnixUser = Field(
        default="root", description="Login user; a non-root user must have passwordless sudo."
    )
    port: Port = Field(default=22, description="SSH port, 1-65535; RKE2Node.spec.port overrides it per host.")
    private_key_secret_ref: SecretKeySelector = Field(
        description="Secret key holding the SSH private key (OpenSSH or PEM) the operator logs in with."
    )
    host_key_policy: HostKeyPolicy = Field(
        default="Strict",
        description=(
            "Strict: connect only to hosts whose key is pinned (RKE2Node.spec.hostKey or the known_hosts "
            "Secret). AcceptNew: record the key seen first in the node's status and require it afterwards."
        ),
    )
    known_hosts_secret_ref: SecretKeySelector | None = Field(
        default=None,
        description="Optional Secret key holding an OpenSSH known_hosts file with pinned host keys.",
    )
    connect_timeout: Duration = Field(default="10s", description="Time allowed to connect and authenticate.")
    command_timeout: Duration = Field(default="10m", description="Time allowed for one remote command.")
    bastion: BastionSpec | None = Field(
        default=None, description="Reach the hosts only through this SSH jump host (one shared connection)."
    )


class InstallSpec(SpecModel):
    """Where the RKE2 install script and artifacts come from."""

    script_url: HttpURL = Field(
        default=DEFAULT_SCRIPT_URL, alias="scriptURL", description="URL of the RKE2 install script."
    )
    channel_url: HttpURL | None = Field(
        default=None,
        alias="channelURL",
        description="Channel server (INSTALL_RKE2_CHANNEL_URL); default https://update.rke2.io/v1-release/channels.",
    )
    artifact_url: HttpURLOrEmpty = Field(
        default="",
        alias="artifactURL",
        description="Mirror of the release artifacts (INSTALL_RKE2_ARTIFACT_URL); empty: GitHub releases.",
    )
    airgap: AirgapSpec | None = Field(
        default=None,
        description="Air-gapped install: the operator pushes the release assets to the hosts (which need "
        "no internet access) instead of the hosts downloading them. Needs spec.version.",
    )


class UpgradeSpec(SpecModel):
    """How version and config changes roll through the cluster: servers one batch at a time, then agents."""

    server_concurrency: int = Field(
        default=1, ge=1, description="Servers upgraded at the same time (at least 1; keep 1 for etcd quorum)."
    )
    agent_concurrency: int = Field(
        default=1, ge=1, description="Agents upgraded at the same time (at least 1)."
    )
    drain: bool = Field(default=True, description="Cordon and drain each node before restarting it.")
    drain_timeout: Duration = Field(default="5m", description="Time allowed for draining one node.")
    snapshot: bool = Field(
        default=True, description="Take an etcd snapshot before upgrading the first server."
    )


class CertificatesSpec(SpecModel):
    """Leaf certificates of every node (365 days; RKE2 renews them only when it starts close to
    their expiry): watched and rotated before they expire."""

    rotate_before_days: int = Field(
        default=60,
        ge=1,
        le=300,
        description="Rotate a node's certificates (rke2 certificate rotate, then a restart) when the first of "
        "them expires within this many days; servers one at a time, then agents in batches.",
    )
    check_interval: Duration = Field(
        default="24h", description="How often each node's certificate dates are read (one command per node)."
    )


class RKE2ClusterSpec(SpecModel):
    """Desired state of an RKE2 cluster whose nodes are RKE2Node objects referring to it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.version) != has(self.channel)",
                    "message": "exactly one of spec.version or spec.channel must be set",
                },
                {
                    "rule": "!has(self.install) || !has(self.install.airgap) || has(self.version)",
                    "message": "an air-gapped install needs spec.version",
                },
            ]
        }
    )

    version: RKE2Version | None = Field(
        default=None,
        description="Exact RKE2 release, e.g. v1.36.3+rke2r1 or v1.36.4-rc1+rke2r1. "
        "Exactly one of version/channel.",
    )
    channel: Channel | None = Field(
        default=None,
        description="Release channel: stable, latest, testing or a minor line such as v1.36. "
        "Exactly one of version/channel.",
    )
    registration_address: Host | None = Field(
        default=None,
        description="Fixed address (load balancer, DNS name or VIP; hostname or IP, not a URL) "
        "in front of the "
        "servers for ports 9345 and 6443. Optional for single-server clusters.",
    )
    tls_san: list[Host] = Field(
        default_factory=list,
        alias="tlsSAN",
        max_length=100,
        description="Extra hostnames or IPs for the server certificates; the registration address is added.",
    )
    token_secret_ref: SecretKeySelector | None = Field(
        default=None,
        description="Secret key holding the cluster join token; when absent the operator generates one and "
        "stores it in a Secret named in status.tokenSecretName.",
    )
    ssh: SSHSpec = Field(description="SSH access to the hosts.")
    install: InstallSpec = Field(
        default_factory=InstallSpec, description="Install script and artifact sources."
    )
    server_config: ServerConfig = Field(
        default_factory=dict,
        description="Extra config.yaml keys for every server "
        "(RKE2 server keys; operator-owned keys refused).",
    )
    agent_config: AgentConfig = Field(
        default_factory=dict,
        description="Extra config.yaml keys for every agent (server-only and operator-owned keys refused).",
    )
    upgrade: UpgradeSpec = Field(
        default_factory=UpgradeSpec, description="Rollout of version and config changes."
    )
    certificates: CertificatesSpec = Field(
        default_factory=CertificatesSpec, description="Watching and rotating the nodes' certificates."
    )
    registries: RegistriesSpec | None = Field(
        default=None, description="Private registries and mirrors (registries.yaml on every node)."
    )
    proxy: ProxySpec | None = Field(default=None, description="HTTP(S) proxy for RKE2 and containerd.")
    addons: list[Addon] = Field(
        default_factory=list,
        max_length=50,
        description="HelmChart / HelmChartConfig manifests written to every server's manifests directory "
        "(applied by RKE2's deploy controller); one dropped from the list is removed from the servers and "
        "deleted from the cluster.",
    )
    prepare_hosts: bool = Field(
        default=True,
        description="Prepare hosts for the config's `profile: cis` (etcd user and group, RKE2's sysctl file "
        "applied) before the first start; false when your own provisioning does it (RKE2 refuses to start "
        "on hosts that are not prepared, and the node reports why).",
    )
    paused: bool = Field(default=False, description="Stop reconciling this cluster and its nodes.")
    drift_policy: DriftPolicy = Field(
        default="Repair",
        description="What to do when a host drifts from the desired state: Repair it, or only Report it.",
    )
    drift_check_interval: Duration = Field(default="5m", description="How often Ready hosts are re-checked.")
    health_check_interval: Duration = Field(
        default="30s",
        description="How often the cluster's own view of its nodes (Kubernetes Node readiness, etcd "
        "membership) is read through a server, one kubectl call for all nodes; a node the cluster "
        "reports differently from its status is re-checked at once.",
    )
    readiness_timeout: Duration = Field(
        default="10m", description="Time a node may take to become Ready after its service starts."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> RKE2ClusterSpec:
        if self.version is None and self.channel is None:
            raise rule_error("exactly one of version or channel must be set (neither is)", ("version",))
        if self.version is not None and self.channel is not None:
            raise rule_error("exactly one of version or channel must be set (both are)", ("channel",))
        if self.install.airgap is not None and self.version is None:
            raise rule_error("an air-gapped install needs spec.version (a channel cannot be resolved offline)",
                             ("install", "airgap"))
        seen: set[tuple[str, str, str]] = set()
        for i, addon in enumerate(self.addons):
            meta = addon["metadata"]
            key = (addon["kind"], str(meta.get("namespace") or "kube-system"), meta["name"])
            if key in seen:
                raise rule_error(f"{key[0]} {key[1]}/{key[2]} is listed twice", ("addons", i))
            seen.add(key)
        return self
