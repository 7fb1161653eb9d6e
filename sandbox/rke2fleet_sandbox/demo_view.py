"""What the demo shows: the live node table, the applied manifests, the elided kubeconfig.

Pure text functions plus `LiveView`, which redraws in place on a terminal and prints only
the lines that changed otherwise (so CI logs stay readable).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

ELIDED = "<elided>"
# Kubeconfig user fields that carry credentials: never shown.
USER_SECRET_FIELDS = ("client-key-data", "client-certificate-data", "token", "password")


@dataclass(frozen=True)
class NodeRow:
    name: str
    role: str
    address: str
    phase: str
    installed: str
    running: str
    ready: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> NodeRow:
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        return cls(
            name=str(obj["metadata"]["name"]),
            role=str(spec.get("role", "-")),
            address=str(spec.get("address", "-")),
            phase=str(status.get("phase") or "-"),
            installed=str(status.get("installedVersion") or "-"),
            running=str(status.get("runningVersion") or "-"),
            ready=str(ready.get("status")) if ready else "-",
        )


@dataclass(frozen=True)
class ClusterLine:
    name: str
    phase: str
    servers: str
    agents: str

    @classmethod
    def of(cls, name: str, obj: Mapping[str, Any] | None) -> ClusterLine:
        status = (obj or {}).get("status") or {}
        return cls(
            name=name,
            phase=str(status.get("phase") or "-"),
            servers=str(status.get("servers") or "-"),
            agents=str(status.get("agents") or "-"),
        )

    def text(self) -> str:
        return f"cluster {self.name}: phase {self.phase}, servers {self.servers}, agents {self.agents}"


HEADER = ("NAME", "ROLE", "ADDRESS", "PHASE", "INSTALLED", "RUNNING", "READY")
WIDTHS = (10, 7, 13, 12, 16, 16, 5)


def format_row(cells: Sequence[str]) -> str:
    return "  ".join(f"{c:<{w}}" for c, w in zip(cells, WIDTHS, strict=True)).rstrip()


def row_text(row: NodeRow) -> str:
    return format_row((row.name, row.role, row.address, row.phase, row.installed, row.running, row.ready))


def table_lines(cluster: ClusterLine, rows: Sequence[NodeRow]) -> list[str]:
    return [format_row(HEADER), *(row_text(r) for r in rows), cluster.text()]


class LiveView:
    """Shows the table; `update()` is cheap to call twice a second."""

    def __init__(self, out: TextIO, tty: bool, started: float | None = None) -> None:
        self.out = out
        self.tty = tty
        self.started = time.monotonic() if started is None else started
        self._drawn = 0  # lines drawn last time (TTY mode)
        self._last_rows: dict[str, str] = {}
        self._last_cluster = ""
        self._header_done = False
        self.lines: list[str] = []

    def update(self, cluster: ClusterLine, rows: Sequence[NodeRow]) -> None:
        self.lines = table_lines(cluster, rows)
        if self.tty:
            self._redraw()
        else:
            self._print_changes(cluster, rows)

    def _elapsed(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def _redraw(self) -> None:
        # Cursor to the start of the table drawn last time, then rewrite each line (clearing it).
        parts = [f"\x1b[{self._drawn}F"] if self._drawn else []
        lines = [*self.lines, f"elapsed {time.monotonic() - self.started:.1f}s"]
        # A wrapped line would break the cursor arithmetic: cut lines to the terminal's width.
        width = max(20, shutil.get_terminal_size().columns - 1)
        parts += [f"\x1b[2K{line[:width]}\n" for line in lines]
        self.out.write("".join(parts))
        self.out.flush()
        self._drawn = len(lines)

    def _print_changes(self, cluster: ClusterLine, rows: Sequence[NodeRow]) -> None:
        pad = " " * len(self._elapsed())
        if not self._header_done:
            self.out.write(f"{pad} {format_row(HEADER)}\n")
            self._header_done = True
        for row in rows:
            text = row_text(row)
            if self._last_rows.get(row.name) != text:
                self._last_rows[row.name] = text
                self.out.write(f"{self._elapsed()} {text}\n")
        if cluster.text() != self._last_cluster:
            self._last_cluster = cluster.text()
            self.out.write(f"{self._elapsed()} {cluster.text()}\n")
        self.out.flush()

    def final(self) -> None:
        """The last full table, printed once (after the log of changes in non-TTY mode)."""
        if self.tty:
            return
        self.out.write("".join(f"{line}\n" for line in self.lines))
        self.out.flush()


def elide_kubeconfig(text: str) -> str:
    """The kubeconfig with every credential replaced; server URL and names kept, CA marked present."""
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        return ELIDED
    for entry in doc.get("clusters") or []:
        cluster = entry.get("cluster") or {}
        if cluster.get("certificate-authority-data"):
            cluster["certificate-authority-data"] = f"<present, {len(cluster['certificate-authority-data'])} chars>"
    for entry in doc.get("users") or []:
        user = entry.get("user") or {}
        for field in list(user):
            if field in USER_SECRET_FIELDS or "key" in field:
                user[field] = ELIDED
    return str(yaml.safe_dump(doc, sort_keys=False))


def manifests_yaml(docs: Sequence[Mapping[str, Any]], client_key_path: str) -> str:
    """The applied documents as one YAML file, the SSH Secret replaced by the command that makes it.

    The Secret holds the private key: it is never printed or written; the comment shows how
    a user creates the same Secret from the key file.
    """
    parts = []
    for doc in docs:
        if doc.get("kind") == "Secret":
            meta = doc["metadata"]
            keys = ",".join(sorted((doc.get("data") or {}).keys())) or "-"
            parts.append(
                f"# Secret {meta['namespace']}/{meta['name']} (keys: {keys}), created with:\n"
                f"#   kubectl -n {meta['namespace']} create secret generic {meta['name']} "
                f"--type={doc.get('type', 'Opaque')} --from-file=ssh-privatekey={client_key_path}\n"
            )
            continue
        parts.append(yaml.safe_dump(dict(doc), sort_keys=False))
    return "---\n".join(parts)
