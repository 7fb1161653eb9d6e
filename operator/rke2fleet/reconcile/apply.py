"""Apply: run a plan's actions on a host through the one SSH layer."""

from __future__ import annotations

import itertools
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from rke2fleet.hostaccess import CommandFailed, CommandTimeout, HostTarget, SSHPool, redact
from rke2fleet.reconcile import kubectl
from rke2fleet.reconcile.desired import CONFIG_PATH, DesiredNode
from rke2fleet.reconcile.plan import Plan, Step

JOURNAL_LINES = 15
KUBECTL_STEPS = frozenset({Step.CORDON, Step.DRAIN, Step.UNCORDON})


class StepFailed(Exception):
    """A step failed on the host; the message is safe for status and Events (secrets redacted)."""

    def __init__(self, step: Step, reason: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.reason = reason  # CamelCase, for conditions


@dataclass
class ApplyResult:
    done: list[Step] = field(default_factory=list)
    wrote_config: bool = False
    restarted: bool = False
    facts_after: str | None = None  # the facts script's output, when the plan ended with the wait


BACKGROUND_NICE = 10


def install_script(desired: DesiredNode, *, background: bool = False) -> str:
    """Download the install script to a temp file (so a failed download is an error, which
    `curl | sh` would hide), then run it with the INSTALL_RKE2_* variables. `--globoff`: curl
    would otherwise read [] and {} in the URL as its own patterns and fetch something else.
    `background` (staging a node that may not start yet): at a lower CPU priority, so that it
    never slows what the host is doing (or, where hosts share CPUs, the nodes that may start)."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(desired.install_env.items()))
    url = shlex.quote(desired.script_url)
    lower = f"renice -n {BACKGROUND_NICE} -p $$ >/dev/null 2>&1 || true\n" if background else ""
    return (
        f"set -e\n{lower}"
        "tmp=$(mktemp)\ntrap 'rm -f \"$tmp\"' EXIT\n"
        f'if ! curl -sfL --globoff --connect-timeout 10 --max-time 120 -o "$tmp" {url}; then\n'
        f'  echo "downloading the install script from "{url}" failed" >&2; exit 22\nfi\n'
        f'env {env} sh "$tmp"\n'
    )


WAIT_CHUNK = 3.0  # seconds one readiness command waits on the host before reporting back


FACTS_MARK = "--facts--"


WAIT_RAMP = (0.1, 0.1, 0.2, 0.2)  # the first polls of a wait: a quick start is seen at once


def wait_script(unit: str, sleeps: Sequence[float], facts: str | None = None) -> str:
    """Poll `systemctl is-active` ON the host (no SSH round trip per poll), sleeping `sleeps` in
    turn between polls (len + 1 polls at most); print `state=<state>`, then, unless active, the
    unit's journal for the caller to judge.
    With `facts` (a facts script), an active unit is followed by FACTS_MARK and the host's facts:
    the read after a start comes back with the wait instead of in a command of its own."""
    u = shlex.quote(unit)
    journal = f"journalctl -u {u} -n 60 --no-pager 2>/dev/null"
    if facts:
        report = f'if [ "$s" = active ]; then\n  echo {FACTS_MARK}\n  (\n{facts}\n  )\nelse\n  {journal}\nfi\n'
    else:
        report = f'[ "$s" = active ] || {journal}\n'
    delays = " ".join(f"{float(d):g}" for d in sleeps)
    return (
        f"for d in {delays} last; do\n  s=$(systemctl is-active {u} 2>/dev/null)\n"
        '  case "$s" in active|failed|inactive) break;; esac\n'
        '  [ "$d" = last ] && break\n  sleep "$d"\ndone\n'
        f'echo "state=$s"\n{report}exit 0\n'
    )


def poll_delays(budget: float, interval: float, ramp: Sequence[float] = ()) -> list[float]:
    """The sleeps between the polls of one readiness command: `ramp`, then `interval`, within `budget`."""
    sleeps: list[float] = []
    for delay in itertools.chain(ramp, itertools.repeat(interval)):
        if sum(sleeps) + delay > budget:
            return sleeps
        sleeps.append(delay)
    raise AssertionError("unreachable: the repeat is endless")


async def wait_ready(
    pool: SSHPool,
    target: HostTarget,
    desired: DesiredNode,
    *,
    timeout: float,  # noqa: ASYNC109 -- our own readiness deadline (reference §7), not a cancel scope
    secrets: list[str],
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    facts: str | None = None,
) -> str | None:
    """Wait for the unit with our own timeout: RKE2's units have TimeoutStartSec=0.

    One command per WAIT_CHUNK polls on the host. A unit that keeps failing stays `activating`
    (auto-restart) forever, so the journal that comes back with a not-yet-active state is read
    too: a main-process exit since the last stop means this start failed. Returns the output of
    the `facts` script, run on the host once the unit is active (None without one).
    """
    deadline = clock() + timeout
    unit = desired.unit
    ramp: tuple[float, ...] = WAIT_RAMP
    while True:
        sleeps = poll_delays(min(WAIT_CHUNK, deadline - clock()), interval, ramp)
        ramp = ()
        res = await pool.run(
            target, script=wait_script(unit, sleeps, facts), check=False, timeout=sum(sleeps) + 30
        )
        head, _, rest = res.stdout.partition("\n")
        state = head.removeprefix("state=").strip()
        if state == "active":
            mark, _, facts_out = rest.partition("\n")
            return facts_out if facts and mark.strip() == FACTS_MARK else None
        lines = [redact(ln, secrets) for ln in rest.splitlines() if ln.strip()]
        if state in ("failed", "inactive"):
            raise StepFailed(Step.WAIT_READY, "ServiceFailed", f"{unit} failed to start: {_tail(lines)}")
        failure = start_failure(lines, unit)
        if failure:
            raise StepFailed(Step.WAIT_READY, "ServiceFailed", f"{unit} failed to start: {failure}")
        if clock() > deadline:
            raise StepFailed(
                Step.WAIT_READY, "ReadinessTimeout", f"{unit} not active after {timeout:.0f}s: {_tail(lines)}"
            )


def start_failure(lines: list[str], unit: str) -> str | None:
    """The reason the current start attempt failed, judged from the journal since the last stop."""
    # systemd names the unit ("Stopped rke2-server.service") or, in its older format, its
    # description ("Stopped Rancher Kubernetes Engine v2 (server).").
    described = f"Rancher Kubernetes Engine v2 ({unit.removeprefix('rke2-')})"
    last_stop = max(
        (
            i
            for i, ln in enumerate(lines)
            if "Stopped " in ln and (unit in ln or (described in ln and "rke2-" not in ln))
        ),
        default=-1,
    )
    segment = lines[last_stop + 1 :]
    if not any("Main process exited" in ln for ln in segment):
        return None
    reasons = [ln for ln in segment if "level=fatal" in ln or "level=error" in ln]
    return (reasons or [ln for ln in segment if "Main process exited" in ln])[-1].strip()


def _tail(journal: list[str]) -> str:
    """The last error lines of a journal (else its last lines): short enough for a condition."""
    lines = journal[-JOURNAL_LINES:]
    reasons = [ln for ln in lines if "level=fatal" in ln or "level=error" in ln]
    return " | ".join((reasons or lines)[-3:]) or "(journal empty)"


async def apply_plan(
    pool: SSHPool,
    target: HostTarget,
    desired: DesiredNode,
    plan: Plan,
    *,
    readiness_timeout: float,
    secrets: list[str],
    on_step: Callable[[Step], Awaitable[None]] | None = None,
    kubectl_target: HostTarget | None = None,
    drain_timeout: float = 300.0,
    facts_after: str | None = None,
    background: bool = False,
) -> ApplyResult:
    """`kubectl_target`: a Ready server to cordon, drain and uncordon through (None: skip them,
    there is no server to ask). `facts_after`: a facts script to run when a final readiness wait
    succeeds (its output in `result.facts_after`). `background`: the install runs at a lower
    CPU priority (staging, see install_script)."""
    result = ApplyResult()
    last = plan.steps[-1] if plan else None
    steps = plan.steps
    for index, action in enumerate(plan.actions):
        if action.step in KUBECTL_STEPS and kubectl_target is None:
            continue
        if action.step is Step.START and index and steps[index - 1] is Step.ENABLE:
            continue  # started with the enable (`enable --now`)
        if on_step:
            await on_step(action.step)
        step = action.step
        try:
            if step is Step.INSTALL:
                await pool.run(target, script=install_script(desired, background=background), secret_values=secrets)
            elif step is Step.WRITE_CONFIG:
                # write_file creates /etc/rancher/rke2 (0755) when missing, in its own check
                result.wrote_config = await pool.write_file(target, CONFIG_PATH, desired.config, mode=0o600)
            elif step is Step.ENABLE and index + 1 < len(steps) and steps[index + 1] is Step.START:
                # One command for both (systemd's own `enable --now`); a failure names the step.
                if on_step:
                    await on_step(Step.START)
                step = Step.START
                await pool.run(target, ["systemctl", "enable", "--now", "--no-block", desired.unit])
                result.done.append(Step.ENABLE)
            elif step is Step.ENABLE:
                await pool.run(target, ["systemctl", "enable", desired.unit])
            elif step is Step.START:
                await pool.run(target, ["systemctl", "start", "--no-block", desired.unit])
            elif step is Step.RESTART:
                await pool.run(target, ["systemctl", "restart", "--no-block", desired.unit])
                result.restarted = True
            elif step is Step.WAIT_READY:
                result.facts_after = await wait_ready(
                    pool,
                    target,
                    desired,
                    timeout=readiness_timeout,
                    secrets=secrets,
                    facts=facts_after if last is Step.WAIT_READY else None,
                )
            elif step is Step.CORDON and kubectl_target is not None:
                await pool.run(kubectl_target, kubectl.cordon(desired.node_name))
            elif step is Step.UNCORDON and kubectl_target is not None:
                await pool.run(kubectl_target, kubectl.uncordon(desired.node_name))
            elif step is Step.DRAIN and kubectl_target is not None:
                res = await pool.run(
                    kubectl_target,
                    kubectl.drain(desired.node_name, drain_timeout),
                    check=False,
                    timeout=drain_timeout + 30,
                )
                if res.exit_status != 0:
                    # Never leave it cordoned behind a failed drain; the rollout halts on this node.
                    await pool.run(kubectl_target, kubectl.uncordon(desired.node_name), check=False)
                    tail = redact(" ".join(res.stderr.split()[-30:]), secrets)
                    raise StepFailed(step, "DrainFailed", f"drain of {desired.node_name} failed: {tail}")
        except CommandFailed as exc:
            reason = "InstallFailed" if step is Step.INSTALL else "CommandFailed"
            raise StepFailed(step, reason, f"{step.value} failed: {exc}") from None
        except CommandTimeout as exc:
            if step is not Step.INSTALL:
                raise
            # The host answered; what hangs is a download: not an unreachable host.
            msg = f"{step.value} did not finish within {exc.timeout:g}s (installer endpoint or mirror not answering?)"
            raise StepFailed(step, "InstallFailed", msg) from None
        result.done.append(step)
    return result
