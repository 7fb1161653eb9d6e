"""RKE2Node deletion: drain, remove from the cluster, uninstall (deletionPolicy Uninstall).

A server leaves the way RKE2 documents (reference §9): drained, its Node deleted (RKE2 then
removes its etcd member), then uninstalled; an agent is uninstalled before its Node is deleted
(else its kubelet registers it again). A server's removal takes it down like an upgrade does:
one server change at a time, and only when the etcd voters left keep a quorum, judged on a
fresh read of the cluster.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from rke2fleet.api import SpecError, parse_cluster_spec, parse_duration, parse_node_spec
from rke2fleet.handlers import indexes
from rke2fleet.handlers.access import Waiting, build_target, cluster_health
from rke2fleet.handlers.state import FleetState
from rke2fleet.handlers.status import node_status_patch
from rke2fleet.hostaccess import HostAccessError, HostTarget
from rke2fleet.reconcile import kubectl
from rke2fleet.reconcile.conditions import Cond
from rke2fleet.reconcile.quorum import removal_verdict


def _refuse(patch: Any, status: Any, generation: Any, body: Any, reason: str, msg: str, delay: float = 15) -> None:
    """Say why the removal waits, on the object itself and as an Event; Kopf retries it."""
    node_status_patch(
        patch,
        status,
        generation,
        {"phase": "Deleting", "lastError": msg},
        [Cond("Ready", False, reason, msg), Cond("Reconciling", True, reason, msg), Cond("Stalled", False, reason, "")],
    )
    kopf.warn(body, reason=reason, message=msg)
    raise kopf.TemporaryError(msg, delay=delay)


async def delete_node(
    fleet: FleetState,
    *,
    name: str,
    namespace: str,
    spec: Any,
    status: Any,
    meta: Any,
    body: Any,
    patch: Any,
    clusters: Any,
    nodes: Any,
    logger: logging.Logger,
) -> None:
    try:
        node = parse_node_spec(dict(spec))
    except SpecError:
        kopf.info(body, reason="Retained", message="invalid spec: the host was left as it is")
        return
    if node.deletion_policy == "Retain":
        kopf.info(body, reason="Retained", message="deletionPolicy Retain: the host was left as it is")
        return
    cname = str(spec.get("cluster"))
    ckey = (namespace, cname)
    centry = indexes.one(clusters, ckey)
    if centry is None:
        kopf.warn(
            body, reason="ClusterGone", message=f"RKE2Cluster {cname} is gone: no SSH credentials, host left as it is"
        )
        return
    try:
        cluster = parse_cluster_spec(centry["spec"])
    except SpecError:
        raise kopf.TemporaryError(f"RKE2Cluster {cname} has an invalid spec; deletion waits", delay=30) from None
    if cluster.paused:
        raise kopf.TemporaryError(f"RKE2Cluster {cname} is paused; deletion waits", delay=30)
    generation = meta.get("generation")
    siblings = [e for e in indexes.many(nodes, ckey) if e["name"] != name]
    servers = [e for e in siblings if e["spec"].get("role") == "server"]
    node_name = node.node_name or name
    removing_server = node.role == "server" and not centry["deleting"]
    if removing_server:
        if not servers and siblings:
            _refuse(patch, status, generation, body, "LastServer",
                    f"{name} is the last server; delete the agents or the RKE2Cluster first")  # fmt: skip
        busy = sorted(n for n in fleet.busy[ckey] if any(s["name"] == n for s in servers))
        if busy:
            _refuse(patch, status, generation, body, "WaitingForServer",
                    f"server {busy[0]} is being changed; servers leave one at a time", delay=5)  # fmt: skip
    helper: HostTarget | None = None
    try:
        target = await build_target(fleet, namespace, cluster, node, status)
        health = await cluster_health(
            fleet, namespace, cluster, nodes, ckey, max_age=0, secrets=[], init=centry["status"].get("initServer")
        )
        if removing_server and servers:
            names = [indexes.node_name(e) for e in [*servers, {"name": name, "spec": dict(spec)}]]
            verdict = removal_verdict(health, node_name, names)
            if not verdict.allowed:
                _refuse(patch, status, generation, body, "QuorumProtected", verdict.reason)
        serving = [e for e in servers if health.available and health.serving(indexes.node_name(e), "server")]
        if serving:
            first = serving[0]
            helper = await build_target(fleet, namespace, cluster, parse_node_spec(first["spec"]), first["status"])
    except Waiting as w:
        raise kopf.TemporaryError(str(w), delay=w.delay) from None
    if removing_server:
        fleet.busy[ckey].add(name)
    try:
        await _remove(fleet, target, helper, node.role, node_name, cluster.upgrade.drain_timeout, body)
    except HostAccessError as exc:
        kopf.warn(body, reason="UninstallFailed", message=str(exc))
        raise kopf.TemporaryError(f"uninstall failed: {exc}", delay=15) from None
    finally:
        fleet.busy[ckey].discard(name)
    kopf.info(body, reason="Uninstalled", message=f"RKE2 uninstalled from {node.address}, node {node_name} removed")
    logger.info("node %s uninstalled", name)


async def _remove(
    fleet: FleetState,
    target: HostTarget,
    helper: HostTarget | None,
    role: str,
    node_name: str,
    drain_timeout: str,
    body: Any,
) -> None:
    if helper is not None:
        timeout = parse_duration(drain_timeout)
        res = await fleet.pool.run(helper, kubectl.drain(node_name, timeout), check=False, timeout=timeout + 30)
        if res.exit_status != 0:
            kopf.warn(body, reason="DrainFailed", message=f"drain of {node_name} failed; removing anyway")
    if role == "server" and helper is not None:
        # Its Node first: RKE2 removes the etcd member with it, while the member still answers.
        await fleet.pool.run(helper, kubectl.delete_node(node_name))
    await fleet.pool.run(target, script=kubectl.UNINSTALL_SCRIPT)
    if role != "server" and helper is not None:
        await fleet.pool.run(helper, kubectl.delete_node(node_name))
