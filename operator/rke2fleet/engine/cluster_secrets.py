"""The cluster's two Secrets: the join token (generated, adopted from a running cluster, or
given; never changed behind the cluster's back) and the kubeconfig read back from a server."""

from __future__ import annotations

import hashlib

from rke2fleet import GROUP
from rke2fleet.api import RKE2ClusterSpec, parse_node_spec
from rke2fleet.api.conditions import Cond
from rke2fleet.engine.access import Waiting, node_paths, target_of, token_ref
from rke2fleet.engine.core import Engine
from rke2fleet.engine.outcome import ClusterOutcome
from rke2fleet.engine.ownership import TOKEN_LABEL, conflict_message, foreign, token_label_missing
from rke2fleet.engine.records import ClusterRecord, NodeRecord
from rke2fleet.hostaccess import HostAccessError
from rke2fleet.reconcile.kubeconfig import KubeconfigError, rewrite_kubeconfig
from rke2fleet.reconcile.tokens import generate_token

SOURCE_ANNOTATION = f"{GROUP}/source-sha256"


async def ensure_token(
    engine: Engine, crec: ClusterRecord, cluster: RKE2ClusterSpec, init: NodeRecord | None
) -> tuple[str, bool]:
    """The token Secret's name, and whether this pass created it by adopting the init server's.
    Node passes use the token only once this has vouched for its Secret (engine.memory)."""
    try:
        name, created = await _token_secret(engine, crec, cluster, init)
    except Waiting:
        engine.memory.token_verified.pop(crec.key, None)
        raise
    engine.memory.token_verified[crec.key] = name
    return name, created


async def _token_secret(
    engine: Engine, crec: ClusterRecord, cluster: RKE2ClusterSpec, init: NodeRecord | None
) -> tuple[str, bool]:
    if cluster.token_secret_ref:
        name, key = token_ref(crec.name, cluster)
        data = await engine.store.read_secret(crec.namespace, name)
        if not data or not data.get(key):
            raise Waiting("TokenSecretMissing", f"Secret {name} (key {key}) named by spec.tokenSecretRef not found", 10)
        meta = await engine.store.read_secret_meta(crec.namespace, name) or {}
        if token_label_missing(meta):
            label = "=".join(TOKEN_LABEL)
            raise Waiting("TokenSecretNotLabelled", f"Secret {name} named by spec.tokenSecretRef lacks the label "
                          f"{label}; the operator uses only token Secrets labelled for it", 30)  # fmt: skip
        return name, False
    secret = f"{crec.name}-token"
    if await engine.store.read_secret(crec.namespace, secret):
        meta = await engine.store.read_secret_meta(crec.namespace, secret) or {}
        if foreign(meta, crec.uid):
            raise Waiting("SecretConflict", conflict_message(secret, "join token"), 30)
        return secret, False
    token: str | None = None
    if init is not None:
        # Adopting an existing cluster: its first server's token encrypts the datastore; keep it.
        target = await target_of(engine, cluster, init)
        try:
            raw = await engine.hosts.read_file(target, node_paths(cluster, parse_node_spec(init.spec)).token)
        except HostAccessError as exc:
            msg = f"cannot check the init server for an existing token: {exc}"
            raise Waiting("CheckingInitServer", msg, 10) from None
        if raw and raw.strip():
            token = raw.decode().strip()
    created = await engine.store.apply_secret(
        crec.namespace,
        secret,
        {"token": (token or generate_token()).encode()},
        owner={"name": crec.name, "uid": crec.uid},
        component="join-token",
        create_only=True,
    )
    return secret, created and token is not None


def kubeconfig_source(raw_sha256: str, address: str) -> str:
    """What the published kubeconfig was made from: the server's rke2.yaml and the address."""
    return f"{raw_sha256}@{address}"


async def publish_kubeconfig(
    engine: Engine, crec: ClusterRecord, cluster: RKE2ClusterSpec, server: NodeRecord, address: str
) -> None:
    """Read rke2.yaml from a serving server and publish it rewritten."""
    target = await target_of(engine, cluster, server)
    path = node_paths(cluster, parse_node_spec(server.spec)).kubeconfig
    try:
        raw = await engine.hosts.read_file(target, path)
    except HostAccessError as exc:
        raise Waiting("KubeconfigUnreadable", f"cannot read rke2.yaml from {server.name}: {exc}", 10) from None
    if not raw:
        raise Waiting("KubeconfigMissing", f"rke2.yaml not yet written on {server.name}", 5)
    try:
        data = rewrite_kubeconfig(raw, cluster_name=crec.name, address=address)
    except KubeconfigError as exc:
        raise Waiting("KubeconfigInvalid", str(exc), 30) from None
    await engine.store.apply_secret(
        crec.namespace,
        f"{crec.name}-kubeconfig",
        {"value": data},
        owner={"name": crec.name, "uid": crec.uid},
        annotations={SOURCE_ANNOTATION: kubeconfig_source(hashlib.sha256(raw).hexdigest(), address)},
        component="kubeconfig",
    )


async def kubeconfig(
    engine: Engine, crec: ClusterRecord, cluster: RKE2ClusterSpec, servers: list[NodeRecord], init: NodeRecord | None,
    out: ClusterOutcome,
) -> bool:  # fmt: skip
    """Publish the kubeconfig when it is missing or its server's rke2.yaml changed (RKE2
    rewrites it at every start; certificate renewal changes it); True when it is published."""
    serving = [s for s in servers if s.serving]
    address = cluster.registration_address or (str(init.spec.get("address")) if init else None)
    name = f"{crec.name}-kubeconfig"
    if not (serving and address):
        published = bool(crec.status.get("kubeconfigSecretName"))
        out.conditions.append(Cond("KubeconfigReady", published, "WaitingForServer", "waiting for a Ready server"))
        return False
    source = serving[0]
    seen = engine.memory.kubeconfig_seen.get(source.key)  # the node passes report its hash
    try:
        meta = await engine.store.read_secret_meta(crec.namespace, name)
        if meta is not None and foreign(meta, crec.uid):
            raise Waiting("SecretConflict", conflict_message(name, "kubeconfig"), 30)
        published_from = (meta or {}).get("annotations", {}).get(SOURCE_ANNOTATION)
        if meta is None or (seen is not None and published_from != kubeconfig_source(seen, address)):
            await publish_kubeconfig(engine, crec, cluster, source, address)
    except Waiting as w:
        out.conditions.append(Cond("KubeconfigReady", False, w.reason, str(w)))
        out.retry_after = min(out.retry_after or w.delay, w.delay)
        return False
    out.status.kubeconfig_secret_name = name
    out.conditions.append(Cond("KubeconfigReady", True, "Published", f"Secret {name}, server https://{address}:6443"))
    return True
