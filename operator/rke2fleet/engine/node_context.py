"""What a node pass works from: the node's and its cluster's specs, its place in the cluster
(init server, join address, approved version), its SSH target and the join token. Until the
cluster has settled what the node needs, the node waits (a `Waiting`, not an error)."""

from __future__ import annotations

from dataclasses import dataclass

from rke2fleet.api import RKE2ClusterSpec, RKE2NodeSpec, SpecError, parse_cluster_spec, parse_node_spec
from rke2fleet.engine.access import Waiting, build_target, read_registry_credentials, read_token, token_source
from rke2fleet.engine.core import Engine
from rke2fleet.engine.records import ClusterRecord, NodeRecord
from rke2fleet.engine.turns import until
from rke2fleet.hostaccess import HostTarget
from rke2fleet.reconcile.desired import DesiredNode, desired_node
from rke2fleet.reconcile.ordering import choose_init_server
from rke2fleet.reconcile.tokens import token_values


@dataclass
class NodeContext:
    record: NodeRecord
    node: RKE2NodeSpec
    cluster_record: ClusterRecord
    cluster: RKE2ClusterSpec
    init: str
    is_init: bool
    version: str | None  # the approved target (a channel resolved); None: the installer resolves it
    token: str
    target: HostTarget
    desired: DesiredNode
    timer: bool  # a timer pass: a non-empty plan over a settled node is drift

    @property
    def secrets(self) -> list[str]:
        return token_values(self.token)

    @property
    def ckey(self) -> tuple[str, str]:
        return self.record.cluster_key

    @property
    def token_source(self) -> str:
        return token_source(self.record.namespace, self.cluster_record.name, self.cluster)


def servers_of(records: list[NodeRecord]) -> list[tuple[str, str]]:
    return [(r.name, str(r.spec.get("address"))) for r in records if r.role == "server"]


def settled(crec: ClusterRecord, cluster: RKE2ClusterSpec, records: list[NodeRecord], name: str) -> bool:
    """The cluster has chosen its init server and approved a target version (but a channel's
    init server, which learns its version by installing, needs none): this node can plan."""
    init = crec.status.get("initServer")
    if not init:
        return False
    if crec.status.get("targetVersion"):
        return True
    return not cluster.version and choose_init_server(servers_of(records), cluster.registration_address, init) == name


def cluster_of(engine: Engine, record: NodeRecord) -> tuple[ClusterRecord, RKE2ClusterSpec]:
    crec = engine.store.cluster(record.namespace, record.cluster)
    if crec is None:
        raise Waiting("ClusterNotFound", f"RKE2Cluster {record.cluster} not found in namespace {record.namespace}", 10)
    try:
        return crec, parse_cluster_spec(crec.spec)
    except SpecError:
        raise Waiting("ClusterInvalid", f"RKE2Cluster {crec.name} has an invalid spec; see its status", 30) from None


async def settle(engine: Engine, record: NodeRecord, crec: ClusterRecord, cluster: RKE2ClusterSpec) -> ClusterRecord:
    """A new cluster chooses its init server and version in its own first pass: wait for that in
    the store (no SSH, no API call) instead of failing and retrying later."""
    ns, cname = record.cluster_key
    if settled(crec, cluster, engine.store.nodes(ns, cname), record.name):
        return crec

    def ready() -> bool:
        now = engine.store.cluster(ns, cname) or crec
        return settled(now, cluster, engine.store.nodes(ns, cname), record.name)

    await until(ready)
    return engine.store.cluster(ns, cname) or crec


async def node_context(
    engine: Engine, record: NodeRecord, node: RKE2NodeSpec, crec: ClusterRecord, cluster: RKE2ClusterSpec,
    target: HostTarget, *, timer: bool,
) -> NodeContext:  # fmt: skip
    """Raises Waiting when the cluster has not settled what this node needs yet."""
    cstatus = crec.status
    records = engine.store.nodes(*record.cluster_key)
    init = cstatus.get("initServer")
    if not init:
        raise Waiting("WaitingForCluster", f"waiting for RKE2Cluster {crec.name} to choose its init server")
    is_init = choose_init_server(servers_of(records), cluster.registration_address, init) == record.name
    join = cluster.registration_address or next((a for n, a in servers_of(records) if n == init), None)
    # The cluster approves each target version (checks, pre-upgrade snapshot) before nodes move.
    version = cstatus.get("targetVersion")
    if not version and (cluster.version or not is_init):
        raise Waiting("WaitingForVersion", f"waiting for RKE2Cluster {crec.name} to settle the target version")
    token = await read_token(engine, record.namespace, crec.name, cluster)
    credentials = await read_registry_credentials(engine, record.namespace, cluster)
    desired = desired_node(
        cluster, node, name=record.name, token=token, is_init=is_init, join_address=join, version=version,
        credentials=credentials,
    )  # fmt: skip
    return NodeContext(record, node, crec, cluster, init, is_init, version, token, target, desired, timer)


@dataclass
class Waits:
    """Why the node waits, and what is known meanwhile (the host to probe, the cluster)."""

    why: Waiting
    target: HostTarget | None = None
    cluster: ClusterRecord | None = None


async def resolve(engine: Engine, record: NodeRecord, crec: ClusterRecord, cluster: RKE2ClusterSpec, *,
                  timer: bool) -> NodeContext | Waits:  # fmt: skip
    """The pass's context, or why it waits."""
    node = parse_node_spec(record.spec)  # the caller has checked it
    target: HostTarget | None = None
    try:
        crec = await settle(engine, record, crec, cluster)
        target = await build_target(engine, record.namespace, cluster, node, record.status)
        return await node_context(engine, record, node, crec, cluster, target, timer=timer)
    except Waiting as w:
        return Waits(w, target, crec)
