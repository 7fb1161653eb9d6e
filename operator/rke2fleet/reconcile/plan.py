"""Plan: a pure function from desired state and facts to ordered actions.

An empty plan means the host is as it should be: the caller then does nothing at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rke2fleet.reconcile.desired import DesiredNode
from rke2fleet.reconcile.facts import HostFacts


class Step(enum.Enum):
    CORDON = "cordon"
    DRAIN = "drain"
    INSTALL = "install"
    WRITE_CONFIG = "write-config"
    ENABLE = "enable"
    START = "start"
    RESTART = "restart"
    WAIT_READY = "wait-ready"
    UNCORDON = "uncordon"


# Steps that take the node's RKE2 down or bring it up: these need the cluster's go-ahead.
DISRUPTIVE = frozenset({Step.CORDON, Step.DRAIN, Step.INSTALL, Step.START, Step.RESTART})
# What a plan step means when a timer pass finds it: the kind of drift (metric label).
DRIFT_KIND = {
    Step.INSTALL: "version",
    Step.RESTART: "version",
    Step.WRITE_CONFIG: "config",
    Step.ENABLE: "service",
    Step.START: "service",
}


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

    @property
    def upgrades(self) -> bool:
        """A live node changes version (cordoned for it): the rollout rules apply."""
        return Step.CORDON in self.steps

    def summary(self) -> list[str]:
        return [str(a) for a in self.actions]

    def drift_kinds(self) -> list[str]:
        return sorted({DRIFT_KIND[s] for s in self.steps if s in DRIFT_KIND})


def plan_node(desired: DesiredNode, facts: HostFacts, *, cordoned: bool = False, drain: bool = True) -> Plan:
    """`cordoned`: the operator cordoned this node earlier and has not uncordoned it yet."""
    actions: list[Action] = []
    installed = facts.installed_version
    running = facts.running_version
    unit = facts.unit(desired.role)
    live = unit.is_active
    target = desired.version
    version_change = bool(target) and (installed != target or (live and running not in (None, target)))

    if live and version_change:
        # Reference §8: cordon and drain a live node before it changes version.
        actions.append(Action(Step.CORDON, f"upgrade {running or installed} → {target}"))
        if drain:
            actions.append(Action(Step.DRAIN, "before the upgrade"))
    if installed is None:
        actions.append(Action(Step.INSTALL, f"not installed; want {desired.target_label}"))
    elif target and installed != target:
        actions.append(Action(Step.INSTALL, f"installed {installed}; want {target}"))
    reinstalled = any(a.step is Step.INSTALL for a in actions)

    config_changed = facts.config_sha256 != desired.config_sha256
    if config_changed:
        why = "config.yaml missing" if facts.config_sha256 is None else "config.yaml differs"
        actions.append(Action(Step.WRITE_CONFIG, why))

    if not unit.enabled:
        actions.append(Action(Step.ENABLE, f"{desired.unit} not enabled"))

    restart_pending = live and bool(target) and running is not None and running != target
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
    if cordoned or (live and version_change):
        actions.append(Action(Step.UNCORDON, "after the upgrade" if version_change else "left cordoned earlier"))
    return Plan(tuple(actions))
