"""RKE2Cluster handlers: token, init server, kubeconfig, and the cluster's summary status."""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import kopf

from rke2fleet import GROUP, VERSION, metrics
from rke2fleet.api import RKE2ClusterSpec, SpecError, parse_cluster_spec, parse_duration, parse_node_spec
from rke2fleet.handlers import indexes
from rke2fleet.handlers.access import Waiting, build_target, cluster_health, read_token, token_source
from rke2fleet.handlers.observe import observed
from rke2fleet.handlers.state import FleetState
from rke2fleet.handlers.status import status_patch
from rke2fleet.hostaccess import HostAccessError, redact
from rke2fleet.reconcile.conditions import Cond
from rke2fleet.reconcile.facts import KUBECONFIG_PATH, TOKEN_PATH
from rke2fleet.reconcile.health import ClusterHealth
from rke2fleet.reconcile.kubeconfig import KubeconfigError, rewrite_kubeconfig
from rke2fleet.reconcile.ordering import choose_init_server
from rke2fleet.reconcile.rollout import RolloutView, rollout_view, snapshot_name, upgrade_problem
from rke2fleet.reconcile.tokens import generate_token, password_sha256

CLUSTER_TICK = float(os.environ.get("RKE2FLEET_CLUSTER_TICK", "5"))
CLUSTER_GAP = 0.1  # Kopf's own sleep between two passes; the tick's wait is in cluster_tick
SOURCE_ANNOTATION = f"{GROUP}/source-sha256"
PHASES = ("Pending", "Provisioning", "Ready", "Degraded", "Failed", "Paused")


def _cluster_runs(entries: list[Any]) -> bool:
    """Some server has run RKE2: the cluster has a Kubernetes API to be asked."""
    return any(
        e["spec"].get("role") == "server"
        and (e["status"].get("runningVersion") or indexes.condition_true(e["status"], "ServiceActive"))
        for e in entries
    )


def poke_disagreeing(fleet: FleetState, namespace: str, entries: list[Any], health: ClusterHealth) -> None:
    """Nodes whose status says otherwise than the cluster does are re-checked at once: a Node
    gone NotReady, an etcd member lost, a cluster whose API no longer answers, or a recovery."""
    for e in entries:
        st = e["status"]
        if not (st.get("runningVersion") or indexes.condition_true(st, "ServiceActive")):
            continue  # not running yet: its own pass is under way
        if st.get("phase") in ("Failed", "Unreachable"):
            continue  # its own retries look again; the host may not let us in whatever the cluster says
        if health.available:
            differs = health.serving(indexes.node_name(e), str(e["spec"].get("role"))) != indexes.serving(e)
        else:
            differs = (indexes.condition(st, "NodeReady") or {}).get("status") != "Unknown"
        if differs:
            fleet.poke((namespace, e["name"]), (namespace, str(e["spec"].get("cluster"))))


def unhealthy_nodes(entries: list[Any]) -> list[str]:
    """Nodes that failed, cannot be reached, or that the cluster does not count (NotReady,
    Ready Unknown): `name (reason)`, for people."""
    out = []
    for e in sorted(entries, key=lambda e: e["name"]):
        st = e["status"]
        ready = indexes.condition(st, "Ready") or {}
        if st.get("phase") in ("Failed", "Unreachable", "NotReady") or ready.get("status") == "Unknown":
            out.append(f"{e['name']} ({ready.get('reason') or st.get('phase')})")
    return out


def _counts(entries: list[Any], role: str) -> tuple[int, int]:
    mine = [e for e in entries if e["spec"].get("role") == role]
    return sum(1 for e in mine if indexes.condition_true(e["status"], "Ready")), len(mine)


async def ensure_token(
    fleet: FleetState,
    namespace: str,
    name: str,
    uid: str,
    cluster: RKE2ClusterSpec,
    init_entry: Any | None,
) -> tuple[str, bool]:
    """The token Secret's name, and whether this pass created it (generated or adopted)."""
    if cluster.token_secret_ref:
        ref = cluster.token_secret_ref
        data = await fleet.kube.read_secret(namespace, ref.name)
        if not data or not data.get(ref.key):
            raise Waiting(
                "TokenSecretMissing", f"Secret {ref.name} (key {ref.key}) named by spec.tokenSecretRef not found", 10
            )
        return ref.name, False
    secret = f"{name}-token"
    if await fleet.kube.read_secret(namespace, secret):
        return secret, False
    token: str | None = None
    if init_entry is not None:
        # Adopting an existing cluster: its first server's token encrypts the datastore; keep it.
        node = parse_node_spec(init_entry["spec"])
        target = await build_target(fleet, namespace, cluster, node, init_entry["status"])
        try:
            raw = await fleet.pool.read_file(target, TOKEN_PATH)
        except HostAccessError as exc:
            raise Waiting(
                "CheckingInitServer", f"cannot check the init server for an existing token: {exc}", 10
            ) from None
        if raw and raw.strip():
            token = raw.decode().strip()
    created = await fleet.kube.apply_secret(
        namespace,
        secret,
        {"token": (token or generate_token()).encode()},
        owner={"name": name, "uid": uid},
        component="join-token",
        create_only=True,
    )
    return secret, created and token is not None


async def publish_kubeconfig(
    fleet: FleetState,
    namespace: str,
    name: str,
    uid: str,
    cluster: RKE2ClusterSpec,
    server_entry: Any,
    address: str,
) -> bool:
    """Read rke2.yaml from a Ready server and publish it rewritten; True when the Secret changed."""
    node = parse_node_spec(server_entry["spec"])
    target = await build_target(fleet, namespace, cluster, node, server_entry["status"])
    try:
        raw = await fleet.pool.read_file(target, KUBECONFIG_PATH)
    except HostAccessError as exc:
        raise Waiting("KubeconfigUnreadable", f"cannot read rke2.yaml from {server_entry['name']}: {exc}", 10) from None
    if not raw:
        raise Waiting("KubeconfigMissing", f"rke2.yaml not yet written on {server_entry['name']}", 5)
    try:
        data = rewrite_kubeconfig(raw, cluster_name=name, address=address)
    except KubeconfigError as exc:
        raise Waiting("KubeconfigInvalid", str(exc), 30) from None
    await fleet.kube.apply_secret(
        namespace,
        f"{name}-kubeconfig",
        {"value": data},
        owner={"name": name, "uid": uid},
        annotations={SOURCE_ANNOTATION: kubeconfig_source(hashlib.sha256(raw).hexdigest(), address)},
        component="kubeconfig",
    )
    return True


def kubeconfig_source(raw_sha256: str, address: str) -> str:
    """What the published kubeconfig was made from: the server's rke2.yaml and the address."""
    return f"{raw_sha256}@{address}"


async def reconcile_cluster(
    *,
    name: str,
    namespace: str,
    spec: Any,
    status: Any,
    meta: Any,
    uid: str,
    body: Any,
    patch: Any,
    memo: Any,
    nodes: Any,
    logger: logging.Logger,
) -> float | None:
    fleet: FleetState = memo.fleet
    generation = meta.get("generation")
    fields: dict[str, Any] = {}
    conds: list[Cond] = []
    try:
        cluster = parse_cluster_spec(dict(spec))
    except SpecError as exc:
        msg = f"invalid spec: {exc}"
        _patch(
            patch,
            status,
            generation,
            {"phase": "Failed"},
            [Cond("Ready", False, "InvalidSpec", msg), Cond("Stalled", True, "InvalidSpec", msg)],
            body,
        )
        raise kopf.PermanentError(msg) from None

    entries = indexes.many(nodes, (namespace, name))
    servers = sorted((e for e in entries if e["spec"].get("role") == "server"), key=lambda e: e["name"])
    sr, sd = _counts(entries, "server")
    ar, ad = _counts(entries, "agent")
    fields.update(
        readyServers=sr, desiredServers=sd, readyAgents=ar, desiredAgents=ad, servers=f"{sr}/{sd}", agents=f"{ar}/{ad}"
    )
    if len(servers) > 1 and not cluster.registration_address:
        msg = (
            f"{len(servers)} servers need spec.registrationAddress (a load balancer, DNS name or VIP "
            "in front of them); nothing is done until it is set"
        )
        _patch(
            patch,
            status,
            generation,
            {**fields, "phase": "Failed"},
            [
                Cond("Ready", False, "RegistrationAddressRequired", msg),
                Cond("Stalled", True, "RegistrationAddressRequired", msg),
            ],
            body,
        )
        return None
    if cluster.paused:
        _patch(
            patch,
            status,
            generation,
            {**fields, "phase": "Paused"},
            [Cond("Ready", sr + ar == sd + ad and sd > 0, "Paused", "reconciliation paused by spec.paused")],
            body,
        )
        return None

    recorded = status.get("initServer")
    init = choose_init_server(
        [(e["name"], str(e["spec"].get("address"))) for e in servers], cluster.registration_address, recorded
    )
    if init and not recorded:
        fields["initServer"] = init
    init_name = recorded or init
    init_entry = next((e for e in servers if e["name"] == init_name), None)
    retry: float | None = None
    try:
        token_secret, adopted = await ensure_token(fleet, namespace, name, uid, cluster, init_entry)
        fields["tokenSecretName"] = token_secret
        conds.append(
            Cond("TokenReady", True, "Adopted" if adopted else "Available", f"join token in Secret {token_secret}")
        )
    except Waiting as w:
        conds.append(Cond("TokenReady", False, w.reason, str(w)))
        retry = w.delay

    ckey = (namespace, name)
    health: ClusterHealth | None = None
    if _cluster_runs(entries):
        health = await cluster_health(
            fleet, namespace, cluster, nodes, ckey,
            max_age=parse_duration(cluster.health_check_interval), secrets=[], init=init_name,
        )  # fmt: skip
        if health.token_sha256:
            fleet.cluster_tokens[ckey] = health.token_sha256
        poke_disagreeing(fleet, namespace, entries, health)
    token_changed = await check_token(fleet, namespace, name, cluster, ckey, status, conds, body)

    rollout = await settle_version(
        fleet, namespace, name, cluster, status, entries, servers, init_entry, fields, conds, body
    )
    upgrading = rollout is not None and rollout.in_progress

    ready_servers = [e for e in servers if indexes.serving(e)]
    address = cluster.registration_address or (str(init_entry["spec"].get("address")) if init_entry else None)
    kc_ready = False
    if ready_servers and address:
        source = ready_servers[0]
        seen = fleet.kubeconfig_seen.get((namespace, source["name"]))
        try:
            # Re-read rke2.yaml only when the Secret is missing or the file changed (RKE2 rewrites
            # it at every start; certificate renewal changes it): the node passes report its hash.
            meta = await fleet.kube.read_secret_meta(namespace, f"{name}-kubeconfig")
            published = (meta or {}).get("annotations", {}).get(SOURCE_ANNOTATION)
            if meta is None or (seen is not None and published != kubeconfig_source(seen, address)):
                await publish_kubeconfig(fleet, namespace, name, uid, cluster, source, address)
            fields["kubeconfigSecretName"] = f"{name}-kubeconfig"
            kc_ready = True
            conds.append(
                Cond("KubeconfigReady", True, "Published", f"Secret {name}-kubeconfig, server https://{address}:6443")
            )
        except Waiting as w:
            conds.append(Cond("KubeconfigReady", False, w.reason, str(w)))
            retry = min(retry or w.delay, w.delay)
    else:
        conds.append(
            Cond(
                "KubeconfigReady",
                bool(status.get("kubeconfigSecretName")),
                "WaitingForServer",
                "waiting for a Ready server",
            )
        )

    conds.append(
        Cond(
            "ServersReady",
            sr == sd and sd > 0,
            "AllReady" if sr == sd and sd else "NotReady",
            f"{sr}/{sd} servers Ready",
        )
    )
    conds.append(Cond("AgentsReady", ar == ad, "AllReady" if ar == ad else "NotReady", f"{ar}/{ad} agents Ready"))
    api_down = health is not None and not health.available
    all_ready = sd > 0 and sr == sd and ar == ad and kc_ready and not upgrading and not api_down and not token_changed
    failed = unhealthy_nodes(entries)
    ever_ready = status.get("phase") in ("Ready", "Degraded")
    if all_ready:
        phase, reason, msg = "Ready", "Ready", f"{sr} servers and {ar} agents Ready"
    elif api_down and health is not None:
        phase, reason = "Degraded", "KubernetesAPIUnavailable"
        msg = f"the cluster's Kubernetes API does not answer (etcd quorum lost?): {health.error}"
    elif token_changed:
        phase, reason = "Degraded", "TokenChanged"
        msg = next(c.message for c in conds if c.type == "TokenReady")
    elif upgrading and rollout is not None:
        phase = "Degraded" if rollout.halted_node else "Provisioning"
        reason = "UpgradeHalted" if rollout.halted_node else "Upgrading"
        msg = (
            f"rollout to {rollout.target} halted at {rollout.halted_node}: {rollout.halted_reason}"
            if rollout.halted_node
            else f"rolling out {rollout.target}: {len(rollout.done)}/{len(entries)} nodes done"
        )
    elif ever_ready and failed:
        phase, reason, msg = "Degraded", "NodesNotReady", f"not Ready: {', '.join(failed)}"
    elif sd == 0:
        phase, reason, msg = "Pending", "NoServers", "no RKE2Node with role server references this cluster"
    else:
        phase, reason = "Provisioning", "Provisioning"
        msg = f"{sr}/{sd} servers and {ar}/{ad} agents Ready"
        if failed:
            msg += f"; failing: {', '.join(failed)}"
    fields["phase"] = phase
    conds.append(Cond("Ready", all_ready, reason, msg))
    if token_changed:
        conds += [Cond("Reconciling", False, "TokenChanged", msg), Cond("Stalled", True, "TokenChanged", msg)]

    _patch(patch, status, generation, fields, conds, body)
    if not all_ready:
        retry = min(retry or CLUSTER_TICK, CLUSTER_TICK)
    return retry


async def check_token(
    fleet: FleetState,
    namespace: str,
    name: str,
    cluster: RKE2ClusterSpec,
    ckey: tuple[str, str],
    status: Any,
    conds: list[Cond],
    body: Any,
) -> bool:
    """True when the token Secret no longer holds the token the cluster runs with (compared by
    hash, read from a server): RKE2 cannot take a new token in place, so nothing is rolled out;
    the condition says how to get out of it."""
    theirs = fleet.cluster_tokens.get(ckey)
    if theirs is None:
        return False
    try:
        mine = password_sha256(await read_token(fleet, namespace, name, cluster))
    except Waiting:
        return False
    if mine == theirs:
        return False
    msg = (
        f"the join token in {token_source(namespace, name, cluster)} is not the token this cluster runs with; "
        "RKE2 cannot change a cluster's token in place (its datastore is encrypted with it), so no node is "
        "changed. Restore the previous token, or rotate it the RKE2 way (rke2 token rotate on a server, "
        "then every node; see the README, Tokens)"
    )
    conds[:] = [c for c in conds if c.type != "TokenReady"]
    cond = Cond("TokenReady", False, "TokenChanged", msg)
    conds.append(cond)
    old = next((c for c in status.get("conditions") or [] if c.get("type") == "TokenReady"), None)
    if not old or old.get("reason") != "TokenChanged":
        kopf.warn(body, reason="TokenChanged", message=msg)
    return True


async def settle_version(
    fleet: FleetState,
    namespace: str,
    name: str,
    cluster: RKE2ClusterSpec,
    status: Any,
    entries: list[Any],
    servers: list[Any],
    init_entry: Any | None,
    fields: dict[str, Any],
    conds: list[Cond],
    body: Any,
) -> RolloutView | None:
    """Approve the target version nodes converge to: checks, then the pre-upgrade snapshot.

    Nodes only ever move to `status.targetVersion`, so a refused or not-yet-snapshotted version
    touches nothing.
    """
    approved = status.get("targetVersion")
    wanted = cluster.version
    if not wanted:  # channel: the init server's install resolves it once
        wanted = approved or (init_entry["status"].get("installedVersion") if init_entry else None)
        if wanted:
            fields["targetVersion"] = wanted
        return None
    started = [e for e in entries if e["status"].get("runningVersion") or e["status"].get("installedVersion")]
    if approved and approved != wanted and started:
        problem = upgrade_problem(approved, wanted)
        if problem:
            reason, msg = problem
            _condition_event(status, conds, body, Cond("UpgradeHalted", True, reason, msg))
            conds.append(Cond("Stalled", True, reason, msg))
            return rollout_view(approved, entries)
        if cluster.upgrade.snapshot and servers:
            snap = snapshot_name(wanted)
            if status.get("lastSnapshot") != snap:
                try:
                    await take_snapshot(fleet, namespace, cluster, servers, init_entry, snap)
                except Waiting as w:
                    msg = f"pre-upgrade snapshot {snap} failed, nothing upgraded: {w}"
                    _condition_event(status, conds, body, Cond("UpgradeHalted", True, "SnapshotFailed", msg))
                    return rollout_view(approved, entries)
                fields["lastSnapshot"] = snap
                kopf.info(body, reason="SnapshotTaken", message=f"etcd snapshot {snap} taken before the upgrade")
        kopf.info(body, reason="UpgradeStarted", message=f"rolling out {wanted} (from {approved})")
    fields["targetVersion"] = wanted
    if not started:
        return None
    view = rollout_view(wanted, entries)
    if view.in_progress or status.get("rollout"):
        fields["rollout"] = view.status()
    halted = (
        Cond("UpgradeHalted", True, "NodeFailed", f"{view.halted_node}: {view.halted_reason}")
        if view.halted_node
        else Cond("UpgradeHalted", False, "Progressing" if view.in_progress else "Done", "")
    )
    _condition_event(status, conds, body, halted)
    metrics.set_upgrade_halted(namespace, name, bool(view.halted_node))
    return view


async def take_snapshot(
    fleet: FleetState,
    namespace: str,
    cluster: RKE2ClusterSpec,
    servers: list[Any],
    init_entry: Any | None,
    snap: str,
) -> None:
    ready = [e for e in servers if indexes.serving(e)]
    ready.sort(key=lambda e: e is not init_entry)
    if not ready:
        raise Waiting("NoReadyServer", "no Ready server to take it on")
    entry = ready[0]
    target = await build_target(fleet, namespace, cluster, parse_node_spec(entry["spec"]), entry["status"])
    try:
        res = await fleet.pool.run(target, ["rke2", "etcd-snapshot", "save", "--name", snap], check=False)
    except HostAccessError as exc:
        raise Waiting("SnapshotFailed", str(exc)) from None
    if res.exit_status != 0:
        tail = " ".join((res.stderr or res.stdout).split()[-25:])
        raise Waiting("SnapshotFailed", f"on {entry['name']}: {redact(tail, [])}")


def _condition_event(status: Any, conds: list[Cond], body: Any, cond: Cond) -> None:
    """Add the condition; post an Event when it turns True or changes its reason."""
    conds.append(cond)
    old = next((c for c in status.get("conditions") or [] if c.get("type") == cond.type), None)
    if cond.status and (not old or old.get("status") != "True" or old.get("reason") != cond.reason):
        kopf.warn(body, reason=cond.reason, message=cond.message)


def _export(body: Any, fields: dict[str, Any]) -> None:
    phase = fields.get("phase")
    if phase not in PHASES:
        return
    sr, sd = fields.get("readyServers", 0), fields.get("desiredServers", 0)
    ar, ad = fields.get("readyAgents", 0), fields.get("desiredAgents", 0)
    counts: dict[tuple[Any, Any], int] = {
        ("server", "ready"): sr,
        ("server", "not_ready"): sd - sr,
        ("agent", "ready"): ar,
        ("agent", "not_ready"): ad - ar,
    }
    rollout = fields.get("rollout") or {}
    upgrading = rollout.get("phase") in ("Servers", "Agents", "Halted")
    metrics.set_cluster_state(
        body["metadata"]["namespace"], body["metadata"]["name"], phase, counts, upgrading=upgrading
    )


def _patch(patch: Any, status: Any, generation: Any, fields: dict[str, Any], conds: list[Cond], body: Any) -> None:
    _export(body, fields)
    out = status_patch(status, generation, fields, conds)
    for k, v in out.items():
        patch.status[k] = v
    old_phase = status.get("phase")
    if "phase" in out and out["phase"] != old_phase:
        ready = next((c for c in conds if c.type == "Ready"), None)
        kind = "Warning" if out["phase"] in ("Failed", "Degraded") else "Normal"
        kopf.event(
            body,
            type=kind,
            reason=ready.reason if ready else out["phase"],
            message=f"phase {old_phase or 'none'} → {out['phase']}: {ready.message if ready else ''}",
        )


@kopf.on.resume(GROUP, VERSION, "rke2clusters")
@kopf.on.create(GROUP, VERSION, "rke2clusters")
@kopf.on.update(GROUP, VERSION, "rke2clusters", field="spec")
async def cluster_changed(*, memo: Any, name: str, namespace: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    with observed("RKE2Cluster", namespace, name):
        async with fleet.cluster_locks[(namespace, name)]:
            await reconcile_cluster(memo=memo, name=name, namespace=namespace, **_pick(kw))


@kopf.timer(GROUP, VERSION, "rke2clusters", interval=CLUSTER_GAP, initial_delay=CLUSTER_GAP)
async def cluster_tick(*, memo: Any, name: str, namespace: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    stopped = kw["stopped"]  # Kopf's stop flag of timers and daemons (not in its TimerFn protocol)
    # A pass every CLUSTER_TICK, or as soon as one of its nodes changed (indexes.nodes marks the
    # cluster dirty), at most one per CLUSTER_GAP + pass: a bring-up's bursts are batched.
    await fleet.until_cluster_dirty((namespace, name), CLUSTER_TICK, stopped)
    lock = fleet.cluster_locks[(namespace, name)]
    if stopped:
        return
    if lock.locked():  # the handler's pass may have read the nodes before the change: look again
        fleet.mark_cluster_dirty((namespace, name))
        return
    async with lock:
        try:
            with observed("RKE2Cluster", namespace, name):
                await reconcile_cluster(memo=memo, name=name, namespace=namespace, **_pick(kw))
        except kopf.PermanentError:
            pass  # already in status; the timer keeps looking for a fixed spec


@kopf.on.delete(GROUP, VERSION, "rke2clusters")
async def cluster_deleted(*, name: str, namespace: Any, memo: Any, **kw: Any) -> None:
    remaining = [e["name"] for e in indexes.many(kw["nodes"], (namespace, name))]
    if remaining:
        raise kopf.TemporaryError(f"waiting for its RKE2Nodes to be deleted: {', '.join(sorted(remaining))}", delay=5)
    metrics.forget_cluster(namespace, name)
    memo.fleet.forget_cluster((namespace, name))


def _pick(kw: dict[str, Any]) -> dict[str, Any]:
    keys = ("spec", "status", "meta", "uid", "body", "patch", "nodes", "logger")
    return {k: kw[k] for k in keys if k in kw}
