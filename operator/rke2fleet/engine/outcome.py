"""What a pass returns: the status it observed (typed, only the fields it has an opinion on),
conditions, Events to post and what to record. The caller writes them (Kopf handlers, or
another driver); the engine itself writes only progress while a pass runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rke2fleet.api.common import StatusModel
from rke2fleet.api.conditions import Cond
from rke2fleet.api.status import RKE2ClusterStatus, RKE2NodeStatus
from rke2fleet.engine.records import ClusterRecord


@dataclass
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def fields_of(status: StatusModel) -> dict[str, Any]:
    """The status fields a pass set (camelCase, as stored); a None set means: clear it."""
    return status.model_dump(exclude_unset=True, by_alias=True, mode="json", exclude={"conditions"})


@dataclass
class NodeOutcome:
    status: RKE2NodeStatus = field(default_factory=RKE2NodeStatus)
    conditions: list[Cond] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None  # None: done until the next tick
    look_again: float | None = None  # settled, but the next pass in this many seconds (not a retry)
    host_actions: int = 0  # steps run that changed the host
    drift_kinds: list[str] = field(default_factory=list)
    kubeconfig_sha256: str | None = None  # of the host's rke2.yaml, seen by this pass
    token_sha256: str | None = None  # of the cluster's token as this server holds it (facts)
    permanent: str | None = None  # the spec is invalid: no retry until it changes
    progress: dict[str, Any] = field(default_factory=dict)  # status fields written while it ran
    cluster: ClusterRecord | None = None  # the cluster as the pass planned with it

    def has(self, type_: str) -> bool:
        return any(c.type == type_ for c in self.conditions)


@dataclass
class ClusterOutcome:
    status: RKE2ClusterStatus = field(default_factory=RKE2ClusterStatus)
    conditions: list[Cond] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    recheck: list[str] = field(default_factory=list)  # nodes the cluster reports otherwise than their status
    upgrade_halted: bool | None = None  # None: no rollout to speak of
    permanent: str | None = None


@dataclass
class RemovalOutcome:
    """`retry_after` None: the node may go (its finalizer is released)."""

    events: list[Event] = field(default_factory=list)
    status: RKE2NodeStatus | None = None
    conditions: list[Cond] = field(default_factory=list)
    retry_after: float | None = None
    message: str = ""


@dataclass
class ObjectOutcome:
    """A pass over an RKE2Snapshot or RKE2Restore: a procedure whose every step must survive a
    restart, so it writes its status itself as it goes; `retry_after` None: nothing more to do."""

    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    stored: dict[str, Any] = field(default_factory=dict)  # the status as the pass left it
