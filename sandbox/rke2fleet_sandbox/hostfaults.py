"""Fault switches of one sandbox host, read by the stand-ins from the host's ``faultsDir``.

Files (one per switch):
  ``fail-next-start``  the next start of an rke2 service fails (fatal log line, exit 1); consumed by it.
  ``start-delay``      seconds an rke2 service takes between starting and being ready.
  ``restart-delay``    RestartSec of the units (seconds between an exit and the automatic restart).
  ``fail-snapshot``    ``rke2 etcd-snapshot save`` fails (as with an unhealthy etcd).
  ``cni-broken``       the host's Node stays NotReady (CNI not initialized) while its unit is active.
  ``node-ready-delay`` seconds between the service being active and its Node being Ready (read at
                       each start; overrides host.json's ``nodeReadyDelay``).

Certificates are aged by rewriting them inside the host: ``age_certificates_command``.
"""

from __future__ import annotations

import os
from pathlib import Path

FAIL_NEXT_START = "fail-next-start"
START_DELAY = "start-delay"
RESTART_DELAY = "restart-delay"
FAIL_SNAPSHOT = "fail-snapshot"
CNI_BROKEN = "cni-broken"
NODE_READY_DELAY = "node-ready-delay"


def _write(faults_dir: str | os.PathLike[str], name: str, content: str | None) -> None:
    path = Path(faults_dir) / name
    if content is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(content)
    os.replace(tmp, path)


def fail_next_start(faults_dir: str | os.PathLike[str], enabled: bool = True) -> None:
    _write(faults_dir, FAIL_NEXT_START, "1\n" if enabled else None)


def set_start_delay(faults_dir: str | os.PathLike[str], seconds: float | None) -> None:
    """None (or 0) removes the delay."""
    _write(faults_dir, START_DELAY, f"{seconds}\n" if seconds else None)


def set_restart_delay(faults_dir: str | os.PathLike[str], seconds: float | None) -> None:
    """None restores the unit's own RestartSec."""
    _write(faults_dir, RESTART_DELAY, None if seconds is None else f"{seconds}\n")


def fail_snapshot(faults_dir: str | os.PathLike[str], enabled: bool = True) -> None:
    _write(faults_dir, FAIL_SNAPSHOT, "1\n" if enabled else None)


def break_cni(faults_dir: str | os.PathLike[str], enabled: bool = True) -> None:
    _write(faults_dir, CNI_BROKEN, "1\n" if enabled else None)


def set_node_ready_delay(faults_dir: str | os.PathLike[str], seconds: float | None) -> None:
    """None restores host.json's ``nodeReadyDelay``; applies from the next start of the service."""
    _write(faults_dir, NODE_READY_DELAY, None if seconds is None else f"{seconds}\n")


def age_certificates_command(python: str, standins_dir: str | os.PathLike[str], days: float,
                             data_dir: str | None = None) -> str:
    """The shell command that, run inside a host, moves notBefore and notAfter of its RKE2 leaf
    certificates ``days`` back (files re-signed, the certificate index updated)."""
    import shlex

    script = os.path.join(os.fspath(standins_dir), "rke2_certs.py")
    cmd = f"{shlex.quote(python)} -s {shlex.quote(script)} age --days {float(days)}"
    return cmd + (f" --data-dir {shlex.quote(data_dir)}" if data_dir else "")
