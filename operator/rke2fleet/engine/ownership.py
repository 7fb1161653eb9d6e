"""Which Secrets the operator may use and overwrite: its own (labelled managed-by rke2fleet and
owned by this cluster, or by no object yet: exported for adoption), and a user's token Secret
only when labelled for it. Never another's Secret that happens to have the name it wants."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MANAGED_BY = {"app.kubernetes.io/managed-by": "rke2fleet"}
# A tokenSecretRef may only name a Secret with this label: whoever may create an RKE2Cluster could
# otherwise have the operator copy any Secret of the namespace onto a host they control.
TOKEN_LABEL = ("rke2fleet.io/token", "true")


def foreign(meta: Mapping[str, Any], cluster_uid: str) -> bool:
    """A Secret the operator did not create for this cluster."""
    labels = meta.get("labels") or {}
    if any(labels.get(k) != v for k, v in MANAGED_BY.items()):
        return True
    owners = [o for o in meta.get("owners") or [] if o]
    return bool(owners) and cluster_uid not in owners


def conflict_message(name: str, what: str) -> str:
    return (f"Secret {name} exists but was not created by rke2fleet for this cluster; it is left alone and "
            f"no {what} is published: rename or delete it")  # fmt: skip


def token_label_missing(meta: Mapping[str, Any]) -> bool:
    key, value = TOKEN_LABEL
    return (meta.get("labels") or {}).get(key) != value
