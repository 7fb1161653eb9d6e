"""The files a node needs besides config.yaml (reference §13): registries.yaml, the proxy
environment of its unit, and, on servers, the add-on manifests. Pure functions of the specs and
the registry credentials; each file starts with MARKER, so a file the operator did not write is
never removed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from rke2fleet.api import RKE2ClusterSpec
from rke2fleet.api.site import ProxySpec, RegistriesSpec
from rke2fleet.reconcile.paths import Paths, environment_file

MARKER = "# Managed by rke2fleet"
ADDON_PREFIX = "rke2fleet-"
ADDON_NAMESPACE = "kube-system"  # where an add-on's object goes when its manifest names none
ADDON_KINDS = {"helmchart": "HelmChart", "helmchartconfig": "HelmChartConfig"}
# RKE2's defaults, used when the cluster does not set its own CIDRs (reference §4).
DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"
DEFAULT_SERVICE_CIDR = "10.43.0.0/16"


@dataclass(frozen=True)
class ManagedFile:
    path: str
    content: bytes = field(repr=False)  # registry credentials: never log it
    mode: int
    restarts: bool  # RKE2 reads it at start only: a change needs a restart

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def label(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class CredentialsMissing(ValueError):
    """A registry's auth Secret is missing or has none of the keys RKE2 takes."""


AUTH_KEYS = (("username", "password"), ("auth",), ("identitytoken",))


def registry_auth(secret: Mapping[str, bytes] | None, name: str) -> dict[str, str]:
    if secret is None:
        raise CredentialsMissing(f"registry credentials Secret {name} not found")
    for keys in AUTH_KEYS:
        if all(k in secret for k in keys):
            return {k: secret[k].decode() for k in keys}
    raise CredentialsMissing(f"Secret {name} has neither username+password, auth nor identitytoken")


def render_registries(spec: RegistriesSpec, credentials: Mapping[str, Mapping[str, str]]) -> bytes:
    """`credentials`: auth Secret name -> its auth keys."""
    mirrors: dict[str, Any] = {}
    for host, mirror in sorted(spec.mirrors.items()):
        entry: dict[str, Any] = {"endpoint": list(mirror.endpoint)}
        if mirror.rewrite:
            entry["rewrite"] = dict(sorted(mirror.rewrite.items()))
        mirrors[host] = entry
    configs: dict[str, Any] = {}
    for host, config in sorted(spec.configs.items()):
        entry = {}
        if config.auth_secret_ref is not None:
            entry["auth"] = dict(credentials.get(config.auth_secret_ref.name, {}))
        if config.tls is not None:
            tls = config.tls.model_dump(by_alias=False, exclude_none=True, exclude_defaults=True)
            if tls:
                entry["tls"] = tls
        configs[host] = entry
    doc: dict[str, Any] = {}
    if mirrors:
        doc["mirrors"] = mirrors
    if configs:
        doc["configs"] = configs
    return _marked(yaml.safe_dump(doc, sort_keys=False))


def _marked(body: str) -> bytes:
    """A managed file: its first line says who wrote it (and that edits do not last)."""
    return f"{MARKER}: edits are reverted.\n{body}".encode()


def no_proxy(proxy: ProxySpec, cluster: RKE2ClusterSpec) -> list[str]:
    config = cluster.server_config
    entries = [
        "127.0.0.0/8",
        str(config.get("cluster-cidr") or DEFAULT_CLUSTER_CIDR),
        str(config.get("service-cidr") or DEFAULT_SERVICE_CIDR),
        ".svc",
        ".cluster.local",
    ]
    if cluster.registration_address:
        entries.append(cluster.registration_address)
    entries.extend(proxy.no_proxy)
    return list(dict.fromkeys(entries))


def render_proxy(proxy: ProxySpec, cluster: RKE2ClusterSpec) -> bytes:
    # systemd's EnvironmentFile syntax: KEY=value per line; values are validated URLs/hosts
    # without quotes, spaces or `$`, so nothing here needs escaping.
    lines = []
    if proxy.http_proxy:
        lines.append(f"HTTP_PROXY={proxy.http_proxy}")
    if proxy.https_proxy:
        lines.append(f"HTTPS_PROXY={proxy.https_proxy}")
    lines.append("NO_PROXY=" + ",".join(no_proxy(proxy, cluster)))
    return _marked("\n".join(lines) + "\n")


def addon_key(addon: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of an add-on manifest."""
    meta = addon["metadata"]
    return str(addon["kind"]), str(meta.get("namespace") or ADDON_NAMESPACE), str(meta["name"])


def addon_file_name(addon: Mapping[str, Any]) -> str:
    kind, namespace, name = addon_key(addon)
    stem = f"{kind.lower()}-{name}"
    if namespace != ADDON_NAMESPACE:
        stem = f"{stem}.{namespace}"
    return f"{ADDON_PREFIX}{stem}.yaml"


def addon_of_file(file: str) -> tuple[str, str, str] | None:
    """(kind, namespace, name) an add-on file of addon_file_name's names; None for another file."""
    stem = file.removeprefix(ADDON_PREFIX).removesuffix(".yaml")
    kind, _, rest = stem.partition("-")
    name, _, namespace = rest.partition(".")
    if kind not in ADDON_KINDS or not name:
        return None
    return ADDON_KINDS[kind], namespace or ADDON_NAMESPACE, name


def render_addon(addon: Mapping[str, Any]) -> bytes:
    doc = {**addon, "metadata": {"namespace": ADDON_NAMESPACE, **addon["metadata"]}}
    return _marked(yaml.safe_dump(doc, sort_keys=False))


def managed_files(
    cluster: RKE2ClusterSpec,
    unit: str,
    paths: Paths,
    credentials: Mapping[str, Mapping[str, str]],
) -> tuple[ManagedFile, ...]:
    """The files this node (of this unit) should hold, besides config.yaml."""
    files: list[ManagedFile] = []
    if cluster.registries is not None:
        files.append(ManagedFile(paths.registries, render_registries(cluster.registries, credentials), 0o600, True))
    if cluster.proxy is not None:
        files.append(ManagedFile(environment_file(unit), render_proxy(cluster.proxy, cluster), 0o600, True))
    if unit == "rke2-server":
        for addon in cluster.addons:
            files.append(ManagedFile(f"{paths.manifests}/{addon_file_name(addon)}", render_addon(addon), 0o600, False))
    return tuple(files)


def candidate_paths(unit: str, paths: Paths) -> tuple[tuple[str, ...], str | None]:
    """Where managed files may be on this node (read by the facts script even when none is
    desired, so a dropped one is found and removed): fixed paths, and the add-on directory."""
    return (paths.registries, environment_file(unit)), (paths.manifests if unit == "rke2-server" else None)


def restarts(path: str) -> bool:
    """RKE2 reads the file at start (registries, environment): a change or removal needs a
    restart. An add-on does not: the deploy controller watches its directory."""
    return not path.rsplit("/", 1)[-1].startswith(ADDON_PREFIX)
