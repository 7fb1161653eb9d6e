"""The engine's two ways out: the hosts and the store.

`Hosts` is what the SSH pool offers (rke2fleet.hostaccess.SSHPool is the implementation);
`Store` is the management cluster's objects as the engine needs them: list a cluster and its
nodes, write a status, read and write Secrets. The Kubernetes API (through Kopf's indexes) is one
store (store.kube), an in-memory one serves the unit tests (store.memory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from rke2fleet.engine.records import ClusterRecord, NodeRecord, ObjectRecord
from rke2fleet.hostaccess import CommandResult, HostTarget

Plural = Literal["rke2clusters", "rke2nodes", "rke2snapshots", "rke2restores"]


class Hosts(Protocol):
    async def run(
        self,
        target: HostTarget,
        argv: Sequence[str] | None = None,
        *,
        script: str | None = None,
        sudo: bool = True,
        input: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the remote command's own limit
        check: bool = True,
        secret_values: Sequence[str] = (),
    ) -> CommandResult: ...

    async def read_file(self, target: HostTarget, path: str, *, sudo: bool = True) -> bytes | None: ...

    async def write_file(
        self,
        target: HostTarget,
        path: str,
        data: bytes,
        *,
        mode: int = 0o600,
        owner: str = "root",
        group: str = "root",
    ) -> bool: ...

    async def put_file(self, target: HostTarget, path: str, source: Path, sha256: str, *, mode: int = 0o644) -> bool:
        """A local file streamed to the host, atomically (air-gap assets)."""
        ...

    def accepted_key(self, target: HostTarget) -> str | None: ...


class Store(Protocol):
    def cluster(self, namespace: str, name: str) -> ClusterRecord | None: ...

    def nodes(self, namespace: str, cluster: str) -> list[NodeRecord]:
        """The cluster's nodes as currently known (deleting ones included)."""
        ...

    def snapshot(self, namespace: str, name: str) -> ObjectRecord | None: ...

    def restores(self, namespace: str, cluster: str) -> list[ObjectRecord]:
        """The cluster's RKE2Restore objects (a restore under way pauses its reconcile)."""
        ...

    async def patch_status(self, plural: Plural, namespace: str, name: str, fields: Mapping[str, Any]) -> None: ...

    async def create_object(
        self, plural: Plural, namespace: str, name: str, spec: Mapping[str, Any], *,
        status: Mapping[str, Any] | None = None, annotations: Mapping[str, str] | None = None,
    ) -> bool:  # fmt: skip
        """Create an object (then its status); False when it exists already."""
        ...

    async def read_secret(self, namespace: str, name: str, shared: bool = False) -> dict[str, bytes] | None:
        """The Secret's data, None when it does not exist; `shared`: a read in flight will do."""
        ...

    async def read_secret_meta(self, namespace: str, name: str) -> dict[str, Any] | None: ...

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
        """Create or update an operator-owned Secret; True when it was written."""
        ...
