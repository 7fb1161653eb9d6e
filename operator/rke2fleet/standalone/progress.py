"""What `rke2fleet apply` shows while it works: a live table of the nodes on a terminal, plain
lines (a node's phase change, a Warning) otherwise. Messages come from conditions and Events,
which never carry secrets."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass
class Row:
    name: str
    role: str
    phase: str = "Pending"
    version: str = ""
    message: str = ""


def ready_message(status: dict[str, Any]) -> str:
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return str(ready.get("message") or "")


class Progress:
    def __init__(self, stream: TextIO, *, live: bool) -> None:
        self.stream, self.live = stream, live
        self.rows: dict[str, Row] = {}
        self.cluster = ""
        self._drawn = 0
        self._started = time.monotonic()

    def add(self, name: str, role: str) -> None:
        self.rows[name] = Row(name, role)

    def node(self, name: str, status: dict[str, Any]) -> None:
        row = self.rows[name]
        phase = str(status.get("phase") or row.phase)
        changed = phase != row.phase
        row.phase, row.version = phase, str(status.get("runningVersion") or status.get("installedVersion") or "")
        row.message = ready_message(status)
        if self.live:
            self.draw()
        elif changed:
            self.line(f"{name}: {phase}" + (f" ({row.message})" if row.message and phase != "Ready" else ""))

    def cluster_phase(self, phase: str, message: str) -> None:
        line = f"cluster: {phase} ({message})" if message else f"cluster: {phase}"
        if line != self.cluster:
            self.cluster = line
            if self.live:
                self.draw()
            else:
                self.line(line)

    def warning(self, name: str, reason: str, message: str) -> None:
        if not self.live:
            self.line(f"{name}: warning {reason}: {message}")

    def line(self, text: str) -> None:
        self.stream.write(f"[{time.monotonic() - self._started:6.1f}s] {text}\n")
        self.stream.flush()

    def table(self) -> list[str]:
        rows = [("NODE", "ROLE", "PHASE", "VERSION", "MESSAGE")]
        rows += [(r.name, r.role, r.phase, r.version, r.message[:70]) for r in self.rows.values()]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        out = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows]
        return [*out, self.cluster, f"elapsed {time.monotonic() - self._started:.0f}s"]

    def draw(self) -> None:
        lines = self.table()
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}A")
        for line in lines:
            self.stream.write("\x1b[2K" + line + "\n")
        self._drawn = len(lines)
        self.stream.flush()
