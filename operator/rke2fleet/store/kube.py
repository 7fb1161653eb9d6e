"""The management cluster as a store: listings from Kopf's indexes (kept current by its watches,
no API call), writes through the API (store.api)."""

from __future__ import annotations

from typing import Any

from rke2fleet.engine.records import ClusterRecord, NodeRecord, ObjectRecord
from rke2fleet.store.api import KubeApi


def _one(index: Any, key: Any) -> Any | None:
    try:
        store = index[key]
    except KeyError:
        return None
    for value in store:
        return value
    return None


def _many(index: Any, key: Any) -> list[Any]:
    try:
        return list(index[key])
    except KeyError:
        return []


class KubeStore(KubeApi):
    """The API's calls (Secrets, status) plus listings from `clusters` and `nodes`, the Kopf
    indexes of records (handlers.indexes), bound by the handlers (Kopf hands them to every
    handler; they are the same objects for its lifetime)."""

    def __init__(self) -> None:
        super().__init__()
        self.clusters: Any = {}
        self.node_index: Any = {}
        self.snapshot_index: Any = {}
        self.restore_index: Any = {}

    def bind(self, kw: dict[str, Any]) -> KubeStore:
        """The indexes from a handler's keyword arguments."""
        self.clusters, self.node_index = kw["clusters"], kw["nodes"]
        self.snapshot_index, self.restore_index = kw.get("snapshots", {}), kw.get("restores", {})
        return self

    def cluster(self, namespace: str, name: str) -> ClusterRecord | None:
        found: ClusterRecord | None = _one(self.clusters, (namespace, name))
        return found

    def nodes(self, namespace: str, cluster: str) -> list[NodeRecord]:
        return _many(self.node_index, (namespace, cluster))

    def snapshot(self, namespace: str, name: str) -> ObjectRecord | None:
        found: ObjectRecord | None = _one(self.snapshot_index, (namespace, name))
        return found

    def restores(self, namespace: str, cluster: str) -> list[ObjectRecord]:
        return _many(self.restore_index, (namespace, cluster))
