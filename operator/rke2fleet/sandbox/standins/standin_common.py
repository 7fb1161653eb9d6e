"""Helpers shared by the stand-in scripts (stdlib only; they run under ``python -s`` on every call)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

HOST_JSON = os.environ.get("RKE2FLEET_HOST_JSON", "/run/rke2fleet/host.json")
UNITS_DIR = Path(os.environ.get("RKE2FLEET_UNITS_DIR", "/run/rke2fleet/units"))
STANDINS_DIR = Path(__file__).resolve().parent


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
    info.setdefault("standinsDir", str(STANDINS_DIR))
    return info


def fault_value(name: str, consume: bool = False) -> str | None:
    """Content of a fault switch file of this host, or None when the switch is off."""
    faults = host_info().get("faultsDir")
    if not faults:
        return None
    path = Path(faults) / name
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    if consume:
        try:
            path.unlink()
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
    escaped = msg.replace("\\", "\\\\").replace('"', '\\"')
    return f'time="{stamp}" level={level} msg="{escaped}"'


def write_atomic(path: Path, data: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
