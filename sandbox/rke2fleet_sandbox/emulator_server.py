"""The HTTP side of the emulator: a kmock `KubernetesEmulator` whose storage follows the API server.

kmock's own emulator merges JSON blindly; this subclass keeps kmock's server, request log and
reaction DSL (so a test can still inject faults, e.g. `emu['patch', kmock.resource(...)] << 500`,
which win over the emulation), and serves everything else from `ObjectStore`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import math
import time
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import rendering

from rke2fleet_sandbox import emulator_errors as errors
from rke2fleet_sandbox.emulator_errors import ApiError
from rke2fleet_sandbox.emulator_patch import json_patch, merge_patch, strategic_merge_patch
from rke2fleet_sandbox.emulator_registry import CRD_GROUP, Registry, ResourceDef, load_fleet_crds
from rke2fleet_sandbox.emulator_selectors import Predicate, field_selector, label_selector
from rke2fleet_sandbox.emulator_store import Change, ExpiredError, ObjectStore

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
SERVER_VERSION = {"major": "1", "minor": "35", "gitVersion": "v1.35.7+rke2fleet-emulator",
                  "platform": "linux/amd64", "goVersion": "go1.24", "compiler": "gc"}


@dataclasses.dataclass(frozen=True)
class ApiPath:
    """A resource URL taken apart: /api(s)/<group>/<version>/[namespaces/<ns>/]<plural>[/<name>[/<sub>]]."""

    group: str
    version: str
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_api_path(path: str) -> ApiPath | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    namespace_itself = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if len(rest) >= 3 and rest[0] == "namespaces" and not namespace_itself:  # .../namespaces/<ns>/<plural>
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return ApiPath(group, version, plural, namespace, name, subresource)


def _verb(method: str, path: ApiPath, query: dict[str, str]) -> str:
    if method == "GET":
        if query.get("watch") in ("true", "1"):
            return "watch"
        return "get" if path.name else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if path.name else "deletecollection"
    return method.lower()


def _body_json(body: bytes, required: bool = True) -> Any:
    if not body.strip():
        if required:
            raise errors.bad_request("the request has no body")
        return None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise errors.bad_request(f"the body is not valid JSON: {exc}") from exc


def _json_response(body: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(body).encode(), status=status,
                                content_type="application/json")


@attrs.define(kw_only=True)
class FleetEmulator(kmock.KubernetesEmulator):
    """Kubernetes API semantics for Kopf, the operator, the `kubernetes` client and kubectl."""

    crds: list[dict[str, Any]] | None = None  # None: the project's CRDs (crdgen, crds/, built-in)
    bookmark_interval: float = 30.0  # Kopf reconnects a watch that is silent for 70 s
    audit_limit: int = 200_000
    history_limit: int = 100_000

    registry: Registry = attrs.field(init=False)
    store: ObjectStore = attrs.field(init=False)
    crds_source: str = attrs.field(init=False, default="")
    _audit: list[dict[str, Any]] = attrs.field(init=False, factory=list)
    _audit_dropped: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        # kmock's own fallbacks (blind storage, approximate discovery) are deliberately not registered.
        self.registry = Registry()
        self.store = ObjectStore(self.registry, history_limit=self.history_limit)
        crds = self.crds
        if crds is None:
            crds, self.crds_source = load_fleet_crds()
        else:
            self.crds_source = "given"
        crd_def = self.registry.lookup(CRD_GROUP, "v1", "customresourcedefinitions")
        assert crd_def is not None
        for crd in crds:
            self.store.create(crd_def, None, crd)

    # ---- audit

    def audit_log(self) -> list[dict[str, Any]]:
        return list(self._audit)

    def reset_audit(self) -> None:
        self._audit.clear()
        self._audit_dropped = 0

    def audit_counts(self) -> dict[str, Any]:
        by_verb: dict[str, int] = {}
        for entry in self._audit:
            by_verb[entry["verb"]] = by_verb.get(entry["verb"], 0) + 1
        writes = sum(n for verb, n in by_verb.items() if verb in WRITE_VERBS)
        return {"total": len(self._audit), "writes": writes, "byVerb": by_verb,
                "dropped": self._audit_dropped}

    def _record(self, raw: aiohttp.web.BaseRequest, verb: str, path: ApiPath | None, code: int) -> None:
        if raw.path.startswith("/_sandbox/"):
            return
        self._audit.append({
            "time": time.time(),
            "verb": verb,
            "apiGroup": path.group if path else None,
            "apiVersion": path.version if path else None,
            "resource": path.plural if path else None,
            "subresource": path.subresource if path else None,
            "namespace": path.namespace if path else None,
            "name": path.name if path else None,
            "path": raw.path,
            "code": code,
            "userAgent": raw.headers.get("User-Agent", ""),
        })
        if len(self._audit) > self.audit_limit:
            excess = len(self._audit) - self.audit_limit
            del self._audit[:excess]
            self._audit_dropped += excess

    def close_watches(self) -> None:
        self.store.close_watchers()

    # ---- entry point (aiohttp low-level server handler)

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw.read()
        path = parse_api_path(raw.path)
        verb = _verb(raw.method, path, dict(raw.query)) if path else raw.method.lower()
        user_response = await self._user_reaction(raw)
        if user_response is not None:
            self._record(raw, verb, path, user_response.status)
            return user_response
        if verb == "watch" and path is not None:
            self._record(raw, verb, path, 200)
        try:
            response = await self._route(raw, path, verb, body)
        except ApiError as exc:
            response = _json_response(exc.status_body(), exc.code)
        except Exception as exc:  # an emulator bug must look like a server error, not a dropped connection
            internal = ApiError(500, "InternalError", f"{type(exc).__name__}: {exc}")
            response = _json_response(internal.status_body(), 500)
        if verb != "watch" or path is None:
            self._record(raw, verb, path, response.status)
        return response

    async def _user_reaction(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse | None:
        """A reaction a test declared with kmock's DSL takes precedence over the emulation."""
        user_payloads = [p for p in self._payloads if not p.priorities or p.priorities[0] != -math.inf]
        if not user_payloads:
            return None
        try:
            request = await rendering.Request._parse(raw, id=len(self._requests))
        except Exception:
            return None  # a URL kmock cannot parse cannot match a reaction either
        self._requests.append(request)
        if len(self._requests) > 10_000:  # kmock keeps every request; bound it for long runs
            del self._requests[:5_000]
        for payload in user_payloads:
            if request in payload._source and not payload._disabled.is_set():
                try:
                    response: aiohttp.web.StreamResponse = await payload(request)
                    return response
                except rendering.ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
                except kmock.KubernetesError as exc:
                    error = ApiError(exc.status, exc.reason or "", exc.message or "")
                    return _json_response(error.status_body(), exc.status)
        return None

    # ---- routing

    async def _route(self, raw: aiohttp.web.BaseRequest, path: ApiPath | None, verb: str, body: bytes
                     ) -> aiohttp.web.StreamResponse:
        if path is None:
            return self._serve_plain(raw)
        if path.plural is None:
            return self._serve_discovery(path)
        res = self.registry.lookup(path.group, path.version, path.plural)
        if res is None or (path.namespace and not res.namespaced):
            raise errors.resource_not_found(raw.path)
        namespace = path.namespace if res.namespaced else None
        query = dict(raw.query)
        dry_run = bool(query.get("dryRun"))
        if path.subresource and (path.subresource != "status" or not res.has_status):
            raise errors.resource_not_found(raw.path)
        if verb == "watch":
            return await self._emulate_watch(raw, res, namespace, path.name, query)
        if verb == "list":
            return _json_response(self._emulate_list(res, namespace, query))
        if verb == "deletecollection":
            return _json_response(self._emulate_delete_collection(res, namespace, query, dry_run))
        if verb == "create":
            if path.subresource:
                raise errors.method_not_allowed("create is not allowed on a subresource")
            return _json_response(self.store.create(res, namespace, _body_json(body), dry_run), 201)
        assert path.name is not None
        name = path.name
        if verb == "get":
            return _json_response(self.store.get(res, namespace, name))
        if verb == "update":
            replacement = _body_json(body)
            return _json_response(self.store.update(res, namespace, name, lambda _old: replacement,
                                                    subresource=path.subresource, dry_run=dry_run))
        if verb == "patch":
            return await self._emulate_patch(raw, body, res, namespace, name, path.subresource, dry_run)
        if verb == "delete":
            options = _body_json(body, required=False) or {}
            deleted = self.store.delete(res, namespace, name, options.get("preconditions"), dry_run)
            return _json_response(deleted)
        raise errors.method_not_allowed(f"{raw.method} is not supported")

    def _serve_plain(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw.path == "/_sandbox/audit" and raw.method == "GET":
            return _json_response(self.audit_log())
        if raw.path == "/_sandbox/audit/counts" and raw.method == "GET":
            return _json_response(self.audit_counts())
        if raw.path == "/_sandbox/audit/reset" and raw.method == "POST":
            self.reset_audit()
            return _json_response({"reset": True})
        if raw.method != "GET":
            raise errors.method_not_allowed(f"{raw.method} {raw.path}")
        if raw.path in ("/healthz", "/livez", "/readyz"):
            return aiohttp.web.Response(text="ok")
        if raw.path == "/version":
            return _json_response(SERVER_VERSION)
        if raw.path == "/api":
            return _json_response(self.registry.api_versions())
        if raw.path == "/apis":
            return _json_response(self.registry.api_group_list())
        if raw.path == "/":
            paths = {"/api", "/api/v1", "/apis", "/version", "/healthz"}
            for group, versions in self.registry.groups().items():
                if group:
                    paths.add(f"/apis/{group}")
                    paths.update(f"/apis/{group}/{v}" for v in versions)
            return _json_response({"paths": sorted(paths)})
        if raw.path == "/openapi/v3":
            return _json_response(self.registry.openapi_index())
        if raw.path.startswith("/openapi/v3/"):
            doc = self.registry.openapi_document(raw.path.removeprefix("/openapi/v3/"), self.store)
            if doc is not None:
                return _json_response(doc)
        if raw.path.startswith("/apis/") and raw.path.count("/") == 2:  # /apis/<group>
            group_doc = self.registry.api_group(raw.path.split("/")[2])
            if group_doc is not None:
                return _json_response(group_doc)
        raise errors.resource_not_found(raw.path)

    def _serve_discovery(self, path: ApiPath) -> aiohttp.web.StreamResponse:
        doc = self.registry.resource_list(path.group, path.version)
        if doc is None:
            raise errors.resource_not_found(f"/apis/{path.group}/{path.version}")
        return _json_response(doc)

    @staticmethod
    def _predicate(res: ResourceDef, query: dict[str, str], name: str | None = None) -> Predicate:
        labels = label_selector(query.get("labelSelector"))
        fields = field_selector(query.get("fieldSelector"))
        return lambda obj: (labels(obj) and fields(obj)
                            and (name is None or (obj.get("metadata") or {}).get("name") == name))

    # ---- list

    def _emulate_list(self, res: ResourceDef, namespace: str | None, query: dict[str, str]) -> dict[str, Any]:
        items = self.store.list_objects(res, namespace, self._predicate(res, query))
        list_rv = self.store.resource_version
        offset = 0
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"]))
                list_rv, offset = str(token["rv"]), int(token["offset"])
            except (ValueError, KeyError, TypeError) as exc:
                raise errors.bad_request("invalid continue token") from exc
        metadata: dict[str, Any] = {"resourceVersion": list_rv}
        limit = int(query.get("limit") or 0)
        if limit > 0:
            if offset + limit < len(items):
                token_json = json.dumps({"rv": list_rv, "offset": offset + limit}).encode()
                metadata["continue"] = base64.urlsafe_b64encode(token_json).decode()
                metadata["remainingItemCount"] = len(items) - offset - limit
            items = items[offset:offset + limit]
        else:
            items = items[offset:]
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": metadata,
                "items": items}

    def _emulate_delete_collection(self, res: ResourceDef, namespace: str | None, query: dict[str, str],
                                 dry_run: bool) -> dict[str, Any]:
        items = self.store.list_objects(res, namespace, self._predicate(res, query))
        deleted = [self.store.delete(res, item["metadata"].get("namespace"), item["metadata"]["name"],
                                     dry_run=dry_run) for item in items]
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                "metadata": {"resourceVersion": self.store.resource_version}, "items": deleted}

    # ---- patch

    async def _emulate_patch(self, raw: aiohttp.web.BaseRequest, body: bytes, res: ResourceDef,
                           namespace: str | None, name: str, subresource: str | None, dry_run: bool
                           ) -> aiohttp.web.StreamResponse:
        content_type = (raw.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type == "application/apply-patch+yaml":
            return self._emulate_apply(raw, body, res, namespace, name, subresource, dry_run)
        try:
            patch = json.loads(body)
        except ValueError as exc:
            raise errors.bad_request(f"the patch is not valid JSON: {exc}") from exc
        if content_type == "application/merge-patch+json":
            return _json_response(self.store.update(res, namespace, name, lambda old: merge_patch(old, patch),
                                                    subresource=subresource, dry_run=dry_run))
        if content_type == "application/strategic-merge-patch+json":
            if res.group not in ("", "events.k8s.io"):
                raise errors.unsupported_media_type(content_type)  # as for custom resources on a real server
            return _json_response(self.store.update(
                res, namespace, name, lambda old: strategic_merge_patch(old, patch),
                subresource=subresource, dry_run=dry_run))
        if content_type == "application/json-patch+json":
            return _json_response(self.store.update(res, namespace, name, lambda old: json_patch(old, patch),
                                                    subresource=subresource, dry_run=dry_run))
        raise errors.unsupported_media_type(content_type)

    def _emulate_apply(self, raw: aiohttp.web.BaseRequest, body: bytes, res: ResourceDef, namespace: str | None,
                     name: str, subresource: str | None, dry_run: bool) -> aiohttp.web.StreamResponse:
        """Server-side apply, approximated: create when absent, else a merge of the applied fields.

        Field ownership is not tracked, so fields dropped from a re-applied manifest are kept.
        """
        if not raw.query.get("fieldManager"):
            raise errors.bad_request("PATCH with apply-patch+yaml requires a non-empty fieldManager")
        try:
            applied = yaml.safe_load(body or b"")
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"the applied configuration is not valid YAML: {exc}") from exc
        if not isinstance(applied, dict):
            raise errors.bad_request("the applied configuration must be an object")
        meta = applied.setdefault("metadata", {})
        if meta.get("name") not in (None, name):
            raise errors.bad_request("the name of the object does not match the name on the URL")
        meta["name"] = name
        try:
            self.store.get(res, namespace, name)
        except ApiError as exc:
            if exc.code != 404 or subresource:
                raise
            return _json_response(self.store.create(res, namespace, applied, dry_run), 201)
        return _json_response(self.store.update(res, namespace, name, lambda old: _apply_merge(old, applied),
                                                subresource=subresource, dry_run=dry_run))

    # ---- watch

    async def _emulate_watch(self, raw: aiohttp.web.BaseRequest, res: ResourceDef, namespace: str | None,
                           name: str | None, query: dict[str, str]) -> aiohttp.web.StreamResponse:
        predicate = self._predicate(res, query, name)
        since_text = query.get("resourceVersion") or ""
        initial = since_text in ("", "0") or query.get("sendInitialEvents") == "true"
        try:
            since = None if since_text in ("", "0") else int(since_text)
        except ValueError as exc:
            raise errors.bad_request(f"invalid resourceVersion {since_text!r}") from exc
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        try:
            watcher, backlog = self.store.subscribe(res, namespace, predicate, None if initial else since)
        except ExpiredError as exc:  # as the real server: a 200 stream carrying one 410 ERROR event
            await response.prepare(raw)
            await response.write(json.dumps({"type": "ERROR", "object": errors.gone(str(exc)).status_body()})
                                 .encode() + b"\n")
            return response
        initial_items = self.store.list_objects(res, namespace, predicate) if initial else []
        bookmarks = query.get("allowWatchBookmarks") == "true"
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            await response.prepare(raw)
            for item in initial_items:
                await self._write_event(response, {"type": "ADDED", "object": item})
            if query.get("sendInitialEvents") == "true":
                await self._write_event(response, self._bookmark(res, {"k8s.io/initial-events-end": "true"}))
            for change in backlog:
                await self._write_change(response, res, namespace, predicate, change)
            next_bookmark = time.monotonic() + self.bookmark_interval
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if raw.transport is None or raw.transport.is_closing():
                    break  # the client went away; aiohttp does not cancel the handler for us
                wait = min(5.0, next_bookmark - now, *(() if deadline is None else (deadline - now,)))
                try:
                    pending = await asyncio.wait_for(watcher.queue.get(), timeout=max(wait, 0.01))
                except TimeoutError:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        await self._write_event(response, self._bookmark(res, None))
                        next_bookmark = time.monotonic() + self.bookmark_interval
                    continue
                if pending is None:
                    break  # the server is shutting down
                await self._write_change(response, res, namespace, predicate, pending)
        except (ConnectionError, aiohttp.ClientConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unsubscribe(watcher)
        with contextlib.suppress(ConnectionError, aiohttp.ClientConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    def _bookmark(self, res: ResourceDef, annotations: dict[str, str] | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"resourceVersion": self.store.resource_version}
        if annotations:
            metadata["annotations"] = annotations
        return {"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version,
                                                "metadata": metadata}}

    @staticmethod
    async def _write_event(response: aiohttp.web.StreamResponse, event: dict[str, Any]) -> None:
        await response.write(json.dumps(event).encode() + b"\n")

    async def _write_change(self, response: aiohttp.web.StreamResponse, res: ResourceDef,
                            namespace: str | None, predicate: Predicate, change: Change) -> None:
        event_type = _translate(change, namespace, predicate)
        if event_type is not None:
            rendered = ObjectStore.render(res, change.obj)
            await self._write_event(response, {"type": event_type, "object": rendered})


def _translate(change: Change, namespace: str | None, predicate: Predicate) -> str | None:
    """The event a filtered watch sees: objects entering or leaving a selector are ADDED/DELETED."""
    if namespace is not None and (change.obj.get("metadata") or {}).get("namespace") != namespace:
        return None
    now_matches = predicate(change.obj)
    was_matching = change.old is not None and predicate(change.old)
    if change.type == "ADDED":
        return "ADDED" if now_matches else None
    if change.type == "DELETED":
        return "DELETED" if now_matches or was_matching else None
    if now_matches:
        return "MODIFIED" if was_matching else "ADDED"
    return "DELETED" if was_matching else None


def _apply_merge(old: Any, applied: Any) -> Any:
    """Server-side apply without ownership: applied values win, nothing is removed."""
    if isinstance(old, dict) and isinstance(applied, dict):
        merged = dict(old)
        for key, value in applied.items():
            merged[key] = _apply_merge(old.get(key), value)
        return merged
    return applied
