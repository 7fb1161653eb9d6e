"""Every Prometheus object of the operator, on a registry of its own.

A private `CollectorRegistry` (not prometheus_client's global one) keeps the
exposition limited to what this module declares, plus the process/platform
collectors, and lets tests read it with `generate_latest(REGISTRY)`.
Nothing outside `rke2fleet.metrics` touches these objects: handlers call the
functions in `rke2fleet.metrics.recorders`.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

PREFIX = "rke2fleet_"

# `_created` series double the series count of every counter and histogram child and nobody
# queries them (Prometheus ≥ 2.50 can read created timestamps natively).
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Reconciles take from milliseconds (nothing to do) to minutes (install + start).
_RECONCILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# One SSH exec is a few ms on an open connection; installs can take minutes.
_SSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

RECONCILE_TOTAL = Counter(
    "rke2fleet_reconcile",
    "Reconcile runs by object kind and outcome.",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "rke2fleet_reconcile_duration_seconds",
    "Wall time of one reconcile run.",
    ["kind"],
    buckets=_RECONCILE_BUCKETS,
    registry=REGISTRY,
)
SSH_COMMANDS_TOTAL = Counter(
    "rke2fleet_ssh_commands",
    "Remote commands run over SSH, by outcome.",
    ["result"],
    registry=REGISTRY,
)
SSH_COMMAND_DURATION = Histogram(
    "rke2fleet_ssh_command_duration_seconds",
    "Wall time of one remote command, connection reuse included.",
    buckets=_SSH_BUCKETS,
    registry=REGISTRY,
)
CLUSTER_PHASE = Gauge(
    "rke2fleet_cluster_phase",
    "1 for the cluster's current phase, 0 for the other known phases.",
    ["namespace", "cluster", "phase"],
    registry=REGISTRY,
)
CLUSTER_NODES = Gauge(
    "rke2fleet_cluster_nodes",
    "Nodes of a cluster by role and readiness.",
    ["namespace", "cluster", "role", "state"],
    registry=REGISTRY,
)
UPGRADE_IN_PROGRESS = Gauge(
    "rke2fleet_upgrade_in_progress",
    "1 while a version rollout of the cluster is under way.",
    ["namespace", "cluster"],
    registry=REGISTRY,
)
UPGRADE_HALTED = Gauge(
    "rke2fleet_upgrade_halted",
    "1 when the cluster's rollout stopped and waits for a person (failed node, drain timeout).",
    ["namespace", "cluster"],
    registry=REGISTRY,
)
NODE_READY = Gauge(
    "rke2fleet_node_ready",
    "1 when the node's RKE2 service is up and its Kubernetes Node is Ready.",
    ["namespace", "cluster", "node", "role"],
    registry=REGISTRY,
)
NODE_REACHABLE = Gauge(
    "rke2fleet_node_reachable",
    "1 when the last SSH attempt to the node's host succeeded, 0 when it was unreachable.",
    ["namespace", "cluster", "node"],
    registry=REGISTRY,
)
CERTIFICATE_EXPIRY = Gauge(
    "rke2fleet_certificate_expiry_timestamp_seconds",
    "Unix time the node's first leaf certificate to expire does (read every certificates.checkInterval).",
    ["namespace", "cluster", "node"],
    registry=REGISTRY,
)
NODE_VERSION_INFO = Gauge(
    "rke2fleet_node_version_info",
    "Always 1; the labels carry the installed and the running RKE2 version.",
    ["namespace", "cluster", "node", "installed", "running"],
    registry=REGISTRY,
)
DRIFT_DETECTED_TOTAL = Counter(
    "rke2fleet_drift_detected",
    "Differences found between a node's desired and actual state, by kind of drift.",
    ["namespace", "cluster", "node", "kind"],
    registry=REGISTRY,
)
LAST_SUCCESSFUL_RECONCILE = Gauge(
    "rke2fleet_last_successful_reconcile_timestamp_seconds",
    "Unix time of the object's last reconcile that ended without error.",
    ["kind", "namespace", "name"],
    registry=REGISTRY,
)


LEADER = Gauge(
    "rke2fleet_leader",
    "1 while this replica acts (it holds the leader Lease, or runs without leader election); 0 on a standby.",
    registry=REGISTRY,
)


def exported_metric_names() -> frozenset[str]:
    """Names of this operator's series as Prometheus sees them (counters with `_total`).

    Histogram suffixes (`_bucket`, `_sum`, `_count`) and `_created` are not listed:
    strip them before looking a name up.
    """
    names: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith(PREFIX):
            continue
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return frozenset(names)
