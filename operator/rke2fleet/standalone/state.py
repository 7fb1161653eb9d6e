"""The state of a cluster run without a management cluster: a directory (mode 0700, files 0600,
each written atomically) bound to one RKE2Cluster, and the store the engine reads and writes
through it: specs from the manifests, statuses and generated Secrets from the directory.

Layout: `state.json` (which cluster), `status/<plural>/<name>.json`, `secrets/<name>.json`.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rke2fleet.engine.ownership import MANAGED_BY
from rke2fleet.engine.ports import Plural
from rke2fleet.engine.records import ClusterRecord, NodeRecord, ObjectRecord
from rke2fleet.standalone.manifests import Manifests
from rke2fleet.store.memory import merge

FORMAT = 1


class StateError(Exception):
    """The state directory cannot be used (wrong permissions, another cluster's, unreadable)."""


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same directory (0600), fsync, rename, fsync the directory."""
    _private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _private_dirs(directory: Path) -> None:
    """Create what is missing of `directory`, each level 0700 (mkdir's parents take the umask)."""
    if directory.is_dir():
        return
    _private_dirs(directory.parent)
    directory.mkdir(mode=0o700)
    os.chmod(directory, 0o700)


def _private(path: Path) -> str | None:
    """Why `path` is not private to this user (None: it is)."""
    st = path.stat()
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not to this user ({os.geteuid()})"
    if stat.S_IMODE(st.st_mode) & 0o077:
        want = "700" if path.is_dir() else "600"
        return f"{path} has mode {stat.S_IMODE(st.st_mode):o}: it holds secrets; chmod {want} it"
    return None


class StateDir:
    def __init__(self, root: Path, namespace: str, name: str) -> None:
        self.root, self.namespace, self.name = root, namespace, name
        self.uid = ""

    @classmethod
    def open(cls, root: str | Path, namespace: str, name: str, *, create: bool = True) -> StateDir:
        state = cls(Path(root), namespace, name)
        marker = state.root / "state.json"
        if not marker.exists():
            if not create:
                raise StateError(f"{state.root} holds no rke2fleet state")
            if state.root.exists() and any(state.root.iterdir()):
                raise StateError(f"{state.root} is not empty and holds no rke2fleet state: use an empty directory")
            _private_dirs(state.root)
            info = {"format": FORMAT, "cluster": f"{namespace}/{name}", "uid": str(uuid.uuid4())}
            write_atomic(marker, json.dumps(info, indent=1).encode())
        state.check()
        info = json.loads(marker.read_text())
        if info.get("cluster") != f"{namespace}/{name}":
            raise StateError(
                f"{state.root} holds the state of RKE2Cluster {info.get('cluster')}, not {namespace}/{name}: "
                "use another --state-dir"
            )
        state.uid = str(info.get("uid") or "")
        return state

    def check(self) -> None:
        """Every part private to this user: the directory holds the token and the kubeconfig."""
        problems = [p for path in [self.root, *self.root.rglob("*")] if (p := _private(path))]
        if problems:
            raise StateError(problems[0])

    def _path(self, *parts: str) -> Path:
        for part in parts:
            if not part or "/" in part or part.startswith("."):
                raise StateError(f"invalid name {part!r} in the state directory")
        return self.root.joinpath(*parts)

    def read(self, *parts: str) -> dict[str, Any] | None:
        path = self._path(*parts)
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise StateError(f"{path} is not valid JSON: {exc}") from None
        return data

    def write(self, data: Mapping[str, Any], *parts: str) -> None:
        write_atomic(self._path(*parts), json.dumps(data, indent=1, sort_keys=True).encode())

    def status(self, plural: Plural, name: str) -> dict[str, Any]:
        return self.read("status", plural, f"{name}.json") or {}

    def secret(self, name: str) -> dict[str, Any] | None:
        return self.read("secrets", f"{name}.json")


class FileStore:
    """engine.ports.Store over the manifests (specs, given Secrets) and a StateDir (statuses,
    Secrets the engine creates: the generated token, the kubeconfig)."""

    def __init__(self, manifests: Manifests, state: StateDir) -> None:
        self.manifests, self.state = manifests, state

    def cluster(self, namespace: str, name: str) -> ClusterRecord | None:
        m = self.manifests
        if (namespace, name) != (m.namespace, m.name):
            return None
        meta = m.cluster["metadata"]
        return ClusterRecord(namespace, name, dict(m.cluster["spec"]), self.state.status("rke2clusters", name),
                             uid=self.state.uid, generation=int(meta.get("generation") or 1))  # fmt: skip

    def node(self, name: str) -> NodeRecord:
        doc = self.manifests.nodes[name]
        gen = int(doc["metadata"].get("generation") or 1)
        return NodeRecord(self.manifests.namespace, name, dict(doc["spec"]), self.state.status("rke2nodes", name), gen)

    def nodes(self, namespace: str, cluster: str) -> list[NodeRecord]:
        if (namespace, cluster) != (self.manifests.namespace, self.manifests.name):
            return []
        return [self.node(name) for name in sorted(self.manifests.nodes)]

    def snapshot(self, namespace: str, name: str) -> ObjectRecord | None:
        kept = self.state.read("objects", "rke2snapshots", f"{name}.json")
        if kept is None:
            return None
        return ObjectRecord(namespace, name, kept["spec"], self.state.status("rke2snapshots", name), 1,
                            kept.get("annotations") or {})  # fmt: skip

    def restores(self, namespace: str, cluster: str) -> list[ObjectRecord]:
        return []  # restores are the operator's (RKE2Restore objects)

    async def create_object(
        self, plural: Plural, namespace: str, name: str, spec: Mapping[str, Any], *,
        status: Mapping[str, Any] | None = None, annotations: Mapping[str, str] | None = None,
    ) -> bool:  # fmt: skip
        if self.state.read("objects", plural, f"{name}.json") is not None:
            return False
        record = {"spec": dict(spec), "annotations": dict(annotations or {})}
        self.state.write(record, "objects", plural, f"{name}.json")
        if status:
            await self.patch_status(plural, namespace, name, status)
        return True

    async def patch_status(self, plural: Plural, namespace: str, name: str, fields: Mapping[str, Any]) -> None:
        self.state.write(merge(self.state.status(plural, name), fields), "status", plural, f"{name}.json")

    async def read_secret(self, namespace: str, name: str, shared: bool = False) -> dict[str, bytes] | None:
        if name in self.manifests.secrets:
            return dict(self.manifests.secrets[name])
        kept = self.state.secret(name)
        return None if kept is None else {k: base64.b64decode(v) for k, v in kept["data"].items()}

    async def read_secret_meta(self, namespace: str, name: str) -> dict[str, Any] | None:
        if name in self.manifests.secrets:  # the user's: as labelled in the files
            return {"annotations": {}, "uid": None, "labels": dict(self.manifests.secret_labels.get(name, {})),
                    "owners": []}  # fmt: skip
        kept = self.state.secret(name)
        if kept is None:
            return None
        return {"annotations": dict(kept.get("annotations") or {}), "uid": None, "labels": dict(MANAGED_BY),
                "owners": []}  # fmt: skip

    async def apply_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, bytes],
        *,
        owner: Mapping[str, Any],
        annotations: Mapping[str, str] | None = None,
        component: str,
        create_only: bool = False,
    ) -> bool:
        if name in self.manifests.secrets or (create_only and self.state.secret(name) is not None):
            return False
        kept = {
            "component": component,
            "annotations": dict(annotations or {}),
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        self.state.write(kept, "secrets", f"{name}.json")
        return True
