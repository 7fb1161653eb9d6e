"""The resources the emulator serves: built-in kinds, CRD-defined kinds, and discovery documents."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import yaml

FLEET_GROUP = "rke2fleet.io"
FLEET_VERSION = "v1alpha1"
CRD_GROUP = "apiextensions.k8s.io"

_ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclasses.dataclass(frozen=True)
class ResourceDef:
    """One served group/version/plural. Objects are stored per (group, plural), shared by versions."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False  # the status subresource
    has_generation: bool = False  # custom resources and CRDs track metadata.generation

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


BUILTIN_RESOURCES: tuple[ResourceDef, ...] = (
    ResourceDef("", "v1", "namespaces", "Namespace", False, "namespace", ("ns",), has_status=True),
    ResourceDef("", "v1", "secrets", "Secret", True, "secret"),
    ResourceDef("", "v1", "configmaps", "ConfigMap", True, "configmap", ("cm",)),
    ResourceDef("", "v1", "events", "Event", True, "event", ("ev",)),
    ResourceDef("events.k8s.io", "v1", "events", "Event", True, "event", ("ev",)),
    # Leader election: create, and update with resourceVersion preconditions (409 on a stale one).
    ResourceDef("coordination.k8s.io", "v1", "leases", "Lease", True, "lease"),
    ResourceDef(CRD_GROUP, "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
                "customresourcedefinition", ("crd", "crds"), has_status=True, has_generation=True),
)

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def resources_of_crd(crd: dict[str, Any]) -> list[ResourceDef]:
    """The served versions of a CustomResourceDefinition as resources."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    result = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        result.append(ResourceDef(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(),
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            has_status="status" in subresources,
            has_generation=True,
        ))
    return result


def _builtin_fleet_crd(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{CRD_GROUP}/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{FLEET_GROUP}"},
        "spec": {
            "group": FLEET_GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [{
                "name": FLEET_VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object",
                                               "x-kubernetes-preserve-unknown-fields": True}},
            }],
        },
    }


def _crds_from_documents(documents: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
            yield document


def load_fleet_crds(crds_dir: Path | None = None) -> tuple[list[dict[str, Any]], str]:
    """The project's CRDs and where they came from.

    Prefers `rke2fleet.api.crdgen.generate_crds()` (the source of truth), then `crds/*.yaml`,
    then a minimal built-in definition of the two kinds so the emulator works on its own.
    """
    try:
        crdgen = importlib.import_module("rke2fleet.api.crdgen")
        generated = list(_crds_from_documents(crdgen.generate_crds()))
        if generated:
            return generated, "rke2fleet.api.crdgen"
    except Exception:  # noqa: S110 - crdgen is optional while it is being written; fall back quietly
        pass
    # sandbox/rke2fleet_sandbox/ -> the repository's crds/ (in a source checkout)
    directory = crds_dir if crds_dir is not None else Path(__file__).resolve().parents[2] / "crds"
    from_files: list[dict[str, Any]] = []
    if directory.is_dir():
        for path in sorted(directory.glob("*.yaml")):
            from_files.extend(_crds_from_documents(yaml.safe_load_all(path.read_text())))
    if from_files:
        return from_files, str(directory)
    builtin = [_builtin_fleet_crd("RKE2Cluster", "rke2clusters"), _builtin_fleet_crd("RKE2Node", "rke2nodes")]
    return builtin, "built-in"


class CrdSource(Protocol):
    def crd_schema(self, group: str, version: str, plural: str) -> dict[str, Any] | None: ...


class Registry:
    """Served resources, keyed by (group, version, plural)."""

    def __init__(self) -> None:
        self._resources: dict[tuple[str, str, str], ResourceDef] = {}
        for resource in BUILTIN_RESOURCES:
            self.add(resource)

    def add(self, resource: ResourceDef) -> None:
        self._resources[(resource.group, resource.version, resource.plural)] = resource

    def remove_crd(self, group: str, plural: str) -> None:
        for key in [key for key in self._resources if key[0] == group and key[2] == plural]:
            del self._resources[key]

    def lookup(self, group: str, version: str, plural: str) -> ResourceDef | None:
        return self._resources.get((group, version, plural))

    def all(self) -> list[ResourceDef]:
        return list(self._resources.values())

    def groups(self) -> dict[str, list[str]]:
        """Group → versions, preferred (first-registered, then highest) first."""
        result: dict[str, list[str]] = {}
        for resource in self._resources.values():
            versions = result.setdefault(resource.group, [])
            if resource.version not in versions:
                versions.append(resource.version)
        return result

    # Discovery documents, shaped as the real server's legacy (non-aggregated) discovery.

    def api_versions(self) -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}

    def _group_doc(self, group: str, versions: list[str]) -> dict[str, Any]:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def api_group_list(self) -> dict[str, Any]:
        groups = [self._group_doc(g, vs) for g, vs in sorted(self.groups().items()) if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.groups().get(group)
        if not group or not versions:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_doc(group, versions)}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        resources = [r for r in self._resources.values() if r.group == group and r.version == version]
        if not resources:
            return None
        entries: list[dict[str, Any]] = []
        for r in sorted(resources, key=lambda r: r.plural):
            entries.append({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                "verbs": list(_ALL_VERBS), "shortNames": list(r.short_names),
                "categories": list(r.categories),
            })
            if r.has_status:
                entries.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                                "kind": r.kind, "verbs": ["get", "patch", "update"]})
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": entries}

    # OpenAPI v3, as much as kubectl needs: an index of group versions and one schema per kind.

    def openapi_index(self) -> dict[str, Any]:
        paths = {}
        for group, versions in self.groups().items():
            for version in versions:
                key = f"apis/{group}/{version}" if group else f"api/{version}"
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash=0"}
        return {"paths": paths}

    def openapi_document(self, key: str, crds: CrdSource) -> dict[str, Any] | None:
        parts = key.split("/")
        if parts[:1] == ["api"] and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[:1] == ["apis"] and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            return None
        resources = [r for r in self._resources.values() if r.group == group and r.version == version]
        if not resources:
            return None
        schemas: dict[str, Any] = {}
        for r in resources:
            schema = crds.crd_schema(r.group, r.version, r.plural) or {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}
            reverse_group = ".".join(reversed(r.group.split("."))) if r.group else "io.k8s.api.core"
            schemas[f"{reverse_group}.{r.version}.{r.kind}"] = {
                **schema,
                "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": r.kind}],
            }
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.35.7"},
                "paths": {path: item for r in resources for path, item in _openapi_paths(r).items()},
                "components": {"schemas": schemas}}


def _openapi_paths(r: ResourceDef) -> dict[str, Any]:
    """PATCH operations that declare `fieldValidation`, which is how kubectl detects server-side validation."""
    prefix = f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"
    scope = "/namespaces/{namespace}" if r.namespaced else ""
    gvk = {"group": r.group, "version": r.version, "kind": r.kind}
    params = [{"name": name, "in": "query", "schema": {"type": "string"}}
              for name in ("dryRun", "fieldManager", "fieldValidation", "force")]
    operation = {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "patch", "parameters": params,
                 "responses": {"200": {"description": "OK"}}}
    return {f"{prefix}{scope}/{r.plural}/{{name}}": {"patch": operation}}
