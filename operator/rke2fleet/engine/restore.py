"""Restore a cluster from one of its RKE2Snapshots, RKE2's documented way (reference §10):
every node's service stopped; `rke2 server --cluster-reset --cluster-reset-restore-path=FILE`
on the server that keeps the snapshot; that server started; the other servers' etcd databases
removed and them rejoined one at a time; the agents started.

Each step is recorded in the RKE2Restore's status before the next begins, so a restarted
operator resumes where it stopped, and the cluster's own passes stand aside meanwhile
(`active_restore`). Checks that can fail come before anything is stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rke2fleet.api import RKE2ClusterSpec, SpecError, parse_cluster_spec, parse_duration, parse_node_spec
from rke2fleet.api.conditions import Cond, now_rfc3339, status_patch
from rke2fleet.api.snapshot import RestorePhase, RKE2RestoreStatus
from rke2fleet.engine.access import Waiting, node_paths, target_of
from rke2fleet.engine.core import Engine
from rke2fleet.engine.outcome import Event, ObjectOutcome, fields_of
from rke2fleet.engine.records import NodeRecord, ObjectRecord
from rke2fleet.engine.snapshots import snapshot_path
from rke2fleet.hostaccess import HostAccessError, redact
from rke2fleet.reconcile.commands import StartFailed, wait_ready
from rke2fleet.reconcile.desired import unit_for
from rke2fleet.reconcile.health import HealthReader, health_script

FINISHED = ("Done", "Failed")
RESET_TIMEOUT = 900.0  # the foreground `rke2 server --cluster-reset` (a large snapshot takes minutes)
SERVING_POLL = 1.0


def active_restore(engine: Engine, namespace: str, cluster: str) -> ObjectRecord | None:
    """The restore under way on the cluster (it has stopped, or is stopping, its nodes)."""
    started = [
        r for r in engine.store.restores(namespace, cluster) if r.phase not in (None, "Pending", *FINISHED)
    ]  # fmt: skip
    return min(started, key=lambda r: r.name) if started else None


class Refused(Exception):
    """The restore cannot be done as asked; nothing was stopped."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RestoreRun:
    """One pass over an RKE2Restore: from its recorded phase to Done, Failed, or a wait."""

    def __init__(self, engine: Engine, rrec: ObjectRecord) -> None:
        self.engine, self.rrec = engine, rrec
        self.stored: dict[str, Any] = dict(rrec.status)
        self.st = RKE2RestoreStatus.model_validate(rrec.status)
        self.out = ObjectOutcome()
        self.cluster: RKE2ClusterSpec | None = None
        self.records: list[NodeRecord] = []
        self.failure_reason: str | None = None

    async def record(self, phase: RestorePhase, message: str, *, ready: bool | None = False) -> None:
        """Write the phase (and what the step learned) before the next step begins."""
        self.st.phase = phase
        conds = [Cond("Ready", ready, phase, message)]
        if phase == "Failed":
            conds.append(Cond("Stalled", True, self.failure_reason or "Failed", message))
        patch = status_patch(self.stored, self.rrec.generation, fields_of(self.st), conds)
        if patch:
            await self.engine.store.patch_status("rke2restores", self.rrec.namespace, self.rrec.name, patch)
            self.stored.update(patch)

    async def run(self) -> ObjectOutcome:
        phase = self.st.phase or "Pending"
        if phase in FINISHED:
            return self.out
        try:
            self.load()
            if phase == "Pending":
                await self.check()
            steps: dict[str, Callable[[], Awaitable[None]]] = {
                "Stopping": self.stop_all,
                "Resetting": self.reset,
                "StartingServer": self.start_restored,
                "RejoiningServers": self.rejoin_servers,
                "StartingAgents": self.start_agents,
            }
            for name, step in steps.items():
                if self.st.phase == name:
                    await step()
        except Refused as exc:
            await self.fail(exc.reason, str(exc))
        except Waiting as w:
            await self.record(self.st.phase or "Pending", str(w))
            self.out.retry_after = w.delay
        self.out.stored = self.stored
        return self.out

    async def fail(self, reason: str, message: str) -> None:
        self.failure_reason = reason
        self.st.finished_at = now_rfc3339()
        await self.record("Failed", message)
        self.out.events.append(Event("Warning", reason, message))

    def load(self) -> None:
        ns, name = self.rrec.namespace, self.rrec.cluster
        crec = self.engine.store.cluster(ns, name)
        if crec is None:
            raise Refused("ClusterNotFound", f"RKE2Cluster {ns}/{name} not found")
        try:
            self.cluster = parse_cluster_spec(crec.spec)
        except SpecError as exc:
            raise Refused("InvalidSpec", f"RKE2Cluster {name} has an invalid spec: {exc}") from None
        self.records = sorted((r for r in self.engine.store.nodes(ns, name) if not r.deleting), key=lambda r: r.name)

    def node(self, name: str | None) -> NodeRecord:
        found = next((r for r in self.records if r.name == name), None)
        if found is None or found.role != "server":
            raise Refused("SnapshotNodeGone", f"server {name} of the restore is no longer in the cluster")
        return found

    # -- Pending: every check that can refuse, before anything is stopped ----------------------------
    async def check(self) -> None:
        ns, rrec = self.rrec.namespace, self.rrec
        snap = self.engine.store.snapshot(ns, str(rrec.spec.get("snapshot") or ""))
        if snap is None:
            raise Refused("SnapshotNotFound", f"RKE2Snapshot {ns}/{rrec.spec.get('snapshot')} not found")
        if snap.cluster != rrec.cluster:
            raise Refused("SnapshotOfAnotherCluster", f"RKE2Snapshot {snap.name} is of cluster {snap.cluster}")
        if snap.phase in (None, "Pending", "Taking"):
            raise Waiting("SnapshotNotReady", f"waiting for RKE2Snapshot {snap.name} to be taken", 5.0)
        if snap.phase != "Ready":
            raise Refused("SnapshotNotReady", f"RKE2Snapshot {snap.name} is {snap.phase}, not Ready")
        holder = str(snap.status.get("node") or "")
        if not any(r.name == holder and r.role == "server" for r in self.records):
            raise Refused(
                "SnapshotNodeGone",
                f"RKE2Snapshot {snap.name} is kept on {holder or 'no recorded node'}, which is no longer a "
                "server of the cluster; copy the file to a server and restore it by hand (nothing was stopped)",
            )
        others = [r.name for r in active_restore_candidates(self.engine, ns, rrec)]
        if others:
            raise Refused("AnotherRestore", f"restore {', '.join(others)} of this cluster is under way")
        path = snapshot_path(snap)
        if path is None:
            raise Refused("SnapshotNotLocal", f"RKE2Snapshot {snap.name} has no file location on {holder}")
        server = self.node(holder)
        res = await self.run_on(server, ["test", "-f", path], check=False)
        if res != 0:
            raise Refused("SnapshotFileMissing", f"{path} is not on {holder} any more (nothing was stopped)")
        self.st.node, self.st.snapshot_path = holder, path
        self.st.started_at = now_rfc3339()
        self.out.events.append(Event("Normal", "RestoreStarted", f"restoring {snap.name} on {holder}"))
        await self.record("Stopping", "stopping every node's service")

    # -- the steps --------------------------------------------------------------------------------------
    async def stop_all(self) -> None:
        if self.engine.memory.busy.get(self.rrec.cluster_key):
            raise Waiting("NodeBusy", "waiting for the node being changed to finish its step", 2.0)
        results = await asyncio.gather(
            *(self.run_on(r, ["systemctl", "stop", unit_for(r.role)], check=False) for r in self.records),
            return_exceptions=True,
        )
        done = {r.name: res == 0 for r, res in zip(self.records, results, strict=True)}
        failed = [name for name, ok in done.items() if not ok]
        self.st.stopped = sorted({*self.st.stopped, *(name for name, ok in done.items() if ok)})
        if failed:
            raise Waiting("StopFailed", f"cannot stop the service on {', '.join(failed)} yet", 10.0)
        await self.record("Resetting", f"cluster-reset from the snapshot on {self.st.node}")

    async def reset(self) -> None:
        # Each server must be down: etcd would otherwise split between old and restored members.
        running = [r.name for r in self.records if r.role == "server" and await self.active(r)]
        if running:
            self.st.stopped = [n for n in self.st.stopped if n not in running]
            await self.record("Stopping", f"{', '.join(running)} running again; stopping")
            return await self.stop_all()
        server = self.node(self.st.node)
        argv = ["rke2", "server", "--cluster-reset", f"--cluster-reset-restore-path={self.st.snapshot_path}"]
        target = await target_of(self.engine, self.spec, server)
        try:
            res = await self.engine.hosts.run(target, argv, check=False, timeout=RESET_TIMEOUT)
        except HostAccessError as exc:
            raise Waiting("ResetFailed", f"cluster-reset on {server.name}: {exc}", 10.0) from None
        if res.exit_status != 0:
            tail = redact(" ".join((res.stderr or res.stdout).split()[-40:]), [])
            raise Refused("ResetFailed", f"cluster-reset on {server.name} failed; nothing else changed, the "
                          f"nodes start again as they were: {tail}")  # fmt: skip
        self.out.events.append(Event("Normal", "ClusterReset", f"{server.name} restored the snapshot"))
        await self.record("StartingServer", f"starting {server.name} on the restored datastore")
        await self.start_restored()

    async def start_restored(self) -> None:
        server = self.node(self.st.node)
        await self.start_and_wait(server)
        self.st.rejoined = [server.name]
        await self.record("RejoiningServers", "rejoining the other servers one at a time")
        await self.rejoin_servers()

    async def rejoin_servers(self) -> None:
        for server in (r for r in self.records if r.role == "server" and r.name not in self.st.rejoined):
            # Started by this restore already (it stopped them all), its database is gone: only wait.
            if not await self.active(server):
                db = node_paths(self.spec, parse_node_spec(server.spec)).etcd_db
                await self.run_on(server, ["rm", "-rf", db], check=True)
            await self.start_and_wait(server)
            self.st.rejoined = [*self.st.rejoined, server.name]
            await self.record("RejoiningServers", f"{server.name} rejoined")
        await self.record("StartingAgents", "starting the agents")
        await self.start_agents()

    async def start_agents(self) -> None:
        agents = [r for r in self.records if r.role == "agent" and r.name not in self.st.rejoined]
        await asyncio.gather(*(self.start_and_wait(a) for a in agents))
        self.st.rejoined = [*self.st.rejoined, *(a.name for a in agents)]
        self.st.finished_at = now_rfc3339()
        msg = f"restored from {self.rrec.spec.get('snapshot')} on {self.st.node}; every node Ready"
        await self.record("Done", msg, ready=True)
        self.out.events.append(Event("Normal", "RestoreDone", msg))
        self.engine.memory.forget_cluster(self.rrec.cluster_key)  # its tokens and health are new

    # -- host access ------------------------------------------------------------------------------------
    @property
    def spec(self) -> RKE2ClusterSpec:
        assert self.cluster is not None
        return self.cluster

    async def run_on(self, record: NodeRecord, argv: list[str], *, check: bool) -> int:
        target = await target_of(self.engine, self.spec, record)
        try:
            res = await self.engine.hosts.run(target, argv, check=check)
        except HostAccessError as exc:
            if not check:
                return -1
            raise Waiting("HostFailed", f"{record.name}: {exc}", 10.0) from None
        return res.exit_status

    async def active(self, record: NodeRecord) -> bool:
        code = await self.run_on(record, ["systemctl", "is-active", "--quiet", unit_for(record.role)], check=False)
        if code == -1:
            raise Waiting("HostUnreachable", f"{record.name} does not answer", 10.0)
        return code == 0

    async def start_and_wait(self, record: NodeRecord) -> None:
        """Start its service; wait for the unit, then for the cluster to count the node (its Node
        Ready and, for a server, a voting etcd member), read through the restored server."""
        unit, target = unit_for(record.role), await target_of(self.engine, self.spec, record)
        timeout = parse_duration(self.spec.readiness_timeout)
        try:
            await self.engine.hosts.run(target, ["systemctl", "start", "--no-block", unit])
            await wait_ready(self.engine.hosts, target, unit, timeout=timeout, secrets=[])
        except HostAccessError as exc:
            raise Waiting("HostFailed", f"{record.name}: {exc}", 10.0) from None
        except StartFailed as exc:
            raise Waiting(exc.reason, f"{record.name}: {exc}", 10.0) from None
        await self.until_serving(record, time.monotonic() + timeout)

    async def until_serving(self, record: NodeRecord, deadline: float) -> None:
        source = self.node(self.st.node)
        node_name = record.node_name
        paths = node_paths(self.spec, parse_node_spec(source.spec))
        target = await target_of(self.engine, self.spec, source)

        async def candidates() -> list[Any]:
            return [(source.name, target, health_script(paths))]

        reader = HealthReader()
        while True:
            health = await reader.read(self.engine.hosts, candidates, max_age=0)
            if health.serving(node_name, record.role):
                return
            if time.monotonic() > deadline:
                seen = health.node(node_name)
                why = health.error or (seen.ready_message if seen else "no Node registered")
                raise Waiting("NotReady", f"{record.name} not Ready in the restored cluster: {why}", 10.0)
            await asyncio.sleep(SERVING_POLL)


def active_restore_candidates(engine: Engine, namespace: str, rrec: ObjectRecord) -> list[ObjectRecord]:
    """Other restores of the same cluster that have started (two at once would undo each other)."""
    return [
        r for r in engine.store.restores(namespace, rrec.cluster)
        if r.name != rrec.name and r.phase not in (None, "Pending", *FINISHED)
    ]  # fmt: skip


async def restore_pass(engine: Engine, rrec: ObjectRecord) -> ObjectOutcome:
    return await RestoreRun(engine, rrec).run()
