"""The few management-cluster calls the operator makes outside Kopf: Secrets and status patches.

The official client loads the credentials (kubeconfig or in-cluster, TLS, token refresh) and
owns the connection pool; the calls themselves are plain JSON over that pool. Its generated API
classes are not used: building `CoreV1Api` costs about a second of CPU at start-up (thousands
of pydantic models in kubernetes>=37) and a model round trip per call, for four endpoints.
Calls run in a thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import kubernetes
from kubernetes.client.exceptions import ApiException

from rke2fleet import GROUP, VERSION
from rke2fleet.engine.ownership import MANAGED_BY
from rke2fleet.engine.ports import Plural

REQUEST_TIMEOUT = 30.0



class KubeApi:
    def __init__(self) -> None:
        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
        self._client = kubernetes.client.ApiClient()
        # A bring-up of N nodes reads the same SSH key and token Secrets N times at once: readers
        # that allow it share the read in flight (started before they asked, but by a request
        # latency at most: a rotated token is seen by the next pass, as without sharing).
        self._inflight: dict[tuple[str, str], asyncio.Future[dict[str, bytes] | None]] = {}

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def _request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """One call (in a worker thread); the decoded JSON body. Non-2xx raises ApiException
        with the status, the reason and the API's own message, never the request body."""
        config = self._client.configuration
        headers = {"Accept": "application/json", "User-Agent": "rke2fleet"}
        for auth in config.auth_settings().values():  # refreshes an expiring token first
            if auth.get("in") == "header" and auth.get("value"):
                headers[auth["key"]] = auth["value"]
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        resp = self._client.rest_client.pool_manager.request(
            method, config.host + path, body=data, headers=headers, timeout=REQUEST_TIMEOUT
        )
        if not 200 <= resp.status < 300:
            raise ApiException(status=resp.status, reason=f"{resp.reason}: {_api_message(resp.data)}")
        return json.loads(resp.data) if resp.data else None

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """One call of another kind than the store's own (the leader Lease)."""
        return self._request(method, path, body, content_type)

    def _read(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret object, or None when it does not exist (runs in a worker thread)."""
        try:
            obj: dict[str, Any] = self._request("GET", _secret_path(namespace, name))
            return obj
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def read_secret(self, namespace: str, name: str, shared: bool = False) -> dict[str, bytes] | None:
        """The Secret's data (None when it does not exist); `shared`: a read of it already in
        flight will do."""
        key = (namespace, name)
        running = self._inflight.get(key) if shared else None
        if running is not None:
            await asyncio.wait([running])  # its failure or cancellation is not ours: read anew
            if not running.cancelled() and running.exception() is None:
                return running.result()
        future: asyncio.Future[dict[str, bytes] | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            obj = await asyncio.to_thread(self._read, namespace, name)
            data = None if obj is None else {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            future.set_result(data)
            return data
        finally:
            if not future.done():
                future.cancel()
            if self._inflight.get(key) is future:
                del self._inflight[key]

    async def read_secret_meta(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = await asyncio.to_thread(self._read, namespace, name)
        if obj is None:
            return None
        meta = obj.get("metadata") or {}
        return {"annotations": dict(meta.get("annotations") or {}), "uid": meta.get("uid"),
                "labels": dict(meta.get("labels") or {}),
                "owners": [str(o.get("uid")) for o in meta.get("ownerReferences") or []]}  # fmt: skip

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
                self._request("POST", _secret_path(namespace), body)
                return True
            except ApiException as exc:
                if exc.status != 409 or create_only:
                    if exc.status == 409:
                        return False
                    raise
            self._request("PATCH", _secret_path(namespace, name), body, "application/merge-patch+json")
            return True

        return await asyncio.to_thread(call)

    async def patch_status(self, plural: Plural, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        def call() -> None:
            ns, obj = quote(namespace, safe=""), quote(name, safe="")
            path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{plural}/{obj}/status"
            self._request("PATCH", path, {"status": dict(status)}, "application/merge-patch+json")

        await asyncio.to_thread(call)

    async def create_object(
        self, plural: Plural, namespace: str, name: str, spec: Mapping[str, Any], *,
        status: Mapping[str, Any] | None = None, annotations: Mapping[str, str] | None = None,
    ) -> bool:  # fmt: skip
        kind = {"rke2snapshots": "RKE2Snapshot", "rke2restores": "RKE2Restore"}[plural]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {
                "name": name, "namespace": namespace,
                "annotations": dict(annotations or {}), "labels": dict(MANAGED_BY),
            },
            "spec": dict(spec),
        }

        def call() -> bool:
            try:
                self._request("POST", f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{plural}", body)
            except ApiException as exc:
                if exc.status == 409:
                    return False
                raise
            return True

        created = await asyncio.to_thread(call)
        if created and status:
            await self.patch_status(plural, namespace, name, status)
        return created


def _secret_path(namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets"
    return f"{path}/{quote(name, safe='')}" if name else path


def _api_message(raw: bytes) -> str:
    """The `message` of a Kubernetes Status body (it names the object, never its data)."""
    try:
        status = json.loads(raw)
    except ValueError:
        return "(no Status in the response)"
    return str(status.get("message", "")) if isinstance(status, dict) else ""
