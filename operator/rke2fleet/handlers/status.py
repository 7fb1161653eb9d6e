"""Translation of the engine's outcomes for Kopf: status patches (only what changed,
conditions merged kstatus-style), Events, and the metrics that follow a status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from rke2fleet import metrics
from rke2fleet.api.conditions import Cond, parse_time, status_patch
from rke2fleet.api.status import ClusterPhase
from rke2fleet.engine.outcome import ClusterOutcome, Event, NodeOutcome, fields_of


def write_status(
    patch: Any, old: Mapping[str, Any], generation: int | None, fields: Mapping[str, Any], conditions: Iterable[Cond]
) -> None:
    for key, value in status_patch(old, generation, fields, conditions).items():
        patch.status[key] = value


def write_node(patch: Any, old: Mapping[str, Any], generation: int | None, out: NodeOutcome) -> None:
    # Diffed against what is stored now, the pass's progress writes included.
    write_status(patch, {**old, **out.progress}, generation, fields_of(out.status), out.conditions)


def write_cluster(patch: Any, old: Mapping[str, Any], generation: int | None, out: ClusterOutcome) -> None:
    write_status(patch, old, generation, fields_of(out.status), out.conditions)


def post_events(body: Any, events: Iterable[Event]) -> None:
    for ev in events:
        kopf.event(body, type=ev.type, reason=ev.reason, message=ev.message)


def export_node(namespace: str, cluster: str, name: str, role: str, old: Mapping[str, Any], out: NodeOutcome) -> None:
    fields = fields_of(out.status)

    def current(key: str) -> Any:
        return fields[key] if key in fields else old.get(key)

    unreachable = any(c.type == "Reachable" and c.status is False for c in out.conditions)
    expires = (current("certificates") or {}).get("notAfter")
    if expires:
        metrics.set_certificate_expiry(namespace, cluster, name, parse_time(expires).timestamp())
    metrics.set_node_reachable(namespace, cluster, name, not unreachable)
    for kind in out.drift_kinds:
        metrics.record_drift(namespace, cluster, name, kind)
    metrics.set_node_state(
        namespace,
        cluster,
        name,
        "server" if role == "server" else "agent",
        current("phase") == "Ready",
        current("installedVersion"),
        current("runningVersion"),
    )


def export_cluster(namespace: str, name: str, out: ClusterOutcome) -> None:
    st = out.status
    phase: ClusterPhase | None = st.phase
    if out.upgrade_halted is not None:
        metrics.set_upgrade_halted(namespace, name, out.upgrade_halted)
    if phase is None:
        return
    sr, sd = st.ready_servers or 0, st.desired_servers or 0
    ar, ad = st.ready_agents or 0, st.desired_agents or 0
    counts: dict[tuple[Any, Any], int] = {
        ("server", "ready"): sr,
        ("server", "not_ready"): sd - sr,
        ("agent", "ready"): ar,
        ("agent", "not_ready"): ad - ar,
    }
    upgrading = st.rollout is not None and st.rollout.phase in ("Servers", "Agents", "Halted")
    metrics.set_cluster_state(namespace, name, phase, counts, upgrading=upgrading)
