"""Reaching a cluster's hosts and asking the cluster itself: SSH targets and the join token from
the cluster's Secrets, and the cluster's own view of its Nodes through one of its servers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import SecretBytes

from rke2fleet.api import RKE2ClusterSpec, RKE2NodeSpec, SpecError, parse_duration, parse_node_spec
from rke2fleet.engine.core import Engine
from rke2fleet.engine.records import NodeRecord
from rke2fleet.hostaccess import HostTarget, known_hosts_keys
from rke2fleet.reconcile.desired import effective_config
from rke2fleet.reconcile.health import ClusterHealth, health_script
from rke2fleet.reconcile.hostfiles import CredentialsMissing, registry_auth
from rke2fleet.reconcile.paths import Paths, paths_for


class Waiting(Exception):
    """Not an error: a precondition outside this node is not met yet."""

    def __init__(self, reason: str, message: str, delay: float = 3.0) -> None:
        super().__init__(message)
        self.reason = reason
        self.delay = delay


async def build_target(
    engine: Engine, namespace: str, cluster: RKE2ClusterSpec, node: RKE2NodeSpec, status: Any
) -> HostTarget:
    ref = cluster.ssh.private_key_secret_ref
    data = await engine.store.read_secret(namespace, ref.name, shared=True)
    if data is None or ref.key not in data:
        raise Waiting("SSHKeyMissing", f"Secret {ref.name} (key {ref.key}) with the SSH private key not found", 10)
    pinned: list[str] = [node.host_key] if node.host_key else []
    if cluster.ssh.known_hosts_secret_ref:
        kref = cluster.ssh.known_hosts_secret_ref
        kh = await engine.store.read_secret(namespace, kref.name, shared=True)
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
        via=await bastion_target(engine, namespace, cluster, data[ref.key]),
    )


async def bastion_target(engine: Engine, namespace: str, cluster: RKE2ClusterSpec, key: bytes) -> HostTarget | None:
    """The cluster's bastion (its key pinned, never learnt), or None."""
    bastion = cluster.ssh.bastion
    if bastion is None:
        return None
    if bastion.private_key_secret_ref is not None:
        ref = bastion.private_key_secret_ref
        data = await engine.store.read_secret(namespace, ref.name, shared=True)
        if data is None or ref.key not in data:
            raise Waiting("SSHKeyMissing", f"Secret {ref.name} (key {ref.key}) with the bastion's key not found", 10)
        key = data[ref.key]
    return HostTarget(
        address=bastion.address,
        port=bastion.port,
        user=bastion.user,
        private_key=SecretBytes(key),
        pinned_keys=(bastion.host_key,),
        host_key_policy="Strict",
        connect_timeout=parse_duration(cluster.ssh.connect_timeout),
    )


async def target_of(engine: Engine, cluster: RKE2ClusterSpec, record: NodeRecord) -> HostTarget:
    return await build_target(engine, record.namespace, cluster, parse_node_spec(record.spec), record.status)


def token_ref(cluster_name: str, cluster: RKE2ClusterSpec) -> tuple[str, str]:
    ref = cluster.token_secret_ref
    return (ref.name, ref.key) if ref else (f"{cluster_name}-token", "token")


async def read_token(
    engine: Engine, namespace: str, cluster_name: str, cluster: RKE2ClusterSpec, *, verified: bool = True
) -> str:
    """The join token; `verified`: only from the Secret the cluster pass vouched for."""
    name, key = token_ref(cluster_name, cluster)
    if verified and engine.memory.token_verified.get((namespace, cluster_name)) != name:
        raise Waiting("WaitingForCluster", f"waiting for RKE2Cluster {cluster_name} to check its token Secret", 2)
    data = await engine.store.read_secret(namespace, name, shared=True)
    if not data or not data.get(key):
        raise Waiting("TokenMissing", f"waiting for the join token Secret {name}")
    return data[key].decode().strip()


async def read_registry_credentials(
    engine: Engine, namespace: str, cluster: RKE2ClusterSpec
) -> dict[str, dict[str, str]]:
    """The registries' auth Secrets by name (their keys RKE2 takes); Waiting when one is missing."""
    out: dict[str, dict[str, str]] = {}
    refs = {c.auth_secret_ref.name for c in (cluster.registries.configs.values() if cluster.registries else ())
            if c.auth_secret_ref is not None}  # fmt: skip
    for name in sorted(refs):
        try:
            out[name] = registry_auth(await engine.store.read_secret(namespace, name, shared=True), name)
        except CredentialsMissing as exc:
            raise Waiting("RegistryCredentialsMissing", str(exc), 30) from None
    return out


def token_source(namespace: str, cluster_name: str, cluster: RKE2ClusterSpec) -> str:
    """Where a cluster's token comes from, for messages (never its value)."""
    name, key = token_ref(cluster_name, cluster)
    return f"Secret {namespace}/{name} (key {key})"


def node_paths(cluster: RKE2ClusterSpec, node: RKE2NodeSpec) -> Paths:
    """A node's RKE2 paths, from its effective config (the node's keys over its role's)."""
    return paths_for(effective_config(cluster, node))


HEALTH_CANDIDATES = 3  # servers tried, in turn, before the cluster's view is declared unreadable


def _candidate_rank(record: NodeRecord, init: str | None) -> tuple[int, str]:
    if record.serving:
        rank = 0
    elif record.condition_true("ServiceActive") or record.name == init:
        rank = 1
    elif record.phase in ("Unreachable", "Failed"):
        rank = 3
    else:
        rank = 2
    return rank, record.name


async def cluster_health(
    engine: Engine,
    namespace: str,
    cluster_name: str,
    cluster: RKE2ClusterSpec,
    *,
    max_age: float,
    secrets: Sequence[str],
    init: str | None,
    since: float | None = None,
) -> ClusterHealth:
    """The cluster's own view of its Nodes, read through the first server that answers (those
    seen serving first, then those whose unit runs and the init server, unreachable ones last);
    `since`: see HealthReader.read."""

    async def candidates() -> list[tuple[str, HostTarget, str]]:
        servers = [r for r in engine.store.nodes(namespace, cluster_name) if r.role == "server"]
        out: list[tuple[str, HostTarget, str]] = []
        for r in sorted(servers, key=lambda r: _candidate_rank(r, init))[:HEALTH_CANDIDATES]:
            try:
                node = parse_node_spec(r.spec)
                target = await build_target(engine, namespace, cluster, node, r.status)
            except (Waiting, SpecError):
                continue
            out.append((r.name, target, health_script(node_paths(cluster, node))))
        return out

    reader = engine.memory.health[(namespace, cluster_name)]
    return await reader.read(engine.hosts, candidates, max_age=max_age, secrets=secrets, since=since)
