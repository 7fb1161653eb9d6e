"""How a node pass reports what it found: conditions and status from the facts, the cluster's
view, a failed step or a host that cannot be reached. Pure functions."""

from __future__ import annotations

from rke2fleet.api.conditions import Cond
from rke2fleet.api.status import RKE2NodeStatus
from rke2fleet.engine.outcome import Event, NodeOutcome
from rke2fleet.hostaccess import (
    AuthenticationFailed,
    CommandTimeout,
    HostAccessError,
    HostKeyRejected,
    HostTarget,
    HostUnreachable,
)
from rke2fleet.reconcile.desired import DesiredNode
from rke2fleet.reconcile.facts import HostFacts
from rke2fleet.reconcile.readiness import Verdict
from rke2fleet.reconcile.steps import STEPS, Step, StepFailed

# What a failed SSH access leaves unknown: everything read from the host.
HOST_CONDITIONS = ("Installed", "Configured", "ServiceActive")


def facts_status(status: RKE2NodeStatus, facts: HostFacts, addons_dir: str | None = None) -> None:
    """Status fields straight from the facts."""
    status.installed_version = facts.installed_version
    status.os = facts.os
    status.arch = facts.arch
    if addons_dir:
        status.addons = sorted(
            p.rsplit("/", 1)[-1] for p, (_, ours) in facts.files.items() if ours and p.startswith(addons_dir + "/")
        )


def reached(target: HostTarget) -> list[Cond]:
    return [
        Cond("Reachable", True, "Connected", f"{target.endpoint} answered"),
        Cond("HostKeyVerified", True, "KeyMatched", "host key verified"),
    ]


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
        out.status.phase = "Failed"
        out.events.append(Event("Warning", "HostKeyRejected", msg))
        out.retry_after = 60.0
    elif isinstance(exc, AuthenticationFailed):
        reason = "AuthenticationFailed"
        out.conditions.append(Cond("Reachable", True, "AuthenticationFailed", msg))
        out.status.phase = "Failed"
        out.events.append(Event("Warning", "AuthenticationFailed", msg))
        out.retry_after = 60.0
    elif isinstance(exc, HostUnreachable | CommandTimeout):
        reason = "Unreachable"
        out.conditions.append(Cond("Reachable", False, "Unreachable", msg))
        out.status.phase = "Unreachable"
        out.events.append(Event("Warning", "Unreachable", msg))
    else:
        reason = "CommandFailed"
        out.conditions.append(Cond("Reachable", True, "CommandFailed", msg))
        out.status.phase = "Failed"
        out.events.append(Event("Warning", "CommandFailed", msg))
    out.conditions += [Cond(t, None, reason, f"cannot check: {msg}") for t in HOST_CONDITIONS]
    out.conditions.append(Cond("Ready", None, reason, msg))
    out.status.last_error = msg
    return out


def steady_conditions(desired: DesiredNode, facts: HostFacts, target: HostTarget) -> list[Cond]:
    unit = facts.unit(desired.role)
    installed = facts.installed_version
    configured = facts.config_sha256 == desired.config_sha256
    return [
        *reached(target),
        Cond(
            "Installed",
            installed is not None and (desired.version in (None, installed)),
            "Installed" if installed else "NotInstalled",
            f"rke2 {installed or 'not installed'}",
        ),
        Cond(
            "Configured",
            configured,
            "UpToDate" if configured else "Differs",
            "config.yaml matches the spec" if configured else "config.yaml differs from the spec",
        ),
        Cond(
            "ServiceActive",
            unit.is_active,
            "Active" if unit.is_active else unit.active.capitalize(),
            f"{desired.unit} is {unit.active}",
        ),
    ]


def step_failed(out: NodeOutcome, target: HostTarget, exc: StepFailed) -> NodeOutcome:
    out.status.phase = "Failed"
    out.status.last_error = str(exc)
    cond_type = STEPS[exc.step].condition
    if exc.step is Step.WAIT_READY and exc.reason not in ("ServiceFailed", "ReadinessTimeout"):
        cond_type = "Ready"  # the unit runs; the cluster does not count the node (NodeNotReady, Etcd…)
    out.conditions += [
        *reached(target),
        Cond(cond_type, False, exc.reason, str(exc)),
        Cond("Ready", False, exc.reason, str(exc)),
    ]
    out.events.append(Event("Warning", exc.reason, str(exc)))
    out.retry_after = 30.0
    out.host_actions = 1
    return out


def judged(out: NodeOutcome, desired: DesiredNode, facts: HostFacts, target: HostTarget, v: Verdict) -> NodeOutcome:
    """The steady outcome: the host's conditions and the verdict that makes Ready."""
    out.kubeconfig_sha256 = facts.kubeconfig_sha256
    active = facts.unit(desired.role).is_active
    out.status.running_version = facts.running_version if active else None
    out.status.phase = v.phase
    out.status.last_error = None
    out.conditions += steady_conditions(desired, facts, target)
    out.conditions += [*v.parts, v.ready]
    if not v.is_ready:
        out.retry_after = 3.0 if not active else 10.0
    return out


def drift_report(out: NodeOutcome, steps_summary: list[str], kinds: list[str], *, report_only: bool,
                 was_drifted: bool) -> None:  # fmt: skip
    """A settled node whose timer pass finds work has drifted: say what differs."""
    if not steps_summary:
        if was_drifted:  # clear it; a node that never drifted carries no Drifted condition
            out.conditions.append(Cond("Drifted", False, "InSync", "the host matches the spec again"))
        return
    what = "; ".join(steps_summary)
    action = "reported only" if report_only else "repairing"
    out.conditions.append(Cond("Drifted", True, "HostDrifted", f"{what} ({action})"))
    out.events.append(Event("Warning", "Drifted", f"host drifted from the spec: {what}; {action}"))
    out.drift_kinds = kinds or ["other"]
