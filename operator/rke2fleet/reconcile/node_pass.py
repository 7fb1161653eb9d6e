"""One reconcile pass over one node: facts → plan → (go-ahead) → apply → status.

No Kopf and no Kubernetes API here: the caller hands in the specs, the token, the SSH target
and a claim function, and writes the returned status and Events.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rke2fleet.api import RKE2ClusterSpec, RKE2NodeSpec, parse_duration
from rke2fleet.hostaccess import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    HostAccessError,
    HostKeyRejected,
    HostTarget,
    HostUnreachable,
    SSHPool,
)
from rke2fleet.reconcile.apply import StepFailed, apply_plan
from rke2fleet.reconcile.conditions import Cond
from rke2fleet.reconcile.desired import DesiredNode, desired_node
from rke2fleet.reconcile.facts import FACTS_SCRIPT, FactsError, HostFacts, parse_facts
from rke2fleet.reconcile.ordering import GoAhead
from rke2fleet.reconcile.plan import Plan, Step, plan_node

PHASE_FOR_STEP = {
    Step.INSTALL: "Installing",
    Step.WRITE_CONFIG: "Configuring",
    Step.ENABLE: "Configuring",
    Step.START: "Starting",
    Step.RESTART: "Starting",
    Step.WAIT_READY: "Starting",
}


@dataclass
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class NodeOutcome:
    """What the pass learned; `status` holds only fields this pass has an opinion on."""

    status: dict[str, Any] = field(default_factory=dict)
    conditions: list[Cond] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None  # None: done until the next tick
    host_actions: int = 0  # steps run that changed the host


@dataclass
class NodeInputs:
    name: str
    node: RKE2NodeSpec
    cluster: RKE2ClusterSpec
    token: str
    is_init: bool
    join_address: str | None
    version: str | None  # resolved target (channel resolved); None: let the installer resolve
    running_version: str | None
    target: HostTarget
    secrets: list[str]


async def read_facts(pool: SSHPool, target: HostTarget) -> HostFacts:
    res = await pool.run(target, script=FACTS_SCRIPT)
    return parse_facts(res.stdout)


def _facts_status(facts: HostFacts) -> dict[str, Any]:
    return {"installedVersion": facts.installed_version, "os": facts.os, "arch": facts.arch}


def access_failure(exc: HostAccessError, target: HostTarget) -> NodeOutcome:
    """Map an SSH-level failure to conditions; messages are safe (no secrets)."""
    out = NodeOutcome(retry_after=15.0)
    msg = str(exc)
    if isinstance(exc, HostKeyRejected):
        out.conditions += [
            Cond("HostKeyVerified", False, "HostKeyRejected", msg),
            Cond("Reachable", True, "Connected", f"{target.endpoint} answered"),
        ]
        out.status["phase"] = "Failed"
        out.events.append(Event("Warning", "HostKeyRejected", msg))
        out.retry_after = 60.0
    elif isinstance(exc, AuthenticationFailed):
        out.conditions.append(Cond("Reachable", True, "AuthenticationFailed", msg))
        out.status["phase"] = "Failed"
        out.events.append(Event("Warning", "AuthenticationFailed", msg))
        out.retry_after = 60.0
    elif isinstance(exc, HostUnreachable | CommandTimeout):
        out.conditions.append(Cond("Reachable", False, "Unreachable", msg))
        out.status["phase"] = "Unreachable"
        out.events.append(Event("Warning", "Unreachable", msg))
    else:
        out.conditions.append(Cond("Reachable", True, "CommandFailed", msg))
        out.status["phase"] = "Failed"
        out.events.append(Event("Warning", "CommandFailed", msg))
    out.status["lastError"] = msg
    return out


async def probe(pool: SSHPool, target: HostTarget) -> NodeOutcome:
    """Read-only: can we reach and trust the host? Used while the node waits on its cluster."""
    try:
        facts = await read_facts(pool, target)
    except HostAccessError as exc:
        return access_failure(exc, target)
    except FactsError as exc:
        return NodeOutcome(status={"lastError": str(exc)}, conditions=[Cond("Reachable", True, "BadFacts", str(exc))])
    return NodeOutcome(
        status=_facts_status(facts),
        conditions=[
            Cond("Reachable", True, "Connected", f"{target.endpoint} answered"),
            Cond("HostKeyVerified", True, "KeyMatched", "host key verified"),
        ],
    )


def steady_conditions(desired: DesiredNode, facts: HostFacts, target: HostTarget) -> list[Cond]:
    unit = facts.unit(desired.role)
    installed = facts.installed_version
    return [
        Cond("Reachable", True, "Connected", f"{target.endpoint} answered"),
        Cond("HostKeyVerified", True, "KeyMatched", "host key verified"),
        Cond(
            "Installed",
            installed is not None and (desired.version in (None, installed)),
            "Installed" if installed else "NotInstalled",
            f"rke2 {installed or 'not installed'}",
        ),
        Cond(
            "Configured",
            facts.config_sha256 == desired.config_sha256,
            "UpToDate" if facts.config_sha256 == desired.config_sha256 else "Differs",
            "config.yaml matches the spec"
            if facts.config_sha256 == desired.config_sha256
            else "config.yaml differs from the spec",
        ),
        Cond(
            "ServiceActive",
            unit.is_active,
            "Active" if unit.is_active else unit.active.capitalize(),
            f"{desired.unit} is {unit.active}",
        ),
    ]


async def node_pass(
    pool: SSHPool,
    inputs: NodeInputs,
    *,
    go_ahead: Callable[[], GoAhead],
    release: Callable[[], None],
    on_phase: Callable[[str, list[str]], Awaitable[None]] | None = None,
    repair: bool = True,
) -> NodeOutcome:
    """`go_ahead` claims the node's turn in the cluster's ordering (released by `release`)."""
    desired = desired_node(
        inputs.cluster,
        inputs.node,
        name=inputs.name,
        token=inputs.token,
        is_init=inputs.is_init,
        join_address=inputs.join_address,
        version=inputs.version,
    )
    try:
        facts = await read_facts(pool, inputs.target)
    except HostAccessError as exc:
        return access_failure(exc, inputs.target)
    except FactsError as exc:
        return NodeOutcome(
            status={"phase": "Failed", "lastError": str(exc)},
            retry_after=15.0,
            conditions=[Cond("Reachable", True, "BadFacts", str(exc))],
        )

    plan = plan_node(desired, facts, running_version=inputs.running_version)
    out = NodeOutcome()
    out.status.update(_facts_status(facts))
    out.status["plan"] = plan.summary()
    out.status["configHash"] = facts.config_sha256
    if not plan:
        return _ready_outcome(out, desired, facts, inputs, running=inputs.running_version)
    if not repair:
        out.conditions += steady_conditions(desired, facts, inputs.target)
        out.status["phase"] = "Ready" if facts.unit(desired.role).is_active else "Failed"
        return out

    if plan.disruptive:
        verdict = go_ahead()
        if not verdict.allowed:
            out.conditions += steady_conditions(desired, facts, inputs.target)
            out.conditions.append(Cond("Ready", False, "Waiting", verdict.reason))
            out.status["phase"] = "Pending" if facts.installed_version is None else out_phase(facts, desired)
            out.status["plan"] = [*plan.summary()]
            out.retry_after = 3.0
            return out
    try:
        return await _apply(pool, inputs, desired, facts, plan, out, on_phase)
    finally:
        if plan.disruptive:
            release()


def out_phase(facts: HostFacts, desired: DesiredNode) -> str:
    return "Ready" if facts.unit(desired.role).is_active else "Pending"


async def _apply(
    pool: SSHPool,
    inputs: NodeInputs,
    desired: DesiredNode,
    facts: HostFacts,
    plan: Plan,
    out: NodeOutcome,
    on_phase: Callable[[str, list[str]], Awaitable[None]] | None,
) -> NodeOutcome:
    last_phase: list[str] = []

    async def step_started(step: Step) -> None:
        phase = PHASE_FOR_STEP[step]
        if on_phase and (not last_phase or last_phase[-1] != phase):
            last_phase.append(phase)
            await on_phase(phase, plan.summary())

    started = time.monotonic()
    try:
        result = await apply_plan(
            pool,
            inputs.target,
            desired,
            plan,
            readiness_timeout=parse_duration(inputs.cluster.readiness_timeout),
            secrets=inputs.secrets,
            on_step=step_started,
        )
    except StepFailed as exc:
        out.status.update(phase="Failed", lastError=str(exc))
        cond_type = {Step.INSTALL: "Installed", Step.WRITE_CONFIG: "Configured"}.get(exc.step, "ServiceActive")
        out.conditions += [
            Cond("Reachable", True, "Connected", f"{inputs.target.endpoint} answered"),
            Cond("HostKeyVerified", True, "KeyMatched", "host key verified"),
            Cond(cond_type, False, exc.reason, str(exc)),
            Cond("Ready", False, exc.reason, str(exc)),
        ]
        out.events.append(Event("Warning", exc.reason, str(exc)))
        out.retry_after = 30.0
        out.host_actions = 1
        return out
    except (HostAccessError, CommandFailed) as exc:
        failed = access_failure(exc, inputs.target)
        failed.status.update({k: v for k, v in out.status.items() if k not in failed.status})
        failed.host_actions = 1
        return failed
    out.host_actions = len(result.done)
    # Re-read so the status reports what is on the host, not what we hoped for.
    try:
        after = await read_facts(pool, inputs.target)
    except (HostAccessError, FactsError) as exc:
        return access_failure(exc, inputs.target) if isinstance(exc, HostAccessError) else out
    out.status.update(_facts_status(after))
    out.status["configHash"] = after.config_sha256
    running = inputs.running_version
    if Step.START in result.done or Step.RESTART in result.done or running is None:
        running = after.installed_version
    out.events.append(
        Event(
            "Normal",
            "Reconciled",
            f"{', '.join(s.value for s in result.done)} done in {time.monotonic() - started:.1f}s",
        )
    )
    out.status["plan"] = []
    return _ready_outcome(out, desired, after, inputs, running=running)


def _ready_outcome(
    out: NodeOutcome, desired: DesiredNode, facts: HostFacts, inputs: NodeInputs, *, running: str | None
) -> NodeOutcome:
    active = facts.unit(desired.role).is_active
    if active and running is None:
        running = facts.installed_version
    out.status["runningVersion"] = running if active else None
    out.status["phase"] = "Ready" if active else "Starting"
    out.status["lastError"] = None
    out.conditions += steady_conditions(desired, facts, inputs.target)
    out.conditions.append(
        Cond(
            "Ready",
            active,
            "Ready" if active else "NotActive",
            f"{desired.unit} active, rke2 {running}" if active else f"{desired.unit} is not active",
        )
    )
    if not active:
        out.retry_after = 3.0
    return out
