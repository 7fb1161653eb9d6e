"""Offline check of manifests (`rke2fleet validate -f FILE`), with the operator's own models.

Each error reads `file: kind/name: field.path: message`. Documents of other kinds are skipped,
so a whole GitOps directory can be fed in. No value from a manifest is ever printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from rke2fleet import API_VERSION, GROUP
from rke2fleet.api.common import is_dns1123_label, is_dns1123_subdomain
from rke2fleet.api.errors import FieldError, SpecError
from rke2fleet.api.parse import parse_cluster_spec, parse_node_spec

KINDS: dict[str, Callable[[dict[str, Any]], object]] = {
    "RKE2Cluster": parse_cluster_spec,
    "RKE2Node": parse_node_spec,
}
_TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML would otherwise keep the last one silently."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_error_text(exc: yaml.YAMLError) -> str:
    # Only the problem and its position: the default text quotes the offending source line.
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"YAML syntax error{where}: {exc.problem or exc.context or 'invalid YAML'}"
    return "YAML syntax error"


def documents(text: str) -> Iterator[Any]:
    yield from yaml.load_all(text, Loader=_StrictLoader)


def expand_lists(doc: Any) -> Iterator[Any]:
    """`kind: List` (as `kubectl get -o yaml` writes) holds objects under items."""
    if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from expand_lists(item)
    else:
        yield doc


def validate_object(obj: dict[str, Any]) -> list[FieldError]:
    """Errors of one RKE2Cluster/RKE2Node object (paths from the object root)."""
    kind = obj.get("kind")
    errors: list[FieldError] = []
    if obj.get("apiVersion") != API_VERSION:
        errors.append(FieldError("apiVersion", f"must be {API_VERSION}"))
    for key in obj:
        if key not in _TOP_LEVEL:
            errors.append(
                FieldError(str(key), "unknown field (check the spelling; unknown fields are errors)")
            )
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        errors.append(FieldError("metadata", "must be an object with at least a name"))
    else:
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            errors.append(FieldError("metadata.name", "field is required"))
        elif not is_dns1123_subdomain(name):
            errors.append(
                FieldError(
                    "metadata.name",
                    "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', "
                    "starting and ending with a letter or digit, at most 253 characters",
                )
            )
        namespace = meta.get("namespace")
        if namespace is not None and not (isinstance(namespace, str) and is_dns1123_label(namespace)):
            errors.append(FieldError("metadata.namespace", "must be a DNS-1123 label"))
    if "spec" not in obj:
        errors.append(FieldError("spec", "field is required"))
    else:
        try:
            KINDS[str(kind)](obj["spec"])
        except SpecError as exc:
            errors.extend(exc.errors)
    return errors


def _label(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{obj.get('kind')}/{name if isinstance(name, str) and name else '<no name>'}"


def validate_text(text: str, source: str) -> list[str]:
    """Errors, as printable lines, of every RKE2Cluster/RKE2Node document in `text`."""
    lines: list[str] = []
    try:
        docs = [d for doc in documents(text) for d in expand_lists(doc)]
    except yaml.YAMLError as exc:
        return [f"{source}: {_yaml_error_text(exc)}"]
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            lines.append(f"{source}: document {index}: must be a mapping (a Kubernetes object)")
            continue
        kind = doc.get("kind")
        api_version = doc.get("apiVersion")
        ours = isinstance(api_version, str) and api_version.split("/")[0] == GROUP
        if kind not in KINDS:
            if ours:
                lines.append(f"{source}: {_label(doc)}: kind: must be one of {', '.join(KINDS)}")
            continue
        lines.extend(f"{source}: {_label(doc)}: {err}" for err in validate_object(doc))
    return lines


def validate_files(paths: list[str]) -> list[str]:
    """Validate manifest files ('-' is stdin); returns `file: kind/name: field.path: message` lines."""
    lines: list[str] = []
    for path in paths:
        try:
            if path == "-":
                text, source = sys.stdin.read(), "<stdin>"
            else:
                with open(path, encoding="utf-8") as fh:
                    text, source = fh.read(), path
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "cannot be read as UTF-8"
            lines.append(f"{path}: cannot read file: {reason}")
            continue
        lines.extend(validate_text(text, source))
    return lines
