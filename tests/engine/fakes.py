"""An in-memory world for the engine's unit tests: the in-memory store, and hosts that answer
from a script (what each command prints) and record what they were asked."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rke2fleet.engine.core import Engine
from rke2fleet.engine.records import ClusterRecord, NodeRecord
from rke2fleet.hostaccess import CommandResult, HostTarget
from rke2fleet.reconcile.health import NODES_MARK
from rke2fleet.store.memory import MemoryStore

NS = "fleet"
V35, V36, V34 = "v1.35.7+rke2r1", "v1.36.3+rke2r1", "v1.34.10+rke2r1"
SSH_KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n"

# (host address, the command or script) -> (exit status, stdout)
Answer = Callable[[str, str], tuple[int, str] | None]


class FakeHosts:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []  # (address, command or script)
        self.answers: list[Answer] = []
        self.files: dict[tuple[str, str], bytes] = {}

    def answer(self, fn: Answer) -> None:
        self.answers.append(fn)

    async def run(self, target: HostTarget, argv: Sequence[str] | None = None, *, script: str | None = None,
                  **_: Any) -> CommandResult:  # fmt: skip
        what = " ".join(argv) if argv is not None else str(script)
        self.calls.append((target.address, what))
        for fn in self.answers:
            got = fn(target.address, what)
            if got is not None:
                return CommandResult(got[0], got[1], "", 0.0, got[1].encode())
        return CommandResult(0, "", "", 0.0, b"")

    async def read_file(self, target: HostTarget, path: str, *, sudo: bool = True) -> bytes | None:
        self.calls.append((target.address, f"read {path}"))
        return self.files.get((target.address, path))

    async def write_file(self, target: HostTarget, path: str, data: bytes, **_: Any) -> bool:
        self.calls.append((target.address, f"write {path}"))
        self.files[(target.address, path)] = data
        return True

    async def put_file(self, target: HostTarget, path: str, source: Path, sha256: str, **_: Any) -> bool:
        self.calls.append((target.address, f"put {path}"))
        self.files[(target.address, path)] = source.read_bytes()  # noqa: ASYNC240 - a tiny test file
        return True

    def accepted_key(self, target: HostTarget) -> str | None:
        return None

    def commands(self, address: str | None = None) -> list[str]:
        return [c for a, c in self.calls if address is None or a == address]


def etcd_snapshots(node: str = "s1", when: int = 1_800_000_000) -> Answer:
    """`rke2 etcd-snapshot save` and `ls` as RKE2 answers them (the name gains node and time)."""
    saved: list[str] = []

    def answer(address: str, what: str) -> tuple[int, str] | None:
        if "etcd-snapshot save --name " in what:
            name = f"{what.split('--name ')[1].split()[0]}-{node}-{when}"
            saved.append(name)
            return 0, f'time="2027-01-15T08:00:00Z" level=info msg="Snapshot {name} saved."'
        if what.endswith("etcd-snapshot ls"):
            rows = ["Name Location Size Created"] + [
                f"{n} file:///var/lib/rancher/rke2/server/db/snapshots/{n} 4096 2027-01-15T08:00:00Z" for n in saved
            ]
            return 0, "\n".join(rows)
        return None

    return answer


def seed_secret(store: MemoryStore, name: str, data: dict[str, bytes], *, ours: bool = True,
                labels: dict[str, str] | None = None) -> None:  # fmt: skip
    """A Secret as it is in the namespace: the operator's own (kept by it, maybe edited since), or not."""
    store.secrets[(NS, name)] = data
    store.secret_labels[(NS, name)] = {"app.kubernetes.io/managed-by": "rke2fleet"} if ours else dict(labels or {})
    store.secret_owners[(NS, name)] = ["u-1"] if ours else []


def cluster_spec(**spec: Any) -> dict[str, Any]:
    return {
        "version": V36,
        "registrationAddress": "10.0.0.100",
        "ssh": {"privateKeySecretRef": {"name": "fleet-ssh", "key": "ssh-privatekey"}},
        **spec,
    }


def world(servers: int = 3, agents: int = 1, *, cluster: dict[str, Any] | None = None,
          status: dict[str, Any] | None = None) -> tuple[Engine, MemoryStore, FakeHosts]:  # fmt: skip
    store, hosts = MemoryStore(), FakeHosts()
    store.secrets[(NS, "fleet-ssh")] = {"ssh-privatekey": SSH_KEY}
    store.put_cluster(ClusterRecord(NS, "prod", cluster or cluster_spec(), status or {}, uid="u-1", generation=1))
    for i in range(servers):
        store.put_node(NodeRecord(NS, f"s{i + 1}", {"cluster": "prod", "role": "server", "address": f"10.0.0.{i + 1}"}))
    for i in range(agents):
        store.put_node(NodeRecord(NS, f"a{i + 1}", {"cluster": "prod", "role": "agent", "address": f"10.0.1.{i + 1}"}))
    return Engine(hosts=hosts, store=store), store, hosts


def serving_status(version: str = V36, role: str = "server", phase: str = "Ready") -> dict[str, Any]:
    """What a node pass writes for a node the cluster counts."""
    conds = [
        {"type": "Ready", "status": "True" if phase == "Ready" else "False", "reason": phase},
        {"type": "ServiceActive", "status": "True"},
        {"type": "NodeReady", "status": "True"},
        {"type": "Configured", "status": "True", "reason": "UpToDate"},
    ]
    if role == "server":
        conds.append({"type": "EtcdVoter", "status": "True", "reason": "MemberNotLearner"})
    return {"phase": phase, "conditions": conds, "installedVersion": version, "runningVersion": version}


def set_status(store: MemoryStore, name: str, status: dict[str, Any]) -> None:
    from dataclasses import replace

    store.put_node(replace(store.node(NS, name), status=status))


def kube_nodes(*nodes: tuple[str, str, str | None]) -> str:
    """`kubectl get nodes -o json` for (name, Ready status, EtcdIsVoter reason or None)."""
    items = []
    for name, ready, etcd in nodes:
        reason = "KubeletReady" if ready == "True" else "NodeStatusUnknown"
        conds = [{"type": "Ready", "status": ready, "reason": reason}]
        if etcd:
            conds.append({"type": "EtcdIsVoter", "status": "True" if etcd == "MemberNotLearner" else "False",
                          "reason": etcd})  # fmt: skip
        items.append({"metadata": {"name": name}, "status": {"conditions": conds}})
    return json.dumps({"items": items})


def health_answer(nodes_json: str, token_sha256: str | None = None, rc: int = 0) -> Answer:
    """Hosts that answer the health script (any server) with this Node list."""
    head = f"kubectl_rc={rc}\n" + (f"token_sha256={token_sha256}\n" if token_sha256 else "")

    def answer(address: str, what: str) -> tuple[int, str] | None:
        return (0, f"{head}{NODES_MARK}\n{nodes_json}\n") if "get nodes -o json" in what else None

    return answer
