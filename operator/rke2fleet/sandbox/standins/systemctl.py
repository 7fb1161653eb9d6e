"""Stand-in for ``systemctl`` (bind-mounted over /usr/bin/systemctl inside a sandbox host).

Units come from ``/usr/local/lib/systemd/system`` and ``/etc/systemd/system``; state lives in
``/run/rke2fleet/units/<unit>/`` (``status.json``, ``enabled``, ``journal.log``, ``ready``).
A started unit runs under a detached supervisor (``systemctl.py __supervise UNIT``) that mimics
``Type=notify`` (ready when the service writes ``$NOTIFY_FILE``), ``Restart=always`` with RestartSec
(or the host's ``restart-delay`` fault) and ``ExecCondition`` (a role refuses to start while the
other role's unit is active: the start is skipped, like systemd, and the unit stays inactive).
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
else:
    import standin_common as common

UNIT_DIRS = [Path(p) for p in os.environ.get(
    "RKE2FLEET_UNIT_PATH", "/etc/systemd/system:/usr/local/lib/systemd/system:/lib/systemd/system"
).split(":")]
OTHER_ROLE = {"rke2-server.service": "rke2-agent.service", "rke2-agent.service": "rke2-server.service"}


def unit_name(name: str) -> str:
    return name if "." in name else f"{name}.service"


def unit_file(unit: str) -> Path | None:
    for directory in UNIT_DIRS:
        if (directory / unit).is_file():
            return directory / unit
    return None


def parse_unit(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def unit_dir(unit: str) -> Path:
    return common.UNITS_DIR / unit


def read_status(unit: str) -> dict[str, Any]:
    try:
        status: dict[str, Any] = json.loads((unit_dir(unit) / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"state": "inactive", "substate": "dead"}
    if status.get("pending") and time.time() - status.get("since", 0) < 10:
        return status  # the supervisor is being spawned and has not written its state yet
    sup = status.get("supervisorPid")
    if status["state"] in ("active", "activating", "deactivating") and not (sup and supervisor_alive(sup)):
        return {**status, "state": "failed", "substate": "failed", "result": "signal"}
    return status


def write_status(unit: str, **status: Any) -> None:
    common.write_atomic(unit_dir(unit) / "status.json", json.dumps({**status, "since": time.time()}))


def supervisor_alive(pid: int) -> bool:
    try:
        return b"__supervise" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


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
            [sys.executable, "-s", str(Path(__file__).resolve()), "__supervise", unit],
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


def main(argv: list[str]) -> int:
    if argv[:1] == ["__supervise"]:
        return supervise(argv[1])
    opts = {a for a in argv if a.startswith("-")}
    args = [a for a in argv if not a.startswith("-")]
    quiet = "--quiet" in opts or "-q" in opts
    log = common.UNITS_DIR / "systemctl.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"{time.time():.3f} {' '.join(argv)}\n")
    if not args:
        return 0
    verb, units = args[0], [unit_name(u) for u in args[1:]]
    if verb == "daemon-reload":
        return 0
    rc = 0
    for unit in units:
        if verb in ("start", "restart", "try-restart", "reload-or-restart"):
            if verb != "start":
                stop(unit)
            rc = max(rc, start(unit, block="--no-block" not in opts))
        elif verb == "stop":
            rc = max(rc, stop(unit))
        elif verb in ("enable", "disable"):
            if unit_file(unit) is None:
                print(f"Failed to {verb} unit: Unit file {unit} does not exist.", file=sys.stderr)
                rc = 1
                continue
            marker = unit_dir(unit) / "enabled"
            if verb == "enable":
                marker.parent.mkdir(parents=True, exist_ok=True)
                if not marker.exists():
                    marker.touch()
                    print(f"Created symlink /etc/systemd/system/multi-user.target.wants/{unit} → "
                          f"{unit_file(unit)}.", file=sys.stderr)
            elif marker.exists():
                marker.unlink()
                print(f"Removed /etc/systemd/system/multi-user.target.wants/{unit}.", file=sys.stderr)
            if "--now" in opts:
                rc = max(rc, start(unit, block=True) if verb == "enable" else stop(unit))
        elif verb == "is-enabled":
            if unit_file(unit) is None:
                if not quiet:
                    print(f"Failed to get unit file state for {unit}: No such file or directory",
                          file=sys.stderr)
                rc = max(rc, 1)
                continue
            enabled = (unit_dir(unit) / "enabled").exists()
            if not quiet:
                print("enabled" if enabled else "disabled")
            rc = max(rc, 0 if enabled else 1)
        elif verb == "is-active":
            state = read_status(unit)["state"]
            if not quiet:
                print(state)
            rc = max(rc, 0 if state == "active" else 3)
        elif verb == "is-failed":
            state = read_status(unit)["state"]
            if not quiet:
                print(state)
            rc = max(rc, 0 if state == "failed" else 1)
        elif verb == "status":
            rc = max(rc, show_status(unit))
        elif verb == "show":
            status = read_status(unit)
            print(f"ActiveState={status['state']}\nSubState={status.get('substate', '')}\n"
                  f"MainPID={status.get('mainPid', 0)}\nNRestarts={status.get('exits', 0)}")
        else:
            print(f"Unknown command verb {verb}.", file=sys.stderr)
            return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
