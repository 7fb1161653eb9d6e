"""Shared per-cluster state of the sandbox (the stand-in for etcd + the Node objects).

Stdlib only: the stand-ins import this file directly (it sits next to them), and
`rke2fleet.sandbox.datastore` re-exports it for tests. Layout under the directory:
``clusters/<cluster>.json`` (nodes, node passwords), ``events.jsonl`` (append-only), ``.lock``.
A cluster is identified by the hash of its CA (``cluster_id_for_ca``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time

# No typing/pathlib at run time: every rke2 daemon start imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


def cluster_id_for_ca(ca_pem: str) -> str:
    return hashlib.sha256(ca_pem.encode()).hexdigest()[:16]


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process (field 22 of /proc/PID/stat), to tell a live pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def process_running(pid: int, start_ticks: int | None) -> bool:
    """Alive, the same process, and neither stopped (SIGSTOP) nor a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("T", "t", "Z", "X"):
        return False
    return start_ticks is None or int(fields[19]) == start_ticks


class Datastore:
    """File-based JSON store; every mutation holds an exclusive ``fcntl`` lock on ``.lock``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = os.fspath(directory)

    # -- low level -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _cluster_path(self, cluster: str) -> str:
        return os.path.join(self.dir, "clusters", f"{cluster}.json")

    def _load(self, cluster: str) -> dict[str, Any]:
        try:
            with open(self._cluster_path(cluster)) as f:
                data: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            data = {}
        data.setdefault("cluster", cluster)
        data.setdefault("nodes", {})
        data.setdefault("nodePasswords", {})
        return data

    def _save(self, cluster: str, data: dict[str, Any]) -> None:
        path = self._cluster_path(cluster)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path.removesuffix('.json')}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def _append_event(self, cluster: str, node: str, event: str, **extra: Any) -> None:
        record = {"t": time.time(), "cluster": cluster, "node": node, "event": event, **extra}
        with open(os.path.join(self.dir, "events.jsonl"), "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def transaction(self, cluster: str) -> Iterator[dict[str, Any]]:
        """Read-modify-write of one cluster's state under the lock."""
        with self._locked():
            data = self._load(cluster)
            yield data
            self._save(cluster, data)

    def record(self, cluster: str, node: str, event: str, **extra: Any) -> None:
        with self._locked():
            self._append_event(cluster, node, event, **extra)

    # -- operations used by the stand-ins ----------------------------------------------------
    def register(
        self,
        cluster: str,
        node: dict[str, Any],
        node_password_hash: str,
    ) -> str | None:
        """Register or refresh a node. Returns an error message when the node password is rejected."""
        name = node["name"]
        with self._locked():
            data = self._load(cluster)
            known = data["nodePasswords"].get(name)
            if known is not None and known != node_password_hash:
                return (
                    "Node password rejected, duplicate hostname or contents of "
                    "'/etc/rancher/node/password' may not match server node-passwd entry, "
                    "try enabling a unique node name with the --with-node-id flag"
                )
            data["nodePasswords"][name] = node_password_hash
            old = data["nodes"].get(name)
            if old is None:
                node.setdefault("unschedulable", False)
                node["created"] = time.time()
                data["nodes"][name] = node
                self._append_event(cluster, name, "join", version=node.get("version"), role=node.get("role"))
            else:
                # Labels and taints apply at registration only: keep the stored ones.
                for key in ("labels", "taints", "unschedulable", "created"):
                    node[key] = old.get(key, node.get(key))
                data["nodes"][name] = node
            self._append_event(cluster, name, "start", version=node.get("version"), role=node.get("role"))
            self._save(cluster, data)
            return None

    def mark(self, cluster: str, name: str, event: str, **changes: Any) -> bool:
        """Update fields of a node and record ``event``; False when the node does not exist."""
        with self._locked():
            data = self._load(cluster)
            node = data["nodes"].get(name)
            if node is None:
                return False
            node.update(changes)
            self._save(cluster, data)
            self._append_event(cluster, name, event, version=node.get("version"), role=node.get("role"))
            return True

    def delete(self, cluster: str, name: str) -> bool:
        with self._locked():
            data = self._load(cluster)
            node = data["nodes"].pop(name, None)
            if node is None:
                return False
            data["nodePasswords"].pop(name, None)
            self._save(cluster, data)
            self._append_event(cluster, name, "delete", version=node.get("version"), role=node.get("role"))
            return True

    # -- reading API (tests) ------------------------------------------------------------------
    def clusters(self) -> list[str]:
        try:
            names = os.listdir(os.path.join(self.dir, "clusters"))
        except FileNotFoundError:
            return []
        return sorted(n.removesuffix(".json") for n in names if n.endswith(".json") and not n.startswith("."))

    def nodes(self, cluster: str | None = None) -> list[dict[str, Any]]:
        """Nodes with a computed ``ready`` (its rke2 process runs and is not stopped)."""
        result = []
        for cid in [cluster] if cluster else self.clusters():
            for node in self._load(cid)["nodes"].values():
                node = dict(node, cluster=cid)
                node["ready"] = process_running(int(node.get("pid", 0)), node.get("pidStart"))
                result.append(node)
        return sorted(result, key=lambda n: (n["cluster"], n["name"]))

    def events(self, cluster: str | None = None) -> list[dict[str, Any]]:
        try:
            with open(os.path.join(self.dir, "events.jsonl")) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        events = [json.loads(line) for line in lines if line.strip()]
        return [e for e in events if cluster is None or e["cluster"] == cluster]
