"""The cluster's admin kubeconfig, as published in the `<cluster>-kubeconfig` Secret.

RKE2 writes rke2.yaml with `server: https://127.0.0.1:6443` and everything named
`default` (reference §6); remote users need the registration address and real names.
"""

from __future__ import annotations

from typing import Any

import yaml

from rke2fleet.reconcile.desired import API_PORT


class KubeconfigError(ValueError):
    pass


def api_url(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}:{API_PORT}"


def _first_entry(doc: Any, section: str, field: str) -> dict[str, Any]:
    """`doc[section][0][field]` as a mapping, or a KubeconfigError (never echoing content)."""
    entries = doc.get(section) if isinstance(doc, dict) else None
    first = entries[0] if isinstance(entries, list) and entries else None
    value = first.get(field) if isinstance(first, dict) else None
    if not isinstance(value, dict):
        raise KubeconfigError(f"rke2.yaml on the server has no usable {section} entry")
    return dict(value)


def rewrite_kubeconfig(raw: bytes, *, cluster_name: str, address: str) -> bytes:
    try:
        doc: Any = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise KubeconfigError("rke2.yaml on the server is not valid YAML") from None
    cluster = _first_entry(doc, "clusters", "cluster")
    user = _first_entry(doc, "users", "user")
    if "certificate-authority-data" not in cluster:
        raise KubeconfigError("rke2.yaml on the server has no certificate-authority-data")
    cluster["server"] = api_url(address)
    out = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": cluster_name, "user": user}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "preferences": {},
    }
    return yaml.safe_dump(out, sort_keys=False).encode()
