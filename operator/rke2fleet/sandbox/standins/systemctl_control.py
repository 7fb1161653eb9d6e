"""The acting verbs of the systemctl stand-in: start/stop/restart, enable/disable, status, and the
supervisor (``systemctl.py __supervise UNIT``, detached, one per started unit) that mimics ``Type=notify``
(ready when the service writes ``$NOTIFY_FILE``), ``Restart=always`` with RestartSec (or the host's
``restart-delay`` fault) and ``ExecCondition`` (a role refuses to start while the other role's unit is
active: the start is skipped, like systemd, and the unit stays inactive).

Imported only by the verbs that need it: the query verbs answer from ``unitstate`` alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rke2fleet.sandbox.standins import standin_common as common
    from rke2fleet.sandbox.standins import unitstate
else:
    import standin_common as common
    import unitstate

OTHER_ROLE = {"rke2-server.service": "rke2-agent.service", "rke2-agent.service": "rke2-server.service"}
SYSTEMCTL_SCRIPT = Path(__file__).resolve().with_name("systemctl.py")  # the supervisor's command line
read_status = unitstate.read_status
write_status = unitstate.write_status
supervisor_alive = unitstate.supervisor_alive


def unit_file(unit: str) -> Path | None:
    path = unitstate.unit_file(unit)
    return Path(path) if path else None


def unit_dir(unit: str) -> Path:
    return Path(unitstate.unit_dir(unit))


def parse_unit(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def journal(unit: str, ident: str, message: str) -> None:
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
    host = os.uname().nodename
    with open(unit_dir(unit) / "journal.log", "a") as f:
        f.write(f"{stamp} {host} {ident}: {message}\n")


def description(unit: str) -> str:
    path = unit_file(unit)
    return parse_unit(path).get("Description", unit) if path else unit


# -- the supervisor (runs detached, one per started unit) ----------------------------------------------
def supervise(unit: str) -> int:
    import threading

    path = unit_file(unit)
    assert path is not None
    spec = parse_unit(path)
    argv = spec["ExecStart"].split()
    udir = unit_dir(unit)
    notify = udir / "ready"
    stopping = threading.Event()
    child: list[subprocess.Popen[bytes]] = []
    attempt, exits = 0, 0

    def on_term(signum: int, frame: Any) -> None:
        stopping.set()
        if child and child[0].poll() is None:
            child[0].terminate()

    signal.signal(signal.SIGTERM, on_term)
    while not stopping.is_set():
        attempt += 1
        notify.unlink(missing_ok=True)
        (udir / "node.json").unlink(missing_ok=True)
        write_status(unit, state="activating", substate="start", supervisorPid=os.getpid(),
                     attempt=attempt, exits=exits)
        journal(unit, "systemd[1]", f"Starting {unit} - {spec.get('Description', unit)}...")
        env = dict(os.environ, NOTIFY_FILE=str(notify))
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, close_fds=True)
        child[:] = [proc]
        write_status(unit, state="activating", substate="start", supervisorPid=os.getpid(),
                     attempt=attempt, exits=exits, mainPid=proc.pid)
        ident = f"{Path(argv[0]).name}[{proc.pid}]"
        assert proc.stdout is not None
        pump = threading.Thread(target=_pump, args=(unit, ident, proc.stdout), daemon=True)
        pump.start()
        ready = False
        while proc.poll() is None:
            if not ready and notify.exists():
                ready = True
                write_status(unit, state="active", substate="running", supervisorPid=os.getpid(),
                             attempt=attempt, exits=exits, mainPid=proc.pid)
                journal(unit, "systemd[1]", f"Started {unit} - {spec.get('Description', unit)}.")
            time.sleep(0.05)
        pump.join(timeout=2)
        code = proc.returncode
        _record_exit(udir, code)
        if stopping.is_set():
            break
        exits += 1
        journal(unit, "systemd[1]", f"{unit}: Main process exited, code=exited, status={code}/FAILURE"
                if code > 0 else f"{unit}: Main process exited, code=killed, status={-code}")
        journal(unit, "systemd[1]", f"{unit}: Failed with result 'exit-code'.")
        delay = common.fault_seconds("restart-delay")
        if delay is None:
            delay = float(spec.get("RestartSec", "1").rstrip("s") or 1)
        write_status(unit, state="activating", substate="auto-restart", supervisorPid=os.getpid(),
                     attempt=attempt, exits=exits, lastExit=code)
        if stopping.wait(delay):
            break
        journal(unit, "systemd[1]", f"{unit}: Scheduled restart job, restart counter is at {exits}.")
    journal(unit, "systemd[1]", f"Stopped {unit} - {spec.get('Description', unit)}.")
    write_status(unit, state="inactive", substate="dead", exits=exits)
    return 0


def _pump(unit: str, ident: str, stream: Any) -> None:
    for raw in iter(stream.readline, b""):
        journal(unit, ident, raw.decode(errors="replace").rstrip("\n"))


def _record_exit(udir: Path, code: int) -> None:
    """The node is down: record it in the cluster's datastore (the process cannot when killed)."""
    try:
        node = json.loads((udir / "node.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return
    if TYPE_CHECKING:
        from rke2fleet.sandbox.standins import fleetstore
    else:
        import fleetstore

    fleetstore.Datastore(node["datastoreDir"]).record(
        node["cluster"], node["node"], "down", version=node["version"], role=node["role"], exitCode=code)


# -- verbs -----------------------------------------------------------------------------------------
def start(unit: str, block: bool) -> int:
    if unit_file(unit) is None:
        print(f"Failed to start {unit}: Unit {unit} not found.", file=sys.stderr)
        return 5
    udir = unit_dir(unit)
    udir.mkdir(parents=True, exist_ok=True)
    status = read_status(unit)
    base_exits = status.get("exits", 0) if status["state"] in ("active", "activating") else 0
    if status["state"] not in ("active", "activating"):
        other = OTHER_ROLE.get(unit)
        if other and read_status(other)["state"] in ("active", "activating"):
            journal(unit, "systemd[1]", f"{unit}: Skipped due to 'exec-condition'.")
            journal(unit, "systemd[1]", f"Condition check resulted in {description(unit)} being skipped.")
            write_status(unit, state="inactive", substate="dead", result="exec-condition")
            return 0
        write_status(unit, state="activating", substate="start", pending=True, exits=0)
        subprocess.Popen(
            [sys.executable, "-s", str(SYSTEMCTL_SCRIPT), "__supervise", unit],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )
    if not block:
        return 0
    while True:  # TimeoutStartSec=0: wait as long as it takes
        status = read_status(unit)
        if status["state"] == "active":
            return 0
        if status.get("exits", 0) > base_exits or status["state"] in ("failed", "inactive"):
            print(f"Job for {unit} failed because the control process exited with error code.\n"
                  f'See "systemctl status {unit}" and "journalctl -xeu {unit}" for details.', file=sys.stderr)
            return 1
        time.sleep(0.05)


def stop(unit: str) -> int:
    if unit_file(unit) is None and not unit_dir(unit).exists():
        print(f"Failed to stop {unit}: Unit {unit} not loaded.", file=sys.stderr)
        return 5
    status = read_status(unit)
    sup, main = status.get("supervisorPid"), status.get("mainPid")
    if sup and supervisor_alive(sup):
        os.kill(sup, signal.SIGTERM)
        deadline = time.time() + 10
        while supervisor_alive(sup) and time.time() < deadline:
            time.sleep(0.02)
        if supervisor_alive(sup):
            os.kill(sup, signal.SIGKILL)
    if main:
        try:
            os.kill(main, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if unit_dir(unit).exists() and read_status(unit)["state"] != "inactive":
        write_status(unit, state="inactive", substate="dead")
    return 0


def show_status(unit: str) -> int:
    path = unit_file(unit)
    if path is None:
        print(f"Unit {unit} could not be found.", file=sys.stderr)
        return 4
    status = read_status(unit)
    state, sub = status["state"], status.get("substate", "")
    enabled = "enabled" if (unit_dir(unit) / "enabled").exists() else "disabled"
    print(f"● {unit} - {description(unit)}")
    print(f"     Loaded: loaded ({path}; {enabled}; vendor preset: disabled)")
    print(f"     Active: {state} ({sub}) since {time.ctime(status.get('since', time.time()))}")
    if status.get("mainPid"):
        print(f"   Main PID: {status['mainPid']}")
    print()
    for line in _tail(unit, 10):
        print(line)
    return {"active": 0, "activating": 0}.get(state, 3)


def _tail(unit: str, n: int) -> list[str]:
    try:
        return (unit_dir(unit) / "journal.log").read_text().splitlines()[-n:]
    except FileNotFoundError:
        return []




ACTING_VERBS = frozenset({"start", "restart", "try-restart", "reload-or-restart", "stop", "status"})


def run(verb: str, unit: str, opts: set[str]) -> int:
    """One acting verb on one unit; the caller has checked ``verb in ACTING_VERBS``."""
    if verb in ("start", "restart", "try-restart", "reload-or-restart"):
        if verb != "start":
            stop(unit)
        return start(unit, block="--no-block" not in opts)
    if verb == "stop":
        return stop(unit)
    return show_status(unit)
