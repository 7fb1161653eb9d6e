"""The real operator (`rke2fleet run`, Kopf) as a subprocess, and the API calls the bench makes."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException

from rke2fleet import GROUP, VERSION

NS = "default"
TOKEN_SECRET = "bench-token"  # noqa: S105 -- a Secret's name
BENCH_USER_AGENT = "rke2fleet-bench"  # tells the bench's own API calls apart in the audit log
# A source root (holding `rke2fleet/`) to run the operator from instead of the installed one:
# before/after figures of a proposed operator patch without touching the work tree.
OPERATOR_SOURCE: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """`python -m rke2fleet run -A` with the given tick periods; log kept in `log_path`."""

    def __init__(self, kubeconfig: Path, log_path: Path, *, node_tick: float, cluster_tick: float) -> None:
        self.log_path = log_path
        self.health_port = free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "RKE2FLEET_NODE_TICK": str(node_tick),
            "RKE2FLEET_CLUSTER_TICK": str(cluster_tick),
        }
        if OPERATOR_SOURCE:
            self.env["PYTHONPATH"] = OPERATOR_SOURCE
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def healthz(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "rke2fleet", "run", "-A", "--metrics-port", "0",
                "--health-port", str(self.health_port)]  # fmt: skip

    def start(self) -> OperatorProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True,
            )  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def peak_rss_mb(self) -> float:
        """VmHWM: the process's peak resident set size."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/<pid>/status")

    def cpu_seconds(self) -> float:
        """CPU time used so far (user + system, all threads): unlike wall-clock profiles, not
        inflated when other processes compete for the cores."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class KopfFloorProcess(OperatorProcess):
    """Kopf alone on our kinds (`kopf_floor_operator.py`), same environment, ticks and probe port."""

    def argv(self) -> list[str]:
        script = Path(__file__).with_name("kopf_floor_operator.py")
        return [sys.executable, str(script), "--health-port", str(self.health_port)]


class KopfWatchProcess(KopfFloorProcess):
    """Kopf watching and indexing our kinds, nothing else (the floor script in watch-only mode);
    it logs INDEXED_LINE once `expected_nodes` RKE2Nodes are indexed."""

    INDEXED_LINE = "watch floor: every node indexed"  # as kopf_floor_operator.INDEXED_LINE

    def __init__(
        self, kubeconfig: Path, log_path: Path, *, node_tick: float, cluster_tick: float, expected_nodes: int = 0
    ) -> None:
        super().__init__(kubeconfig, log_path, node_tick=node_tick, cluster_tick=cluster_tick)
        self.env["RKE2FLEET_FLOOR_WATCH_ONLY"] = "1"
        self.env["RKE2FLEET_FLOOR_EXPECT_NODES"] = str(expected_nodes)

    def all_indexed(self) -> bool:
        return self.INDEXED_LINE in self.log_path.read_text(errors="replace")


class Api:
    """The management-cluster calls of the bench (through the official client, as a user would)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self.client.user_agent = BENCH_USER_AGENT
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        self.server = str(server)

    def close(self) -> None:
        self.client.close()

    def create_token_secret(self, token: str) -> None:
        body = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": TOKEN_SECRET, "namespace": NS, "labels": {"rke2fleet.io/token": "true"}},
            "data": {"token": base64.b64encode(token.encode()).decode()},
        }  # fmt: skip
        self.core.create_namespaced_secret(NS, body)  # type: ignore[arg-type]

    def create(self, doc: dict[str, Any]) -> None:
        if doc["kind"] == "Secret":
            try:
                self.core.create_namespaced_secret(NS, doc)  # type: ignore[arg-type]
            except ApiException as exc:
                if exc.status != 409:
                    raise
            return
        plural = doc["kind"].lower() + "s"
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, doc)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, plural, name))

    def items(self, plural: str) -> list[dict[str, Any]]:
        listed = cast(dict[str, Any], self.custom.list_namespaced_custom_object(GROUP, VERSION, NS, plural))
        return list(listed["items"])

    def patch_spec(self, plural: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, plural, name, {"spec": spec})

    def phase(self, plural: str, name: str) -> str | None:
        try:
            return (self.get(plural, name).get("status") or {}).get("phase")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def wait_phase(self, plural: str, name: str, phase: str, timeout: float, interval: float = 0.1) -> float:
        """Poll until the object's phase is `phase`; returns the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.phase(plural, name) == phase:
                return time.monotonic()
            time.sleep(interval)
        raise TimeoutError(f"{plural}/{name} not {phase} after {timeout:.0f}s (last: {self.phase(plural, name)})")

    # The emulator's audit log (sandbox extension, not a Kubernetes API).
    def audit(self) -> list[dict[str, Any]]:
        return list(json.loads(urllib.request.urlopen(f"{self.server}/_sandbox/audit", timeout=10).read()))  # noqa: S310

    def reset_audit(self) -> None:
        req = urllib.request.Request(f"{self.server}/_sandbox/audit/reset", method="POST", data=b"")  # noqa: S310
        urllib.request.urlopen(req, timeout=10).read()  # noqa: S310


WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def writes(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if str(e.get("verb")).lower() in WRITE_VERBS]
