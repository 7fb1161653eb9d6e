"""What the engine keeps in memory between passes. Nothing here is needed for correctness across
a restart (what must survive is in status); it serialises and spares work inside one process."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from rke2fleet.engine.outcome import Event
from rke2fleet.reconcile.health import HealthReader

ClusterKey = tuple[str, str]  # (namespace, cluster)
NodeKey = tuple[str, str]  # (namespace, node object name)


@dataclass
class Memory:
    # Per cluster: the nodes whose pass holds the turn to be disrupted (see engine.turns).
    busy: defaultdict[ClusterKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    # Per cluster: its own view of its Nodes (shared reads), and the token its datastore is
    # encrypted with (tokens.password_sha256, as last read from a server; never stored).
    health: defaultdict[ClusterKey, HealthReader] = field(default_factory=lambda: defaultdict(HealthReader))
    cluster_tokens: dict[ClusterKey, str] = field(default_factory=dict)
    # Per cluster and server: the token its own token file holds (as its last pass or a health
    # read saw it); during a rotation the servers not restarted yet still hold the old one.
    server_tokens: defaultdict[ClusterKey, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    # When each of those was read (monotonic): a read that began before a rotation must not
    # put the old token back (a cached health read, a pass that was under way).
    server_tokens_at: defaultdict[ClusterKey, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    # sha256 of each server's rke2.yaml as its last pass saw it (facts), so the cluster re-reads
    # the file only when it changed: no extra SSH command in a steady pass.
    kubeconfig_seen: dict[NodeKey, str] = field(default_factory=dict)
    last_events: dict[NodeKey, set[tuple[str, str]]] = field(default_factory=dict)

    def new_events(self, key: NodeKey, events: list[Event]) -> list[Event]:
        """Events not already posted for the same standing problem (retries would repeat them)."""
        seen = self.last_events.setdefault(key, set())
        fresh = [e for e in events if e.type == "Normal" or (e.reason, e.message) not in seen]
        self.last_events[key] = {(e.reason, e.message) for e in events if e.type == "Warning"}
        return fresh

    # Per cluster, the token Secret its last cluster pass vouched for (labelled, not another's):
    # node passes use no other.
    token_verified: dict[ClusterKey, str] = field(default_factory=dict)

    def saw_token(self, ckey: ClusterKey, server: str, sha256: str, read_at: float) -> None:
        """A server's token file as read at `read_at`; an older read than the one kept is ignored."""
        if read_at >= self.server_tokens_at[ckey].get(server, float("-inf")):
            self.server_tokens[ckey][server] = sha256
            self.server_tokens_at[ckey][server] = read_at

    def forget_node(self, key: NodeKey) -> None:
        for table in (self.last_events, self.kubeconfig_seen):
            table.pop(key, None)

    def forget_cluster(self, ckey: ClusterKey) -> None:
        self.cluster_tokens.pop(ckey, None)
        self.server_tokens.pop(ckey, None)
        self.server_tokens_at.pop(ckey, None)
        self.token_verified.pop(ckey, None)
        self.health.pop(ckey, None)
        self.busy.pop(ckey, None)
