"""Helpers shared by the stand-in scripts (stdlib only; they run under ``python -s`` on every call)."""

from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from typing import Any

HOST_JSON = os.environ.get("RKE2FLEET_HOST_JSON", "/run/rke2fleet/host.json")
_UNITS_DIR = os.environ.get("RKE2FLEET_UNITS_DIR", "/run/rke2fleet/units")
_STANDINS_DIR = os.path.dirname(os.path.realpath(__file__))


def __getattr__(name: str) -> Path:
    """``UNITS_DIR`` and ``STANDINS_DIR`` as ``Path``s, importing ``pathlib`` only when they are asked
    for (journalctl does; the rke2 daemon, started once per host, does not)."""
    if name in ("UNITS_DIR", "STANDINS_DIR"):
        from pathlib import Path

        return Path(_UNITS_DIR if name == "UNITS_DIR" else _STANDINS_DIR)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def host_info() -> dict[str, Any]:
    """The host's identity: name, address, stateDir, datastoreDir, faultsDir, python, standinsDir."""
    try:
        with open(HOST_JSON) as f:
            info: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        info = {}
    info.setdefault("name", os.uname().nodename)
    info.setdefault("address", "127.0.0.1")
    info.setdefault("python", os.environ.get("RKE2FLEET_PYTHON", "/usr/bin/python3"))
    info.setdefault("standinsDir", _STANDINS_DIR)
    return info


def fault_value(name: str, consume: bool = False) -> str | None:
    """Content of a fault switch file of this host, or None when the switch is off."""
    faults = host_info().get("faultsDir")
    if not faults:
        return None
    path = os.path.join(faults, name)
    try:
        with open(path) as f:
            value = f.read().strip()
    except FileNotFoundError:
        return None
    if consume:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return None  # another start consumed it first
    return value


def fault_seconds(name: str) -> float | None:
    value = fault_value(name)
    if value is None:
        return None
    try:
        return float(value.rstrip("s"))
    except ValueError:
        return None


def logrus_line(level: str, msg: str) -> str:
    """A log line in RKE2's logrus text format."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    escaped = msg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'time="{stamp}" level={level} msg="{escaped}"'


def write_atomic(path: str | os.PathLike[str], data: str, mode: int = 0o644) -> None:
    directory, name = os.path.split(os.fspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def tabwrite(rows: Sequence[Sequence[str]], padding: int) -> list[str]:
    """Go's ``text/tabwriter`` (minwidth 0, padchar ' ', no flags) over rows of equally many cells:
    every cell but a line's last is padded to its column's widest cell plus ``padding``."""
    widths = [max(len(row[i]) for row in rows) + padding for i in range(len(rows[0]) - 1)]
    return ["".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + row[-1] for row in rows]
