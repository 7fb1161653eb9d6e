"""The harness's operator subprocess, but with Kopf's liveness endpoint on a real port."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from tests.e2e.harness import Operator, free_port


class HealthOperator(Operator):
    """`rke2fleet run -A --metrics-port M --health-port H`; `healthz()` probes Kopf's endpoint."""

    def __init__(self, kubeconfig: Path, log_path: Path, **env: str) -> None:
        super().__init__(kubeconfig, log_path, **env)
        self.health_port = free_port()

    def healthz(self) -> tuple[int, bytes]:
        """(HTTP status, body) of GET /healthz; OSError while nothing listens."""
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        with urllib.request.urlopen(url, timeout=3) as resp:
            return int(resp.status), bytes(resp.read())
