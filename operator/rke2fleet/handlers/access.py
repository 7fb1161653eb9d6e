"""Reaching a cluster's hosts: SSH targets and the join token, from the cluster's Secrets."""

from __future__ import annotations

from typing import Any

from pydantic import SecretBytes

from rke2fleet.api import RKE2ClusterSpec, RKE2NodeSpec, SpecError, parse_duration, parse_node_spec
from rke2fleet.handlers import indexes
from rke2fleet.handlers.state import ClusterKey, FleetState
from rke2fleet.hostaccess import HostTarget, known_hosts_keys
from rke2fleet.reconcile.health import ClusterHealth


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


def token_source(namespace: str, cluster_name: str, cluster: RKE2ClusterSpec) -> str:
    """Where a cluster's token comes from, for messages (never its value)."""
    ref = cluster.token_secret_ref
    name, key = (ref.name, ref.key) if ref else (f"{cluster_name}-token", "token")
    return f"Secret {namespace}/{name} (key {key})"


HEALTH_CANDIDATES = 3  # servers tried, in turn, before the cluster's view is declared unreadable


def _candidate_rank(entry: Any, init: str | None) -> tuple[int, str]:
    st = entry["status"]
    if indexes.serving(entry):
        rank = 0
    elif indexes.condition_true(st, "ServiceActive") or entry["name"] == init:
        rank = 1
    elif st.get("phase") in ("Unreachable", "Failed"):
        rank = 3
    else:
        rank = 2
    return rank, entry["name"]


async def cluster_health(
    fleet: FleetState,
    namespace: str,
    cluster: RKE2ClusterSpec,
    nodes: Any,
    ckey: ClusterKey,
    *,
    max_age: float,
    secrets: list[str],
    init: str | None,
) -> ClusterHealth:
    """The cluster's own view of its Nodes, read through the first server that answers (those
    seen serving first, then those whose unit runs and the init server, unreachable ones last)."""

    async def candidates() -> list[tuple[str, HostTarget]]:
        entries = [e for e in indexes.many(nodes, ckey) if e["spec"].get("role") == "server"]
        out: list[tuple[str, HostTarget]] = []
        for e in sorted(entries, key=lambda e: _candidate_rank(e, init))[:HEALTH_CANDIDATES]:
            try:
                node = parse_node_spec(e["spec"])
                out.append((e["name"], await build_target(fleet, namespace, cluster, node, e["status"])))
            except (Waiting, SpecError):
                continue
        return out

    return await fleet.health[ckey].read(fleet.pool, candidates, max_age=max_age, secrets=secrets)
