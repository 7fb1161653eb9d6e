"""The commands the steps run on a host: the install script, the readiness wait (polled ON the
host, one SSH command per few seconds), and judging a start from the unit's journal."""

from __future__ import annotations

import itertools
import shlex
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rke2fleet.hostaccess import CommandFailed, HostTarget, redact
from rke2fleet.reconcile.desired import DesiredNode

if TYPE_CHECKING:
    from rke2fleet.engine.ports import Hosts

JOURNAL_LINES = 15


class StartFailed(Exception):
    """The unit failed to start, or did not in time; the message is redacted."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # ServiceFailed | ReadinessTimeout


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


WAIT_CHUNK = 3.0  # seconds one readiness command polls on the host before reporting back
# Seconds one readiness command may wait in a blocking `systemctl start` of an activating unit
# (before its polls): systemd ends it as soon as the start job ends, failed or not.
BLOCK_WAIT = 20.0


FACTS_MARK = "--facts--"


WAIT_RAMP = (0.1, 0.1, 0.2, 0.2)  # the first polls of a wait: a quick start is seen at once


def wait_script(
    unit: str, sleeps: Sequence[float], facts: str | None = None, *, block: float = 0.0,
    start: Sequence[str] | None = None,
) -> str:  # fmt: skip
    """Poll `systemctl is-active` ON the host (no SSH round trip per poll), sleeping `sleeps` in
    turn between polls (len + 1 polls at most); print `state=<state>`, then, unless active, the
    unit's journal for the caller to judge.
    With `facts` (a facts script), an active unit is followed by FACTS_MARK and the host's facts:
    the read after a start comes back with the wait instead of in a command of its own.
    `start` (argv of a non-blocking start): run first, in the same command; its failure ends the
    script with its exit status. `block` (seconds): a unit found `activating` is first waited for
    by a blocking `systemctl start` (it joins the running start job; systemd reports the job's end
    itself, so no poll runs meanwhile), bounded by `timeout` (the job goes on if it is cut).
    A unit in any other state is never started by it."""
    u = shlex.quote(unit)
    journal = f"journalctl -u {u} -n 60 --no-pager 2>/dev/null"
    if facts:
        report = f'if [ "$s" = active ]; then\n  echo {FACTS_MARK}\n  (\n{facts}\n  )\nelse\n  {journal}\nfi\n'
    else:
        report = f'[ "$s" = active ] || {journal}\n'
    delays = " ".join(f"{float(d):g}" for d in sleeps)
    first = f"{shlex.join(start)} >/dev/null || exit $?\n" if start else ""
    if block > 0:
        first += (
            f'if [ "$(systemctl is-active {u} 2>/dev/null)" = activating ]; then\n'
            f"  timeout {block:g} systemctl start {u} >/dev/null 2>&1\nfi\n"
        )
    return (
        f"{first}for d in {delays} last; do\n  s=$(systemctl is-active {u} 2>/dev/null)\n"
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
    hosts: Hosts,
    target: HostTarget,
    unit: str,
    *,
    timeout: float,  # noqa: ASYNC109 -- our own readiness deadline (reference §7), not a cancel scope
    secrets: list[str],
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    facts: str | None = None,
    start: Sequence[str] | None = None,
) -> str | None:
    """Wait for the unit with our own timeout: RKE2's units have TimeoutStartSec=0.

    One command at a time on the host: a blocking `systemctl start` of the unit while it is
    activating (systemd says when the start job ends: no poll meanwhile; up to BLOCK_WAIT), then
    polls for up to WAIT_CHUNK. A unit that
    keeps failing stays `activating` (auto-restart) forever, so the journal that comes back with
    a not-yet-active state is read too: a main-process exit since the last stop means this start
    failed. `start` (argv of a non-blocking start) runs in the first command, ahead of the wait;
    its failure raises CommandFailed. Returns the output of the `facts` script, run on the host
    once the unit is active (None without one).
    """
    deadline = clock() + timeout
    ramp: tuple[float, ...] = WAIT_RAMP
    while True:
        block = max(0.0, min(BLOCK_WAIT, deadline - clock()))
        sleeps = poll_delays(min(WAIT_CHUNK, deadline - clock() - block), interval, ramp)
        ramp = ()
        script = wait_script(unit, sleeps, facts, block=block, start=start)
        res = await hosts.run(target, script=script, check=False, timeout=block + sum(sleeps) + 30)
        if start and res.exit_status != 0:
            raise CommandFailed(
                f"command {start[0]!r}", res.exit_status, redact(res.stderr[-2000:], secrets),
                redact(res.stdout[-2000:], secrets),
            )  # fmt: skip
        start = None
        head, _, rest = res.stdout.partition("\n")
        state = head.removeprefix("state=").strip()
        if state == "active":
            mark, _, facts_out = rest.partition("\n")
            return facts_out if facts and mark.strip() == FACTS_MARK else None
        lines = [redact(ln, secrets) for ln in rest.splitlines() if ln.strip()]
        if state in ("failed", "inactive"):
            raise StartFailed("ServiceFailed", f"{unit} failed to start: {_tail(lines)}")
        failure = start_failure(lines, unit)
        if failure:
            raise StartFailed("ServiceFailed", f"{unit} failed to start: {failure}")
        if clock() > deadline:
            raise StartFailed("ReadinessTimeout", f"{unit} not active after {timeout:.0f}s: {_tail(lines)}")


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
