"""Plan: a pure function from desired state and facts to ordered actions.

An empty plan means the host is as it should be: the caller then does nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rke2fleet.reconcile.desired import DesiredNode
from rke2fleet.reconcile.facts import HostFacts
from rke2fleet.reconcile.hostfiles import restarts
from rke2fleet.reconcile.hostprep import stale_files
from rke2fleet.reconcile.steps import STEPS, Step

__all__ = ["Action", "Plan", "Step", "plan_node"]


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
        return any(STEPS[a.step].disrupts for a in self.actions)

    @property
    def upgrades(self) -> bool:
        """A live node changes version (cordoned for it): the rollout rules apply."""
        return Step.CORDON in self.steps

    def summary(self) -> list[str]:
        return [str(a) for a in self.actions]

    def drift_kinds(self) -> list[str]:
        return sorted({kind for s in self.steps if (kind := STEPS[s].drift)})

    def only(self, keep: Callable[[Step], bool]) -> Plan:
        return Plan(tuple(a for a in self.actions if keep(a.step)))


def plan_node(desired: DesiredNode, facts: HostFacts, *, cordoned: bool = False, drain: bool = True) -> Plan:
    """`cordoned`: the operator cordoned this node earlier and has not uncordoned it yet."""
    actions: list[Action] = []
    installed = facts.installed_version
    running = facts.running_version
    unit = facts.unit(desired.role)
    live = unit.is_active
    target = desired.version
    needs_install = installed is None or (bool(target) and installed != target)
    # A live node must run another version (or we cannot tell which it runs after a reinstall):
    # that is an upgrade of a cluster member: cordon and drain it first (reference §8).
    version_change = live and bool(target) and (running != target if running else needs_install)

    if version_change:
        actions.append(Action(Step.CORDON, f"runs {running or 'unknown'}; want {target}"))
        if drain:
            actions.append(Action(Step.DRAIN, "before the upgrade"))
    if installed is None:
        actions.append(Action(Step.INSTALL, f"not installed; want {desired.target_label}"))
    elif needs_install:
        actions.append(Action(Step.INSTALL, f"installed {installed}; want {target}"))

    if desired.cis and facts.cis_prepared is not True:
        actions.append(Action(Step.PREPARE_HOST, "not prepared for the CIS profile"))

    config_changed = facts.config_sha256 != desired.config_sha256
    if config_changed:
        why = "config.yaml missing" if facts.config_sha256 is None else "config.yaml differs"
        actions.append(Action(Step.WRITE_CONFIG, why))
    changed = [f for f in desired.files if facts.files.get(f.path, ("", False))[0] != f.sha256]
    stale = stale_files(desired, facts.files)
    if changed or stale:
        parts = [f"{f.label} {'differs' if f.path in facts.files else 'missing'}" for f in changed]
        parts += [f"{p.rsplit('/', 1)[-1]} no longer wanted" for p in stale]
        actions.append(Action(Step.WRITE_FILES, ", ".join(parts)))
    files_restart = any(f.restarts for f in changed) or any(restarts(p) for p in stale)

    if not unit.enabled:
        actions.append(Action(Step.ENABLE, f"{desired.unit} not enabled"))

    if unit.active in ("active", "activating"):
        pending = facts.restart_pending and not (config_changed or files_restart)
        if version_change or config_changed or files_restart or pending:
            reasons = [
                r
                for r, on in (
                    ("new version", version_change),
                    ("new config", config_changed or files_restart),
                    ("config written earlier, its restart interrupted", pending),
                )
                if on
            ]
            actions.append(Action(Step.RESTART, " and ".join(reasons)))
            actions.append(Action(Step.WAIT_READY, f"{desired.unit} restarting"))
        elif unit.active == "activating":
            actions.append(Action(Step.WAIT_READY, f"{desired.unit} activating"))
    else:
        actions.append(Action(Step.START, f"{desired.unit} {unit.active}"))
        actions.append(Action(Step.WAIT_READY, f"{desired.unit} starting"))
    if cordoned or version_change:
        actions.append(Action(Step.UNCORDON, "after the upgrade" if version_change else "left cordoned earlier"))
    return Plan(tuple(actions))
