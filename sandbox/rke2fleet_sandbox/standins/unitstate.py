"""Unit state of the systemctl stand-in, readable without heavy imports (only ``os`` and ``sys``).

``systemctl is-active``/``is-enabled``/``show`` run on every reconcile pass and in every readiness
wait; the real one is a compiled binary, so ours must not pay for ``json``/``pathlib``/``typing``
imports just to answer. Each status is kept twice, both written atomically: ``status.txt``
(``key=value`` lines, what every reader here uses) and ``status.json`` (the same values, for people
and tests reading the unit directory).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Same defaults as standin_common.UNITS_DIR and the unit search path of the real systemd.
UNITS_DIR = os.environ.get("RKE2FLEET_UNITS_DIR", "/run/rke2fleet/units")
UNIT_DIRS = os.environ.get(
    "RKE2FLEET_UNIT_PATH", "/etc/systemd/system:/usr/local/lib/systemd/system:/lib/systemd/system"
).split(":")
RUNNING_STATES = ("active", "activating", "deactivating")
# Types of the status fields (everything else is a string).
_INT_FIELDS = frozenset({"supervisorPid", "mainPid", "attempt", "exits", "lastExit"})
_FLOAT_FIELDS = frozenset({"since"})
_BOOL_FIELDS = frozenset({"pending"})
PENDING_GRACE_SECONDS = 10  # a supervisor being spawned has this long to write its first state


def unit_name(name: str) -> str:
    return name if "." in name else f"{name}.service"


def unit_file(unit: str) -> str | None:
    for directory in UNIT_DIRS:
        path = os.path.join(directory, unit)
        if os.path.isfile(path):
            return path
    return None


def unit_dir(unit: str) -> str:
    return os.path.join(UNITS_DIR, unit)


def is_enabled(unit: str) -> bool:
    return os.path.exists(os.path.join(unit_dir(unit), "enabled"))


def supervisor_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"__supervise" in f.read()
    except OSError:
        return False


def encode_status(status: dict[str, Any]) -> str:
    lines = []
    for key, value in status.items():
        if isinstance(value, bool):
            value = int(value)
        text = str(value)
        if "\n" in text or "=" in key:
            raise ValueError(f"status field {key!r} cannot be stored as a key=value line")
        lines.append(f"{key}={text}\n")
    return "".join(lines)


_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _json_string(text: str) -> str:
    """What ``json.dumps`` writes for a string (ensure_ascii)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[ch])
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:  # outside the BMP: a UTF-16 surrogate pair
            code -= 0x10000
            out.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
    return '"' + "".join(out) + '"'


def _json_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _json_string(value)
    raise TypeError(f"status value {value!r} is not a JSON scalar")


def encode_status_json(status: dict[str, Any]) -> str:
    """``json.dumps(status)`` for a flat status of scalars, without importing ``json`` (and ``re``)
    into the supervisor, which writes it on every state change."""
    return "{" + ", ".join(f"{_json_string(k)}: {_json_value(v)}" for k, v in status.items()) + "}"


def decode_status(text: str) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in _INT_FIELDS:
            status[key] = int(value)
        elif key in _FLOAT_FIELDS:
            status[key] = float(value)
        elif key in _BOOL_FIELDS:
            status[key] = value == "1"
        else:
            status[key] = value
    return status


def _stored_status(unit: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(unit_dir(unit), "status.txt")) as f:
            return decode_status(f.read())
    except FileNotFoundError:
        pass
    # Written by a stand-in from before status.txt existed (a sandbox left running across an upgrade).
    if not os.path.exists(os.path.join(unit_dir(unit), "status.json")):
        return None  # never started: answer without importing json
    import json

    try:
        with open(os.path.join(unit_dir(unit), "status.json")) as f:
            status: dict[str, Any] = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return status


def read_status(unit: str) -> dict[str, Any]:
    """The unit's status; a running state whose supervisor is gone reads as ``failed`` (like a crash),
    except ``active (exited)``: a oneshot unit that ran and remains active (systemd-sysctl)."""
    status = _stored_status(unit)
    if status is None or "state" not in status:
        return {"state": "inactive", "substate": "dead"}
    if status.get("pending") and time.time() - status.get("since", 0) < PENDING_GRACE_SECONDS:
        return status
    sup = status.get("supervisorPid")
    if status.get("substate") == "exited":  # a oneshot unit with RemainAfterExit=yes: no process
        return status
    if status["state"] in RUNNING_STATES and not (sup and supervisor_alive(sup)):
        return {**status, "state": "failed", "substate": "failed", "result": "signal"}
    return status


def write_status(unit: str, **status: Any) -> None:
    record = {**status, "since": time.time()}
    directory = unit_dir(unit)
    _write_atomic(os.path.join(directory, "status.json"), encode_status_json(record))
    _write_atomic(os.path.join(directory, "status.txt"), encode_status(record))


def _write_atomic(path: str, data: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def restart_count(status: dict[str, Any]) -> int:
    """systemd's NRestarts: bumped when the restart job runs, not while waiting out RestartSec."""
    exits = int(status.get("exits", 0))
    return exits - 1 if status.get("substate") == "auto-restart" and exits > 0 else exits
