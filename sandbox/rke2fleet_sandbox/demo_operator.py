"""The operator as the demo runs it: `rke2fleet run -A` in its own session, logging to a file.

It is recorded as a service of the sandbox, so `rke2fleet sandbox down` also ends an
operator left running by `rke2fleet demo --keep`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from rke2fleet_sandbox.state import ProcessRecord
from rke2fleet_sandbox.world import Sandbox

SERVICE_NAME = "operator"
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoOperator:
    def __init__(self, sandbox: Sandbox) -> None:
        if sandbox.kubeconfig_path is None:
            raise RuntimeError("the sandbox has no API emulator")
        self.kubeconfig = sandbox.kubeconfig_path
        self.log_path: Path = sandbox.layout.logs / "operator.log"
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def start(self, sandbox: Sandbox) -> None:
        """Started as shipped: its re-check periods (RKE2FLEET_NODE_TICK, ...) come from the environment."""
        argv = [sys.executable, "-m", "rke2fleet", "run", "-A",
                "--metrics-port", str(self.metrics_port), "--health-port", "0"]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
                # Its own session: a Ctrl-C in the terminal reaches the demo only, which stops it in order.
                start_new_session=True,
            )
        sandbox.record.services[SERVICE_NAME] = ProcessRecord.of(self.proc.pid)
        sandbox.save()

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_tail(self, lines: int) -> list[str]:
        if not self.log_path.exists():
            return []
        return self.log_path.read_text(errors="replace").splitlines()[-lines:]
