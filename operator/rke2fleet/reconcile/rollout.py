"""Version rollouts: which changes are allowed, and where a rollout stands (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rke2fleet.api import version_key

IN_PROGRESS = ("Draining", "Installing", "Configuring", "Starting")
UNHEALTHY = ("Failed", "NotReady", "Unreachable")


class Member(Protocol):
    """A node as the rollout reads it (engine.records.NodeRecord)."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> dict[str, Any]: ...

    @property
    def status(self) -> dict[str, Any]: ...


def _why(status: dict[str, Any]) -> str:
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return str(status.get("lastError") or ready.get("message") or "failed")


def upgrade_problem(current: str, wanted: str) -> tuple[str, str] | None:
    """(reason, message) when moving from `current` to `wanted` is refused (reference §8)."""
    cur, new = version_key(current), version_key(wanted)
    if new < cur:
        return (
            "Downgrade",
            f"downgrade {current} → {wanted} refused: RKE2 downgrades only by restoring "
            "a snapshot taken on the older minor",
        )
    if new[1] > cur[1] + 1 and new[0] == cur[0]:
        return (
            "MinorSkip",
            f"upgrade {current} → {wanted} skips a minor version; upgrade to v{cur[0]}.{cur[1] + 1}.x first",
        )
    return None


def snapshot_name(version: str) -> str:
    return "pre-upgrade-" + version.replace("+", "-")


@dataclass(frozen=True)
class RolloutView:
    target: str
    phase: str  # Servers | Agents | Done | Halted
    done: list[str]
    current: list[str]
    halted_node: str | None
    halted_reason: str | None

    @property
    def in_progress(self) -> bool:
        return self.phase != "Done"

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "targetVersion": self.target,
            "phase": self.phase,
            "done": self.done,
            "current": self.current,
        }
        out["halted"] = {"node": self.halted_node, "reason": self.halted_reason} if self.halted_node else None
        return out


def rollout_view(target: str, nodes: Sequence[Member]) -> RolloutView:
    """`nodes`: the cluster's nodes (name, spec, status)."""

    def at_target(e: Member) -> bool:
        return bool(e.status.get("runningVersion") == target)

    done = sorted(e.name for e in nodes if at_target(e))
    current = sorted(e.name for e in nodes if not at_target(e) and e.status.get("phase") in IN_PROGRESS)
    # While nodes are behind, one that failed, stopped answering or that the cluster does not
    # count halts the rollout, also once it runs the target: the next node may not go down behind
    # it. With every node at the target there is no rollout to halt (the cluster is Degraded).
    behind = len(done) < len(nodes)
    failed = sorted(
        (e for e in nodes if behind and e.status.get("phase") in UNHEALTHY),
        key=lambda e: (e.spec.get("role") != "server", e.name),
    )
    servers_behind = [e for e in nodes if e.spec.get("role") == "server" and not at_target(e)]
    if failed:
        f = failed[0]
        return RolloutView(target, "Halted", done, current, f.name, _why(f.status))
    phase = "Servers" if servers_behind else ("Agents" if len(done) < len(nodes) else "Done")
    return RolloutView(target, phase, done, current, None, None)
