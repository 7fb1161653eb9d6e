"""RKE2Node deletion: drain, remove from the cluster, uninstall (deletionPolicy Uninstall)."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from rke2fleet.api import SpecError, parse_cluster_spec, parse_duration, parse_node_spec
from rke2fleet.handlers import indexes
from rke2fleet.handlers.access import Waiting, build_target
from rke2fleet.handlers.state import FleetState
from rke2fleet.hostaccess import HostAccessError
from rke2fleet.reconcile import kubectl


async def delete_node(
    fleet: FleetState,
    *,
    name: str,
    namespace: str,
    spec: Any,
    status: Any,
    body: Any,
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
    centry = indexes.one(clusters, (namespace, cname))
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
    siblings = [e for e in indexes.many(nodes, (namespace, cname)) if e["name"] != name]
    servers = [e for e in siblings if e["spec"].get("role") == "server"]
    ready_servers = [e for e in servers if indexes.condition_true(e["status"], "Ready")]
    node_name = node.node_name or name
    if node.role == "server" and not centry["deleting"]:
        total = len(servers) + 1
        if not kubectl.quorum_allows_removal(total, len(ready_servers)):
            msg = (
                f"removing server {name} would break etcd quorum: {len(ready_servers)} of the other "
                f"{total - 1} servers are Ready; fix them first"
            )
            kopf.warn(body, reason="QuorumProtected", message=msg)
            raise kopf.TemporaryError(msg, delay=30)
        if total == 1 and siblings:
            msg = f"{name} is the last server; delete the agents or the RKE2Cluster first"
            kopf.warn(body, reason="LastServer", message=msg)
            raise kopf.TemporaryError(msg, delay=30)
    try:
        target = await build_target(fleet, namespace, cluster, node, status)
        helper = (
            await build_target(
                fleet, namespace, cluster, parse_node_spec(ready_servers[0]["spec"]), ready_servers[0]["status"]
            )
            if ready_servers
            else None
        )
    except Waiting as w:
        raise kopf.TemporaryError(str(w), delay=w.delay) from None
    try:
        if helper is not None:
            timeout = parse_duration(cluster.upgrade.drain_timeout)
            res = await fleet.pool.run(helper, kubectl.drain(node_name, timeout), check=False, timeout=timeout + 30)
            if res.exit_status != 0:
                kopf.warn(body, reason="DrainFailed", message=f"drain of {node_name} failed; removing anyway")
        await fleet.pool.run(target, script=kubectl.UNINSTALL_SCRIPT)
        if helper is not None:
            await fleet.pool.run(helper, kubectl.delete_node(node_name))
    except HostAccessError as exc:
        kopf.warn(body, reason="UninstallFailed", message=str(exc))
        raise kopf.TemporaryError(f"uninstall failed: {exc}", delay=15) from None
    kopf.info(body, reason="Uninstalled", message=f"RKE2 uninstalled from {node.address}, node {node_name} removed")
    logger.info("node %s uninstalled", name)
