"""etcd snapshots as RKE2Snapshot objects (reference §10): taken once on a serving server with
`rke2 etcd-snapshot save`, found again in `rke2 etcd-snapshot ls` (its location and size), and
deleted from the server with the object. The pre-upgrade snapshot is recorded as one too.

A snapshot's status is written before the command (`Taking`, on which server) so a restarted
operator looks for the file it may already have made instead of taking a second one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from rke2fleet.api import RKE2ClusterSpec, SpecError, parse_cluster_spec
from rke2fleet.api.conditions import Cond, now_rfc3339, status_patch
from rke2fleet.api.snapshot import RKE2SnapshotStatus
from rke2fleet.engine.access import Waiting, target_of
from rke2fleet.engine.core import Engine
from rke2fleet.engine.outcome import Event, ObjectOutcome, fields_of
from rke2fleet.engine.records import NodeRecord, ObjectRecord
from rke2fleet.hostaccess import HostAccessError, redact

SAVED = re.compile(r"Snapshot (\S+) saved\.")
LS_ARGV = ["rke2", "etcd-snapshot", "ls"]
# Set by the operator on the snapshots it takes itself: what was taken (the object's status follows).
TAKEN_ANNOTATION = "rke2fleet.io/taken"


class NotAServer(ValueError):
    """spec.node does not name a server of the cluster."""


@dataclass(frozen=True)
class Taken:
    """A snapshot file on a server, as `etcd-snapshot ls` shows it."""

    name: str
    node: str  # the RKE2Node
    location: str
    size: int | None
    taken_at: str

    def status(self, source: str) -> RKE2SnapshotStatus:
        return RKE2SnapshotStatus.model_validate({
            "phase": "Ready", "snapshotName": self.name, "node": self.node, "location": self.location,
            "size": self.size, "takenAt": self.taken_at, "source": source,
        })  # fmt: skip

    def annotation(self) -> str:
        return json.dumps(self.status("PreUpgrade").model_dump(mode="json", by_alias=True, exclude_none=True))


def snapshot_path(snap: ObjectRecord) -> str | None:
    """The snapshot's file on its server (a local `file://` location), None for others."""
    location = str(snap.status.get("location") or "")
    return location.removeprefix("file://") if location.startswith("file:///") else None


def parse_listing(stdout: str) -> dict[str, tuple[str, int | None, str]]:
    """`etcd-snapshot ls` (Name Location Size Created) → name: (location, size, created)."""
    rows: dict[str, tuple[str, int | None, str]] = {}
    for line in stdout.splitlines():
        cols = line.split()
        if len(cols) < 4 or cols[0] == "Name":
            continue
        rows[cols[0]] = (cols[1], int(cols[2]) if cols[2].isdigit() else None, cols[3])
    return rows


def pick_server(records: list[NodeRecord], init: str | None, wanted: str | None) -> NodeRecord:
    """The server named, else a serving server (the init server first)."""
    servers = [r for r in records if r.role == "server" and not r.deleting]
    if wanted:
        named = next((r for r in servers if r.name == wanted), None)
        if named is None:
            raise NotAServer(f"spec.node: {wanted} is not a server of the cluster")
        if not named.serving:
            raise Waiting("ServerNotReady", f"waiting for {wanted} to be Ready", 5.0)
        return named
    serving = sorted((s for s in servers if s.serving), key=lambda s: (s.name != init, s.name))
    if not serving:
        raise Waiting("NoReadyServer", "no Ready server to take it on", 5.0)
    return serving[0]


async def listed(engine: Engine, cluster: RKE2ClusterSpec, server: NodeRecord, prefix: str) -> Taken | None:
    """The newest of the server's snapshots whose name starts with `prefix-`."""
    target = await target_of(engine, cluster, server)
    res = await engine.hosts.run(target, LS_ARGV, check=False)
    if res.exit_status != 0:
        raise Waiting("SnapshotListFailed", f"etcd-snapshot ls on {server.name}: {tail(res.stderr or res.stdout)}")
    rows = [(created, name, loc, size) for name, (loc, size, created) in parse_listing(res.stdout).items()
            if name.startswith(f"{prefix}-")]  # fmt: skip
    if not rows:
        return None
    created, name, location, size = max(rows)
    return Taken(name=name, node=server.name, location=location, size=size, taken_at=created)


async def save(engine: Engine, cluster: RKE2ClusterSpec, server: NodeRecord, prefix: str) -> Taken:
    """`rke2 etcd-snapshot save --name prefix` (RKE2 appends the node and the time), then its row."""
    target = await target_of(engine, cluster, server)
    # `rke2 etcd-snapshot` reads the server's config.yaml (its data-dir and token included).
    try:
        res = await engine.hosts.run(target, ["rke2", "etcd-snapshot", "save", "--name", prefix], check=False)
    except HostAccessError as exc:
        raise Waiting("SnapshotFailed", str(exc)) from None
    saved = SAVED.findall(res.stderr + "\n" + res.stdout)
    if res.exit_status != 0 or not saved:
        why = tail(res.stderr or res.stdout) if res.exit_status else "no snapshot made (an etcd learner?)"
        raise Waiting("SnapshotFailed", f"on {server.name}: {why}")
    found = await listed(engine, cluster, server, prefix)
    if found is None or found.name != saved[-1]:
        return Taken(name=saved[-1], node=server.name, location="", size=None, taken_at=now_rfc3339())
    return found


def tail(text: str) -> str:
    return redact(" ".join(text.split()[-25:]), [])


class SnapshotRun:
    """One pass over an RKE2Snapshot: taken once, then left alone."""

    def __init__(self, engine: Engine, srec: ObjectRecord) -> None:
        self.engine, self.srec = engine, srec
        self.stored = dict(srec.status)
        self.out = ObjectOutcome()

    async def write(self, status: RKE2SnapshotStatus, *conds: Cond) -> None:
        patch = status_patch(self.stored, self.srec.generation, fields_of(status), conds)
        if patch:
            await self.engine.store.patch_status("rke2snapshots", self.srec.namespace, self.srec.name, patch)
            self.stored.update(patch)

    async def done(self, taken: Taken, source: str) -> None:
        msg = f"{taken.name} on {taken.node}"
        await self.write(taken.status(source), Cond("Ready", True, "Taken", msg))
        self.out.events.append(Event("Normal", "SnapshotTaken", f"etcd snapshot {msg}"))

    async def run(self) -> ObjectOutcome:
        if self.srec.phase in ("Ready", "Failed"):
            return self.out
        note = self.srec.annotations.get(TAKEN_ANNOTATION)
        if note:  # taken by the operator before an upgrade: the status follows the record
            st = RKE2SnapshotStatus.model_validate_json(note)
            await self.write(st, Cond("Ready", True, "Taken", f"{st.snapshot_name} on {st.node}"))
            return self.out
        try:
            await self.take()
        except (SpecError, NotAServer) as exc:
            msg = f"invalid: {exc}"
            await self.write(RKE2SnapshotStatus(phase="Failed"), Cond("Ready", False, "InvalidSpec", msg),
                             Cond("Stalled", True, "InvalidSpec", msg))  # fmt: skip
            self.out.events.append(Event("Warning", "InvalidSpec", msg))
        except Waiting as w:
            if w.reason == "SnapshotFailed":
                msg = f"etcd-snapshot save failed {w}"
                await self.write(RKE2SnapshotStatus(phase="Failed"), Cond("Ready", False, w.reason, msg),
                                 Cond("Stalled", True, w.reason, msg))  # fmt: skip
                self.out.events.append(Event("Warning", w.reason, msg))
            else:
                st = RKE2SnapshotStatus(phase="Taking" if self.stored.get("phase") == "Taking" else "Pending")
                await self.write(st, Cond("Ready", False, w.reason, str(w)))
                self.out.retry_after = w.delay
        self.out.stored = self.stored
        return self.out

    async def take(self) -> None:
        from rke2fleet.engine.restore import active_restore

        ns, name = self.srec.namespace, self.srec.name
        crec = self.engine.store.cluster(ns, self.srec.cluster)
        if crec is None:
            raise Waiting("ClusterNotFound", f"RKE2Cluster {ns}/{self.srec.cluster} not found", 10.0)
        cluster = parse_cluster_spec(crec.spec)
        if active_restore(self.engine, ns, crec.name):
            raise Waiting("Restoring", "the cluster is being restored", 10.0)
        records = self.engine.store.nodes(ns, crec.name)
        wanted = self.srec.spec.get("node") or self.stored.get("node")
        server = pick_server(records, crec.status.get("initServer"), str(wanted) if wanted else None)
        if self.stored.get("phase") == "Taking":  # a restarted operator: it may be there already
            found = await listed(self.engine, cluster, server, name)
            if found is not None:
                return await self.done(found, "OnDemand")
        await self.write(RKE2SnapshotStatus(phase="Taking", node=server.name, source="OnDemand"),
                         Cond("Ready", False, "Taking", f"taking it on {server.name}"))  # fmt: skip
        await self.done(await save(self.engine, cluster, server, name), "OnDemand")


async def snapshot_pass(engine: Engine, srec: ObjectRecord) -> ObjectOutcome:
    return await SnapshotRun(engine, srec).run()


async def delete_snapshot(engine: Engine, srec: ObjectRecord) -> list[Event]:
    """Best effort: the file goes with the object; a server that cannot be reached keeps it."""
    name, node = srec.status.get("snapshotName"), srec.status.get("node")
    crec = engine.store.cluster(srec.namespace, srec.cluster)
    record = next((r for r in engine.store.nodes(srec.namespace, srec.cluster) if r.name == node), None)
    if not name or crec is None or record is None:
        return []
    try:
        target = await target_of(engine, parse_cluster_spec(crec.spec), record)
        res = await engine.hosts.run(target, ["rke2", "etcd-snapshot", "delete", str(name)], check=False)
    except (HostAccessError, Waiting, SpecError) as exc:
        return [Event("Warning", "SnapshotKept", f"{name} stays on {node}: {exc}")]
    if res.exit_status != 0:
        return [Event("Warning", "SnapshotKept", f"{name} stays on {node}: {tail(res.stderr or res.stdout)}")]
    return [Event("Normal", "SnapshotDeleted", f"{name} deleted from {node}")]
