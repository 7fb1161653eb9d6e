"""Several operator Deployments, one fleet: `rke2fleet run --shard INDEX/COUNT` takes the clusters
whose stable hash of namespace/name falls on INDEX, with all their nodes, snapshots and restores
(which name their cluster in spec.cluster), and ignores the others: no handler, no finalizer, not
even an index entry for them. The hash is sha256, so every process and every release agrees."""

from __future__ import annotations

import hashlib
from typing import Any

from rke2fleet import GROUP, config

FINALIZER = f"{GROUP}/finalizer"


def finalizer() -> str:
    """Each shard its own finalizer: Kopf removes its finalizer from objects none of its handlers
    match, so with one shared name a shard would strip the others' and their objects could go
    before their hosts are cleaned up."""
    s = config.SETTINGS
    return FINALIZER if s.shard_count <= 1 else f"{FINALIZER}-shard-{s.shard_index}-of-{s.shard_count}"


def shard_of(namespace: str, cluster: str, count: int) -> int:
    digest = hashlib.sha256(f"{namespace}/{cluster}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """`INDEX/COUNT`, 0 <= INDEX < COUNT."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ValueError(f"--shard wants INDEX/COUNT, e.g. 0/3 (got {text!r})") from None
    if not sep or n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard wants INDEX/COUNT with 0 <= INDEX < COUNT (got {text!r})")
    return i, n


def mine(*, namespace: Any, name: str, spec: Any, resource: Any, **_: Any) -> bool:
    """Kopf's `when=` filter of every registration."""
    settings = config.SETTINGS
    if settings.shard_count <= 1:
        return True
    cluster = name if resource.plural == "rke2clusters" else str((spec or {}).get("cluster") or "")
    return shard_of(str(namespace), cluster, settings.shard_count) == settings.shard_index
