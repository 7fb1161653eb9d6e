"""The manifests `rke2fleet plan|apply` read: the same files a user would `kubectl apply`, checked
with the same models and messages as `rke2fleet validate`. One RKE2Cluster, its RKE2Nodes, and
the `v1` Secrets they name (SSH key, known_hosts, token). No value from a Secret is printed."""

from __future__ import annotations

import base64
import binascii
import sys
from dataclasses import dataclass, field
from typing import Any

from rke2fleet.api.manifests import documents, expand_lists, validate_text


class ManifestError(Exception):
    """The files cannot be used; `lines` say why, one problem per line."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass
class Manifests:
    namespace: str
    cluster: dict[str, Any]
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    secret_labels: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.cluster["metadata"]["name"])


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    with open(path, encoding="utf-8") as fh:
        return fh.read(), path


def _secret_data(doc: dict[str, Any], source: str, errors: list[str]) -> dict[str, bytes]:
    name = (doc.get("metadata") or {}).get("name")
    data: dict[str, bytes] = {}
    for key, value in (doc.get("data") or {}).items():
        try:
            data[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            errors.append(f"{source}: Secret/{name}: data.{key}: must be base64")
    for key, value in (doc.get("stringData") or {}).items():
        data[str(key)] = str(value).encode()
    return data


def load(paths: list[str]) -> Manifests:
    """Raises ManifestError with `file: kind/name: field.path: message` lines."""
    errors: list[str] = []
    clusters: list[tuple[str, dict[str, Any]]] = []
    nodes: list[tuple[str, dict[str, Any]]] = []
    secrets: dict[tuple[str, str], dict[str, bytes]] = {}
    labels: dict[tuple[str, str], dict[str, str]] = {}
    for path in paths:
        try:
            text, source = _read(path)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "cannot be read as UTF-8"
            errors.append(f"{path}: cannot read file: {reason}")
            continue
        problems = validate_text(text, source)
        errors += problems
        if problems:
            continue
        for doc in (d for raw in documents(text) for d in expand_lists(raw)):
            if not isinstance(doc, dict):
                continue
            ns = str((doc.get("metadata") or {}).get("namespace") or "default")
            if doc.get("kind") == "RKE2Cluster":
                clusters.append((ns, doc))
            elif doc.get("kind") == "RKE2Node":
                nodes.append((ns, doc))
            elif doc.get("kind") == "Secret" and doc.get("apiVersion") == "v1":
                secrets[(ns, str(doc["metadata"]["name"]))] = _secret_data(doc, source, errors)
                raw_labels = doc["metadata"].get("labels") or {}
                labels[(ns, str(doc["metadata"]["name"]))] = {str(k): str(v) for k, v in raw_labels.items()}
    if not errors and len(clusters) != 1:
        names = ", ".join(f"{ns}/{c['metadata']['name']}" for ns, c in clusters) or "none"
        errors.append(f"the files must hold exactly one RKE2Cluster (found: {names})")
    if errors:
        raise ManifestError(errors)
    namespace, cluster = clusters[0]
    out = Manifests(namespace, cluster)
    for ns, doc in nodes:
        name, cname = doc["metadata"]["name"], doc["spec"].get("cluster")
        if ns != namespace or cname != out.name:
            errors.append(f"RKE2Node/{name}: spec.cluster: names RKE2Cluster {ns}/{cname}, not {namespace}/{out.name}")
        elif name in out.nodes:
            errors.append(f"RKE2Node/{name}: metadata.name: given twice")
        out.nodes[name] = doc
    out.secrets = {name: data for (ns, name), data in secrets.items() if ns == namespace}
    out.secret_labels = {name: lb for (ns, name), lb in labels.items() if ns == namespace}
    if errors:
        raise ManifestError(errors)
    return out
