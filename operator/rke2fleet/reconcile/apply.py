"""Apply: run a plan's actions on a host through the one SSH layer."""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rke2fleet.hostaccess import CommandFailed, HostTarget, SSHPool, redact
from rke2fleet.reconcile.desired import CONFIG_PATH, DesiredNode
from rke2fleet.reconcile.plan import Plan, Step

JOURNAL_LINES = 15


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


def install_script(desired: DesiredNode) -> str:
    """Download the install script to a temp file (so a failed download is an error, which
    `curl | sh` would hide), then run it with the INSTALL_RKE2_* variables."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(desired.install_env.items()))
    url = shlex.quote(desired.script_url)
    return (
        "set -e\n"
        "tmp=$(mktemp)\ntrap 'rm -f \"$tmp\"' EXIT\n"
        f'if ! curl -sfL --connect-timeout 10 --max-time 120 -o "$tmp" {url}; then\n'
        f'  echo "downloading the install script from "{url}" failed" >&2; exit 22\nfi\n'
        f'env {env} sh "$tmp"\n'
    )


async def wait_ready(
    pool: SSHPool,
    target: HostTarget,
    desired: DesiredNode,
    *,
    timeout: float,  # noqa: ASYNC109 -- our own readiness deadline (reference §7), not a cancel scope
    secrets: list[str],
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll `systemctl is-active` with our own timeout: RKE2's units have TimeoutStartSec=0."""
    deadline = clock() + timeout
    unit = desired.unit
    while True:
        res = await pool.run(target, ["systemctl", "is-active", unit], check=False)
        state = res.stdout.strip()
        if state == "active":
            return
        if state in ("failed", "inactive"):
            tail = await journal_tail(pool, target, unit, secrets)
            raise StepFailed(Step.WAIT_READY, "ServiceFailed", f"{unit} failed to start: {tail}")
        if clock() > deadline:
            tail = await journal_tail(pool, target, unit, secrets)
            raise StepFailed(Step.WAIT_READY, "ReadinessTimeout", f"{unit} not active after {timeout:.0f}s: {tail}")
        await asyncio.sleep(interval)


async def journal_tail(pool: SSHPool, target: HostTarget, unit: str, secrets: list[str]) -> str:
    res = await pool.run(target, ["journalctl", "-u", unit, "-n", str(JOURNAL_LINES), "--no-pager"], check=False)
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()][-5:]
    return redact(" | ".join(lines), secrets) or "(journal empty)"


async def apply_plan(
    pool: SSHPool,
    target: HostTarget,
    desired: DesiredNode,
    plan: Plan,
    *,
    readiness_timeout: float,
    secrets: list[str],
    on_step: Callable[[Step], None] | None = None,
) -> ApplyResult:
    result = ApplyResult()
    for action in plan.actions:
        if on_step:
            on_step(action.step)
        step = action.step
        try:
            if step is Step.INSTALL:
                await pool.run(target, script=install_script(desired), secret_values=secrets)
            elif step is Step.WRITE_CONFIG:
                await pool.run(target, ["mkdir", "-p", "-m", "0755", "/etc/rancher/rke2"])
                result.wrote_config = await pool.write_file(target, CONFIG_PATH, desired.config, mode=0o600)
            elif step is Step.ENABLE:
                await pool.run(target, ["systemctl", "enable", desired.unit])
            elif step is Step.START:
                await pool.run(target, ["systemctl", "start", "--no-block", desired.unit])
            elif step is Step.RESTART:
                await pool.run(target, ["systemctl", "restart", "--no-block", desired.unit])
                result.restarted = True
            elif step is Step.WAIT_READY:
                await wait_ready(pool, target, desired, timeout=readiness_timeout, secrets=secrets)
        except CommandFailed as exc:
            reason = "InstallFailed" if step is Step.INSTALL else "CommandFailed"
            raise StepFailed(step, reason, f"{step.value} failed: {exc}") from None
        result.done.append(step)
    return result
