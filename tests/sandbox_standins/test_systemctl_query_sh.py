"""The shell fast path of systemctl's query verbs (standins/systemctl_query.sh) against the Python
stand-in (systemctl_cli), state by state, without a host: both read the same unit directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rke2fleet_sandbox.standins import unitstate

STANDINS = Path(unitstate.__file__).parent
FELL_THROUGH = "FELL-THROUGH-TO-PYTHON"

QUERIES = [
    "is-active rke2-server", "is-active -q rke2-server", "is-active --quiet rke2-server rke2-agent",
    "is-failed rke2-server", "is-failed rke2-server rke2-agent", "is-enabled rke2-server",
    "is-enabled -q rke2-server", "is-enabled nosuch", "is-enabled rke2-server nosuch",
    "show rke2-server", "show -p ActiveState rke2-server", "show -pSubState,MainPID rke2-server",
    "show --property=NRestarts --property UnitFileState rke2-server", "show -p ActiveState --value rke2-server",
    "show -p LoadState -p UnitFileState --value nosuch", "show -p ActiveState rke2-server rke2-agent",
    "show -p NoSuchProperty rke2-server", "show -p ,ActiveState,, rke2-server", "--no-pager is-active rke2-server",
    "show rke2-server.service -p MainPID", "is-active", "show",
]

# Unit states as the stand-in writes them (write_status adds `since`); "sup" is a live supervisor.
STATES: dict[str, dict[str, Any] | None] = {
    "never-started": None,
    "active": {"state": "active", "substate": "running", "supervisorPid": "sup", "mainPid": 4242, "exits": 0},
    "active-supervisor-gone": {"state": "active", "substate": "running", "supervisorPid": 999999, "mainPid": 7},
    "activating-no-supervisor": {"state": "activating", "substate": "start", "supervisorPid": 0},
    "pending-fresh": {"state": "activating", "substate": "start", "pending": True, "exits": 0},
    "pending-stale": {"state": "activating", "substate": "start", "pending": True, "exits": 0, "age": 30},
    "auto-restart": {"state": "activating", "substate": "auto-restart", "supervisorPid": "sup", "exits": 2},
    "restarted": {"state": "active", "substate": "running", "supervisorPid": "sup", "exits": 2},
    "inactive": {"state": "inactive", "substate": "dead", "exits": 1},
    "failed": {"state": "failed", "substate": "failed", "result": "exit-code"},
    "no-state-key": {"substate": "dead"},
    "oneshot-exited": {"state": "active", "substate": "exited", "result": "success"},  # systemd-sysctl
}


@pytest.fixture
def supervisor() -> Iterator[int]:
    """A live process whose command line says __supervise, like the stand-in's unit supervisor."""
    proc = subprocess.Popen(["sh", "-c", "sleep 60", "__supervise"])
    yield proc.pid
    proc.kill()
    proc.wait()


def run(tmp_path: Path, args: str, *, python: bool) -> tuple[str, str, int]:
    env = {"PATH": os.environ["PATH"], "RKE2FLEET_UNITS_DIR": str(tmp_path / "units"),
           "RKE2FLEET_UNIT_PATH": f"{tmp_path / 'etc'}:{tmp_path / 'lib'}"}
    if python:
        argv = [sys.executable, "-S", str(STANDINS / "systemctl.py"), *args.split()]
    else:  # the fast path alone: what it does not answer prints FELL_THROUGH
        argv = ["sh", "-c", f'. {STANDINS / "systemctl_query.sh"}; echo {FELL_THROUGH}', "systemctl", *args.split()]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
    return out.stdout, out.stderr, out.returncode


@pytest.mark.parametrize("enabled", [False, True])
@pytest.mark.parametrize("state", list(STATES))
def test_shell_answers_like_python(tmp_path: Path, supervisor: int, state: str, enabled: bool) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "rke2-server.service").write_text("[Unit]\nDescription=server\n")
    (tmp_path / "lib" / "rke2-agent.service").write_text("[Unit]\nDescription=agent\n")
    unitstate.UNITS_DIR, saved = str(tmp_path / "units"), unitstate.UNITS_DIR
    try:
        record = STATES[state]
        if record is not None:
            fields = {k: (supervisor if v == "sup" else v) for k, v in record.items() if k != "age"}
            unitstate.write_status("rke2-server.service", **fields)
            if "age" in record:  # rewrite `since` into the past
                path = tmp_path / "units" / "rke2-server.service" / "status.txt"
                since = time.time() - record["age"]
                path.write_text("".join(f"since={since}\n" if ln.startswith("since=") else ln + "\n"
                                        for ln in path.read_text().splitlines()))
        if enabled:
            (tmp_path / "units" / "rke2-server.service").mkdir(parents=True, exist_ok=True)
            (tmp_path / "units" / "rke2-server.service" / "enabled").touch()
    finally:
        unitstate.UNITS_DIR = saved
    for args in QUERIES:
        fast = run(tmp_path, args, python=False)
        assert FELL_THROUGH not in fast[0], args
        assert fast == run(tmp_path, args, python=True), args


@pytest.mark.parametrize("args", ["start rke2-server", "enable rke2-server", "daemon-reload", "status rke2-server",
                                  "is-active 'rke2 server'", "is-active rke2-*"])
def test_other_verbs_and_odd_names_go_to_python(tmp_path: Path, args: str) -> None:
    assert run(tmp_path, args, python=False)[0] == FELL_THROUGH + "\n"


def test_a_unit_known_only_from_status_json_goes_to_python(tmp_path: Path) -> None:
    """A unit started by a stand-in from before status.txt: Python reads the JSON."""
    (tmp_path / "units" / "rke2-server.service").mkdir(parents=True)
    (tmp_path / "units" / "rke2-server.service" / "status.json").write_text('{"state": "inactive"}')
    assert run(tmp_path, "is-active rke2-agent rke2-server", python=False)[0] == FELL_THROUGH + "\n"


def test_forced_to_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RKE2FLEET_SYSTEMCTL_PYTHON", "1")
    out = subprocess.run(["sh", "-c", f'. {STANDINS / "systemctl_query.sh"}; echo {FELL_THROUGH}', "x",
                          "is-active", "rke2-server"], capture_output=True, text=True, check=True)
    assert out.stdout == FELL_THROUGH + "\n"
