"""apply.py pure parts: judging a start from the journal; the install script's quoting."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from rke2fleet.reconcile.commands import (
    BACKGROUND_NICE,
    FACTS_MARK,
    WAIT_RAMP,
    install_script,
    poll_delays,
    start_failure,
    wait_script,
)
from tests.reconcile.builders import desired

U = "rke2-server"
P = "Aug 10 10:00:0{} h1 "
STARTING = P.format(0) + "systemd[1]: Starting rke2-server.service - Rancher Kubernetes Engine v2 (server)..."
FATAL = (
    P.format(1) + 'rke2[812]: time="2026-08-10T10:00:01Z" level=fatal msg="starting kubernetes: token CA hash mismatch"'
)
ERROR = P.format(1) + 'rke2[812]: time="2026-08-10T10:00:01Z" level=error msg="etcd: member not reachable"'
INFO = P.format(1) + 'rke2[812]: time="2026-08-10T10:00:01Z" level=info msg="Starting rke2 v1.36.3+rke2r1"'
EXITED = P.format(2) + "systemd[1]: rke2-server.service: Main process exited, code=exited, status=1/FAILURE"
FAILED = P.format(2) + "systemd[1]: rke2-server.service: Failed with result 'exit-code'."
RESTART = P.format(7) + "systemd[1]: rke2-server.service: Scheduled restart job, restart counter is at 1."
STOPPED = P.format(7) + "systemd[1]: Stopped rke2-server.service - Rancher Kubernetes Engine v2 (server)."
# systemd before "combined" unit names (StatusUnitFormat=description): the unit's Description only.
STOPPED_DESCRIPTION = P.format(7) + "systemd[1]: Stopped Rancher Kubernetes Engine v2 (server)."
FATAL_MSG = FATAL.strip()

JOURNALS = [
    pytest.param([], None, id="empty"),
    pytest.param([STARTING, INFO], None, id="starting"),
    pytest.param([STARTING, INFO, FATAL, EXITED, FAILED], FATAL_MSG, id="fatal then exit"),
    pytest.param([STARTING, ERROR, EXITED, FAILED], ERROR.strip(), id="error then exit"),
    pytest.param([STARTING, INFO, EXITED, FAILED], EXITED.strip(), id="exit without a reason line"),
    pytest.param([STARTING, FATAL], None, id="fatal, still running"),
    pytest.param(
        [STARTING, FATAL, EXITED, FAILED, RESTART, STOPPED, STARTING, INFO], None, id="old failure before a stop"
    ),
    pytest.param(
        [STARTING, ERROR, EXITED, STOPPED, STARTING, FATAL, EXITED, FAILED], FATAL_MSG, id="new failure after a stop"
    ),
    pytest.param(
        [FATAL, EXITED, STOPPED.replace("rke2-server", "rke2-agent")], FATAL_MSG, id="other unit's stop does not count"
    ),
    pytest.param(
        [STARTING, FATAL, EXITED, FAILED, RESTART, STOPPED_DESCRIPTION, STARTING, INFO],
        None,
        id="old failure before a description-style stop",
    ),
]


@pytest.mark.parametrize(("lines", "reason"), JOURNALS)
def test_start_failure(lines: list[str], reason: str | None) -> None:
    assert start_failure(lines, U) == reason


HOSTILE_URL = "https://example.invalid/install.sh?a=$(touch {m})&b=`touch {m}`&c='q'\"d\" e;touch {m}"

# curl replaced by a function that records its arguments (NUL-separated) and writes, as the
# "downloaded" script, one that prints the INSTALL_RKE2_* variables it receives.
FAKE_CURL = r"""
curl() {
  out=""; prev=""
  for a in "$@"; do printf '%s\0' "$a" >>"$ARGS_FILE"; [ "$prev" = "-o" ] && out="$a"; prev="$a"; done
  [ -n "$CURL_FAILS" ] && return 22
  printf '%s\n' 'env | grep "^INSTALL_RKE2_" | sort' >"$out"
}
"""


def run_script(tmp_path: Path, script: str, *, curl_fails: bool) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    args_file = tmp_path / "args"
    env = {**os.environ, "ARGS_FILE": str(args_file), "CURL_FAILS": "1" if curl_fails else ""}
    env = {k: v for k, v in env.items() if not k.startswith("INSTALL_RKE2_")}
    run = subprocess.run(
        ["sh", "-s"], input=FAKE_CURL + script, text=True, capture_output=True, env=env, cwd=tmp_path, timeout=20
    )
    args = args_file.read_text().split("\0")[:-1] if args_file.exists() else []
    return run, args


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[str, dict[str, str], Path]:
    marker = tmp_path / "pwned"
    url = HOSTILE_URL.format(m=marker)
    env = {
        "INSTALL_RKE2_TYPE": "server",
        "INSTALL_RKE2_VERSION": "v1.36.3+rke2r1",
        "INSTALL_RKE2_ARTIFACT_URL": url,
        "INSTALL_RKE2_CHANNEL_URL": f'it\'s $(touch {marker}) "quoted"',
    }
    return url, env, marker


def test_install_script_parses(hostile: tuple[str, dict[str, str], Path]) -> None:
    url, env, _ = hostile
    script = install_script(replace(desired(), script_url=url, install_env=env))
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    assert shlex.quote(url) in script


def test_hostile_values_stay_single_words(tmp_path: Path, hostile: tuple[str, dict[str, str], Path]) -> None:
    url, env, marker = hostile
    run, args = run_script(
        tmp_path, install_script(replace(desired(), script_url=url, install_env=env)), curl_fails=False
    )
    assert run.returncode == 0, run.stderr
    assert args[-1] == url  # the URL reached curl as one argument, unchanged
    assert "-o" in args and "-sfL" in args
    received = dict(line.split("=", 1) for line in run.stdout.splitlines())
    assert received == env  # the installer sees exactly the desired variables
    assert not marker.exists()


def test_download_failure_names_the_url_and_runs_nothing(
    tmp_path: Path, hostile: tuple[str, dict[str, str], Path]
) -> None:
    url, env, marker = hostile
    run, args = run_script(
        tmp_path, install_script(replace(desired(), script_url=url, install_env=env)), curl_fails=True
    )
    assert run.returncode == 22
    assert args[-1] == url
    assert run.stdout == ""  # the installer did not run
    assert run.stderr.strip() == f"downloading the install script from {url} failed"
    assert not marker.exists()


def test_install_script_uses_the_desired_environment(tmp_path: Path) -> None:
    d = desired("agent")
    run, args = run_script(tmp_path, install_script(d), curl_fails=False)
    assert run.returncode == 0, run.stderr
    assert dict(line.split("=", 1) for line in run.stdout.splitlines()) == d.install_env
    assert args[-1] == d.script_url


def test_harness_detects_an_unquoted_value(tmp_path: Path, hostile: tuple[str, dict[str, str], Path]) -> None:
    # Control: the same URL pasted unquoted does run the command substitution here, so the
    # tests above would catch a quoting regression.
    url, _, marker = hostile
    run_script(tmp_path, f'tmp=$(mktemp)\ncurl -o "$tmp" {url}\n', curl_fails=True)
    assert marker.exists()


def _run_wait_script(tmp_path: Path, states: list[str], polls: int, facts: str | None = None) -> tuple[str, int]:
    """The readiness script in a real sh; `systemctl is-active` answers `states` in turn (then
    the last one), `journalctl` prints a marker. Returns the output and how often it polled."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "states").write_text("\n".join(states) + "\n")
    (bin_dir / "systemctl").write_text(
        "#!/bin/sh\n"
        f'd={shlex.quote(str(tmp_path))}; n=$(cat "$d/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$d/count"\n'
        'line=$(sed -n "${n}p" "$d/states"); [ -n "$line" ] || line=$(tail -n 1 "$d/states"); echo "$line"\n'
    )
    (bin_dir / "journalctl").write_text('#!/bin/sh\necho "journal of $2"\n')
    for tool in ("systemctl", "journalctl"):
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run(
        ["sh", "-s"], input=wait_script("rke2-agent", [0.01] * (polls - 1), facts).encode(), env=env,
        capture_output=True, check=True,
    ).stdout.decode()
    return out, int((tmp_path / "count").read_text())


@pytest.mark.parametrize(
    ("states", "polls", "first_line", "journal", "count"),
    [
        pytest.param(["active"], 5, "state=active", False, 1, id="active at once"),
        pytest.param(["activating", "activating", "active"], 5, "state=active", False, 3, id="becomes active"),
        pytest.param(["activating", "failed"], 5, "state=failed", True, 2, id="fails"),
        pytest.param(["activating"], 4, "state=activating", True, 4, id="still activating after its polls"),
        pytest.param(["inactive"], 4, "state=inactive", True, 1, id="inactive"),
    ],
)
def test_wait_script_polls_on_the_host(
    tmp_path: Path, states: list[str], polls: int, first_line: str, journal: bool, count: int
) -> None:
    out, polled = _run_wait_script(tmp_path, states, polls)
    lines = out.splitlines()
    assert lines[0] == first_line
    assert ("journal of rke2-agent" in lines[1:]) is journal
    assert polled == count


@pytest.mark.parametrize(
    ("states", "facts_read"),
    [(["activating", "active"], True), (["activating", "failed"], False), (["activating"], False)],
)
def test_wait_script_reads_the_facts_once_active(tmp_path: Path, states: list[str], facts_read: bool) -> None:
    """The post-start read rides on the wait: facts after the mark when active, else the journal."""
    facts = 'set +e\necho "rke2_path=/usr/local/bin/rke2"\nfalse\necho facts_end=1'
    out, _ = _run_wait_script(tmp_path, states, 3, facts)
    head, _, rest = out.partition("\n")
    assert head == f"state={states[-1]}"
    if facts_read:
        assert rest.splitlines() == [FACTS_MARK, "rke2_path=/usr/local/bin/rke2", "facts_end=1"]
    else:
        assert rest.splitlines() == ["journal of rke2-agent"]


@pytest.mark.parametrize("background", [False, True])
def test_staging_installs_at_a_lower_priority(tmp_path: Path, background: bool) -> None:
    """The installer (and curl) of a staged node run niced; a node that may start does not wait."""
    run, _ = run_script(tmp_path, install_script(desired("agent"), background=background) + "nice\n", curl_fails=False)
    assert run.returncode == 0, run.stderr
    base = int(subprocess.run(["nice"], capture_output=True, text=True, check=True).stdout)
    assert int(run.stdout.splitlines()[-1]) == base + (BACKGROUND_NICE if background else 0)


def test_readiness_polls_fast_first_then_every_interval() -> None:
    """A unit that starts in a moment is seen in a moment; a long start is polled every interval."""
    assert poll_delays(3.0, 0.5, WAIT_RAMP) == [0.1, 0.1, 0.2, 0.2, 0.5, 0.5, 0.5, 0.5]
    assert poll_delays(3.0, 0.5) == [0.5] * 6  # the later commands of a long wait
    assert poll_delays(0.15, 0.5, WAIT_RAMP) == [0.1]  # near the deadline: what fits
    assert poll_delays(-1.0, 0.5, WAIT_RAMP) == []  # past it: one last poll
