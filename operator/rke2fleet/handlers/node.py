"""RKE2Node handlers: thin glue around `reconcile.node_pass`."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import kopf

from rke2fleet import GROUP, VERSION, metrics
from rke2fleet.api import (
    RKE2ClusterSpec,
    RKE2NodeSpec,
    SpecError,
    parse_cluster_spec,
    parse_duration,
    parse_node_spec,
)
from rke2fleet.handlers import deletion, indexes
from rke2fleet.handlers.access import Waiting, build_target, cluster_health, read_token, token_source
from rke2fleet.handlers.observe import observed
from rke2fleet.handlers.state import FleetState
from rke2fleet.handlers.status import node_status_patch, post_events
from rke2fleet.hostaccess import HostTarget
from rke2fleet.reconcile.conditions import Cond
from rke2fleet.reconcile.health import ClusterHealth
from rke2fleet.reconcile.node_pass import NodeInputs, NodeOutcome, node_pass, probe
from rke2fleet.reconcile.ordering import GoAhead, choose_init_server, may_disrupt
from rke2fleet.reconcile.plan import Plan
from rke2fleet.reconcile.tokens import token_values

# How often each node's timer wakes; a pass runs when the drift interval has elapsed or the
# cluster's desired state changed. Small in tests, through the environment.
NODE_TICK = float(os.environ.get("RKE2FLEET_NODE_TICK", "20"))
TIMER_GAP = 0.1  # Kopf's own sleep between two ticks; the tick's wait is in node_tick
BRINGUP_BATCH = 50  # reference §5: agents in batches of at most 50


def _cluster_of(clusters: Any, namespace: str, spec: Any) -> tuple[str, Any]:
    cname = spec.get("cluster")
    entry = indexes.one(clusters, (namespace, cname))
    if entry is None:
        raise Waiting("ClusterNotFound", f"RKE2Cluster {cname} not found in namespace {namespace}", 10)
    return str(cname), entry


async def reconcile_node(
    *,
    name: str,
    namespace: str,
    spec: Any,
    status: Any,
    meta: Any,
    body: Any,
    patch: Any,
    memo: Any,
    clusters: Any,
    nodes: Any,
    logger: logging.Logger,
    timer: bool,
) -> float | None:
    """One pass; returns the delay after which to retry (None when settled)."""
    fleet: FleetState = memo.fleet
    generation = meta.get("generation")
    try:
        node = parse_node_spec(dict(spec))
    except SpecError as exc:
        _invalid(body, patch, status, generation, exc, "the node spec")
        raise kopf.PermanentError(str(exc)) from None
    target: HostTarget | None = None
    try:
        cname, centry = _cluster_of(clusters, namespace, spec)
        try:
            cluster = parse_cluster_spec(centry["spec"])
        except SpecError:
            raise Waiting("ClusterInvalid", f"RKE2Cluster {cname} has an invalid spec; see its status", 30) from None
        ckey = (namespace, cname)
        fleet.seen_stamp[(namespace, name)] = indexes.desired_stamp(centry)
        if cluster.paused and not timer:
            # Paused: no host action at all; timer passes still report drift (read-only).
            node_status_patch(
                patch,
                status,
                generation,
                {"phase": "Paused"},
                [Cond("Ready", condition_ready(status), "Paused", f"cluster {cname} is paused")],
            )
            return None
        if not _settled(centry, cluster, indexes.many(nodes, ckey), name):
            # A new cluster chooses its init server and version in its own first pass: wait for
            # that on the index (no SSH, no API call) instead of failing and retrying later.
            await until(
                lambda: _settled(indexes.one(clusters, ckey) or centry, cluster, indexes.many(nodes, ckey), name)
            )
            centry = indexes.one(clusters, ckey) or centry
            fleet.seen_stamp[(namespace, name)] = indexes.desired_stamp(centry)
        target = await build_target(fleet, namespace, cluster, node, status)
        cstatus = centry["status"]
        siblings = indexes.many(nodes, ckey)
        servers = _servers(siblings)
        init = cstatus.get("initServer")
        if not init:
            raise Waiting("WaitingForCluster", f"waiting for RKE2Cluster {cname} to choose its init server")
        is_init = choose_init_server(servers, cluster.registration_address, init) == name
        join = cluster.registration_address or next((a for n, a in servers if n == init), None)
        # The cluster approves each target version (checks, pre-upgrade snapshot) before nodes move.
        version = cstatus.get("targetVersion")
        if not version and (cluster.version or not is_init):
            raise Waiting("WaitingForVersion", f"waiting for RKE2Cluster {cname} to settle the target version")
        token = await read_token(fleet, namespace, cname, cluster)
    except Waiting as w:
        # Nothing to change yet, but say whether the host answers: a read-only probe.
        probed = await probe(fleet.pool, target) if target is not None else NodeOutcome()
        fields = {"phase": probed.status.get("phase") or status.get("phase") or "Pending", **probed.status}
        if target is not None:
            _record_accepted_key(fleet, target, fields)
        # A host that cannot be checked keeps the probe's Ready (Unknown): that outranks waiting.
        waiting = [] if any(c.type == "Ready" for c in probed.conditions) else [Cond("Ready", False, w.reason, str(w))]
        node_status_patch(patch, status, generation, fields, [*probed.conditions, *waiting])
        post_events(body, fleet.new_events((namespace, name), probed.events))
        return max(w.delay, probed.retry_after or 0)

    secrets = token_values(token)

    async def health(max_age: float) -> ClusterHealth:
        return await cluster_health(
            fleet, namespace, cluster, nodes, ckey, max_age=max_age, secrets=secrets, init=init
        )

    async def go_ahead(plan: Plan) -> GoAhead:
        entries = indexes.many(nodes, ckey)
        fresh: ClusterHealth | None = None
        if any(indexes.serving(e) or e["status"].get("runningVersion") for e in entries if e["name"] != name):
            # A live cluster: who serves is read from it now, never from a status written earlier
            # (never two servers down, agents only behind serving servers).
            fresh = await health(0)
            if not fresh.available:
                return GoAhead(False, f"cannot check the cluster before changing a node: {fresh.error}")
        busy = fleet.busy[ckey]
        # The index now, not at pass start (another pass may have claimed its turn meanwhile).
        views = indexes.node_views(indexes.many(nodes, ckey), busy, fresh)
        me = next((v for v in views if v.name == name), None)
        if me is None:
            return GoAhead(False, "node not in the cluster's index yet")
        if plan.upgrades:
            verdict = may_disrupt(
                me,
                views,
                init,
                agent_batch=cluster.upgrade.agent_concurrency,
                server_batch=cluster.upgrade.server_concurrency,
                upgrade_to=version,
            )
        else:
            verdict = may_disrupt(me, views, init, agent_batch=BRINGUP_BATCH)
        if verdict.allowed:
            busy.add(name)
        return verdict

    def release() -> None:
        fleet.busy[ckey].discard(name)

    if status.get("phase") not in ("Ready", "NotReady", "Pending", None):
        # Bring-up, once staged (or failed): wait for our turn here, reading only the index,
        # instead of re-reading the host's facts over SSH on every retry (that polling starves
        # the hosts at fleet size). A node never seen yet goes on at once: it stages.
        await await_turn(fleet, nodes, ckey, name, init)

    progress: dict[str, Any] = {}

    async def on_phase(phase: str, plan: list[str], extra: dict[str, Any]) -> None:
        # Progress for people watching `kubectl get rkn -w`, and what a restarted operator must
        # know (cordoned): awaited, so it is stored before the step and before the final status.
        fields = {"phase": phase, "plan": plan, **extra}
        try:
            await fleet.kube.patch_status("rke2nodes", namespace, name, fields)
            progress.update(fields)
        except Exception as exc:  # progress is a nicety: never fail the pass over it
            logger.warning("could not write progress of %s: %s", name, type(exc).__name__)

    outcome: NodeOutcome = await node_pass(
        fleet.pool,
        NodeInputs(
            name=name,
            node=node,
            cluster=cluster,
            token=token,
            is_init=is_init,
            join_address=join,
            version=version,
            target=target,
            secrets=secrets,
            cordoned=bool(status.get("cordoned")),
            kubectl_target=lambda: _kubectl_target(fleet, namespace, cluster, siblings, name, node, target),
            drift_check=timer and status.get("phase") in ("Ready", "Paused"),
            report_only=cluster.paused or (timer and cluster.drift_policy == "Report"),
            was_drifted=indexes.condition_true(status, "Drifted"),
            await_turn=lambda: await_turn(fleet, nodes, ckey, name, init),
            await_stage=None if node.role == "server" else lambda: init_starting(nodes, ckey, init),
            health=health,
            health_max_age=parse_duration(cluster.health_check_interval),
            cluster_token_sha256=fleet.cluster_tokens.get(ckey),
            token_source=token_source(namespace, cname, cluster),
        ),
        go_ahead=go_ahead,
        release=release,
        on_phase=on_phase,
    )
    if outcome.kubeconfig_sha256:
        fleet.kubeconfig_seen[(namespace, name)] = outcome.kubeconfig_sha256
    if outcome.token_sha256 and node.role == "server":
        fleet.cluster_tokens[ckey] = outcome.token_sha256
    for kind in outcome.drift_kinds:
        metrics.record_drift(namespace, cname, name, kind)
    _record_accepted_key(fleet, target, outcome.status)
    # Diff against what is stored now, progress writes included.
    node_status_patch(patch, {**status, **progress}, generation, outcome.status, outcome.conditions)
    post_events(body, fleet.new_events((namespace, name), outcome.events))
    _export(namespace, cname, name, node.role, status, outcome)
    if outcome.host_actions:
        logger.info("node %s: %s", name, "; ".join(outcome.status.get("plan") or []) or "converged")
    return outcome.retry_after


TURN_WAIT = 15.0  # bounded: the handler holds a Kopf worker while it waits
TURN_POLL = 0.2


async def await_turn(fleet: FleetState, nodes: Any, ckey: tuple[str, str], name: str, init: str) -> bool:
    """Until the cluster's ordering would let this node start (True), or TURN_WAIT passed.

    No SSH and no API call: the live Kopf index only. node_pass still claims the turn itself.
    """

    def my_turn() -> bool:
        views = indexes.node_views(indexes.many(nodes, ckey), fleet.busy[ckey])
        me = next((v for v in views if v.name == name), None)
        return me is not None and may_disrupt(me, views, init, agent_batch=BRINGUP_BATCH).allowed

    return await until(my_turn)


# The init server's phases after which agents stage: it is starting or runs, or it is stuck
# (then waiting helps nothing: its own failure is in its status).
INIT_STARTING = frozenset({"Starting", "Ready", "Failed", "Unreachable"})


async def init_starting(nodes: Any, ckey: tuple[str, str], init: str) -> bool:
    """Until the init server has installed and is starting (or runs): an agent stages after that,
    so the first server's download, on the bring-up's critical path, does not share the site's
    bandwidth, the mirror or (in the sandbox) the CPUs with every agent's. Bounded, index only."""

    def starting() -> bool:
        entry = next((e for e in indexes.many(nodes, ckey) if e["name"] == init), None)
        return entry is None or entry["status"].get("phase") in INIT_STARTING or bool(
            entry["status"].get("runningVersion")
        )

    return await until(starting)


async def until(condition: Callable[[], bool], wait: float = TURN_WAIT) -> bool:
    """Poll an in-memory condition (the live indexes) until it holds (True) or `wait` passed."""
    deadline = time.monotonic() + wait
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(TURN_POLL)
    return True


def _servers(siblings: list[Any]) -> list[tuple[str, str]]:
    return [(e["name"], str(e["spec"].get("address"))) for e in siblings if e["spec"].get("role") == "server"]


def _settled(centry: Any, cluster: RKE2ClusterSpec, siblings: list[Any], name: str) -> bool:
    """The cluster has chosen its init server and approved a target version (but a channel's
    init server, which learns its version by installing, needs none): this node can plan."""
    st = centry["status"]
    init = st.get("initServer")
    if not init:
        return False
    if st.get("targetVersion"):
        return True
    return not cluster.version and choose_init_server(_servers(siblings), cluster.registration_address, init) == name


def _record_accepted_key(fleet: FleetState, target: HostTarget, fields: dict[str, Any]) -> None:
    """AcceptNew: the key seen first is recorded in status and required from then on."""
    accepted = fleet.pool.accepted_key(target)
    if accepted:
        fields["hostKey"] = accepted


async def _kubectl_target(
    fleet: FleetState,
    namespace: str,
    cluster: RKE2ClusterSpec,
    siblings: list[Any],
    name: str,
    node: RKE2NodeSpec,
    own: HostTarget,
) -> HostTarget | None:
    """A Ready server to run kubectl on for this node (another one when there is one)."""
    ready = [e for e in siblings if e["name"] != name and e["spec"].get("role") == "server" and indexes.serving(e)]
    if ready:
        try:
            entry = sorted(ready, key=lambda e: e["name"])[0]
            return await build_target(fleet, namespace, cluster, parse_node_spec(entry["spec"]), entry["status"])
        except (Waiting, SpecError):
            pass
    return own if node.role == "server" else None


def _export(namespace: str, cluster: str, name: str, role: str, old: Any, outcome: NodeOutcome) -> None:
    def current(key: str) -> Any:
        return outcome.status[key] if key in outcome.status else old.get(key)

    unreachable = any(c.type == "Reachable" and c.status is False for c in outcome.conditions)
    metrics.set_node_reachable(namespace, cluster, name, not unreachable)
    metrics.set_node_state(
        namespace,
        cluster,
        name,
        "server" if role == "server" else "agent",
        current("phase") == "Ready",
        current("installedVersion"),
        current("runningVersion"),
    )


def condition_ready(status: Any) -> bool:
    return indexes.condition_true(status, "Ready")


def _invalid(body: Any, patch: Any, status: Any, generation: Any, exc: SpecError, what: str) -> None:
    msg = f"invalid {what}: {exc}"
    node_status_patch(
        patch,
        status,
        generation,
        {"phase": "Failed", "lastError": msg},
        [Cond("Ready", False, "InvalidSpec", msg), Cond("Stalled", True, "InvalidSpec", msg)],
    )
    kopf.warn(body, reason="InvalidSpec", message=msg)


@kopf.on.resume(GROUP, VERSION, "rke2nodes")
@kopf.on.create(GROUP, VERSION, "rke2nodes")
@kopf.on.update(GROUP, VERSION, "rke2nodes", field="spec")
async def node_changed(*, memo: Any, name: str, namespace: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    with observed("RKE2Node", namespace, name):
        async with fleet.node_locks[(namespace, name)]:
            delay = await reconcile_node(memo=memo, name=name, namespace=namespace, timer=False, **_pick(kw))
        fleet.next_pass[(namespace, name)] = time.monotonic() + (
            delay or _drift_interval(kw["clusters"], namespace, kw["spec"])
        )
        if delay is not None:
            raise kopf.TemporaryError("not converged yet; see status", delay=delay)


@kopf.timer(GROUP, VERSION, "rke2nodes", interval=TIMER_GAP, initial_delay=NODE_TICK)
async def node_tick(*, memo: Any, name: str, namespace: Any, spec: Any, **kw: Any) -> None:
    fleet: FleetState = memo.fleet
    stopped = kw["stopped"]  # Kopf's stop flag of timers and daemons (not in its TimerFn protocol)
    ckey = (namespace, str(spec.get("cluster")))
    # The tick waits here rather than in Kopf's sleep, so that a change of the cluster's desired
    # state (see indexes.clusters) wakes every node of it at once.
    await fleet.until_woken(ckey, NODE_TICK, stopped)
    lock = fleet.node_locks[(namespace, name)]
    if stopped or lock.locked():
        return
    interval = _drift_interval(kw["clusters"], namespace, spec)
    key = (namespace, name)
    due = time.monotonic() >= fleet.next_pass.get(key, 0.0)
    stamp = indexes.desired_stamp(indexes.one(kw["clusters"], ckey))
    woken = fleet.seen_stamp.get(key) != stamp
    poked = key in fleet.poked  # the cluster reports this node differently from its status
    if not (due or woken or poked):
        return
    fleet.poked.discard(key)
    with observed("RKE2Node", namespace, name):
        async with lock:
            delay = await reconcile_node(
                memo=memo, name=name, namespace=namespace, spec=spec, timer=not woken, **_pick(kw)
            )
    # Not settled (waiting for its turn, retrying a failure): come back soon, not in a drift interval.
    fleet.next_pass[key] = time.monotonic() + (delay if delay is not None else interval)


@kopf.on.delete(GROUP, VERSION, "rke2nodes")
async def node_deleted(
    *, memo: Any, name: str, namespace: Any, spec: Any, status: Any, body: Any, logger: Any, **kw: Any
) -> None:
    fleet: FleetState = memo.fleet
    async with fleet.node_locks[(namespace, name)]:
        await deletion.delete_node(
            fleet,
            name=name,
            namespace=namespace,
            spec=spec,
            status=status,
            meta=kw["meta"],
            body=body,
            patch=kw["patch"],
            clusters=kw["clusters"],
            nodes=kw["nodes"],
            logger=logger,
        )
    fleet.forget_node((namespace, name))
    metrics.forget_node(namespace, str(spec.get("cluster")), name)


def _drift_interval(clusters: Any, namespace: str, spec: Any) -> float:
    """The node's cluster's driftCheckInterval in seconds (5 minutes when unknown)."""
    centry = indexes.one(clusters, (namespace, str(spec.get("cluster"))))
    try:
        return parse_duration(str((centry or {}).get("spec", {}).get("driftCheckInterval", "5m")))
    except ValueError:
        return 300.0


def _pick(kw: dict[str, Any]) -> dict[str, Any]:
    keys = ("spec", "status", "meta", "body", "patch", "clusters", "nodes", "logger")
    return {k: kw[k] for k in keys if k in kw}
