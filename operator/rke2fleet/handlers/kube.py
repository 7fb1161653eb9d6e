"""The few management-cluster calls the operator makes outside Kopf: Secrets and status patches.

The official client is synchronous; calls run in a thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from rke2fleet import GROUP, VERSION

MANAGED_BY = {"app.kubernetes.io/managed-by": "rke2fleet"}


class KubeApi:
    def __init__(self) -> None:
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
        self._client = kubernetes.client.ApiClient()
        self._core = kubernetes.client.CoreV1Api(self._client)
        self._custom = kubernetes.client.CustomObjectsApi(self._client)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def _read(self, namespace: str, name: str) -> Any | None:
        """The Secret object, or None when it does not exist (runs in a worker thread)."""
        try:
            return self._core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        obj = await asyncio.to_thread(self._read, namespace, name)
        return None if obj is None else {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}

    async def read_secret_meta(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = await asyncio.to_thread(self._read, namespace, name)
        if obj is None:
            return None
        meta = obj.metadata
        return {"annotations": dict((meta.annotations if meta else None) or {}), "uid": meta.uid if meta else None}

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
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    **MANAGED_BY,
                    "app.kubernetes.io/component": component,
                    f"{GROUP}/cluster": str(owner["name"]),
                },
                "annotations": dict(annotations or {}),
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "RKE2Cluster",
                        "name": owner["name"],
                        "uid": owner["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }

        def call() -> bool:
            try:
                self._core.create_namespaced_secret(namespace, body)  # type: ignore[arg-type]
                return True
            except ApiException as exc:
                if exc.status != 409 or create_only:
                    if exc.status == 409:
                        return False
                    raise
            self._core.patch_namespaced_secret(name, namespace, body)
            return True

        return await asyncio.to_thread(call)

    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        def call() -> None:
            self._custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": dict(status)}
            )

        await asyncio.to_thread(call)
