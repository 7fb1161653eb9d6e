"""One pass over one cluster: its init server, the join token, its own view of its nodes, the
approved version and rollout, the kubeconfig, and the summary of its nodes (counts, phase)."""

from __future__ import annotations

from rke2fleet.api import RKE2ClusterSpec, SpecError, parse_cluster_spec, parse_duration
from rke2fleet.api.conditions import Cond
from rke2fleet.engine.access import Waiting, cluster_health
from rke2fleet.engine.addons import addons_step
from rke2fleet.engine.cluster_secrets import ensure_token, kubeconfig
from rke2fleet.engine.cluster_summary import Found, counts, disagreeing, summary, unhealthy_nodes
from rke2fleet.engine.cluster_version import settle_version
from rke2fleet.engine.core import Engine
from rke2fleet.engine.outcome import ClusterOutcome, Event
from rke2fleet.engine.records import ClusterRecord, NodeRecord
from rke2fleet.engine.restore import active_restore
from rke2fleet.engine.token_rotation import token_condition, token_step
from rke2fleet.reconcile.health import ClusterHealth
from rke2fleet.reconcile.ordering import choose_init_server


async def cluster_pass(engine: Engine, crec: ClusterRecord) -> ClusterOutcome:
    out = ClusterOutcome()
    try:
        cluster = parse_cluster_spec(crec.spec)
    except SpecError as exc:
        msg = f"invalid spec: {exc}"
        out.permanent = msg
        return stop(crec, out, "InvalidSpec", msg)
    records = engine.store.nodes(crec.namespace, crec.name)
    servers = sorted((r for r in records if r.role == "server"), key=lambda r: r.name)
    found = counts(records)
    found.write(out.status)
    if len(servers) > 1 and not cluster.registration_address:
        msg = (
            f"{len(servers)} servers need spec.registrationAddress (a load balancer, DNS name or VIP "
            "in front of them); nothing is done until it is set"
        )
        return stop(crec, out, "RegistrationAddressRequired", msg)
    restoring = active_restore(engine, crec.namespace, crec.name)
    if restoring is not None:
        out.status.phase = "Restoring"
        msg = f"restore {restoring.name} under way ({restoring.phase}); the cluster's reconcile waits for it"
        out.conditions.append(Cond("Ready", None, "Restoring", msg))
        return phase_event(crec, out)
    if cluster.paused:
        out.status.phase = "Paused"
        ready = found.ready_servers + found.ready_agents == found.servers + found.agents and found.servers > 0
        out.conditions.append(Cond("Ready", ready, "Paused", "reconciliation paused by spec.paused"))
        return phase_event(crec, out)
    return await running(engine, crec, cluster, records, servers, out)


async def running(engine: Engine, crec: ClusterRecord, cluster: RKE2ClusterSpec, records: list[NodeRecord],
                  servers: list[NodeRecord], out: ClusterOutcome) -> ClusterOutcome:  # fmt: skip
    recorded = crec.status.get("initServer")
    init_name = recorded or choose_init_server(
        [(r.name, str(r.spec.get("address"))) for r in servers], cluster.registration_address, recorded
    )
    if init_name and not recorded:
        out.status.init_server = init_name
    init = next((r for r in servers if r.name == init_name), None)
    try:
        secret, adopted = await ensure_token(engine, crec, cluster, init)
        out.status.token_secret_name = secret
        out.conditions.append(
            Cond("TokenReady", True, "Adopted" if adopted else "Available", f"join token in Secret {secret}")
        )
    except Waiting as w:
        out.conditions.append(Cond("TokenReady", False, w.reason, str(w)))
    health = await look(engine, crec, cluster, records, init_name, out)
    token = await token_step(engine, crec, cluster, records, out)
    token_condition(token, out)
    rollout = await settle_version(engine, crec, cluster, records, init, out)
    published = await kubeconfig(engine, crec, cluster, servers, init, out)
    await addons_step(engine, crec, cluster, records, out)
    found = counts(records)
    out.conditions += found.conditions()
    phase, ready = summary(
        Found(
            counts=found,
            kubeconfig_published=published,
            rollout=rollout,
            health=health,
            token=token,
            ever_ready=crec.status.get("phase") in ("Ready", "Degraded"),
            unhealthy=unhealthy_nodes(records),
        )
    )
    out.status.phase = phase
    out.conditions.append(ready)
    if token and token[2]:  # it cannot progress without a person
        out.conditions += [Cond("Reconciling", False, token[0], ready.message),
                           Cond("Stalled", True, token[0], ready.message)]  # fmt: skip
    return phase_event(crec, out)


async def look(engine: Engine, crec: ClusterRecord, cluster: RKE2ClusterSpec, records: list[NodeRecord],
               init: str | None, out: ClusterOutcome) -> ClusterHealth | None:  # fmt: skip
    """The cluster's own view of its nodes (every healthCheckInterval at most), once a server runs:
    which token its datastore is encrypted with, and which nodes to re-check at once."""
    if not any(r.role == "server" and r.runs for r in records):
        return None
    health = await cluster_health(
        engine, crec.namespace, crec.name, cluster,
        max_age=parse_duration(cluster.health_check_interval), secrets=[], init=init,
    )  # fmt: skip
    if health.token_sha256 and health.source:
        engine.memory.saw_token(crec.key, health.source, health.token_sha256, health.read_at)
    out.recheck = disagreeing(records, health)
    return health


def stop(crec: ClusterRecord, out: ClusterOutcome, reason: str, msg: str) -> ClusterOutcome:
    """It cannot progress without a change of its spec."""
    out.status.phase = "Failed"
    out.conditions += [Cond("Ready", False, reason, msg), Cond("Stalled", True, reason, msg)]
    return phase_event(crec, out)


def phase_event(crec: ClusterRecord, out: ClusterOutcome) -> ClusterOutcome:
    """An Event when the phase changes, saying why."""
    old, new = crec.status.get("phase"), out.status.phase
    if new and new != old:
        ready = next((c for c in out.conditions if c.type == "Ready"), None)
        msg = f"phase {old or 'none'} → {new}: {ready.message if ready else ''}"
        reason = ready.reason if ready else new
        out.events.append(Event("Warning" if new in ("Failed", "Degraded") else "Normal", reason, msg))
    return out
