"""The functions handlers and the reconcile core call; each updates the metrics of one event.

They are cheap, synchronous and never touch the network. Label values are checked
by `rke2fleet.metrics.labels` (see there for what is accepted).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import Gauge

from rke2fleet.metrics import labels as lb
from rke2fleet.metrics.registry import (
    CERTIFICATE_EXPIRY,
    CLUSTER_NODES,
    CLUSTER_PHASE,
    DRIFT_DETECTED_TOTAL,
    LAST_SUCCESSFUL_RECONCILE,
    LEADER,
    NODE_REACHABLE,
    NODE_READY,
    NODE_VERSION_INFO,
    RECONCILE_DURATION,
    RECONCILE_TOTAL,
    SSH_COMMAND_DURATION,
    SSH_COMMANDS_TOTAL,
    UPGRADE_HALTED,
    UPGRADE_IN_PROGRESS,
)

# (namespace, cluster, node) -> the label values of its NODE_READY and NODE_VERSION_INFO series
_NODE_SERIES: dict[tuple[str, str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {}


def observe_reconcile(kind: lb.Kind, result: lb.ReconcileResult, duration_s: float) -> None:
    lb.check_member(kind, lb.KINDS, "kind")
    lb.check_member(result, lb.RECONCILE_RESULTS, "reconcile result")
    RECONCILE_TOTAL.labels(kind=kind, result=result).inc()
    RECONCILE_DURATION.labels(kind=kind).observe(max(duration_s, 0.0))


def set_leader(leading: bool) -> None:
    LEADER.set(1 if leading else 0)


def observe_ssh_command(result: lb.SSHResult, duration_s: float) -> None:
    lb.check_member(result, lb.SSH_RESULTS, "ssh result")
    SSH_COMMANDS_TOTAL.labels(result=result).inc()
    SSH_COMMAND_DURATION.observe(max(duration_s, 0.0))


def set_cluster_state(
    namespace: str,
    cluster: str,
    phase: lb.Phase,
    counts: Mapping[tuple[lb.Role, lb.NodeState], int],
    upgrading: bool,
) -> None:
    """Phase gauge (1 current, 0 others), node counts (missing role/state pairs are 0), rollout flag."""
    lb.check_name(namespace, "namespace")
    lb.check_name(cluster, "cluster")
    lb.check_member(phase, lb.PHASES, "phase")
    for role, state in counts:
        lb.check_member(role, lb.ROLES, "role")
        lb.check_member(state, lb.NODE_STATES, "node state")
    for known in lb.PHASES:
        CLUSTER_PHASE.labels(namespace, cluster, known).set(1 if known == phase else 0)
    for role in sorted(lb.ROLES):
        for state in sorted(lb.NODE_STATES):
            count = counts.get((role, state), 0)
            CLUSTER_NODES.labels(namespace, cluster, role, state).set(count)
    UPGRADE_IN_PROGRESS.labels(namespace, cluster).set(1 if upgrading else 0)


def set_upgrade_halted(namespace: str, cluster: str, halted: bool) -> None:
    """1 when a rollout stopped and needs a person; drives the UpgradeHalted alert."""
    lb.check_name(namespace, "namespace")
    lb.check_name(cluster, "cluster")
    UPGRADE_HALTED.labels(namespace, cluster).set(1 if halted else 0)


def set_node_state(
    namespace: str,
    cluster: str,
    node: str,
    role: lb.Role,
    ready: bool,
    installed: str | None,
    running: str | None,
) -> None:
    """Readiness and the version info series; a version change replaces the old info series."""
    _check_node(namespace, cluster, node)
    lb.check_member(role, lb.ROLES, "role")
    ready_labels = (namespace, cluster, node, role)
    version_labels = (namespace, cluster, node, lb.version_label(installed), lb.version_label(running))
    # A role change (rare, but possible by recreating the object) or a version change must not
    # leave the old series. The node's last labels are remembered: `remove_by_labels` scans every
    # series of the metric, which made each node pass O(nodes) and a fleet's passes O(nodes²).
    old = _NODE_SERIES.get((namespace, cluster, node))
    if old is not None:
        for gauge, before, now in ((NODE_READY, old[0], ready_labels), (NODE_VERSION_INFO, old[1], version_labels)):
            if before != now:
                _remove(gauge, before)
    NODE_READY.labels(*ready_labels).set(1 if ready else 0)
    NODE_VERSION_INFO.labels(*version_labels).set(1)
    _NODE_SERIES[(namespace, cluster, node)] = (ready_labels, version_labels)


def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:  # already gone (forget_node, or a registry reset)
        pass


def set_node_reachable(namespace: str, cluster: str, node: str, reachable: bool) -> None:
    """Result of the last SSH attempt to the node's host; drives the NodeUnreachable alert."""
    _check_node(namespace, cluster, node)
    NODE_REACHABLE.labels(namespace, cluster, node).set(1 if reachable else 0)


def set_certificate_expiry(namespace: str, cluster: str, node: str, not_after: float) -> None:
    """When the node's first certificate expires; drives the CertificateExpiresSoon alert."""
    _check_node(namespace, cluster, node)
    CERTIFICATE_EXPIRY.labels(namespace, cluster, node).set(not_after)


def record_drift(namespace: str, cluster: str, node: str, kind: str) -> None:
    """Count one detected drift; `kind` is a snake_case identifier such as `config` or `service`."""
    _check_node(namespace, cluster, node)
    DRIFT_DETECTED_TOTAL.labels(namespace, cluster, node, lb.drift_kind_label(kind)).inc()


def mark_reconciled(kind: lb.Kind, namespace: str, name: str, *, now: float | None = None) -> None:
    lb.check_member(kind, lb.KINDS, "kind")
    lb.check_name(namespace, "namespace")
    lb.check_name(name, "name")
    LAST_SUCCESSFUL_RECONCILE.labels(kind, namespace, name).set(time.time() if now is None else now)


def forget_node(namespace: str, cluster: str, node: str) -> None:
    """Remove every series of a deleted RKE2Node (its object name is the `node` label)."""
    match = {"namespace": namespace, "cluster": cluster, "node": node}
    _NODE_SERIES.pop((namespace, cluster, node), None)
    for gauge in (NODE_READY, NODE_REACHABLE, NODE_VERSION_INFO, CERTIFICATE_EXPIRY):
        gauge.remove_by_labels(match)
    DRIFT_DETECTED_TOTAL.remove_by_labels(match)
    LAST_SUCCESSFUL_RECONCILE.remove_by_labels({"kind": "RKE2Node", "namespace": namespace, "name": node})


def forget_cluster(namespace: str, cluster: str) -> None:
    """Remove every series of a deleted RKE2Cluster, the series of its nodes included."""
    match = {"namespace": namespace, "cluster": cluster}
    node_names = {
        sample.labels["node"]
        for family in NODE_READY.collect()
        for sample in family.samples
        if sample.labels.get("namespace") == namespace and sample.labels.get("cluster") == cluster
    }
    for node in node_names:
        forget_node(namespace, cluster, node)
    for metric in (
        CLUSTER_PHASE,
        CLUSTER_NODES,
        UPGRADE_IN_PROGRESS,
        UPGRADE_HALTED,
        NODE_READY,
        NODE_REACHABLE,
        NODE_VERSION_INFO,
        CERTIFICATE_EXPIRY,
        DRIFT_DETECTED_TOTAL,
    ):
        metric.remove_by_labels(match)
    LAST_SUCCESSFUL_RECONCILE.remove_by_labels(
        {"kind": "RKE2Cluster", "namespace": namespace, "name": cluster}
    )


def _check_node(namespace: str, cluster: str, node: str) -> None:
    lb.check_name(namespace, "namespace")
    lb.check_name(cluster, "cluster")
    lb.check_name(node, "node")
