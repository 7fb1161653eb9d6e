"""Plan: a pure function from desired state and facts to ordered actions.

An empty plan means the host is as it should be: the caller then does nothing at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rke2fleet.reconcile.desired import DesiredNode
from rke2fleet.reconcile.facts import HostFacts


class Step(enum.Enum):
    INSTALL = "install"
    WRITE_CONFIG = "write-config"
    ENABLE = "enable"
    START = "start"
    RESTART = "restart"
    WAIT_READY = "wait-ready"


# Steps that take the node's RKE2 down or bring it up: these need the cluster's go-ahead.
DISRUPTIVE = frozenset({Step.INSTALL, Step.START, Step.RESTART})


@dataclass(frozen=True)
class Action:
    step: Step
    why: str

    def __str__(self) -> str:
        return f"{self.step.value} ({self.why})"


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]

    def __bool__(self) -> bool:
        return bool(self.actions)

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(a.step for a in self.actions)

    @property
    def disruptive(self) -> bool:
        return any(a.step in DISRUPTIVE for a in self.actions)

    def summary(self) -> list[str]:
        return [str(a) for a in self.actions]


def plan_node(desired: DesiredNode, facts: HostFacts, *, running_version: str | None) -> Plan:
    """`running_version` is what the service last started with (from status); None when unknown."""
    actions: list[Action] = []
    installed = facts.installed_version
    if installed is None:
        actions.append(Action(Step.INSTALL, f"not installed; want {desired.target_label}"))
    elif desired.version and installed != desired.version:
        actions.append(Action(Step.INSTALL, f"installed {installed}; want {desired.version}"))
    reinstalled = bool(actions)

    config_changed = facts.config_sha256 != desired.config_sha256
    if config_changed:
        why = "config.yaml missing" if facts.config_sha256 is None else "config.yaml differs"
        actions.append(Action(Step.WRITE_CONFIG, why))

    unit = facts.unit(desired.role)
    if not unit.enabled:
        actions.append(Action(Step.ENABLE, f"{desired.unit} not enabled"))

    target = desired.version or installed
    restart_pending = (
        unit.is_active and running_version is not None and target is not None and running_version != target
    )
    if unit.active in ("active", "activating"):
        if reinstalled or config_changed or restart_pending:
            reasons = [
                r for r, on in (("new version", reinstalled or restart_pending), ("new config", config_changed)) if on
            ]
            actions.append(Action(Step.RESTART, " and ".join(reasons)))
            actions.append(Action(Step.WAIT_READY, f"{desired.unit} restarting"))
        elif unit.active == "activating":
            actions.append(Action(Step.WAIT_READY, f"{desired.unit} activating"))
    else:
        actions.append(Action(Step.START, f"{desired.unit} {unit.active}"))
        actions.append(Action(Step.WAIT_READY, f"{desired.unit} starting"))
    return Plan(tuple(actions))
