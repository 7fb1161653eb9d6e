"""Removing a node (deletionPolicy Uninstall), the way RKE2 documents it (reference §9).

A server: drained, its Kubernetes Node deleted (RKE2 then removes its etcd member), then
uninstalled. An agent: uninstalled before its Node is deleted (else its kubelet registers it
again). A server's removal takes it down like an upgrade does: one server change at a time, and
only when the etcd voters left keep a quorum, judged on a fresh read of the cluster.
"""

from __future__ import annotations

from rke2fleet.api import RKE2ClusterSpec, SpecError, parse_cluster_spec, parse_duration, parse_node_spec
from rke2fleet.api.conditions import Cond
from rke2fleet.api.status import RKE2NodeStatus
from rke2fleet.engine.access import Waiting, build_target, cluster_health, node_paths, target_of
from rke2fleet.engine.core import Engine
from rke2fleet.engine.outcome import Event, RemovalOutcome
from rke2fleet.engine.records import NodeRecord
from rke2fleet.hostaccess import HostAccessError, HostTarget
from rke2fleet.reconcile import kubectl
from rke2fleet.reconcile.paths import Paths
from rke2fleet.reconcile.quorum import removal_verdict

QUORUM_RETRY = 15.0


def refused(reason: str, msg: str, delay: float = QUORUM_RETRY) -> RemovalOutcome:
    """Why the removal waits: on the object itself and as an Event; retried."""
    out = RemovalOutcome(retry_after=delay, message=msg)
    out.status = RKE2NodeStatus(phase="Deleting", last_error=msg)
    out.conditions = [Cond("Ready", False, reason, msg), Cond("Reconciling", True, reason, msg),
                      Cond("Stalled", False, reason, "")]  # fmt: skip
    out.events.append(Event("Warning", reason, msg))
    return out


def retry(msg: str, delay: float) -> RemovalOutcome:
    return RemovalOutcome(retry_after=delay, message=msg)


async def remove_node(engine: Engine, record: NodeRecord) -> RemovalOutcome:
    try:
        node = parse_node_spec(record.spec)
    except SpecError:
        return RemovalOutcome(events=[Event("Normal", "Retained", "invalid spec: the host was left as it is")])
    if node.deletion_policy == "Retain":
        return RemovalOutcome(events=[Event("Normal", "Retained", "deletionPolicy Retain: the host was left as it is")])
    crec = engine.store.cluster(*record.cluster_key)
    if crec is None:
        msg = f"RKE2Cluster {record.cluster} is gone: no SSH credentials, host left as it is"
        return RemovalOutcome(events=[Event("Warning", "ClusterGone", msg)])
    try:
        cluster = parse_cluster_spec(crec.spec)
    except SpecError:
        return retry(f"RKE2Cluster {record.cluster} has an invalid spec; deletion waits", 30)
    if cluster.paused:
        return retry(f"RKE2Cluster {record.cluster} is paused; deletion waits", 30)
    siblings = [r for r in engine.store.nodes(*record.cluster_key) if r.name != record.name]
    servers = [r for r in siblings if r.role == "server"]
    leaving_server = node.role == "server" and not crec.deleting
    if leaving_server:
        if not servers and siblings:
            msg = f"{record.name} is the last server; delete the agents or the RKE2Cluster first"
            return refused("LastServer", msg)
        busy = sorted(n for n in engine.memory.busy[record.cluster_key] if any(s.name == n for s in servers))
        if busy:
            return refused("WaitingForServer", f"server {busy[0]} is being changed; servers leave one at a time", 5)
    try:
        target = await build_target(engine, record.namespace, cluster, node, record.status)
        health = await cluster_health(
            engine, record.namespace, record.cluster, cluster, max_age=0, secrets=[], init=crec.status.get("initServer")
        )
        if leaving_server and servers:
            verdict = removal_verdict(health, record.node_name, [r.node_name for r in [*servers, record]])
            if not verdict.allowed:
                return refused("QuorumProtected", verdict.reason)
        serving = [r for r in servers if health.available and health.serving(r.node_name, "server")]
        helper = (await target_of(engine, cluster, serving[0]), _paths(cluster, serving[0])) if serving else None
    except Waiting as w:
        return retry(str(w), w.delay)
    if leaving_server:
        engine.memory.busy[record.cluster_key].add(record.name)
    out = RemovalOutcome()
    try:
        await _remove(engine, target, helper, node.role, record.node_name, cluster, out)
    except HostAccessError as exc:
        out.events.append(Event("Warning", "UninstallFailed", str(exc)))
        out.retry_after, out.message = 15.0, f"uninstall failed: {exc}"
        return out
    finally:
        engine.memory.busy[record.cluster_key].discard(record.name)
    msg = f"RKE2 uninstalled from {node.address}, node {record.node_name} removed"
    out.events.append(Event("Normal", "Uninstalled", msg))
    return out


def _paths(cluster: RKE2ClusterSpec, record: NodeRecord) -> Paths:
    return node_paths(cluster, parse_node_spec(record.spec))


async def _remove(engine: Engine, target: HostTarget, helper: tuple[HostTarget, Paths] | None, role: str,
                  node_name: str, cluster: RKE2ClusterSpec, out: RemovalOutcome) -> None:  # fmt: skip
    hosts = engine.hosts
    if helper is not None:
        on, paths = helper
        timeout = parse_duration(cluster.upgrade.drain_timeout)
        res = await hosts.run(on, kubectl.drain(paths, node_name, timeout), check=False, timeout=timeout + 30)
        if res.exit_status != 0:
            out.events.append(Event("Warning", "DrainFailed", f"drain of {node_name} failed; removing anyway"))
        if role == "server":
            # Its Node first: RKE2 removes the etcd member with it, while the member still answers.
            await hosts.run(on, kubectl.delete_node(paths, node_name))
    await hosts.run(target, script=kubectl.UNINSTALL_SCRIPT)
    if role != "server" and helper is not None:
        on, paths = helper
        await hosts.run(on, kubectl.delete_node(paths, node_name))
