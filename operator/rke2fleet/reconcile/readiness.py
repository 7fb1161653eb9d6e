"""When a node is Ready: what the host says (unit, version) and what the cluster says (its
Kubernetes Node, its etcd membership), judged together. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

from rke2fleet.api.conditions import Cond
from rke2fleet.api.status import NodePhase
from rke2fleet.reconcile.health import ClusterHealth


@dataclass(frozen=True)
class Verdict:
    """The node's Ready condition, the conditions it is made of, and the phase they give."""

    ready: Cond
    parts: list[Cond]
    phase: NodePhase

    @property
    def is_ready(self) -> bool:
        return self.ready.status is True


def kubernetes_conditions(node_name: str, role: str, health: ClusterHealth | None) -> list[Cond]:
    """`NodeReady` (and `EtcdVoter` for a server) from the cluster's view; Unknown when the view
    could not be read."""
    if health is None:
        return []
    if not health.available:
        why = f"cannot check: {health.error}"
        conds = [Cond("NodeReady", None, "KubernetesAPIUnavailable", why)]
        if role == "server":
            conds.append(Cond("EtcdVoter", None, "KubernetesAPIUnavailable", why))
        return conds
    n = health.node(node_name)
    if n is None:
        conds = [Cond("NodeReady", False, "NodeNotRegistered", f"no Kubernetes Node named {node_name}")]
        if role == "server":
            conds.append(Cond("EtcdVoter", False, "NotAMember", f"no Kubernetes Node named {node_name}"))
        return conds
    msg = n.ready_message or n.ready_reason
    conds = [Cond("NodeReady", n.ready, n.ready_reason or "Unknown", f"Node {node_name}: {msg}")]
    if role == "server":
        if n.etcd is None and not health.reports_etcd:
            conds.append(Cond("EtcdVoter", None, "NotReported", "this RKE2 release does not report etcd membership"))
        else:
            reason = n.etcd_reason or ("MemberNotLearner" if n.etcd else "NotReported")
            conds.append(Cond("EtcdVoter", n.etcd, reason, n.etcd_message or reason))
    return conds


def judge(
    *,
    unit: str,
    active: bool,
    running: str | None,
    target: str | None,
    node_name: str,
    role: str,
    health: ClusterHealth | None,
) -> Verdict:
    """Ready only when the unit is active, it runs the target version, its Kubernetes Node is
    Ready and, for a server, it is a voting etcd member. `health` None: not looked at (the
    unit is not active, so there is nothing to ask the cluster about)."""
    parts = kubernetes_conditions(node_name, role, health) if active else []
    judged = [c for c in parts if c.reason != "NotReported"]
    if not active:
        return Verdict(Cond("Ready", False, "NotActive", f"{unit} is not active"), parts, "Starting")
    if target and running != target:
        msg = f"{unit} runs {running or 'an unknown version'}, not {target}"
        return Verdict(Cond("Ready", False, "VersionMismatch", msg), parts, "Pending")
    for c in judged:
        if c.reason == "KubernetesAPIUnavailable":  # not read at all: cannot say
            return Verdict(Cond("Ready", None, c.reason, c.message), parts, "NotReady")
    for c in judged:
        if c.status is not True:  # the cluster does not count it (a Node Unknown included)
            if c.type == "NodeReady":
                reason = "NodeNotRegistered" if c.reason == "NodeNotRegistered" else "NodeNotReady"
            else:
                reason = f"Etcd{c.reason}"
            return Verdict(Cond("Ready", False, reason, c.message), parts, "NotReady")
    return Verdict(Cond("Ready", True, "Ready", f"{unit} active, rke2 {running}, Node Ready"), parts, "Ready")
