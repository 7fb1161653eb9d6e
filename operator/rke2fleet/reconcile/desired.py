"""What a node should look like: its config.yaml and how RKE2 gets installed on it.

Pure functions of the cluster and node specs (and the join token); no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from rke2fleet.api import RKE2ClusterSpec, RKE2NodeSpec
from rke2fleet.api.rke2keys import Role
from rke2fleet.reconcile.hostfiles import ManagedFile, candidate_paths, managed_files
from rke2fleet.reconcile.paths import Paths, paths_for

SUPERVISOR_PORT = 9345
API_PORT = 6443


def effective_config(cluster: RKE2ClusterSpec, node: RKE2NodeSpec) -> dict[str, Any]:
    """The passthrough config.yaml keys of a node: its role's, then its own over them."""
    return {**(cluster.server_config if node.role == "server" else cluster.agent_config), **node.config}


def unit_for(role: str) -> str:
    return "rke2-server" if role == "server" else "rke2-agent"


@dataclass(frozen=True)
class DesiredNode:
    """Everything the plan needs to know about the target state of one host."""

    name: str
    role: Role
    node_name: str
    is_init: bool
    config: bytes = field(repr=False)  # holds the token: never log it
    config_sha256: str
    version: str | None
    channel: str | None
    install_env: dict[str, str]
    script_url: str
    paths: Paths = field(default_factory=Paths)  # where RKE2 keeps things on this node (its data-dir)
    files: tuple[ManagedFile, ...] = ()  # registries.yaml, proxy environment, add-ons
    file_candidates: tuple[str, ...] = ()  # where managed files may be (dropped ones are removed)
    addons_dir: str | None = None  # a server's manifests dir, where add-on files may be
    cis: bool = False  # `profile: cis`, and the operator prepares the host for it
    airgap_url: str | None = None  # the release's assets (version filled in): pushed, not downloaded

    @property
    def unit(self) -> str:
        return unit_for(self.role)

    @property
    def target_label(self) -> str:
        return self.version or f"channel {self.channel}"


def join_url(registration_address: str) -> str:
    host = f"[{registration_address}]" if ":" in registration_address else registration_address
    return f"https://{host}:{SUPERVISOR_PORT}"


def render_config(
    cluster: RKE2ClusterSpec,
    node: RKE2NodeSpec,
    *,
    node_name: str,
    token: str,
    is_init: bool,
    join_address: str | None,
) -> bytes:
    """config.yaml for one node: operator-owned keys first, then passthrough keys.

    Passthrough keys never collide with owned ones: the API models refuse owned keys.
    """
    doc: dict[str, Any] = {}
    if not is_init:
        if not join_address:
            raise ValueError("a joining node needs a registration address")
        doc["server"] = join_url(join_address)
    doc["token"] = token
    doc["node-name"] = node_name
    if node.node_ip:
        doc["node-ip"] = node.node_ip
    if node.node_external_ip:
        doc["node-external-ip"] = node.node_external_ip
    if node.node_labels:
        doc["node-label"] = list(node.node_labels)
    if node.node_taints:
        doc["node-taint"] = list(node.node_taints)
    if node.role == "server":
        sans: list[str] = []
        for san in [cluster.registration_address, *cluster.tls_san]:
            if san and san not in sans:
                sans.append(san)
        if sans:
            doc["tls-san"] = sans
    passthrough = effective_config(cluster, node)
    for key in sorted(passthrough):
        doc[key] = passthrough[key]
    text = "# Managed by rke2fleet: edits are reverted (drift repair).\n" + yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=False
    )
    return text.encode()


def install_environment(cluster: RKE2ClusterSpec, role: str) -> dict[str, str]:
    env: dict[str, str] = {"INSTALL_RKE2_TYPE": role}
    if cluster.version:
        env["INSTALL_RKE2_VERSION"] = cluster.version
    elif cluster.channel:
        env["INSTALL_RKE2_CHANNEL"] = cluster.channel
    if cluster.install.channel_url:
        env["INSTALL_RKE2_CHANNEL_URL"] = cluster.install.channel_url
    if cluster.install.artifact_url:
        env["INSTALL_RKE2_ARTIFACT_URL"] = cluster.install.artifact_url
    return env


def desired_node(
    cluster: RKE2ClusterSpec,
    node: RKE2NodeSpec,
    *,
    name: str,
    token: str,
    is_init: bool,
    join_address: str | None,
    version: str | None = None,
    credentials: Mapping[str, Mapping[str, str]] | None = None,
) -> DesiredNode:
    """`version` overrides the spec's pin (a channel resolved once for the whole cluster);
    `credentials`: the registry auth Secrets' keys by Secret name."""
    node_name = node.node_name or name
    config = render_config(cluster, node, node_name=node_name, token=token, is_init=is_init, join_address=join_address)
    env = install_environment(cluster, node.role)
    if version:
        env.pop("INSTALL_RKE2_CHANNEL", None)
        env["INSTALL_RKE2_VERSION"] = version
    passthrough = effective_config(cluster, node)
    paths = paths_for(passthrough)
    fixed, addons_dir = candidate_paths(unit_for(node.role), paths)
    airgap = cluster.install.airgap
    target = version or cluster.version
    return DesiredNode(
        name=name,
        role=node.role,
        node_name=node_name,
        is_init=is_init,
        config=config,
        config_sha256=hashlib.sha256(config).hexdigest(),
        version=version or cluster.version,
        channel=None if version else cluster.channel,
        install_env=env,
        script_url=cluster.install.script_url,
        paths=paths,
        files=managed_files(cluster, unit_for(node.role), paths, credentials or {}),
        file_candidates=fixed,
        addons_dir=addons_dir,
        cis=cluster.prepare_hosts and str(passthrough.get("profile") or "").startswith("cis"),
        airgap_url=airgap.artifacts_url.replace("{version}", target or "") if airgap and target else None,
    )
