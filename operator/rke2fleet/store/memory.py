"""An in-memory store: objects and Secrets in dicts, status patches merged as the API merges
them. For the unit tests of the passes, and for drivers without a management cluster."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from rke2fleet.engine.ownership import MANAGED_BY
from rke2fleet.engine.ports import Plural
from rke2fleet.engine.records import ClusterRecord, NodeRecord, ObjectRecord


def merge(old: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386): null deletes, maps merge, anything else replaces."""
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class MemoryStore:
    def __init__(self) -> None:
        self.clusters: dict[tuple[str, str], ClusterRecord] = {}
        self.node_records: dict[tuple[str, str], NodeRecord] = {}
        self.secrets: dict[tuple[str, str], dict[str, bytes]] = {}
        self.secret_annotations: dict[tuple[str, str], dict[str, str]] = {}
        self.secret_labels: dict[tuple[str, str], dict[str, str]] = {}
        self.secret_owners: dict[tuple[str, str], list[str]] = {}
        self.objects: dict[tuple[str, str, str], ObjectRecord] = {}  # (plural, namespace, name)
        self.writes: list[tuple[str, str, str, dict[str, Any]]] = []  # (what, namespace, name, fields)

    # -- objects ----------------------------------------------------------------------------
    def put_cluster(self, record: ClusterRecord) -> None:
        self.clusters[record.key] = record

    def put_node(self, record: NodeRecord) -> None:
        self.node_records[record.key] = record

    def cluster(self, namespace: str, name: str) -> ClusterRecord | None:
        return self.clusters.get((namespace, name))

    def nodes(self, namespace: str, cluster: str) -> list[NodeRecord]:
        return sorted(
            (r for r in self.node_records.values() if r.namespace == namespace and r.cluster == cluster),
            key=lambda r: r.name,
        )

    def node(self, namespace: str, name: str) -> NodeRecord:
        return self.node_records[(namespace, name)]

    def snapshot(self, namespace: str, name: str) -> ObjectRecord | None:
        return self.objects.get(("rke2snapshots", namespace, name))

    def restores(self, namespace: str, cluster: str) -> list[ObjectRecord]:
        return [o for (p, ns, _), o in self.objects.items() if p == "rke2restores" and ns == namespace
                and o.cluster == cluster]  # fmt: skip

    async def create_object(
        self, plural: Plural, namespace: str, name: str, spec: Mapping[str, Any], *,
        status: Mapping[str, Any] | None = None, annotations: Mapping[str, str] | None = None,
    ) -> bool:  # fmt: skip
        if (plural, namespace, name) in self.objects:
            return False
        self.objects[(plural, namespace, name)] = ObjectRecord(namespace, name, dict(spec), dict(status or {}), 1,
                                                               dict(annotations or {}))  # fmt: skip
        self.writes.append((plural, namespace, name, {"created": True}))
        return True

    async def patch_status(self, plural: Plural, namespace: str, name: str, fields: Mapping[str, Any]) -> None:
        self.writes.append((plural, namespace, name, dict(fields)))
        if (plural, namespace, name) in self.objects:
            obj = self.objects[(plural, namespace, name)]
            self.objects[(plural, namespace, name)] = replace(obj, status=merge(obj.status, fields))
            return
        if plural == "rke2nodes":
            node = self.node_records[(namespace, name)]
            self.node_records[(namespace, name)] = replace(node, status=merge(node.status, fields))
        else:
            cluster = self.clusters[(namespace, name)]
            self.clusters[(namespace, name)] = replace(cluster, status=merge(cluster.status, fields))

    # -- Secrets ----------------------------------------------------------------------------
    async def read_secret(self, namespace: str, name: str, shared: bool = False) -> dict[str, bytes] | None:
        data = self.secrets.get((namespace, name))
        return dict(data) if data is not None else None

    async def read_secret_meta(self, namespace: str, name: str) -> dict[str, Any] | None:
        if (namespace, name) not in self.secrets:
            return None
        key = (namespace, name)
        return {
            "annotations": dict(self.secret_annotations.get(key, {})),
            "uid": None,
            "labels": dict(self.secret_labels.get(key, {})),
            "owners": list(self.secret_owners.get(key, [])),
        }

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
        if create_only and (namespace, name) in self.secrets:
            return False
        self.secrets[(namespace, name)] = dict(data)
        self.secret_annotations[(namespace, name)] = dict(annotations or {})
        self.secret_labels[(namespace, name)] = {**MANAGED_BY, "app.kubernetes.io/component": component}
        self.secret_owners[(namespace, name)] = [str(owner["uid"])] if owner.get("uid") else []
        self.writes.append(("secrets", namespace, name, {"component": component}))
        return True
