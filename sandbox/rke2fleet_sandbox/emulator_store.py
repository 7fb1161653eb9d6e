"""In-memory object storage with the API server's write semantics and a replayable watch history.

Every mutating method is synchronous: on one event loop a write, its resourceVersion and the
watch events it publishes happen atomically, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import dataclasses
import datetime
import uuid
from collections.abc import Callable
from typing import Any

from rke2fleet_sandbox import emulator_errors as errors
from rke2fleet_sandbox.emulator_registry import CRD_GROUP, DEFAULT_NAMESPACES, Registry, ResourceDef, resources_of_crd
from rke2fleet_sandbox.emulator_selectors import Predicate

ObjectKey = tuple[str, str, str, str]  # group, plural, namespace ("" if cluster-scoped), name
Transform = Callable[[dict[str, Any]], dict[str, Any]]

# metadata fields only the server sets; a client's values are ignored on create and update.
_SERVER_OWNED_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                          "generation", "selfLink")


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta


@dataclasses.dataclass(frozen=True)
class Change:
    """One committed write, as the watch history keeps it."""

    rv: int
    storage_key: tuple[str, str]
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None  # the previous state, so selector watches can see objects leave


class ExpiredError(Exception):
    """The requested resourceVersion is older than the retained history."""


@dataclasses.dataclass(eq=False)
class Watcher:
    storage_key: tuple[str, str]
    namespace: str | None
    predicate: Predicate
    queue: asyncio.Queue[Change | None] = dataclasses.field(default_factory=asyncio.Queue)  # None: closing


class ObjectStore:
    def __init__(self, registry: Registry, history_limit: int = 100_000) -> None:
        self.registry = registry
        self._objects: dict[ObjectKey, dict[str, Any]] = {}
        self._rv = 0
        self._history: collections.deque[Change] = collections.deque(maxlen=history_limit)
        self._watchers: set[Watcher] = set()
        ns_def = registry.lookup("", "v1", "namespaces")
        assert ns_def is not None
        for namespace in DEFAULT_NAMESPACES:
            self.create(ns_def, None, {"metadata": {"name": namespace}})

    # ---- reading

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def get(self, res: ResourceDef, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._objects.get(self._key(res, namespace, name))
        if obj is None:
            raise errors.not_found(res.group, res.plural, name)
        return self.render(res, obj)

    def list_objects(self, res: ResourceDef, namespace: str | None, predicate: Predicate) -> list[dict[str, Any]]:
        items = []
        for (group, plural, ns, _), obj in sorted(self._objects.items()):
            if (group, plural) == res.storage_key and (namespace is None or ns == namespace):
                if predicate(obj):
                    items.append(self.render(res, obj))
        return items

    @staticmethod
    def render(res: ResourceDef, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy as served through `res` (the version asked for decides apiVersion)."""
        result = copy.deepcopy(obj)
        result["apiVersion"] = res.api_version
        result["kind"] = res.kind
        return result

    def crd_schema(self, group: str, version: str, plural: str) -> dict[str, Any] | None:
        """The openAPIV3Schema of a served custom resource version, if its CRD has one."""
        crd = self._objects.get((CRD_GROUP, "customresourcedefinitions", "", f"{plural}.{group}"))
        for served in ((crd or {}).get("spec") or {}).get("versions") or []:
            if served.get("name") == version:
                schema = (served.get("schema") or {}).get("openAPIV3Schema")
                return copy.deepcopy(schema) if isinstance(schema, dict) else None
        return None

    # ---- writing

    def create(self, res: ResourceDef, namespace: str | None, body: Any, dry_run: bool = False
               ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of a create must be a JSON object")
        obj = copy.deepcopy(body)
        meta = _meta(obj)
        namespace = self._check_namespace(res, namespace, meta)
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            name = self._generate_name(res, namespace, str(meta["generateName"]))
        if not name:
            raise errors.invalid(res.group, res.plural, "", "metadata.name: Required value: name or "
                                 "generateName is required")
        key = self._key(res, namespace, name)
        if key in self._objects:
            raise errors.already_exists(res.group, res.plural, name)
        if namespace:
            self._check_namespace_open(namespace)
        for field in (*_SERVER_OWNED_METADATA, "resourceVersion"):
            meta.pop(field, None)
        meta["name"] = name
        if namespace:
            meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        if res.has_generation:
            meta["generation"] = 1
        if res.has_status and res.storage_key != ("", "namespaces"):
            obj.pop("status", None)  # with a status subresource, create ignores status too
        obj = self._defaults_on_write(res, obj, None)
        if dry_run:
            return self.render(res, obj)
        self._commit(res, key, obj, None)
        self._after_create(res, obj)
        return self.render(res, obj)

    def update(self, res: ResourceDef, namespace: str | None, name: str, transform: Transform, *,
               subresource: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """PUT and PATCH: `transform` maps the current object to the desired one."""
        key = self._key(res, namespace, name)
        old = self._objects.get(key)
        if old is None:
            raise errors.not_found(res.group, res.plural, name)
        desired = transform(self.render(res, old))
        if not isinstance(desired, dict):
            raise errors.bad_request("the result of an update must be a JSON object")
        new = self._merge_update(res, old, desired, subresource)
        if new is None:  # a no-op write: the real server neither bumps resourceVersion nor notifies
            return self.render(res, old)
        if dry_run:
            return self.render(res, new)
        meta = _meta(new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._commit(res, key, new, old, "DELETED")
            self._after_deleted(res, new)
        else:
            self._commit(res, key, new, old)
            self._after_update(res, new)
        return self.render(res, new)

    def delete(self, res: ResourceDef, namespace: str | None, name: str,
               preconditions: dict[str, Any] | None = None, dry_run: bool = False) -> dict[str, Any]:
        key = self._key(res, namespace, name)
        old = self._objects.get(key)
        if old is None:
            raise errors.not_found(res.group, res.plural, name)
        old_meta = _meta(old)
        preconditions = preconditions or {}
        for field in ("uid", "resourceVersion"):
            if preconditions.get(field) and preconditions[field] != old_meta.get(field):
                raise errors.conflict(res.group, res.plural, name)
        if dry_run:
            return self.render(res, old)
        if old_meta.get("deletionTimestamp"):
            return self.render(res, old)  # already being deleted: waiting for its finalizers
        if old_meta.get("finalizers"):
            new = copy.deepcopy(old)
            _meta(new)["deletionTimestamp"] = _now()
            _meta(new)["deletionGracePeriodSeconds"] = 0
            if res.storage_key == ("", "namespaces"):
                new.setdefault("status", {})["phase"] = "Terminating"
            self._commit(res, key, new, old)
            self._after_delete_marked(res, new)
            return self.render(res, new)
        if res.storage_key == ("", "namespaces"):
            return self._delete_namespace(res, key, old)
        self._commit(res, key, copy.deepcopy(old), old, "DELETED")
        self._after_deleted(res, old)
        return self.render(res, old)

    # ---- watching

    def subscribe(self, res: ResourceDef, namespace: str | None, predicate: Predicate,
                  since: int | None) -> tuple[Watcher, list[Change]]:
        """A live watcher plus the retained changes after `since` (None: no replay)."""
        backlog: list[Change] = []
        if since is not None and since < self._rv:
            oldest = self._history[0].rv if self._history else self._rv + 1
            if since < oldest - 1:
                raise ExpiredError(f"too old resource version: {since} ({oldest - 1})")
            backlog = [c for c in self._history if c.rv > since and c.storage_key == res.storage_key]
        watcher = Watcher(res.storage_key, namespace, predicate)
        self._watchers.add(watcher)
        return watcher, backlog

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close_watchers(self) -> None:
        """End every open watch (server shutdown)."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)

    # ---- internals

    def _key(self, res: ResourceDef, namespace: str | None, name: str) -> ObjectKey:
        return (res.group, res.plural, (namespace or "") if res.namespaced else "", name)

    def _check_namespace(self, res: ResourceDef, namespace: str | None, meta: dict[str, Any]) -> str:
        if not res.namespaced:
            meta.pop("namespace", None)
            return ""
        body_ns = meta.get("namespace")
        if namespace and body_ns and body_ns != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                     "sent on the request")
        resolved = namespace or body_ns
        if not resolved:
            raise errors.bad_request("a namespaced object needs a namespace")
        return str(resolved)

    def _check_namespace_open(self, namespace: str) -> None:
        ns = self._objects.get(("", "namespaces", "", namespace))
        if ns is None:
            raise errors.not_found("", "namespaces", namespace)
        if _meta(ns).get("deletionTimestamp"):
            raise errors.ApiError(403, "Forbidden", f"unable to create new content in namespace {namespace} "
                                  "because it is being terminated")

    def _generate_name(self, res: ResourceDef, namespace: str, prefix: str) -> str:
        alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the real server's alphabet (no vowels, no 0/1/3)
        for _ in range(16):
            suffix = "".join(alphabet[b % len(alphabet)] for b in uuid.uuid4().bytes[:5])
            if self._key(res, namespace, prefix + suffix) not in self._objects:
                return prefix + suffix
        raise errors.ApiError(409, "AlreadyExists", "could not generate a unique name")

    def _merge_update(self, res: ResourceDef, old: dict[str, Any], desired: dict[str, Any],
                      subresource: str | None) -> dict[str, Any] | None:
        """The object to store, or None when nothing changes."""
        old_meta = _meta(old)
        desired_meta = _meta(desired)
        wanted_rv = desired_meta.get("resourceVersion")
        if wanted_rv not in (None, "") and str(wanted_rv) != old_meta.get("resourceVersion"):
            raise errors.conflict(res.group, res.plural, old_meta["name"])
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in desired:
                new["status"] = copy.deepcopy(desired["status"])
            else:
                new.pop("status", None)
        elif subresource is not None:
            raise errors.resource_not_found(f"{res.qualified}/{subresource}")
        else:
            new = copy.deepcopy(desired)
            if res.has_status:  # the main endpoint ignores status changes
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            new_meta = _meta(new)
            for field in ("name", "namespace", *_SERVER_OWNED_METADATA):
                if field in old_meta:
                    new_meta[field] = old_meta[field]
                else:
                    new_meta.pop(field, None)
            if old_meta.get("deletionTimestamp"):
                added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise errors.invalid(res.group, res.plural, old_meta["name"],
                                         "metadata.finalizers: Forbidden: no new finalizers can be added "
                                         "if the object is being deleted")
        new.pop("apiVersion", None)
        new.pop("kind", None)
        new = self._defaults_on_write(res, new, old)
        _meta(new)["resourceVersion"] = old_meta.get("resourceVersion")
        _meta(new).pop("managedFields", None)
        comparable_old = {k: v for k, v in old.items() if k not in ("apiVersion", "kind")}
        comparable_old["metadata"] = {k: v for k, v in old_meta.items() if k != "managedFields"}
        if new == comparable_old:
            return None
        if res.has_generation and self._generation_changed(res, old, new):
            _meta(new)["generation"] = int(old_meta.get("generation") or 0) + 1
        return new

    @staticmethod
    def _generation_changed(res: ResourceDef, old: dict[str, Any], new: dict[str, Any]) -> bool:
        ignored = {"metadata", "apiVersion", "kind"} | ({"status"} if res.has_status else set())
        return {k: v for k, v in old.items() if k not in ignored} != \
            {k: v for k, v in new.items() if k not in ignored}

    @staticmethod
    def _defaults_on_write(res: ResourceDef, obj: dict[str, Any], old: dict[str, Any] | None
                           ) -> dict[str, Any]:
        if res.storage_key == ("", "secrets"):
            string_data = obj.pop("stringData", None) or {}
            if string_data:
                data = obj.setdefault("data", {}) or {}
                for key, value in string_data.items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
                obj["data"] = data
            obj.setdefault("type", "Opaque")
        if res.storage_key == ("", "namespaces"):
            obj.setdefault("spec", {})
            status = obj.setdefault("status", {})
            if not isinstance(status, dict) or not status.get("phase"):
                obj["status"] = {"phase": "Active"}
        return obj

    def _commit(self, res: ResourceDef, key: ObjectKey, new: dict[str, Any], old: dict[str, Any] | None,
                change_type: str | None = None) -> None:
        self._rv += 1
        new.pop("apiVersion", None)
        new.pop("kind", None)
        _meta(new)["resourceVersion"] = str(self._rv)
        kind = change_type or ("ADDED" if old is None else "MODIFIED")
        if kind == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = new
        change = Change(self._rv, res.storage_key, kind, new, old)
        self._history.append(change)
        for watcher in self._watchers:
            if watcher.storage_key == res.storage_key:
                watcher.queue.put_nowait(change)

    # ---- side effects of particular kinds

    def _after_create(self, res: ResourceDef, obj: dict[str, Any]) -> None:
        if res.storage_key == (CRD_GROUP, "customresourcedefinitions"):
            self._establish_crd(res, obj)

    def _after_update(self, res: ResourceDef, obj: dict[str, Any]) -> None:
        if res.storage_key == (CRD_GROUP, "customresourcedefinitions"):
            spec = obj.get("spec") or {}
            names = spec.get("names") or {}
            if spec.get("group") and names.get("plural"):
                self.registry.remove_crd(spec["group"], names["plural"])
                for served in resources_of_crd(obj):
                    self.registry.add(served)

    def _after_delete_marked(self, res: ResourceDef, obj: dict[str, Any]) -> None:
        if res.storage_key == ("", "namespaces"):
            self._delete_contents(_meta(obj)["name"])

    def _after_deleted(self, res: ResourceDef, obj: dict[str, Any]) -> None:
        if res.storage_key == (CRD_GROUP, "customresourcedefinitions"):
            spec = obj.get("spec") or {}
            group, plural = spec.get("group"), (spec.get("names") or {}).get("plural")
            served = [r for r in self.registry.all() if (r.group, r.plural) == (group, plural)]
            for key in [k for k in self._objects if (k[0], k[1]) == (group, plural)]:
                if served:
                    gone_obj = self._objects[key]
                    self._commit(served[0], key, copy.deepcopy(gone_obj), gone_obj, "DELETED")
            if group and plural:
                self.registry.remove_crd(group, plural)
        namespace = _meta(obj).get("namespace")
        if namespace:
            self._maybe_finish_namespace(namespace)

    def _establish_crd(self, res: ResourceDef, obj: dict[str, Any]) -> None:
        try:
            served = resources_of_crd(obj)
        except (KeyError, TypeError) as exc:
            raise errors.invalid(res.group, res.plural, _meta(obj).get("name", ""), f"spec: {exc}") from exc
        for resource in served:
            self.registry.add(resource)
        names = (obj.get("spec") or {}).get("names") or {}
        key = self._key(res, None, _meta(obj)["name"])
        established = copy.deepcopy(obj)
        established["status"] = {
            "acceptedNames": copy.deepcopy(names),
            "storedVersions": [v["name"] for v in (obj.get("spec") or {}).get("versions") or []
                               if v.get("storage")],
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": _now()}
                for t, r, m in (
                    ("NamesAccepted", "NoConflicts", "no conflicts found"),
                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                )
            ],
        }
        self._commit(res, key, established, obj)

    def _delete_namespace(self, res: ResourceDef, key: ObjectKey, old: dict[str, Any]) -> dict[str, Any]:
        terminating = copy.deepcopy(old)
        _meta(terminating)["deletionTimestamp"] = _now()
        terminating["status"] = {"phase": "Terminating"}
        self._commit(res, key, terminating, old)
        rendered = self.render(res, terminating)
        self._delete_contents(key[3])
        self._maybe_finish_namespace(key[3])
        return rendered

    def _delete_contents(self, namespace: str) -> None:
        for key in [k for k in self._objects if k[2] == namespace]:
            served = [r for r in self.registry.all() if r.storage_key == (key[0], key[1])]
            if served and key in self._objects:
                self.delete(served[0], namespace, key[3])

    def _maybe_finish_namespace(self, namespace: str) -> None:
        ns_key: ObjectKey = ("", "namespaces", "", namespace)
        ns = self._objects.get(ns_key)
        if ns is None or not _meta(ns).get("deletionTimestamp") or _meta(ns).get("finalizers"):
            return
        if any(k[2] == namespace for k in self._objects):
            return
        ns_def = self.registry.lookup("", "v1", "namespaces")
        assert ns_def is not None
        self._commit(ns_def, ns_key, copy.deepcopy(ns), ns, "DELETED")
