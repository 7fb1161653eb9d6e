"""Prometheus metrics of the operator: the only place that touches prometheus_client.

Handlers and the reconcile core call the plain functions re-exported here; the
HTTP endpoint is started with `start_metrics_server(port)`. Label rules (no
secrets, no free text, validated versions) are in `rke2fleet.metrics.labels`.
"""

from rke2fleet.metrics.labels import Kind, NodeState, Phase, ReconcileResult, Role, SSHResult
from rke2fleet.metrics.recorders import (
    forget_cluster,
    forget_node,
    mark_reconciled,
    observe_reconcile,
    observe_ssh_command,
    record_drift,
    set_certificate_expiry,
    set_cluster_state,
    set_leader,
    set_node_reachable,
    set_node_state,
    set_upgrade_halted,
)
from rke2fleet.metrics.registry import REGISTRY, exported_metric_names
from rke2fleet.metrics.server import MetricsServer, start_metrics_server

__all__ = [
    "REGISTRY",
    "Kind",
    "MetricsServer",
    "NodeState",
    "Phase",
    "ReconcileResult",
    "Role",
    "SSHResult",
    "exported_metric_names",
    "forget_cluster",
    "forget_node",
    "mark_reconciled",
    "observe_reconcile",
    "observe_ssh_command",
    "record_drift",
    "set_certificate_expiry",
    "set_cluster_state",
    "set_leader",
    "set_node_reachable",
    "set_node_state",
    "set_upgrade_halted",
    "start_metrics_server",
]
