"""Fixtures of the API tests: valid base objects, the generated schemas, the real CLI."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / ".venv" / "bin" / "rke2fleet"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPIwKmHYSDCfIHnMiLDywKzleR2+dN/O0euUgbgyzyi"

BASE_CLUSTER: dict[str, Any] = {
    "apiVersion": "rke2fleet.io/v1alpha1",
    "kind": "RKE2Cluster",
    "metadata": {"name": "prod", "namespace": "fleet"},
    "spec": {
        "version": "v1.35.7+rke2r1",
        "registrationAddress": "rke2.example.com",
        "tlsSAN": ["rke2.example.com", "192.168.1.100"],
        "tokenSecretRef": {"name": "prod-token", "key": "token"},
        "ssh": {
            "user": "root",
            "port": 22,
            "privateKeySecretRef": {"name": "fleet-ssh", "key": "ssh-privatekey"},
            "hostKeyPolicy": "Strict",
        },
        "install": {"scriptURL": "https://get.rke2.io"},
        "serverConfig": {"cni": "canal", "write-kubeconfig-mode": "0644"},
        "agentConfig": {"kubelet-arg": ["max-pods=150"]},
        "upgrade": {"serverConcurrency": 1, "agentConcurrency": 2, "drainTimeout": "5m"},
    },
}

BASE_SERVER: dict[str, Any] = {
    "apiVersion": "rke2fleet.io/v1alpha1",
    "kind": "RKE2Node",
    "metadata": {"name": "cp-1", "namespace": "fleet"},
    "spec": {
        "cluster": "prod",
        "role": "server",
        "address": "192.168.1.10",
        "hostKey": HOST_KEY,
        "nodeLabels": ["environment=production"],
        "config": {"kube-apiserver-arg": ["audit-log-maxage=30"]},
    },
}

BASE_AGENT: dict[str, Any] = {
    "apiVersion": "rke2fleet.io/v1alpha1",
    "kind": "RKE2Node",
    "metadata": {"name": "worker-1", "namespace": "fleet"},
    "spec": {"cluster": "prod", "role": "agent", "address": "worker-1.example.com", "nodeIP": "192.168.1.21"},
}

BASES = {"cluster": BASE_CLUSTER, "server": BASE_SERVER, "agent": BASE_AGENT}

DELETE = object()


def mutate(base: str, edits: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of BASES[base] with `edits` applied: dotted path -> value (DELETE removes)."""
    doc = copy.deepcopy(BASES[base])
    for path, value in edits.items():
        *parents, last = path.split(".")
        target = doc
        for part in parents:
            target = target.setdefault(part, {})
        if value is DELETE:
            target.pop(last, None)
        else:
            target[last] = copy.deepcopy(value)
    return doc


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a pre-commit hook would run it."""
    return subprocess.run(
        [str(CLI), *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=REPO, check=False
    )


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
