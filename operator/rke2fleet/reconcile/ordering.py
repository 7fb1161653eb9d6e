"""Cluster ordering: which node may be disrupted (installed, started, restarted) now.

RKE2 wants the init server Ready first, then the other servers one at a time (etcd admits
one learner at a time), then agents in bounded batches (reference §5, §8). Pure functions
over a snapshot of the cluster's nodes, so the rules are easy to test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeView:
    name: str
    role: str
    address: str
    ready: bool
    started: bool  # has RKE2 ever been started on it by us (installed or beyond)
    busy: bool  # currently being changed by a pass (in-process claim)
    running: str | None = None  # version the node runs (status)
    failed: bool = False  # its last pass failed (status phase Failed)


def choose_init_server(
    servers: Iterable[tuple[str, str]], registration_address: str | None, recorded: str | None
) -> str | None:
    """(name, address) pairs → the init server's name. A recorded choice stays while it exists."""
    pairs = sorted(servers)
    names = {n for n, _ in pairs}
    if recorded and recorded in names:
        return recorded
    if recorded:
        # The recorded init server is gone: the cluster exists, nobody bootstraps it again.
        return None
    for name, address in pairs:
        if registration_address and address == registration_address:
            return name
    return pairs[0][0] if pairs else None


def server_order(nodes: Sequence[NodeView], init_server: str | None) -> list[NodeView]:
    servers = [n for n in nodes if n.role == "server"]
    return sorted(servers, key=lambda n: (n.name != init_server, n.name))


@dataclass(frozen=True)
class GoAhead:
    allowed: bool
    reason: str


def may_disrupt(
    me: NodeView,
    nodes: Sequence[NodeView],
    init_server: str | None,
    *,
    agent_batch: int,
    server_batch: int = 1,
    upgrade_to: str | None = None,
    live: bool = False,
) -> GoAhead:
    """`upgrade_to`: set when `me` is a live node changing version (the rollout rules apply).
    `live`: a change (a restart) rolls through running nodes: one role at a time, so a server and
    an agent are never down together (their batches bound each role, not the two at once)."""
    others = [n for n in nodes if n.name != me.name]
    servers = server_order(nodes, init_server)
    if me.role == "server":
        if me.name == init_server and not me.started:
            return GoAhead(True, "init server")
        busy = [n.name for n in others if n.role == "server" and n.busy]
        if len(busy) >= server_batch:
            return GoAhead(False, f"waiting: server {busy[0]} is being changed")
        agents = [n.name for n in others if n.role == "agent" and n.busy]
        if live and agents:
            return GoAhead(False, f"waiting: agent {agents[0]} is being changed")
        names = [s.name for s in servers]
        mine = names.index(me.name) if me.name in names else len(names)
        for earlier in servers[:mine]:
            if not earlier.ready and not earlier.busy:
                return GoAhead(False, f"waiting for server {earlier.name} to be Ready")
        for later in servers[mine + 1 :]:
            if later.started and not later.ready and not later.busy:
                return GoAhead(False, f"waiting for server {later.name} to be Ready")
        return GoAhead(True, "the other servers are Ready")
    if not servers:
        return GoAhead(False, "waiting: the cluster has no server")
    not_ready = [s.name for s in servers if not s.ready]
    if not_ready:
        return GoAhead(False, f"waiting for server {not_ready[0]} to be Ready")
    busy_servers = [s.name for s in servers if s.busy and s.name != me.name]
    if live and busy_servers:  # Ready as last read, but going down now
        return GoAhead(False, f"waiting: server {busy_servers[0]} is being changed")
    busy_agents = sum(1 for n in others if n.role == "agent" and n.busy)
    if upgrade_to:
        behind = [s.name for s in servers if s.running != upgrade_to]
        if behind:
            return GoAhead(False, f"waiting: servers first ({behind[0]} is not at {upgrade_to} yet)")
        failed = [n.name for n in others if n.role == "agent" and n.started and n.failed and n.running != upgrade_to]
        if failed:
            return GoAhead(False, f"rollout halted: agent {failed[0]} failed")
        if busy_agents >= agent_batch:
            return GoAhead(False, f"waiting: {busy_agents} agents are being upgraded (agentConcurrency {agent_batch})")
        # Agents go in name order, a batch at a time, so a rollout is predictable and a
        # failure stops it where it stands.
        behind_agents = sorted(n.name for n in nodes if n.role == "agent" and n.started and n.running != upgrade_to)
        window = behind_agents[:agent_batch]
        if me.name not in window:
            return GoAhead(False, f"waiting: agents before it go first ({', '.join(window)})")
        return GoAhead(True, "servers upgraded; its batch is due")
    if busy_agents >= agent_batch:
        return GoAhead(False, f"waiting: {busy_agents} agents are being changed (batch {agent_batch})")
    return GoAhead(True, "all servers Ready")
