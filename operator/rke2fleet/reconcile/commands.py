"""The commands the steps run on a host: the install script, the readiness wait (polled ON the
host, one SSH command per few seconds), and judging a start from the unit's journal."""

from __future__ import annotations

import itertools
import shlex
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rke2fleet.hostaccess import HostTarget, redact
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
    hosts: Hosts,
    target: HostTarget,
    unit: str,
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
    ramp: tuple[float, ...] = WAIT_RAMP
    while True:
        sleeps = poll_delays(min(WAIT_CHUNK, deadline - clock()), interval, ramp)
        ramp = ()
        res = await hosts.run(
            target, script=wait_script(unit, sleeps, facts), check=False, timeout=sum(sleeps) + 30
        )
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
