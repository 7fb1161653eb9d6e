"""RKE2Node spec: one host of an RKE2Cluster, reached over SSH."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from rke2fleet.api.common import (
    DNSSubdomain,
    Host,
    IPAddress,
    OpenSSHPublicKey,
    Port,
    SpecModel,
    UnixUser,
    optional_empty_as_none,
)
from rke2fleet.api.config import NodeConfig
from rke2fleet.api.errors import rule_error
from rke2fleet.api.labels import node_label_problem, node_taint_problem
from rke2fleet.api.rke2keys import Role

DeletionPolicy = Literal["Uninstall", "Retain"]


def _check_label(v: str) -> str:
    problem = node_label_problem(v)
    if problem:
        raise rule_error(problem)
    return v


def _check_taint(v: str) -> str:
    problem = node_taint_problem(v)
    if problem:
        raise rule_error(problem)
    return v


NodeLabel = Annotated[str, AfterValidator(_check_label), Field(max_length=317)]
NodeTaint = Annotated[str, AfterValidator(_check_taint), Field(max_length=400)]
EmptyIsUnset = BeforeValidator(optional_empty_as_none)


class RKE2NodeSpec(SpecModel):
    """One host that the operator installs RKE2 on and keeps in the referenced cluster."""

    cluster: DNSSubdomain = Field(
        description="Name of the RKE2Cluster (same namespace) this node belongs to."
    )
    role: Role = Field(description="server (control plane and etcd) or agent (worker).")
    address: Host = Field(description="Hostname or IP address the operator connects to over SSH.")
    port: Annotated[Port | None, EmptyIsUnset] = Field(
        default=None, description="SSH port for this host; default the cluster's spec.ssh.port."
    )
    user: Annotated[UnixUser | None, EmptyIsUnset] = Field(
        default=None, description="SSH user for this host; default the cluster's spec.ssh.user."
    )
    host_key: Annotated[OpenSSHPublicKey | None, EmptyIsUnset] = Field(
        default=None,
        description="Pinned SSH host public key, one OpenSSH line such as 'ssh-ed25519 AAAA... [comment]'.",
    )
    node_name: Annotated[DNSSubdomain | None, EmptyIsUnset] = Field(
        default=None, description="Kubernetes node name (RKE2 node-name); default metadata.name."
    )
    node_labels: list[NodeLabel] = Field(
        default_factory=list,
        max_length=100,
        description="Labels set at registration, each key=value "
        "(RKE2 node-label; applied only when joining).",
    )
    node_taints: list[NodeTaint] = Field(
        default_factory=list,
        max_length=100,
        description="Taints set at registration, each key[=value]:Effect with Effect NoSchedule, "
        "PreferNoSchedule or NoExecute (RKE2 node-taint).",
    )
    node_ip: Annotated[IPAddress | None, EmptyIsUnset] = Field(
        default=None, alias="nodeIP", description="IP address to advertise for the node (RKE2 node-ip)."
    )
    node_external_ip: Annotated[IPAddress | None, EmptyIsUnset] = Field(
        default=None,
        alias="nodeExternalIP",
        description="External IP address of the node (RKE2 node-external-ip).",
    )
    config: NodeConfig = Field(
        default_factory=dict,
        description="Extra config.yaml keys for this node only, "
        "merged over the cluster's server/agent config; "
        "server-only keys are refused on agents.",
    )
    deletion_policy: DeletionPolicy = Field(
        default="Uninstall",
        description="On deletion: Uninstall RKE2 from the host (after draining), or Retain it untouched.",
    )
