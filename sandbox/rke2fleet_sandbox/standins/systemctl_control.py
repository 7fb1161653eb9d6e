"""The acting verbs of the systemctl stand-in: start/stop/restart, enable/disable, status.
``start`` spawns the unit's supervisor (``unitsupervisor``: Type=notify, Restart=always) and honours
``ExecCondition`` (a role refuses to start while the other role's unit is active: the start is
skipped, like systemd, and the unit stays inactive).

Imported only by the verbs that need it: the query verbs answer from ``unitstate`` alone. Only
``os``/``signal``/``time`` are imported: ``systemctl start`` runs once per unit start on hosts that
share a few cores by the dozen.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal

    from rke2fleet_sandbox.standins import unitstate, unitsupervisor
else:
    import _signal as signal  # `signal` minus its IntEnum wrappers (enum, functools...: ~5 ms a start)

    import unitstate
    import unitsupervisor

OTHER_ROLE = {"rke2-server.service": "rke2-agent.service", "rke2-agent.service": "rke2-server.service"}
SYSTEMCTL_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "systemctl.py")  # supervisor's cmdline
read_status = unitstate.read_status
write_status = unitstate.write_status
supervisor_alive = unitstate.supervisor_alive
unit_file = unitstate.unit_file
unit_dir = unitstate.unit_dir
parse_unit = unitsupervisor.parse_unit
journal = unitsupervisor.journal


def description(unit: str) -> str:
    path = unit_file(unit)
    return parse_unit(path).get("Description", unit) if path else unit


def spawn_supervisor(unit: str) -> None:
    """``python -S systemctl.py __supervise UNIT`` in its own session, detached from our stdio."""
    devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    os.posix_spawn(sys.executable, [sys.executable, "-S", SYSTEMCTL_SCRIPT, "__supervise", unit],
                   os.environ, file_actions=devnull, setsid=True)


SYSCTL_UNIT = "systemd-sysctl.service"


def start_systemd_sysctl() -> int:
    """``systemd-sysctl.service`` (oneshot, RemainAfterExit=yes): applies the sysctl.d files to the
    host's simulated kernel parameters (never the machine's: its real ExecStart is not run)."""
    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import sysctl_state
    else:
        import sysctl_state

    unit = SYSCTL_UNIT
    os.makedirs(unit_dir(unit), exist_ok=True)
    name = "Apply Kernel Variables"
    journal(unit, "systemd[1]", f"Starting {unit} - {name}...")
    ident = f"systemd-sysctl[{os.getpid()}]"
    failures: list[str] = []

    def error(message: str) -> None:
        failures.append(message)

    for path in sysctl_state.system_files(with_sysctl_conf=False):
        for key, value, ignore in sysctl_state.parse_file(path):
            try:
                sysctl_state.write(key, value)
            except sysctl_state.SysctlError as exc:
                text = str(exc)
                if "cannot stat" in text:  # systemd-sysctl ignores keys the kernel does not have
                    journal(unit, ident, f"Couldn't write '{value}' to '{sysctl_state.key_path(key)}', "
                                         "ignoring: No such file or directory")
                elif not ignore:
                    error(f"Failed to write '{value}' to '{sysctl_state.key_path(key)}': "
                          f"{text.rsplit(': ', 1)[-1]}")
    for message in failures:
        journal(unit, ident, message)
    if failures:
        journal(unit, "systemd[1]", f"{unit}: Main process exited, code=exited, status=1/FAILURE")
        journal(unit, "systemd[1]", f"{unit}: Failed with result 'exit-code'.")
        journal(unit, "systemd[1]", f"Failed to start {unit} - {name}.")
        write_status(unit, state="failed", substate="failed", result="exit-code")
        print(f"Job for {unit} failed because the control process exited with error code.\n"
              f'See "systemctl status {unit}" and "journalctl -xeu {unit}" for details.', file=sys.stderr)
        return 1
    journal(unit, "systemd[1]", f"Finished {unit} - {name}.")
    write_status(unit, state="active", substate="exited", result="success")
    return 0


# -- verbs -----------------------------------------------------------------------------------------
def start(unit: str, block: bool) -> int:
    if unit == SYSCTL_UNIT:
        return start_systemd_sysctl()
    if unit_file(unit) is None:
        print(f"Failed to start {unit}: Unit {unit} not found.", file=sys.stderr)
        return 5
    os.makedirs(unit_dir(unit), exist_ok=True)
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
        spawn_supervisor(unit)
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
    if unit_file(unit) is None and not os.path.exists(unit_dir(unit)):
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
    if os.path.exists(unit_dir(unit)) and read_status(unit)["state"] != "inactive":
        write_status(unit, state="inactive", substate="dead")
    return 0


def show_status(unit: str) -> int:
    path = unit_file(unit)
    if path is None:
        print(f"Unit {unit} could not be found.", file=sys.stderr)
        return 4
    status = read_status(unit)
    state, sub = status["state"], status.get("substate", "")
    enabled = "enabled" if unitstate.is_enabled(unit) else "disabled"
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
        with open(os.path.join(unit_dir(unit), "journal.log")) as f:
            return f.read().splitlines()[-n:]
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
