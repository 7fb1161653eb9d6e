"""kstatus-style conditions: `lastTransitionTime` changes only when `status` flips."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


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
