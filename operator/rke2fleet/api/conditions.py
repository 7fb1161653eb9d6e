"""kstatus-style conditions (`lastTransitionTime` changes only when `status` flips) and the
minimal status patch a pass's outcome makes (every driver writes status this way)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


def parse_time(text: str) -> datetime.datetime:
    """Go's RFC 3339 (nanoseconds, Z or an offset) as Python reads it."""
    head, _, tail = text.partition(".")
    if tail:  # drop the fraction, keep the zone
        zone = next((i for i, c in enumerate(tail) if c in "Z+-"), len(tail))
        text = head + tail[zone:]
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Cond:
    type: str
    status: bool | None  # None → Unknown
    reason: str
    message: str = ""

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else ("True" if self.status else "False")


def merge_conditions(
    old: Iterable[Mapping[str, Any]] | None,
    new: Iterable[Cond],
    generation: int | None,
    *,
    now: str | None = None,
    drop: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Whole list (a merge patch replaces lists): new values over old ones, old types kept."""
    stamp = now or now_rfc3339()
    by_type: dict[str, dict[str, Any]] = {str(c.get("type")): dict(c) for c in (old or []) if c.get("type")}
    for t in drop:
        by_type.pop(t, None)
    for c in new:
        prev = by_type.get(c.type)
        ltt = prev.get("lastTransitionTime") if prev and prev.get("status") == c.status_text else None
        entry: dict[str, Any] = {
            "type": c.type,
            "status": c.status_text,
            "reason": c.reason,
            "message": c.message,
            "lastTransitionTime": ltt or stamp,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        by_type[c.type] = entry
    return list(by_type.values())


def same_conditions(a: Iterable[Mapping[str, Any]] | None, b: Iterable[Mapping[str, Any]] | None) -> bool:
    def norm(xs: Iterable[Mapping[str, Any]] | None) -> list[tuple[Any, ...]]:
        return sorted(
            (x.get("type"), x.get("status"), x.get("reason"), x.get("message"), x.get("observedGeneration"))
            for x in (xs or [])
        )

    return norm(a) == norm(b)


PROGRESSING = {
    "Pending", "Provisioning", "Connecting", "Installing", "Configuring", "Starting", "Deleting", "Restoring",
}


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
