"""The version the cluster's nodes converge to: approved after checks (no downgrade, no skipped
minor) and, for an upgrade, after a pre-upgrade etcd snapshot; then the rollout's progress."""

from __future__ import annotations

from rke2fleet.api import RKE2ClusterSpec
from rke2fleet.api.conditions import Cond
from rke2fleet.api.status import RolloutStatus
from rke2fleet.engine.access import Waiting
from rke2fleet.engine.core import Engine
from rke2fleet.engine.outcome import ClusterOutcome, Event
from rke2fleet.engine.records import ClusterRecord, NodeRecord
from rke2fleet.engine.snapshots import TAKEN_ANNOTATION, pick_server, save
from rke2fleet.reconcile.rollout import RolloutView, rollout_view, snapshot_name, upgrade_problem


def condition_event(crec: ClusterRecord, out: ClusterOutcome, cond: Cond) -> None:
    """Add the condition; post an Event when it turns True or changes its reason."""
    out.conditions.append(cond)
    old = next((c for c in crec.status.get("conditions") or [] if c.get("type") == cond.type), None)
    if cond.status and (not old or old.get("status") != "True" or old.get("reason") != cond.reason):
        out.events.append(Event("Warning", cond.reason, cond.message))


async def settle_version(
    engine: Engine,
    crec: ClusterRecord,
    cluster: RKE2ClusterSpec,
    records: list[NodeRecord],
    init: NodeRecord | None,
    out: ClusterOutcome,
) -> RolloutView | None:
    """Approve the target version nodes converge to: checks, then the pre-upgrade snapshot.

    Nodes only ever move to `status.targetVersion`, so a refused or not-yet-snapshotted version
    touches nothing.
    """
    approved = crec.status.get("targetVersion")
    wanted = cluster.version
    if not wanted:  # channel: the init server's install resolves it once
        wanted = approved or (init.status.get("installedVersion") if init else None)
        if wanted:
            out.status.target_version = wanted
        return None
    started = [r for r in records if r.status.get("runningVersion") or r.status.get("installedVersion")]
    servers = [r for r in records if r.role == "server"]
    if approved and approved != wanted and started:
        problem = upgrade_problem(approved, wanted)
        if problem:
            reason, msg = problem
            condition_event(crec, out, Cond("UpgradeHalted", True, reason, msg))
            out.conditions.append(Cond("Stalled", True, reason, msg))
            return rollout_view(approved, records)
        if cluster.upgrade.snapshot and servers:
            snap = snapshot_name(wanted)
            if crec.status.get("lastSnapshot") != snap:
                try:
                    await take_snapshot(engine, crec, cluster, records, init, snap)
                except Waiting as w:
                    msg = f"pre-upgrade snapshot {snap} failed, nothing upgraded: {w}"
                    condition_event(crec, out, Cond("UpgradeHalted", True, "SnapshotFailed", msg))
                    return rollout_view(approved, records)
                out.status.last_snapshot = snap
                out.events.append(Event("Normal", "SnapshotTaken", f"etcd snapshot {snap} taken before the upgrade"))
        out.events.append(Event("Normal", "UpgradeStarted", f"rolling out {wanted} (from {approved})"))
    out.status.target_version = wanted
    if not started:
        return None
    view = rollout_view(wanted, records)
    if view.in_progress or crec.status.get("rollout"):
        out.status.rollout = RolloutStatus.model_validate(view.status())
    halted = (
        Cond("UpgradeHalted", True, "NodeFailed", f"{view.halted_node}: {view.halted_reason}")
        if view.halted_node
        else Cond("UpgradeHalted", False, "Progressing" if view.in_progress else "Done", "")
    )
    condition_event(crec, out, halted)
    out.upgrade_halted = bool(view.halted_node)
    return view


async def take_snapshot(
    engine: Engine, crec: ClusterRecord, cluster: RKE2ClusterSpec, records: list[NodeRecord], init: NodeRecord | None,
    snap: str,
) -> None:  # fmt: skip
    """The pre-upgrade snapshot, on a serving server, recorded as an RKE2Snapshot like any other."""
    server = pick_server(records, init.name if init else None, None)
    taken = await save(engine, cluster, server, snap)
    name = f"{crec.name}-{snap}".lower()[:253].rstrip("-.")
    await engine.store.create_object(
        "rke2snapshots", crec.namespace, name, {"cluster": crec.name, "node": server.name},
        status=taken.status("PreUpgrade").model_dump(mode="json", by_alias=True, exclude_none=True),
        annotations={TAKEN_ANNOTATION: taken.annotation()},
    )  # fmt: skip
