"""Status writing: only what changed, conditions merged kstatus-style, Events posted via Kopf."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from rke2fleet.reconcile.conditions import Cond, merge_conditions, same_conditions
from rke2fleet.reconcile.node_pass import Event

PROGRESSING = {"Pending", "Provisioning", "Connecting", "Installing", "Configuring", "Starting", "Deleting"}


def kstatus_conditions(phase: str | None, ready: Cond | None) -> list[Cond]:
    """`Reconciling` and `Stalled` as kstatus and Flux read them (abnormal-true)."""
    msg = ready.message if ready else ""
    if phase in ("Failed",):
        return [
            Cond("Reconciling", False, "Stalled", msg),
            Cond("Stalled", True, ready.reason if ready else "Failed", msg),
        ]
    if phase in PROGRESSING or phase in ("Unreachable", "Degraded", "NotReady"):
        return [Cond("Reconciling", True, phase or "Progressing", msg), Cond("Stalled", False, "Progressing", "")]
    return [Cond("Reconciling", False, phase or "Idle", ""), Cond("Stalled", False, phase or "Idle", "")]


def status_patch(
    old: Mapping[str, Any], generation: int | None, fields: Mapping[str, Any], conditions: Iterable[Cond]
) -> dict[str, Any]:
    """The minimal status patch: empty when nothing changed (so a quiet pass writes nothing)."""
    conds = list(conditions)
    phase = fields.get("phase", old.get("phase"))
    ready = next((c for c in conds if c.type == "Ready"), None)
    if not any(c.type == "Stalled" for c in conds):
        conds += kstatus_conditions(phase, ready)
    out: dict[str, Any] = {}
    for key, value in fields.items():
        # A merge patch deletes keys set to null: compare with nulls dropped, as stored.
        if _stored(old.get(key)) != _stored(value) and not (value is None and key not in old):
            out[key] = value
    merged = merge_conditions(old.get("conditions"), conds, generation)
    if not same_conditions(old.get("conditions"), merged):
        out["conditions"] = merged
    if generation is not None and old.get("observedGeneration") != generation:
        out["observedGeneration"] = generation
    return out


def _stored(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _stored(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_stored(v) for v in value]
    return value


def node_status_patch(
    patch: Any,
    old: Mapping[str, Any],
    generation: int | None,
    fields: Mapping[str, Any],
    conditions: Iterable[Cond],
) -> None:
    for key, value in status_patch(old, generation, fields, conditions).items():
        patch.status[key] = value


def post_events(body: Any, events: Iterable[Event]) -> None:
    for ev in events:
        kopf.event(body, type=ev.type, reason=ev.reason, message=ev.message)
