"""Reaching a cluster's hosts: SSH targets and the join token, from the cluster's Secrets."""

from __future__ import annotations

from typing import Any

from pydantic import SecretBytes

from rke2fleet.api import RKE2ClusterSpec, RKE2NodeSpec, parse_duration
from rke2fleet.handlers.state import FleetState
from rke2fleet.hostaccess import HostTarget, known_hosts_keys


class Waiting(Exception):
    """Not an error: a precondition outside this node is not met yet."""

    def __init__(self, reason: str, message: str, delay: float = 3.0) -> None:
        super().__init__(message)
        self.reason = reason
        self.delay = delay


async def build_target(
    fleet: FleetState, namespace: str, cluster: RKE2ClusterSpec, node: RKE2NodeSpec, status: Any
) -> HostTarget:
    ref = cluster.ssh.private_key_secret_ref
    data = await fleet.kube.read_secret(namespace, ref.name, shared=True)
    if data is None or ref.key not in data:
        raise Waiting("SSHKeyMissing", f"Secret {ref.name} (key {ref.key}) with the SSH private key not found", 10)
    pinned: list[str] = [node.host_key] if node.host_key else []
    if cluster.ssh.known_hosts_secret_ref:
        kref = cluster.ssh.known_hosts_secret_ref
        kh = await fleet.kube.read_secret(namespace, kref.name, shared=True)
        if kh is None or kref.key not in kh:
            raise Waiting("KnownHostsMissing", f"Secret {kref.name} (key {kref.key}) with known_hosts not found", 10)
        port = node.port or cluster.ssh.port
        pinned += known_hosts_keys(kh[kref.key].decode(errors="replace"), node.address, port)
    return HostTarget(
        address=node.address,
        port=node.port or cluster.ssh.port,
        user=node.user or cluster.ssh.user,
        private_key=SecretBytes(data[ref.key]),
        pinned_keys=tuple(pinned),
        host_key_policy=cluster.ssh.host_key_policy,
        recorded_key=status.get("hostKey") or None,
        connect_timeout=parse_duration(cluster.ssh.connect_timeout),
        command_timeout=parse_duration(cluster.ssh.command_timeout),
    )


async def read_token(fleet: FleetState, namespace: str, cluster_name: str, cluster: RKE2ClusterSpec) -> str:
    ref = cluster.token_secret_ref
    name, key = (ref.name, ref.key) if ref else (f"{cluster_name}-token", "token")
    data = await fleet.kube.read_secret(namespace, name, shared=True)
    if not data or not data.get(key):
        raise Waiting("TokenMissing", f"waiting for the join token Secret {name}")
    return data[key].decode().strip()
