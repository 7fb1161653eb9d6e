"""One pass over one node: facts → plan → (token guard, go-ahead) → stage or apply → outcome.

The pass claims its node's turn before it disrupts it, holds it until the cluster counts the
node again, and reports what it observed; it writes nothing but progress (the caller writes the
outcome).
"""

from __future__ import annotations

import time

from rke2fleet.api import SpecError, parse_node_spec
from rke2fleet.api.conditions import Cond
from rke2fleet.engine.access import Waiting
from rke2fleet.engine.core import Engine
from rke2fleet.engine.node_change import Pass
from rke2fleet.engine.node_context import NodeContext, Waits, cluster_of, resolve
from rke2fleet.engine.node_results import access_failure, facts_status, reached
from rke2fleet.engine.outcome import Event, NodeOutcome
from rke2fleet.engine.records import NodeRecord
from rke2fleet.engine.restore import active_restore
from rke2fleet.engine.turns import await_turn
from rke2fleet.hostaccess import HostAccessError
from rke2fleet.reconcile.facts import FactsError, facts_script, parse_facts


async def node_pass(engine: Engine, record: NodeRecord, *, timer: bool) -> NodeOutcome:
    """The node's pass; `timer`: a periodic re-check rather than a change of the node or its cluster."""
    try:
        parse_node_spec(record.spec)
    except SpecError as exc:
        return invalid(f"invalid the node spec: {exc}")
    try:
        crec, cluster = cluster_of(engine, record)
    except Waiting as w:
        return await waiting(engine, Waits(w), record)
    restoring = active_restore(engine, record.namespace, crec.name)
    if restoring is not None:
        # The restore has the hosts; what their state is, it alone knows until it is done.
        out = NodeOutcome(cluster=crec, retry_after=5.0)
        out.status.phase = "Restoring"
        msg = f"restore {restoring.name} of cluster {crec.name} under way ({restoring.phase})"
        out.conditions.append(Cond("Ready", None, "Restoring", msg))
        return out
    if cluster.paused and not timer:
        # Paused: no host action at all; timer passes still report drift (read-only).
        out = NodeOutcome(cluster=crec)
        out.status.phase = "Paused"
        out.conditions.append(Cond("Ready", record.condition_true("Ready"), "Paused", f"cluster {crec.name} is paused"))
        return out
    ctx = await resolve(engine, record, crec, cluster, timer=timer)
    if isinstance(ctx, Waits):
        return await waiting(engine, ctx, record)
    if record.phase not in ("Ready", "NotReady", "Pending", None):
        # Bring-up, once staged (or failed): wait for our turn here, reading only the store,
        # instead of re-reading the host's facts over SSH on every retry (that polling starves
        # the hosts at fleet size). A node never seen yet goes on at once: it stages.
        await await_turn(engine, ctx.record, ctx.init, ctx.cluster)
    started = time.monotonic()
    out = await Pass(engine, ctx).run()
    out.cluster = ctx.cluster_record
    memory = engine.memory
    if out.kubeconfig_sha256:
        memory.kubeconfig_seen[record.key] = out.kubeconfig_sha256
    if out.token_sha256 and ctx.node.role == "server":
        memory.saw_token(ctx.ckey, record.name, out.token_sha256, started)
        known = memory.server_tokens[ctx.ckey]
        if ctx.ckey not in memory.cluster_tokens and len(set(known.values())) == 1:
            memory.cluster_tokens[ctx.ckey] = out.token_sha256  # a new cluster: its init server's
    _record_accepted_key(engine, ctx, out)
    return out


def invalid(msg: str) -> NodeOutcome:
    out = NodeOutcome(permanent=msg)
    out.status.phase = "Failed"
    out.status.last_error = msg
    out.conditions += [Cond("Ready", False, "InvalidSpec", msg), Cond("Stalled", True, "InvalidSpec", msg)]
    out.events.append(Event("Warning", "InvalidSpec", msg))
    return out


async def waiting(engine: Engine, waits: Waits, record: NodeRecord) -> NodeOutcome:
    """Nothing to change yet, but say whether the host answers: a read-only probe."""
    out = await probe(engine, waits) if waits.target is not None else NodeOutcome()
    out.cluster = waits.cluster
    out.status.phase = out.status.phase or record.phase or "Pending"  # type: ignore[assignment]
    # A host that cannot be checked keeps the probe's Ready (Unknown): that outranks waiting.
    if not out.has("Ready"):
        out.conditions.append(Cond("Ready", False, waits.why.reason, str(waits.why)))
    if waits.target is not None and (key := engine.hosts.accepted_key(waits.target)):
        out.status.host_key = key
    out.retry_after = max(waits.why.delay, out.retry_after or 0)
    return out


async def probe(engine: Engine, waits: Waits) -> NodeOutcome:
    assert waits.target is not None
    try:
        res = await engine.hosts.run(waits.target, script=facts_script())
        facts = parse_facts(res.stdout)
    except HostAccessError as exc:
        return access_failure(exc, waits.target)
    except FactsError as exc:
        out = NodeOutcome(conditions=[Cond("Reachable", True, "BadFacts", str(exc))])
        out.status.last_error = str(exc)
        return out
    out = NodeOutcome(conditions=reached(waits.target))
    facts_status(out.status, facts)
    return out


def _record_accepted_key(engine: Engine, ctx: NodeContext, out: NodeOutcome) -> None:
    """AcceptNew: the key seen first is recorded in status and required from then on."""
    accepted = engine.hosts.accepted_key(ctx.target)
    if accepted:
        out.status.host_key = accepted
