"""One reconcile pass over one node: facts → plan → (go-ahead) → apply → status.

No Kopf and no Kubernetes API here: the caller hands in the specs, the token, the SSH target
and a claim function, and writes the returned status and Events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rke2fleet.api import RKE2ClusterSpec, RKE2NodeSpec, parse_duration
from rke2fleet.hostaccess import (
    AuthenticationFailed,
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
from rke2fleet.reconcile.facts import FactsError, HostFacts, facts_script, parse_facts
from rke2fleet.reconcile.health import ClusterHealth
from rke2fleet.reconcile.ordering import GoAhead
from rke2fleet.reconcile.plan import Plan, Step, plan_node
from rke2fleet.reconcile.readiness import Verdict, judge, kubernetes_conditions
from rke2fleet.reconcile.tokens import password_sha256

PHASE_FOR_STEP = {
    Step.INSTALL: "Installing",
    Step.WRITE_CONFIG: "Configuring",
    Step.ENABLE: "Configuring",
    Step.START: "Starting",
    Step.RESTART: "Starting",
    Step.WAIT_READY: "Starting",
    Step.CORDON: "Draining",
    Step.DRAIN: "Draining",
    Step.UNCORDON: "Starting",
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
    drift_kinds: list[str] = field(default_factory=list)
    kubeconfig_sha256: str | None = None  # of the host's rke2.yaml, seen by this pass
    token_sha256: str | None = None  # of the cluster's token as this server holds it (facts)


@dataclass
class NodeInputs:
    name: str
    node: RKE2NodeSpec
    cluster: RKE2ClusterSpec
    token: str
    is_init: bool
    join_address: str | None
    version: str | None  # resolved target (channel resolved); None: let the installer resolve
    target: HostTarget
    secrets: list[str]
    cordoned: bool = False  # from status: we cordoned it for an upgrade and have not uncordoned yet
    # Finds a Ready server to cordon/drain/uncordon through; called only when the plan needs one.
    kubectl_target: Callable[[], Awaitable[HostTarget | None]] | None = None
    drift_check: bool = False  # a timer pass over a settled node: a non-empty plan is drift
    report_only: bool = False  # driftPolicy Report, or the cluster is paused
    was_drifted: bool = False  # status has Drifted=True
    # Waits (bounded, without SSH) until the cluster's ordering would let this node start.
    await_turn: Callable[[], Awaitable[bool]] | None = None
    # Waits (bounded, without SSH) before staging: the init server's own install goes first.
    await_stage: Callable[[], Awaitable[bool]] | None = None
    # The cluster's own view of its Nodes (health.ClusterHealth), no older than the seconds given.
    health: Callable[[float], Awaitable[ClusterHealth]] | None = None
    health_max_age: float = 30.0  # for a steady pass; waits and gates ask for fresher reads
    # tokens.password_sha256 of the token the cluster's datastore is encrypted with, as last read
    # from a server (None: not read yet); and where the desired token comes from, for messages.
    cluster_token_sha256: str | None = None
    token_source: str = "the token Secret"  # noqa: S105 -- where it is kept, not a token


async def read_facts(pool: SSHPool, target: HostTarget, unit: str | None = None) -> HostFacts:
    res = await pool.run(target, script=facts_script((unit,)) if unit else facts_script())
    return parse_facts(res.stdout)


def _facts_status(facts: HostFacts) -> dict[str, Any]:
    """Status fields straight from the facts."""
    return {"installedVersion": facts.installed_version, "os": facts.os, "arch": facts.arch}


# What a failed SSH access leaves unknown: everything read from the host.
HOST_CONDITIONS = ("Installed", "Configured", "ServiceActive")


def access_failure(exc: HostAccessError, target: HostTarget) -> NodeOutcome:
    """Map an SSH-level failure to conditions; messages are safe (no secrets). What could be read
    from the host can no longer be checked: it becomes Unknown, Ready included."""
    out = NodeOutcome(retry_after=15.0)
    msg = str(exc)
    if isinstance(exc, HostKeyRejected):
        reason = "HostKeyNotVerified"
        out.conditions += [
            Cond("HostKeyVerified", False, "HostKeyRejected", msg),
            Cond("Reachable", True, "Connected", f"{target.endpoint} answered"),
        ]
        out.status["phase"] = "Failed"
        out.events.append(Event("Warning", "HostKeyRejected", msg))
        out.retry_after = 60.0
    elif isinstance(exc, AuthenticationFailed):
        reason = "AuthenticationFailed"
        out.conditions.append(Cond("Reachable", True, "AuthenticationFailed", msg))
        out.status["phase"] = "Failed"
        out.events.append(Event("Warning", "AuthenticationFailed", msg))
        out.retry_after = 60.0
    elif isinstance(exc, HostUnreachable | CommandTimeout):
        reason = "Unreachable"
        out.conditions.append(Cond("Reachable", False, "Unreachable", msg))
        out.status["phase"] = "Unreachable"
        out.events.append(Event("Warning", "Unreachable", msg))
    else:
        reason = "CommandFailed"
        out.conditions.append(Cond("Reachable", True, "CommandFailed", msg))
        out.status["phase"] = "Failed"
        out.events.append(Event("Warning", "CommandFailed", msg))
    out.conditions += [Cond(t, None, reason, f"cannot check: {msg}") for t in HOST_CONDITIONS]
    out.conditions.append(Cond("Ready", None, reason, msg))
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


async def _health(inputs: NodeInputs, max_age: float) -> ClusterHealth | None:
    return await inputs.health(max_age) if inputs.health is not None else None


async def _verdict(
    inputs: NodeInputs, desired: DesiredNode, facts: HostFacts, health: ClusterHealth | None = None
) -> Verdict:
    """Ready as the host and the cluster see it; the cluster is asked only about a running unit."""
    active = facts.unit(desired.role).is_active
    if active and health is None:
        health = await _health(inputs, inputs.health_max_age)
    return judge(
        unit=desired.unit,
        active=active,
        running=facts.running_version if active else None,
        target=desired.version,
        node_name=desired.node_name,
        role=desired.role,
        health=health,
    )


def token_guard(inputs: NodeInputs, facts: HostFacts, plan: Plan) -> str | None:
    """None when the plan may write the desired token; else "unknown" (the cluster's token has
    not been read yet) or "changed" (the desired token is not the one the cluster runs with:
    RKE2 cannot take a new token in place, its datastore is encrypted with the old one)."""
    if Step.WRITE_CONFIG not in plan.steps:
        return None  # a config with a new token always shows as a config write
    theirs = facts.token_sha256 or inputs.cluster_token_sha256
    if theirs is None:
        return None if inputs.is_init and not facts.token_present else "unknown"
    return None if theirs == password_sha256(inputs.token) else "changed"


def _token_changed(
    out: NodeOutcome, inputs: NodeInputs, desired: DesiredNode, facts: HostFacts, v: Verdict
) -> NodeOutcome:
    msg = (
        f"the join token in {inputs.token_source} is not the token this cluster runs with; RKE2 cannot "
        "change a cluster's token in place (its datastore is encrypted with it), so nothing was written to "
        f"{inputs.target.endpoint}. Restore the previous token, or rotate it the RKE2 way "
        "(rke2 token rotate on a server, then every node; see the README, Tokens)"
    )
    out.conditions += steady_conditions(desired, facts, inputs.target)
    out.conditions += [
        *v.parts,
        Cond("Configured", False, "TokenChanged", msg),
        Cond("Ready", False if v.is_ready else v.ready.status, "TokenChanged", msg),
        Cond("Reconciling", False, "TokenChanged", msg),
        Cond("Stalled", True, "TokenChanged", msg),
    ]
    out.status["phase"] = "Failed"
    out.status["lastError"] = msg
    out.events.append(Event("Warning", "TokenChanged", msg))
    out.retry_after = 30.0
    return out


async def node_pass(
    pool: SSHPool,
    inputs: NodeInputs,
    *,
    go_ahead: Callable[[Plan], Awaitable[GoAhead]],
    release: Callable[[], None],
    on_phase: Callable[[str, list[str], dict[str, Any]], Awaitable[None]] | None = None,
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
        facts = await read_facts(pool, inputs.target, desired.unit)
    except HostAccessError as exc:
        lost = access_failure(exc, inputs.target)
        if isinstance(exc, HostUnreachable | CommandTimeout):
            # The cluster can still say how its Node fares without this host's answer.
            lost.conditions += kubernetes_conditions(
                desired.node_name, desired.role, await _health(inputs, inputs.health_max_age)
            )
        return lost
    except FactsError as exc:
        return NodeOutcome(
            status={"phase": "Failed", "lastError": str(exc)},
            retry_after=15.0,
            conditions=[Cond("Reachable", True, "BadFacts", str(exc))],
        )

    plan = plan_node(desired, facts, cordoned=inputs.cordoned, drain=inputs.cluster.upgrade.drain)
    out = NodeOutcome(token_sha256=facts.token_sha256)
    out.status.update(_facts_status(facts))
    out.status["plan"] = plan.summary()
    out.status["configHash"] = facts.config_sha256
    guard = token_guard(inputs, facts, plan) if plan and not inputs.report_only else None
    if guard == "changed":
        return _token_changed(out, inputs, desired, facts, await _verdict(inputs, desired, facts))
    if inputs.drift_check:
        _report_drift(out, plan, inputs)
    if not plan:
        return await _ready_outcome(out, desired, facts, inputs)
    if inputs.report_only:
        v = await _verdict(inputs, desired, facts)
        out.conditions += steady_conditions(desired, facts, inputs.target)
        out.conditions += [*v.parts, v.ready]
        out.status["phase"] = "Paused" if inputs.cluster.paused else v.phase
        return out

    claims = plan.disruptive  # an allowed go_ahead claims the turn: release it at the end
    if claims or guard == "unknown":
        if guard == "unknown":
            verdict = GoAhead(False, "reading the cluster's join token from a server first")
        else:
            verdict = await go_ahead(plan)
        active = facts.unit(desired.role).is_active
        if not verdict.allowed and not active:
            # Not running yet: install and configure now, so that only the start waits for the
            # turn (the fleet's downloads overlap the servers' bring-up) ...
            if inputs.await_stage is not None:
                await inputs.await_stage()
            failed = await _stage(pool, inputs, desired, plan, out, config=guard is None)
            if failed is not None:
                return failed
            # ... and when the turn comes soon, go on with what we know of the host (we just
            # staged it) rather than another pass that would re-read it. A node with nothing
            # left to stage has just waited for its turn in the handler: not a second time here.
            if guard is None and out.host_actions and inputs.await_turn is not None and await inputs.await_turn():
                verdict = await go_ahead(plan)
                if verdict.allowed:
                    plan = Plan(tuple(a for a in plan.actions if a.step not in STAGE_STEPS))
        if not verdict.allowed:
            out.conditions += steady_conditions(desired, facts, inputs.target)
            if active:
                out.conditions += kubernetes_conditions(
                    desired.node_name, desired.role, await _health(inputs, inputs.health_max_age)
                )
            # A change is pending: not converged, whatever the node serves meanwhile.
            out.conditions.append(Cond("Ready", False, "Waiting", verdict.reason))
            out.status["phase"] = "Pending" if active else "Staged"
            out.retry_after = 3.0
            return out
    try:
        return await _apply(pool, inputs, desired, plan, out, on_phase)
    finally:
        if claims:
            release()


STAGE_STEPS = frozenset({Step.INSTALL, Step.WRITE_CONFIG})


async def _stage(
    pool: SSHPool, inputs: NodeInputs, desired: DesiredNode, plan: Plan, out: NodeOutcome, *, config: bool = True
) -> NodeOutcome | None:
    """Run the plan's install and (unless `config` is False: its token is not confirmed yet)
    config steps on a node that is not running; the outcome of a failure, else None. Neither
    starts anything: RKE2 reads config.yaml only when it starts."""
    steps = STAGE_STEPS if config else {Step.INSTALL}
    staged = Plan(tuple(a for a in plan.actions if a.step in steps))
    if not staged:
        return None
    try:
        await apply_plan(
            pool,
            inputs.target,
            desired,
            staged,
            readiness_timeout=parse_duration(inputs.cluster.readiness_timeout),
            secrets=inputs.secrets,
            background=True,
        )
    except StepFailed as exc:
        return _step_failed(out, inputs, exc)
    except HostAccessError as exc:
        return access_failure(exc, inputs.target)
    out.host_actions = len(staged.actions)
    out.status["plan"] = [a for a in plan.summary() if a not in staged.summary()]
    return None


def _report_drift(out: NodeOutcome, plan: Plan, inputs: NodeInputs) -> None:
    """A settled node whose timer pass finds work has drifted: say what differs."""
    if not plan:
        if inputs.was_drifted:  # clear it; a node that never drifted carries no Drifted condition
            out.conditions.append(Cond("Drifted", False, "InSync", "the host matches the spec again"))
        return
    kinds = plan.drift_kinds() or ["other"]
    what = "; ".join(plan.summary())
    action = "reported only" if inputs.report_only else "repairing"
    out.conditions.append(Cond("Drifted", True, "HostDrifted", f"{what} ({action})"))
    out.events.append(Event("Warning", "Drifted", f"host drifted from the spec: {what}; {action}"))
    out.drift_kinds = kinds


PHASE_FOR_STEP_EXTRA: dict[Step, dict[str, Any]] = {Step.CORDON: {"cordoned": True}}
# Steps worth a progress write of their own: they wait on a download, RKE2's start or a drain.
SLOW_STEPS = frozenset({Step.INSTALL, Step.START, Step.RESTART, Step.WAIT_READY, Step.CORDON, Step.DRAIN})


def writes_progress(step: Step, steps: tuple[Step, ...]) -> bool:
    """A quick step (config, enable, uncordon) followed by a slow one gets no progress write: it
    is done in milliseconds and the slow step's own write follows at once (one API write and one
    watch event less per node in a bring-up)."""
    if step in SLOW_STEPS or step in PHASE_FOR_STEP_EXTRA:
        return True
    return not any(s in SLOW_STEPS for s in steps[steps.index(step) + 1 :])


# Polls of the cluster's view while a started node's Kubernetes Node comes up (seconds; the
# reads are shared between the nodes waiting in the same cluster).
SERVING_POLLS = (0.2, 0.3, 0.5)
SERVING_POLL = 1.0


async def await_serving(
    inputs: NodeInputs, desired: DesiredNode, facts: HostFacts, deadline: float
) -> tuple[Verdict, ClusterHealth | None]:
    """After a start: until the cluster says the node serves (its Node Ready, a server a voting
    etcd member) or `deadline` (monotonic) passed; the last verdict either way. Its unit being
    active says neither: the kubelet, CNI and etcd's learner promotion come after it."""
    polls = iter(SERVING_POLLS)
    while True:
        health = await _health(inputs, 0.5)
        v = await _verdict(inputs, desired, facts, health)
        if v.is_ready or health is None or time.monotonic() >= deadline or v.ready.reason == "VersionMismatch":
            return v, health
        await asyncio.sleep(min(next(polls, SERVING_POLL), max(deadline - time.monotonic(), 0.0)))


async def _apply(
    pool: SSHPool,
    inputs: NodeInputs,
    desired: DesiredNode,
    plan: Plan,
    out: NodeOutcome,
    on_phase: Callable[[str, list[str], dict[str, Any]], Awaitable[None]] | None,
) -> NodeOutcome:
    last_phase: list[str] = []

    async def step_started(step: Step) -> None:
        phase = PHASE_FOR_STEP[step]
        extra = PHASE_FOR_STEP_EXTRA.get(step, {})
        if not writes_progress(step, plan.steps):
            return
        if on_phase and (extra or not last_phase or last_phase[-1] != phase):
            last_phase.append(phase)
            await on_phase(phase, plan.summary(), extra)

    started = time.monotonic()
    readiness_timeout = parse_duration(inputs.cluster.readiness_timeout)
    try:
        result = await apply_plan(
            pool,
            inputs.target,
            desired,
            plan,
            readiness_timeout=readiness_timeout,
            secrets=inputs.secrets,
            on_step=step_started,
            kubectl_target=await inputs.kubectl_target() if inputs.kubectl_target and _needs_kubectl(plan) else None,
            drain_timeout=parse_duration(inputs.cluster.upgrade.drain_timeout),
            facts_after=facts_script((desired.unit,)),
        )
    except StepFailed as exc:
        return _step_failed(out, inputs, exc)
    except HostAccessError as exc:
        failed = access_failure(exc, inputs.target)
        failed.status.update({k: v for k, v in out.status.items() if k not in failed.status})
        failed.host_actions = 1
        return failed
    out.host_actions = len(result.done)
    # Re-read so the status reports what is on the host, not what we hoped for (read by the
    # readiness wait when the plan ended with it).
    try:
        if result.facts_after is not None:
            after = parse_facts(result.facts_after)
        else:
            after = await read_facts(pool, inputs.target, desired.unit)
    except HostAccessError as exc:
        return access_failure(exc, inputs.target)
    except FactsError:
        return out
    out.status.update(_facts_status(after))
    out.status["configHash"] = after.config_sha256
    out.status["runningVersion"] = after.running_version if after.unit(desired.role).is_active else None
    out.token_sha256 = after.token_sha256
    if Step.UNCORDON in result.done:
        out.status["cordoned"] = False
    if desired.version and after.unit(desired.role).is_active and after.running_version != desired.version:
        msg = f"{desired.unit} is active but runs {after.running_version}, not {desired.version}"
        return _step_failed(out, inputs, StepFailed(Step.WAIT_READY, "VersionMismatch", msg))
    health: ClusterHealth | None = None
    if Step.WAIT_READY in result.done and after.unit(desired.role).is_active:
        # The turn is held until the cluster says the node serves: the next server may not join
        # while this one is an etcd learner, and a rollout halts on a node that never comes back.
        v, health = await await_serving(inputs, desired, after, started + readiness_timeout)
        if not v.is_ready:
            out.conditions += v.parts
            msg = (
                f"{desired.unit} is active but the node is not Ready after {readiness_timeout:.0f}s: "
                f"{v.ready.message}"
            )
            return _step_failed(out, inputs, StepFailed(Step.WAIT_READY, v.ready.reason, msg))
    out.events.append(
        Event(
            "Normal",
            "Reconciled",
            f"{', '.join(s.value for s in result.done)} done in {time.monotonic() - started:.1f}s",
        )
    )
    out.status["plan"] = []
    return await _ready_outcome(out, desired, after, inputs, health)


def _needs_kubectl(plan: Plan) -> bool:
    return any(s in (Step.CORDON, Step.DRAIN, Step.UNCORDON) for s in plan.steps)


def _step_failed(out: NodeOutcome, inputs: NodeInputs, exc: StepFailed) -> NodeOutcome:
    out.status.update(phase="Failed", lastError=str(exc))
    cond_type = {Step.INSTALL: "Installed", Step.WRITE_CONFIG: "Configured"}.get(exc.step, "ServiceActive")
    if exc.step is Step.WAIT_READY and exc.reason not in ("ServiceFailed", "ReadinessTimeout"):
        cond_type = "Ready"  # the unit runs; the cluster does not count the node (NodeNotReady, Etcd…)
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


async def _ready_outcome(
    out: NodeOutcome, desired: DesiredNode, facts: HostFacts, inputs: NodeInputs, health: ClusterHealth | None = None
) -> NodeOutcome:
    out.kubeconfig_sha256 = facts.kubeconfig_sha256
    v = await _verdict(inputs, desired, facts, health)
    active = facts.unit(desired.role).is_active
    out.status["runningVersion"] = facts.running_version if active else None
    out.status["phase"] = v.phase
    out.status["lastError"] = None
    out.conditions += steady_conditions(desired, facts, inputs.target)
    out.conditions += [*v.parts, v.ready]
    if not v.is_ready:
        out.retry_after = 3.0 if not active else 10.0
    return out
