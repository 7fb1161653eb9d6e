"""The start and its readiness wait in one command: the start's failure is the command's, a unit
found activating is waited for by a blocking `systemctl start` (no polls meanwhile), a unit in
any other state is never started by the wait; the certificate check rides on the facts read."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretBytes

from rke2fleet.hostaccess import CommandFailed, HostTarget
from rke2fleet.hostaccess.pool import CommandResult
from rke2fleet.reconcile import certificates as certs
from rke2fleet.reconcile.commands import wait_ready, wait_script

START = ["systemctl", "enable", "--now", "--no-block", "rke2-agent"]


def _run(tmp_path: Path, script: str, states: list[str], start_rc: int = 0) -> tuple[subprocess.CompletedProcess[str],
                                                                                        list[str]]:  # fmt: skip
    """`script` in a real sh with a stub systemctl: `is-active` answers `states` in turn (then the
    last one), `enable`/`start` exit `start_rc` / 0. Returns the run and the calls, in order."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "states").write_text("\n".join(states) + "\n")
    d = shlex.quote(str(tmp_path))
    (bin_dir / "systemctl").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {d}/calls\n'
        f'case "$1" in enable) echo "Failed to enable unit" >&2; exit {start_rc};; start) exit 0;; esac\n'
        f'n=$(cat {d}/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > {d}/count\n'
        f'line=$(sed -n "${{n}}p" {d}/states); [ -n "$line" ] || line=$(tail -n 1 {d}/states); echo "$line"\n'
    )
    (bin_dir / "journalctl").write_text('#!/bin/sh\necho "journal of $2"\n')
    for tool in ("systemctl", "journalctl"):
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    run = subprocess.run(["sh", "-s"], input=script, env=env, capture_output=True, text=True, check=False)
    return run, (tmp_path / "calls").read_text().splitlines()


@pytest.mark.parametrize(
    ("states", "blocked"),
    [(["activating", "active"], True), (["inactive"], False), (["failed"], False), (["active"], False)],
)
def test_only_an_activating_unit_is_waited_for_by_a_blocking_start(
    tmp_path: Path, states: list[str], blocked: bool
) -> None:
    run, calls = _run(tmp_path, wait_script("rke2-agent", [0.01], block=5, start=START), states)
    assert run.returncode == 0, run.stderr
    assert calls[0] == "enable --now --no-block rke2-agent"
    assert ("start rke2-agent" in calls) is blocked  # never a new start of a failed or stopped unit
    assert run.stdout.splitlines()[0] == f"state={states[-1]}"


def test_a_failing_start_ends_the_command_with_its_status(tmp_path: Path) -> None:
    run, calls = _run(tmp_path, wait_script("rke2-agent", [0.01], block=5, start=START), ["activating"], start_rc=1)
    assert run.returncode == 1 and "Failed to enable unit" in run.stderr
    assert calls == ["enable --now --no-block rke2-agent"]  # no wait after it


class _Hosts:
    def __init__(self, answers: list[CommandResult]) -> None:
        self.answers = answers
        self.scripts: list[str] = []

    async def run(self, target: HostTarget, argv: Any = None, *, script: str | None = None, **_: Any) -> CommandResult:
        self.scripts.append(str(script))
        return self.answers.pop(0)


def test_wait_ready_raises_the_starts_failure_and_starts_once() -> None:
    target = HostTarget("127.0.0.1", SecretBytes(b"unused"))
    failing = _Hosts([CommandResult(5, "", "Unit rke2-agent.service not found.", 0.0)])
    with pytest.raises(CommandFailed, match="not found"):
        asyncio.run(wait_ready(failing, target, "rke2-agent", timeout=10, secrets=[], start=START))  # type: ignore[arg-type]
    slow = _Hosts([CommandResult(0, "state=activating\n", "", 0.0), CommandResult(0, "state=active\n", "", 0.0)])
    asyncio.run(wait_ready(slow, target, "rke2-agent", timeout=60, secrets=[], start=START))  # type: ignore[arg-type]
    assert [shlex.join(START) in s for s in slow.scripts] == [True, False]  # the start in the first command only
    assert all("timeout " in s for s in slow.scripts)  # each command waits on the start job first


def test_the_certificate_check_rides_on_the_facts_read(tmp_path: Path) -> None:
    script = certs.with_check('echo "facts_end=1"')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "rke2").write_text('#!/bin/sh\necho \'{"Certificates": []}\'\n')
    (bin_dir / "rke2").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run(["sh", "-s"], input=script, env=env, capture_output=True, text=True, check=True).stdout
    facts, checked = certs.split_check(out)
    assert facts == "facts_end=1\n"
    assert checked == (0, '{"Certificates": []}\n')
    assert certs.split_check("facts_end=1\n") == ("facts_end=1\n", None)  # no check: the facts alone
