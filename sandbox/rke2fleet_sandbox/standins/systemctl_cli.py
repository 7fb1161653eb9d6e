"""The ``systemctl`` stand-in's command line and its query verbs (``systemctl.py`` is the entry script).

Units come from ``/usr/local/lib/systemd/system`` and ``/etc/systemd/system``; state lives in
``/run/rke2fleet/units/<unit>/`` (``status.txt``/``status.json``, ``enabled``, ``journal.log``, ``ready``).
The query verbs (``is-active``, ``is-enabled``, ``is-failed``, ``show``, ``daemon-reload``) run on every
reconcile pass: they answer from ``unitstate`` with only ``os``/``sys`` imported, as cheaply as the
compiled systemctl. The acting verbs live in ``systemctl_control``, the unit supervisor in
``unitsupervisor``.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from rke2fleet_sandbox.standins import unitstate
else:
    import unitstate

# `systemctl show` properties, in the order systemd prints them (Service interface, then Unit).
SHOW_PROPERTIES = ("MainPID", "NRestarts", "LoadState", "ActiveState", "SubState", "UnitFileState")
OPTIONS_WITH_VALUE = {"-p": "property", "--property": "property"}


def parse_args(argv: list[str]) -> tuple[set[str], list[str], list[str]]:
    """(flags, properties asked with -p/--property, positional args)."""
    flags: set[str] = set()
    properties: list[str] = []
    args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in OPTIONS_WITH_VALUE:
            if i + 1 < len(argv):
                properties += argv[i + 1].split(",")
            i += 2
            continue
        if arg.startswith("--property="):
            properties += arg.split("=", 1)[1].split(",")
        elif arg.startswith("-p") and not arg.startswith("--"):
            properties += arg[2:].split(",")
        elif arg.startswith("-"):
            flags.add(arg)
        else:
            args.append(arg)
        i += 1
    return flags, [p for p in properties if p], args


def show(unit: str, properties: list[str], value_only: bool) -> None:
    status = unitstate.read_status(unit)
    loaded = unitstate.unit_file(unit) is not None
    values = {
        "MainPID": str(status.get("mainPid", 0)),
        "NRestarts": str(unitstate.restart_count(status)),
        "LoadState": "loaded" if loaded else "not-found",
        "ActiveState": status["state"],
        "SubState": status.get("substate", ""),
        "UnitFileState": ("enabled" if unitstate.is_enabled(unit) else "disabled") if loaded else "",
    }
    wanted = set(properties) if properties else set(SHOW_PROPERTIES)
    for name in SHOW_PROPERTIES:
        if name in wanted:
            print(values[name] if value_only else f"{name}={values[name]}")


def is_enabled(unit: str, quiet: bool) -> int:
    if unitstate.unit_file(unit) is None:
        if not quiet:
            print(f"Failed to get unit file state for {unit}: No such file or directory", file=sys.stderr)
        return 1
    enabled = unitstate.is_enabled(unit)
    if not quiet:
        print("enabled" if enabled else "disabled")
    return 0 if enabled else 1


def enable_or_disable(verb: str, unit: str, now: bool, block: bool = True) -> int:
    path = unitstate.unit_file(unit)
    if path is None:
        print(f"Failed to {verb} unit: Unit file {unit} does not exist.", file=sys.stderr)
        return 1
    marker = os.path.join(unitstate.unit_dir(unit), "enabled")
    if verb == "enable":
        if not os.path.exists(marker):
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            open(marker, "a").close()
            print(f"Created symlink /etc/systemd/system/multi-user.target.wants/{unit} → {path}.", file=sys.stderr)
    elif os.path.exists(marker):
        os.unlink(marker)
        print(f"Removed /etc/systemd/system/multi-user.target.wants/{unit}.", file=sys.stderr)
    if not now:
        return 0
    control = _control()
    return int(control.start(unit, block=block) if verb == "enable" else control.stop(unit))


def _control() -> Any:
    """The acting verbs' module, imported only when one of them runs."""
    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import systemctl_control
    else:
        import systemctl_control
    return systemctl_control


def state_is(unit: str, wanted: str, quiet: bool, rc_otherwise: int) -> int:
    state = unitstate.read_status(unit)["state"]
    if not quiet:
        print(state)
    return 0 if state == wanted else rc_otherwise


def log_call(argv: list[str]) -> None:
    os.makedirs(unitstate.UNITS_DIR, exist_ok=True)
    with open(os.path.join(unitstate.UNITS_DIR, "systemctl.log"), "a") as f:
        f.write(f"{time.time():.3f} {' '.join(argv)}\n")


def main(argv: list[str]) -> int:
    if argv[:1] == ["__supervise"]:
        if TYPE_CHECKING:
            from rke2fleet_sandbox.standins import unitsupervisor
        else:
            import unitsupervisor
        return unitsupervisor.supervise(argv[1])
    flags, properties, args = parse_args(argv)
    quiet = "--quiet" in flags or "-q" in flags
    log_call(argv)
    if not args:
        return 0
    verb, units = args[0], [unitstate.unit_name(u) for u in args[1:]]
    if verb == "daemon-reload":
        return 0
    rc = 0
    for index, unit in enumerate(units):
        if verb == "is-active":
            rc = max(rc, state_is(unit, "active", quiet, 3))
        elif verb == "is-failed":
            rc = max(rc, state_is(unit, "failed", quiet, 1))
        elif verb == "is-enabled":
            rc = max(rc, is_enabled(unit, quiet))
        elif verb == "show":
            if index:
                print()  # systemd separates the units' blocks with an empty line
            show(unit, properties, "--value" in flags)
        elif verb in ("enable", "disable"):
            rc = max(rc, enable_or_disable(verb, unit, "--now" in flags, block="--no-block" not in flags))
        else:
            control = _control()
            if verb not in control.ACTING_VERBS:
                print(f"Unknown command verb {verb}.", file=sys.stderr)
                return 1
            rc = max(rc, control.run(verb, unit, flags))
    return rc
