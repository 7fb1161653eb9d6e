"""End-to-end harness: a sandbox, the real operator (`rke2fleet run`, Kopf) as a subprocess
against the sandbox's API emulator, and a Kubernetes client to drive and observe it."""

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from rke2fleet import GROUP, VERSION
from rke2fleet_sandbox.datastore import Datastore
from rke2fleet_sandbox.manifests import apply_manifests
from rke2fleet_sandbox.world import Sandbox

NS = "default"
# Waits are for things that happen, not speed checks: stretch them on a loaded machine (CI runs
# several end-to-end tests side by side on 2 cores).
TIMEOUT_SCALE = float(os.environ.get("RKE2FLEET_TEST_TIMEOUT_SCALE", "3"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    """`rke2fleet run` in a subprocess; its whole log is kept for the secret scan."""

    def __init__(self, kubeconfig: Path, log_path: Path, *, args: tuple[str, ...] = (), **env: str) -> None:
        self.kubeconfig = kubeconfig
        self.args = args
        self.log_path = log_path
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "RKE2FLEET_NODE_TICK": "2",
            "RKE2FLEET_CLUSTER_TICK": "1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port = 0  # Kopf's liveness endpoint off unless a subclass sets a port

    def start(self) -> Operator:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rke2fleet",
                "run",
                "-A",
                "--metrics-port",
                str(self.metrics_port),
                "--health-port",
                str(self.health_port),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching the labels (0 when absent)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += float(value)
        return total


class Kube:
    def __init__(self, kubeconfig: Path) -> None:
        self.client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.kubeconfig = kubeconfig

    def apply(self, docs: list[dict[str, Any]]) -> None:
        apply_manifests(str(self.kubeconfig), docs)

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, plural, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.custom.list_namespaced_custom_object(GROUP, VERSION, NS, "rke2nodes")["items"])

    def patch_spec(self, plural: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, plural, name, {"spec": spec})

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, plural, name)

    def secret(self, name: str) -> dict[str, bytes] | None:
        try:
            obj = self.core.read_namespaced_secret(name, NS)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}

    def secret_object(self, name: str) -> Any:
        return self.core.read_namespaced_secret(name, NS)

    def events(self, name: str | None = None) -> list[Any]:
        items = self.core.list_namespaced_event(NS).items
        return [e for e in items if name is None or e.involved_object.name == name]

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.3) -> Any:
        timeout *= TIMEOUT_SCALE
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")

    def wait_phase(self, plural: str, name: str, phase: str, timeout: float = 60.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            obj = self.get(plural, name)
            return obj if obj and (obj.get("status") or {}).get("phase") == phase else None

        return dict(self.wait(f"{plural}/{name} phase {phase}", check, timeout))

    def condition(self, plural: str, name: str, type_: str) -> dict[str, Any] | None:
        obj = self.get(plural, name) or {}
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c["type"] == type_:
                return dict(c)
        return None

    def close(self) -> None:
        self.client.close()


def audit(kubeconfig: Path) -> list[dict[str, Any]]:
    server = _server(kubeconfig)
    return list(json.loads(urllib.request.urlopen(f"{server}/_sandbox/audit", timeout=5).read()))


def reset_audit(kubeconfig: Path) -> None:
    server = _server(kubeconfig)
    req = urllib.request.Request(f"{server}/_sandbox/audit/reset", method="POST", data=b"")
    urllib.request.urlopen(req, timeout=5).read()


def _server(kubeconfig: Path) -> str:
    import yaml

    return str(yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"])


WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "POST", "PUT", "PATCH", "DELETE"}


def api_writes(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if str(e.get("verb")) in WRITE_VERBS]


def datastore_events(sandbox: Sandbox) -> list[dict[str, Any]]:
    return Datastore(sandbox.layout.datastore).events()


def sh(sandbox: Sandbox, host: Any, command: str) -> str:
    """Run a shell command inside a host's namespaces (not over SSH) and return its stdout."""
    res = sandbox.run_on_host(host, command)
    out = res.stdout
    return out.decode() if isinstance(out, bytes) else str(out)
