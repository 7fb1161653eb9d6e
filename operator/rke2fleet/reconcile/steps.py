"""The steps a plan is made of, each described once: its command on the host, whether it
disrupts the node (and so needs the cluster's go-ahead), the phase shown while it runs, what a
timer pass finding it calls the drift, and which condition turns False when it fails."""

from __future__ import annotations

import enum
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rke2fleet.api.status import NodePhase
from rke2fleet.artifacts import ArtifactError
from rke2fleet.hostaccess import CommandFailed, HostTarget, redact
from rke2fleet.reconcile import kubectl
from rke2fleet.reconcile.airgap import airgap_install
from rke2fleet.reconcile.commands import StartFailed, install_script, wait_ready
from rke2fleet.reconcile.desired import DesiredNode
from rke2fleet.reconcile.facts import HostFacts
from rke2fleet.reconcile.hostprep import CIS_PREPARE_SCRIPT, remove_script, stale_files
from rke2fleet.reconcile.paths import RESTART_MARKER, Paths

if TYPE_CHECKING:
    from rke2fleet.engine.ports import Hosts


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
    ROTATE_CERTIFICATES = "rotate-certificates"
    PREPARE_HOST = "prepare-host"
    WRITE_FILES = "write-files"


class StepFailed(Exception):
    """A step failed on the host; the message is safe for status and Events (secrets redacted)."""

    def __init__(self, step: Step, reason: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.reason = reason  # CamelCase, for conditions


@dataclass
class StepContext:
    """What a step's command needs, and where it leaves what it learned."""

    hosts: Hosts
    target: HostTarget
    desired: DesiredNode
    secrets: list[str]
    readiness_timeout: float
    drain_timeout: float = 300.0
    kubectl_target: HostTarget | None = None  # a serving server (cordon, drain, uncordon)
    kubectl_paths: Paths = field(default_factory=Paths)  # that server's RKE2 paths
    background: bool = False  # staging: the install at a lower CPU priority
    facts_after: str | None = None  # a facts script, run by a final readiness wait
    next_step: Step | None = None
    following: tuple[Step, ...] = ()  # the plan's steps after this one
    last: bool = False
    announce: Callable[[Step], Awaitable[None]] | None = None  # a step merged into this one starts
    facts_output: str | None = None  # what the final readiness wait's facts script printed
    facts: HostFacts | None = None  # what the plan was made from
    restart_marked: bool = False  # RESTART_MARKER is on the host (written, or found by the facts)


Runner = Callable[[StepContext], Awaitable[tuple[Step, ...]]]  # returns the steps it also did


async def _install(ctx: StepContext) -> tuple[Step, ...]:
    if ctx.desired.airgap_url:
        try:
            await airgap_install(ctx.hosts, ctx.target, ctx.desired, ctx.facts, background=ctx.background)
        except ArtifactError as exc:
            raise StepFailed(Step.INSTALL, exc.reason, str(exc)) from None
        return ()
    script = install_script(ctx.desired, background=ctx.background)
    await ctx.hosts.run(ctx.target, script=script, secret_values=ctx.secrets)
    return ()


async def _mark_restart(ctx: StepContext) -> None:
    """Before a running node's first changed file: the restart it needs is owed from now on."""
    if Step.RESTART not in ctx.following or ctx.restart_marked or (ctx.facts and ctx.facts.restart_pending):
        return
    await ctx.hosts.write_file(ctx.target, RESTART_MARKER, b"rke2fleet: files changed, restart owed\n", mode=0o644)
    ctx.restart_marked = True


async def _write_config(ctx: StepContext) -> tuple[Step, ...]:
    await _mark_restart(ctx)
    # write_file creates the directory (0755) when missing, in its own check
    await ctx.hosts.write_file(ctx.target, ctx.desired.paths.config, ctx.desired.config, mode=0o600)
    return ()


async def _write_files(ctx: StepContext) -> tuple[Step, ...]:
    await _mark_restart(ctx)
    held = ctx.facts.files if ctx.facts else {}
    for f in ctx.desired.files:
        if held.get(f.path, ("", False))[0] != f.sha256:
            await ctx.hosts.write_file(ctx.target, f.path, f.content, mode=f.mode)
    stale = stale_files(ctx.desired, held)
    if stale:
        await ctx.hosts.run(ctx.target, script=remove_script(stale))
    return ()


async def _prepare_host(ctx: StepContext) -> tuple[Step, ...]:
    try:
        await ctx.hosts.run(ctx.target, script=CIS_PREPARE_SCRIPT)
    except CommandFailed as exc:
        raise StepFailed(Step.PREPARE_HOST, "HostPreparationFailed", f"CIS host preparation failed: {exc}") from None
    return ()


def _settled(start: list[str]) -> str:
    """`start`, then the owed restart cleared once it is queued: systemd goes on with a queued
    start or restart even if we are cut off now."""
    return f"{shlex.join(start)} && rm -f {shlex.quote(RESTART_MARKER)}"


def _settling(ctx: StepContext, start: list[str]) -> list[str]:
    """A start of a stopped node that owed a restart settles it: RKE2 reads the files as it starts."""
    if not (ctx.facts and ctx.facts.restart_pending):
        return start
    return ["sh", "-c", _settled(start)]


async def _enable(ctx: StepContext) -> tuple[Step, ...]:
    if ctx.next_step is Step.START:
        # One command for both (systemd's own `enable --now`); a failure names the start.
        if ctx.announce:
            await ctx.announce(Step.START)
        enable_now = _settling(ctx, ["systemctl", "enable", "--now", "--no-block", ctx.desired.unit])
        if ctx.following[1:2] == (Step.WAIT_READY,):  # ... and the readiness wait in it too
            await _wait(ctx, start=enable_now, last=len(ctx.following) == 2)
            return (Step.START, Step.WAIT_READY)
        await ctx.hosts.run(ctx.target, enable_now)
        return (Step.START,)
    await ctx.hosts.run(ctx.target, ["systemctl", "enable", ctx.desired.unit])
    return ()


async def _start(ctx: StepContext) -> tuple[Step, ...]:
    start = _settling(ctx, ["systemctl", "start", "--no-block", ctx.desired.unit])
    if ctx.next_step is Step.WAIT_READY:  # one command for the start and the readiness wait
        await _wait(ctx, start=start, last=len(ctx.following) == 1)
        return (Step.WAIT_READY,)
    await ctx.hosts.run(ctx.target, start)
    return ()


async def _restart(ctx: StepContext) -> tuple[Step, ...]:
    await ctx.hosts.run(ctx.target, script=_settled(["systemctl", "restart", "--no-block", ctx.desired.unit]) + "\n")
    return ()


async def _rotate_certificates(ctx: StepContext) -> tuple[Step, ...]:
    # RKE2 issues new certificates as it starts: rotate with the service stopped (reference §11).
    await ctx.hosts.run(ctx.target, ["systemctl", "stop", ctx.desired.unit])
    await ctx.hosts.run(ctx.target, ["rke2", "certificate", "rotate"])
    return ()


async def _wait(ctx: StepContext, *, start: list[str] | None = None, last: bool) -> None:
    """The readiness wait (after `start`, in the same command, when given); the facts read after
    it when it ends the plan."""
    try:
        ctx.facts_output = await wait_ready(
            ctx.hosts,
            ctx.target,
            ctx.desired.unit,
            timeout=ctx.readiness_timeout,
            secrets=ctx.secrets,
            facts=ctx.facts_after if last else None,
            start=start,
        )
    except StartFailed as exc:
        raise StepFailed(Step.WAIT_READY, exc.reason, str(exc)) from None


async def _wait_ready(ctx: StepContext) -> tuple[Step, ...]:
    await _wait(ctx, last=ctx.last)
    return ()


def _kubectl(command: Callable[[Paths, str], list[str]]) -> Runner:
    async def run(ctx: StepContext) -> tuple[Step, ...]:
        assert ctx.kubectl_target is not None  # apply_plan skips it without one
        await ctx.hosts.run(ctx.kubectl_target, command(ctx.kubectl_paths, ctx.desired.node_name))
        return ()

    return run


async def _drain(ctx: StepContext) -> tuple[Step, ...]:
    assert ctx.kubectl_target is not None
    name = ctx.desired.node_name
    res = await ctx.hosts.run(
        ctx.kubectl_target,
        kubectl.drain(ctx.kubectl_paths, name, ctx.drain_timeout),
        check=False,
        timeout=ctx.drain_timeout + 30,
    )
    if res.exit_status != 0:
        # Never leave it cordoned behind a failed drain; the rollout halts on this node.
        await ctx.hosts.run(ctx.kubectl_target, kubectl.uncordon(ctx.kubectl_paths, name), check=False)
        tail = redact(" ".join(res.stderr.split()[-30:]), ctx.secrets)
        raise StepFailed(Step.DRAIN, "DrainFailed", f"drain of {name} failed: {tail}")
    return ()


@dataclass(frozen=True)
class StepKind:
    phase: NodePhase  # shown while it runs
    run: Runner
    disrupts: bool = False  # takes the node's RKE2 down or up: needs the cluster's go-ahead
    drift: str | None = None  # what a timer pass finding it calls the drift (a metric label)
    condition: str = "ServiceActive"  # the condition False when it fails ...
    failure: str = "CommandFailed"  # ... and its reason when the command failed
    slow: bool = False  # waits on a download, RKE2's start or a drain: worth its own progress write
    via_kubectl: bool = False  # run with kubectl on a serving server; skipped without one
    stage: bool = False  # may run before the node's turn (RKE2 reads nothing of it until a start)
    timeout_fails: bool = False  # a command timeout is this step's failure, not an unreachable host
    progress: Mapping[str, Any] = field(default_factory=dict)  # status fields written as it starts


STEPS: dict[Step, StepKind] = {
    Step.CORDON: StepKind(
        "Draining", _kubectl(kubectl.cordon), disrupts=True, drift="version", slow=True, via_kubectl=True,
        progress={"cordoned": True},  # a restarted operator must know it holds the node cordoned
    ),
    Step.DRAIN: StepKind("Draining", _drain, disrupts=True, slow=True, via_kubectl=True),
    Step.INSTALL: StepKind(
        "Installing", _install, disrupts=True, drift="version", condition="Installed", failure="InstallFailed",
        slow=True, stage=True, timeout_fails=True,
    ),
    Step.WRITE_CONFIG: StepKind("Configuring", _write_config, drift="config", condition="Configured", stage=True),
    Step.PREPARE_HOST: StepKind("Configuring", _prepare_host, drift="host", condition="Configured", stage=True),
    Step.WRITE_FILES: StepKind("Configuring", _write_files, drift="config", condition="Configured", stage=True),
    Step.ENABLE: StepKind("Configuring", _enable, drift="service"),
    Step.START: StepKind("Starting", _start, disrupts=True, drift="service", slow=True),
    # A restart follows from a version or config change: it names no drift of its own.
    Step.RESTART: StepKind("Starting", _restart, disrupts=True, slow=True),
    Step.WAIT_READY: StepKind("Starting", _wait_ready, slow=True),
    Step.UNCORDON: StepKind("Starting", _kubectl(kubectl.uncordon), via_kubectl=True),
    Step.ROTATE_CERTIFICATES: StepKind(
        "Configuring", _rotate_certificates, disrupts=True, condition="CertificatesValid",
        failure="CertificateRotationFailed", slow=True,
    ),
}  # fmt: skip


def writes_progress(step: Step, steps: tuple[Step, ...]) -> bool:
    """A quick step (config, enable, uncordon) followed by a slow one gets no progress write: it
    is done in milliseconds and the slow step's own write follows at once (one API write and one
    watch event less per node in a bring-up)."""
    kind = STEPS[step]
    if kind.slow or kind.progress:
        return True
    return not any(STEPS[s].slow for s in steps[steps.index(step) + 1 :])
