"""etcd quorum when a server leaves (reference §9): judged on the cluster's own view, read fresh."""

from __future__ import annotations

from collections.abc import Iterable

from rke2fleet.reconcile.health import ClusterHealth, NodeHealth
from rke2fleet.reconcile.ordering import GoAhead


def voters(health: ClusterHealth, server_names: Iterable[str]) -> list[NodeHealth]:
    """etcd's voting members as the cluster reports them. An unhealthy member counts (it still
    votes, it just cannot answer); a learner does not. A release that does not report
    membership: every server Node is taken for a voter."""
    if not health.reports_etcd:
        return [n for name in server_names if (n := health.node(name)) is not None]
    return [n for n in health.nodes.values() if n.etcd is True or n.etcd_reason == "Unhealthy"]


def removal_verdict(health: ClusterHealth, node_name: str, server_names: Iterable[str]) -> GoAhead:
    """May the server whose Node is `node_name` leave etcd now? Only if the voters that remain
    and answer still make a quorum of the voters that remain."""
    if not health.available:
        return GoAhead(False, f"cannot verify etcd quorum before removing {node_name}: {health.error}")
    members = voters(health, server_names)
    if node_name not in {n.name for n in members}:
        return GoAhead(True, f"{node_name} is not a voting etcd member")
    remaining = [n for n in members if n.name != node_name]
    up = [n for n in remaining if n.ready is True and (n.etcd is True or not health.reports_etcd)]
    need = len(remaining) // 2 + 1 if remaining else 0
    if len(up) < need:
        down = sorted(n.name for n in remaining if n not in up)
        return GoAhead(
            False,
            f"removing server {node_name} would break etcd quorum: {len(up)} of the {len(remaining)} voting "
            f"members left would answer, {need} are needed; not answering: {', '.join(down)}",
        )
    return GoAhead(True, f"{len(up)} of {len(remaining)} remaining etcd voters answer (quorum {need})")
