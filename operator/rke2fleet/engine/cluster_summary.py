"""A cluster's summary, from its nodes and what the pass found: counts, the phase and its Ready
condition. Pure functions, tested on their own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rke2fleet.api.conditions import Cond
from rke2fleet.api.status import ClusterPhase, RKE2ClusterStatus
from rke2fleet.engine.records import NodeRecord
from rke2fleet.reconcile.health import ClusterHealth
from rke2fleet.reconcile.rollout import RolloutView


@dataclass(frozen=True)
class Counts:
    ready_servers: int
    servers: int
    ready_agents: int
    agents: int

    @property
    def all_ready(self) -> bool:
        return self.servers > 0 and self.ready_servers == self.servers and self.ready_agents == self.agents

    def write(self, status: RKE2ClusterStatus) -> None:
        status.ready_servers, status.desired_servers = self.ready_servers, self.servers
        status.ready_agents, status.desired_agents = self.ready_agents, self.agents
        status.servers, status.agents = f"{self.ready_servers}/{self.servers}", f"{self.ready_agents}/{self.agents}"

    def conditions(self) -> list[Cond]:
        sr, sd, ar, ad = self.ready_servers, self.servers, self.ready_agents, self.agents
        return [
            Cond("ServersReady", sr == sd and sd > 0, "AllReady" if sr == sd and sd else "NotReady",
                 f"{sr}/{sd} servers Ready"),
            Cond("AgentsReady", ar == ad, "AllReady" if ar == ad else "NotReady", f"{ar}/{ad} agents Ready"),
        ]  # fmt: skip


def counts(records: Sequence[NodeRecord]) -> Counts:
    def of(role: str) -> tuple[int, int]:
        mine = [r for r in records if r.role == role]
        return sum(1 for r in mine if r.condition_true("Ready")), len(mine)

    (sr, sd), (ar, ad) = of("server"), of("agent")
    return Counts(sr, sd, ar, ad)


def unhealthy_nodes(records: Sequence[NodeRecord]) -> list[str]:
    """Nodes that failed, cannot be reached, or that the cluster does not count (NotReady,
    Ready Unknown): `name (reason)`, for people."""
    out = []
    for r in sorted(records, key=lambda r: r.name):
        ready = r.condition("Ready") or {}
        if r.phase in ("Failed", "Unreachable", "NotReady") or ready.get("status") == "Unknown":
            out.append(f"{r.name} ({ready.get('reason') or r.phase})")
    return out


def disagreeing(records: Sequence[NodeRecord], health: ClusterHealth) -> list[str]:
    """Nodes whose status says otherwise than the cluster does, to re-check at once: a Node gone
    NotReady, an etcd member lost, a cluster whose API no longer answers, or a recovery."""
    out = []
    for r in records:
        if not r.runs:
            continue  # not running yet: its own pass is under way
        if r.phase in ("Failed", "Unreachable"):
            continue  # its own retries look again; the host may not let us in whatever the cluster says
        if health.available:
            differs = health.serving(r.node_name, r.role) != r.serving
        else:
            differs = (r.condition("NodeReady") or {}).get("status") != "Unknown"
        if differs:
            out.append(r.name)
    return out


@dataclass(frozen=True)
class Found:
    """What the pass found besides the nodes' own statuses."""

    counts: Counts
    kubeconfig_published: bool
    rollout: RolloutView | None
    health: ClusterHealth | None
    token: tuple[str, str, bool] | None  # a rotation under way or stuck: (reason, message, stalled)
    ever_ready: bool
    unhealthy: list[str]


def summary(found: Found) -> tuple[ClusterPhase, Cond]:
    """The cluster's phase and its Ready condition."""
    c, rollout, health = found.counts, found.rollout, found.health
    upgrading = rollout is not None and rollout.in_progress
    api_down = health is not None and not health.available
    sr, sd, ar, ad = c.ready_servers, c.servers, c.ready_agents, c.agents
    ready = c.all_ready and found.kubeconfig_published and not upgrading and not api_down and not found.token
    phase: ClusterPhase
    if ready:
        phase, reason, msg = "Ready", "Ready", f"{sr} servers and {ar} agents Ready"
    elif api_down and health is not None:
        phase, reason = "Degraded", "KubernetesAPIUnavailable"
        msg = f"the cluster's Kubernetes API does not answer (etcd quorum lost?): {health.error}"
    elif found.token:
        reason, msg, stalled = found.token
        phase = "Degraded" if stalled or reason == "TokenRotationFailed" else "Provisioning"
    elif upgrading and rollout is not None:
        phase = "Degraded" if rollout.halted_node else "Provisioning"
        reason = "UpgradeHalted" if rollout.halted_node else "Upgrading"
        total = sd + ad
        msg = (
            f"rollout to {rollout.target} halted at {rollout.halted_node}: {rollout.halted_reason}"
            if rollout.halted_node
            else f"rolling out {rollout.target}: {len(rollout.done)}/{total} nodes done"
        )
    elif found.ever_ready and found.unhealthy:
        phase, reason, msg = "Degraded", "NodesNotReady", f"not Ready: {', '.join(found.unhealthy)}"
    elif sd == 0:
        phase, reason, msg = "Pending", "NoServers", "no RKE2Node with role server references this cluster"
    else:
        phase, reason = "Provisioning", "Provisioning"
        msg = f"{sr}/{sd} servers and {ar}/{ad} agents Ready"
        if found.unhealthy:
            msg += f"; failing: {', '.join(found.unhealthy)}"
    return phase, Cond("Ready", ready, reason, msg)
