"""RKE2's deploy controller (k3s pkg/deploy) over the sandbox's cluster datastore, and the objects it
keeps: every server applies the manifests of its ``<data-dir>/server/manifests/``.

As upstream (k3s pkg/deploy/controller.go):
  * files ``*.yaml``, ``*.yml``, ``*.json`` (any case), recursively; dotfiles and ``X`` when ``X.skip``
    exists are skipped; one AddOn per file in kube-system, named after the file name up to its first
    period (``spec.source`` the path, ``spec.checksum`` the sha256 of the content once applied);
  * at the server's start every file is applied (force); afterwards a file is looked at again only when
    its mtime changed, and re-applied only when its checksum differs from its AddOn's;
  * an apply creates or updates the file's objects (multi-document YAML, JSON, ``kind: List``) and
    deletes the objects it applied earlier that the file no longer holds (wrangler apply, owner = the
    AddOn); a file that does not parse leaves everything as it was: the AddOn (created if new) gets a
    Warning event ``ParseManifestFailed`` (``Parse manifest at "PATH" failed: ERR``) and rke2 logs
    ``Failed to process config: failed to process PATH: ERR``; files that failed are retried every 15 s;
  * removing a file does nothing: its AddOn and objects stay. Deleting an object through the API
    (``kubectl delete helmchart``) removes it; it comes back only when its file changes or at the next
    server start (which applies every file again).

Upstream polls every 15 s; here the server's controller thread waits on inotify (no wake-up while
nothing changes; polling every 2 s where inotify is unavailable) and applies a change within a second.

Objects live in the cluster's JSON under ``objects`` (``"<apiVersion>|<Kind>"`` -> ``"<ns>/<name>"`` ->
object), events under ``events``. Stdlib only (PyYAML through the caller's import).
"""

from __future__ import annotations

import hashlib
import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from rke2fleet_sandbox.standins import fleetstore

NAMESPACE = "kube-system"
ADDON_API = "k3s.cattle.io/v1"
GVK_ANNOTATION = "addon.k3s.cattle.io/gvks"
OWNER_ANNOTATIONS = ("objectset.rio.cattle.io/owner-gvk", "objectset.rio.cattle.io/owner-name",
                     "objectset.rio.cattle.io/owner-namespace")
ADDON_OWNER_GVK = "k3s.cattle.io/v1, Kind=Addon"
EXTENSIONS = (".yaml", ".yml", ".json")
RETRY_SECONDS = 15.0  # upstream's sync period: a failed file is tried again after it
POLL_SECONDS = 2.0  # without inotify
DEBOUNCE_SECONDS = 0.3
MAX_EVENTS = 200
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Kinds that are not namespaced (the rest are, defaulting to "default" as the apiserver does).
CLUSTER_SCOPED = {"Namespace", "Node", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "StorageClass", "PriorityClass", "PersistentVolume", "IngressClass", "RuntimeClass",
                  "APIService", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
                  "PodSecurityPolicy", "CSIDriver", "VolumeSnapshotClass"}


class ApplyError(Exception):
    pass


def now_iso(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def type_key(api_version: str, kind: str) -> str:
    return f"{api_version}|{kind}"


def gvk_string(api_version: str, kind: str) -> str:
    """schema.GroupVersionKind.String(): ``helm.cattle.io/v1, Kind=HelmChart``, ``/v1, Kind=ConfigMap``."""
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def addon_name(path: str) -> str:
    """The file name up to its first period (k3s's basename())."""
    return os.path.basename(path).split(".", 1)[0]


def new_uid() -> str:
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# -- parsing --------------------------------------------------------------------------------------------
def is_empty_yaml(chunk: str) -> bool:
    return all(line.strip() in ("", "---") or line.strip().startswith("#") for line in chunk.splitlines())


def split_documents(text: str) -> list[str]:
    """The YAML reader's documents: separated by lines that are ``---`` (with anything after it)."""
    docs: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("---") and (len(line) == 3 or line[3] in " \t#"):
            docs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    docs.append("\n".join(current))
    return docs


def parse_manifest(text: str, yaml: Any) -> list[dict[str, Any]]:
    """The objects of a manifest; ``ValueError`` with the error when it does not parse."""
    objects = []
    for chunk in split_documents(text):
        if is_empty_yaml(chunk):
            continue
        try:
            doc = yaml.safe_load(chunk)
        except yaml.YAMLError as exc:
            raise ValueError("error converting YAML to JSON: yaml: " + " ".join(str(exc).split())) from None
        if not isinstance(doc, dict):
            raise ValueError(f"json: cannot unmarshal {type(doc).__name__} into Go value of type "
                             "map[string]interface {}")
        compact = json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str)
        if not doc.get("kind"):
            raise ValueError(f"Object 'Kind' is missing in '{compact}'")
        if not doc.get("apiVersion"):
            raise ValueError(f"Object 'apiVersion' is missing in '{compact}'")
        if str(doc["kind"]).endswith("List") and isinstance(doc.get("items"), list):
            objects += [i for i in doc["items"] if isinstance(i, dict)]
        else:
            objects.append(json.loads(json.dumps(doc, default=str)))
    return objects


# -- the datastore side ---------------------------------------------------------------------------------
def _objects(data: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    objects: dict[str, dict[str, dict[str, Any]]] = data.setdefault("objects", {})
    return objects


def _next_version(data: dict[str, Any]) -> str:
    data["resourceVersion"] = int(data.get("resourceVersion") or 1000) + 1
    return str(data["resourceVersion"])


def _stamp(data: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    meta = obj.setdefault("metadata", {})
    if old is None:
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now_iso()
        meta["generation"] = 1
    else:
        for key in ("uid", "creationTimestamp"):
            meta[key] = old["metadata"][key]
        changed = obj.get("spec") != old.get("spec")
        meta["generation"] = int(old["metadata"].get("generation", 1)) + (1 if changed else 0)
        if "status" in old and "status" not in obj:
            obj["status"] = old["status"]
    meta["resourceVersion"] = _next_version(data)


def _namespaced(kind: str) -> bool:
    return kind not in CLUSTER_SCOPED


def object_key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    ns = str(meta.get("namespace") or ("default" if _namespaced(str(obj["kind"])) else ""))
    return type_key(str(obj["apiVersion"]), str(obj["kind"])), f"{ns}/{meta.get('name', '')}"


def get_addon(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    return _objects(data).get(type_key(ADDON_API, "Addon"), {}).get(f"{NAMESPACE}/{name}")


def ensure_addon(data: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    """getOrCreateAddon + ``spec.source``: the AddOn exists before its manifest is parsed."""
    addons = _objects(data).setdefault(type_key(ADDON_API, "Addon"), {})
    addon = addons.get(f"{NAMESPACE}/{name}")
    if addon is None:
        addon = {"apiVersion": ADDON_API, "kind": "Addon",
                 "metadata": {"name": name, "namespace": NAMESPACE}, "spec": {"source": path}, "status": {}}
        _stamp(data, addon, None)
        addons[f"{NAMESPACE}/{name}"] = addon
    elif addon["spec"].get("source") != path:
        addon["spec"]["source"] = path
        addon["metadata"]["resourceVersion"] = _next_version(data)
    return addon


def record_event(data: dict[str, Any], addon: dict[str, Any], kind: str, reason: str, message: str) -> None:
    """An Event about the AddOn from the deploy controller (repeats counted, as the recorder does)."""
    events: list[dict[str, Any]] = data.setdefault("events", [])
    stamp = now_iso()
    for event in events:
        inv = event["involvedObject"]
        if (inv["name"], inv["uid"], event["reason"], event["message"]) == (
                addon["metadata"]["name"], addon["metadata"]["uid"], reason, message):
            event["count"] += 1
            event["lastTimestamp"] = stamp
            event["metadata"]["resourceVersion"] = _next_version(data)
            return
    meta = addon["metadata"]
    events.append({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{os.urandom(8).hex()}", "namespace": NAMESPACE,
                     "uid": new_uid(), "creationTimestamp": stamp, "resourceVersion": _next_version(data)},
        "involvedObject": {"apiVersion": ADDON_API, "kind": "Addon", "name": meta["name"], "namespace": NAMESPACE,
                           "uid": meta["uid"], "resourceVersion": meta["resourceVersion"]},
        "reason": reason, "message": message, "type": kind, "count": 1,
        "source": {"component": "deploy"}, "firstTimestamp": stamp, "lastTimestamp": stamp,
        "reportingComponent": "deploy", "reportingInstance": "",
    })
    del events[:-MAX_EVENTS]


def apply_objects(data: dict[str, Any], addon: dict[str, Any], objects: list[dict[str, Any]], path: str,
                  checksum: str) -> None:
    """wrangler's apply with the AddOn as owner: create or update ``objects``, delete what the AddOn
    applied before of the types it knows (its GVK annotation and the file's) that is no longer there;
    then record the checksum and the GVKs on the AddOn. ``ApplyError`` leaves ``data`` unchanged
    for the caller to drop (it is a transaction's copy)."""
    store = _objects(data)
    name = addon["metadata"]["name"]
    namespaces = set(DEFAULT_NAMESPACES) | {k.split("/", 1)[1] for k in store.get(type_key("v1", "Namespace"), {})}
    namespaces |= {str((o.get("metadata") or {}).get("name")) for o in objects if o.get("kind") == "Namespace"}
    wanted: dict[str, set[str]] = {}
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            raise ApplyError(f"{obj['kind']}: resource name may not be empty")
        tkey, okey = object_key(obj)
        ns = okey.split("/", 1)[0]
        if ns and ns not in namespaces:
            raise ApplyError(f'namespaces "{ns}" not found')
        if ns:
            meta["namespace"] = ns
        wanted.setdefault(tkey, set()).add(okey)
    gvks = [gvk_string(str(o["apiVersion"]), str(o["kind"])) for o in objects]
    known = set(gvks) | {g for g in str(addon["metadata"].get("annotations", {}).get(GVK_ANNOTATION, "")).split(";")
                         if g}
    for obj in objects:
        tkey, okey = object_key(obj)
        annotations = obj["metadata"].setdefault("annotations", {})
        annotations.update(dict(zip(OWNER_ANNOTATIONS, (ADDON_OWNER_GVK, name, NAMESPACE), strict=True)))
        annotations["objectset.rio.cattle.io/id"] = ""
        obj["metadata"].setdefault("labels", {})["objectset.rio.cattle.io/hash"] = hashlib.sha1(  # noqa: S324
            f"{ADDON_OWNER_GVK}/{NAMESPACE}/{name}".encode()).hexdigest()
        if obj["kind"] == "HelmChart":  # helm-controller creates its install job at once
            obj["status"] = {"jobName": f"helm-install-{obj['metadata']['name']}"}
        old = store.get(tkey, {}).get(okey)
        _stamp(data, obj, old)
        store.setdefault(tkey, {})[okey] = obj
    for tkey, items in store.items():
        api_version, _, kind = tkey.partition("|")
        if gvk_string(api_version, kind) not in known:
            continue
        for okey in [k for k, o in items.items() if k not in wanted.get(tkey, set()) and
                     (o["metadata"].get("annotations") or {}).get(OWNER_ANNOTATIONS[1]) == name and
                     (o["metadata"].get("annotations") or {}).get(OWNER_ANNOTATIONS[0]) == ADDON_OWNER_GVK]:
            del items[okey]
    addon["spec"]["checksum"] = checksum
    addon["metadata"].setdefault("annotations", {})[GVK_ANNOTATION] = ";".join(dict.fromkeys(gvks))
    addon["metadata"]["resourceVersion"] = _next_version(data)


def list_objects(data: dict[str, Any], api_version: str, kind: str) -> list[dict[str, Any]]:
    if (api_version, kind) == ("v1", "Event"):
        return list(data.get("events") or [])
    items = _objects(data).get(type_key(api_version, kind), {})
    return [items[k] for k in sorted(items)]


def object_types(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k.split("|")[0], k.split("|")[1]) for k in sorted(_objects(data))]


def delete_object(data: dict[str, Any], api_version: str, kind: str, namespace: str, name: str) -> bool:
    items = _objects(data).get(type_key(api_version, kind), {})
    return items.pop(f"{namespace}/{name}", None) is not None


# -- the controller -------------------------------------------------------------------------------------
def manifest_files(base: str) -> list[str]:
    """The manifests to apply, sorted: recursively, minus dotfiles, ``.skip``'ed ones, other extensions."""
    found: list[str] = []
    skips: set[str] = set()
    for directory, dirs, files in os.walk(base, followlinks=True):
        dirs.sort()
        for name in files:
            if name.endswith(".skip"):
                skips.add(os.path.join(directory, name[:-5]))
            found.append(os.path.join(directory, name))
    return sorted(p for p in found if p not in skips and not os.path.basename(p).startswith(".")
                  and p.lower().endswith(EXTENSIONS))


class DeployController:
    """One server's deploy controller: ``sync`` applies what changed; ``run`` loops forever."""

    def __init__(self, store: fleetstore.Datastore, cluster: str, base: str, yaml: Any,
                 log: Callable[[str, str], None]) -> None:
        self.store = store
        self.cluster = cluster
        self.base = base
        self.yaml = yaml
        self.log = log
        self.mod_times: dict[str, float] = {}

    def sync(self, force: bool) -> list[str]:
        """listFilesIn: deploy every file whose mtime changed (all of them when ``force``); the errors."""
        errors = []
        for path in manifest_files(self.base):
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                continue
            if not force and self.mod_times.get(path) == mtime:
                continue
            try:
                self.deploy(path, compare=not force)
                self.mod_times[path] = mtime
            except (OSError, ValueError, ApplyError) as exc:
                errors.append(f"failed to process {path}: {exc}")
        if errors:
            self.log("error", "Failed to process config: " + "\n".join(errors))
        return errors

    def deploy(self, path: str, compare: bool) -> None:
        if TYPE_CHECKING:
            from rke2fleet_sandbox.standins import fleetstore
        else:
            import fleetstore

        name = addon_name(path)
        with open(path, "rb") as f:
            content = f.read()
        checksum = hashlib.sha256(content).hexdigest()
        try:
            objects = parse_manifest(content.decode(errors="replace"), self.yaml)
            parse_error = None
        except ValueError as exc:
            objects, parse_error = [], str(exc)
        with self.store.transaction(self.cluster) as data:
            if not fleetstore.has_quorum(data):
                raise ApplyError(fleetstore.REQUEST_TIMED_OUT)
            addon = ensure_addon(data, name, path)
            if compare and addon["spec"].get("checksum") == checksum:
                return
            if parse_error is not None:
                record_event(data, addon, "Warning", "ParseManifestFailed",
                             f'Parse manifest at "{path}" failed: {parse_error}')
            else:
                record_event(data, addon, "Normal", "ApplyingManifest", f'Applying manifest at "{path}"')
                snapshot = json.dumps(data)
                try:
                    apply_objects(data, addon, objects, path, checksum)
                except ApplyError as exc:
                    data.clear()
                    data.update(json.loads(snapshot))
                    addon = ensure_addon(data, name, path)
                    record_event(data, addon, "Warning", "ApplyManifestFailed",
                                 f'Applying manifest at "{path}" failed: {exc}')
                    parse_error = str(exc)
                else:
                    record_event(data, addon, "Normal", "AppliedManifest", f'Applied manifest at "{path}"')
        if parse_error is not None:
            raise ValueError(parse_error)

    def run(self) -> None:
        """Apply everything (force), then wait for changes: inotify, else a poll."""
        import select

        watcher = Inotify.create()
        force = True
        while True:
            if watcher is not None:
                watcher.watch_tree(self.base)
            try:
                errors = self.sync(force)
            except Exception as exc:  # the controller must not die while the server lives
                errors = [str(exc)]
                self.log("error", f"Failed to process config: {exc}")
            force = False
            if watcher is None:
                time.sleep(RETRY_SECONDS if errors else POLL_SECONDS)
                continue
            timeout = RETRY_SECONDS if errors or not os.path.isdir(self.base) else None
            if select.select([watcher.fd], [], [], timeout)[0]:
                time.sleep(DEBOUNCE_SECONDS)  # a writer's next events (rename, chmod) come together
                watcher.drain()


class Inotify:
    """inotify through ctypes (no polling: an idle server never wakes up)."""

    MASK = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800  # modify attrib close_write moves
    # create delete delete_self move_self

    def __init__(self, libc: Any, fd: int) -> None:
        self.libc = libc
        self.fd = fd

    @classmethod
    def create(cls) -> Inotify | None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        except (OSError, AttributeError):
            return None
        return cls(libc, fd) if fd >= 0 else None

    def watch_tree(self, base: str) -> None:
        for directory, _, _ in os.walk(base, followlinks=True):
            self.libc.inotify_add_watch(self.fd, os.fsencode(directory), self.MASK)

    def drain(self) -> None:
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return
            except BlockingIOError:
                return


def start(store: fleetstore.Datastore, cluster: str, base: str, yaml: Any,
          log: Callable[[str, str], None]) -> DeployController:
    """The server's deploy controller, in a daemon thread."""
    import threading

    controller = DeployController(store, cluster, base, yaml, log)
    threading.Thread(target=controller.run, name="deploy", daemon=True).start()
    return controller
