"""RKE2Snapshot and RKE2Restore passes over the in-memory store and scripted hosts: the restore's
order (every unit stopped, cluster-reset on the snapshot's server, servers rejoined one at a time
with their database removed, agents last), resumption from status, refusals before any host is
touched, and the cluster's own passes standing aside meanwhile."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from rke2fleet.engine.cluster_pass import cluster_pass
from rke2fleet.engine.core import Engine
from rke2fleet.engine.node_pass import node_pass
from rke2fleet.engine.records import ObjectRecord
from rke2fleet.engine.restore import restore_pass
from rke2fleet.engine.snapshots import snapshot_pass
from rke2fleet.store.memory import MemoryStore
from tests.engine.fakes import (
    NS,
    FakeHosts,
    etcd_snapshots,
    health_answer,
    kube_nodes,
    serving_status,
    set_status,
    world,
)

ADDRESS = {"10.0.0.1": "s1", "10.0.0.2": "s2", "10.0.0.3": "s3", "10.0.1.1": "a1"}
SNAPSHOT_FILE = "/var/lib/rancher/rke2/server/db/snapshots/before-s1-1800000000"


class Units:
    """Each host's RKE2 unit: `systemctl` stop/start/is-active and the readiness wait."""

    def __init__(self) -> None:
        self.active = set(ADDRESS.values())

    def __call__(self, address: str, what: str) -> tuple[int, str] | None:
        node = ADDRESS[address]
        if what.startswith("systemctl stop "):
            self.active.discard(node)
            return 0, ""
        if what.startswith("systemctl start "):
            self.active.add(node)
            return 0, ""
        if what.startswith("systemctl is-active --quiet"):
            return (0 if node in self.active else 3), ""
        if "s=$(systemctl is-active" in what:  # the readiness wait
            return 0, "state=active\n" if node in self.active else "state=inactive\n"
        return None


def restoring_world(**snapshot_status: Any) -> tuple[Engine, MemoryStore, FakeHosts, Units]:
    engine, store, hosts = world(status={"initServer": "s1", "targetVersion": "v1.36.3+rke2r1", "phase": "Ready"})
    for name in ("s1", "s2", "s3"):
        set_status(store, name, serving_status())
    set_status(store, "a1", serving_status(role="agent"))
    status = {"phase": "Ready", "node": "s1", "snapshotName": "before-s1-1800000000",
              "location": f"file://{SNAPSHOT_FILE}", **snapshot_status}  # fmt: skip
    store.objects[("rke2snapshots", NS, "before")] = ObjectRecord(NS, "before", {"cluster": "prod"}, status)
    store.objects[("rke2restores", NS, "back")] = ObjectRecord(NS, "back", {"cluster": "prod", "snapshot": "before"})
    units = Units()
    hosts.answer(units)
    everyone = kube_nodes(*[(n, "True", "MemberNotLearner") for n in ("s1", "s2", "s3")], ("a1", "True", None))
    hosts.answer(health_answer(everyone))
    return engine, store, hosts, units


def restore(store: MemoryStore) -> ObjectRecord:
    return store.objects[("rke2restores", NS, "back")]


def host_steps(hosts: FakeHosts) -> list[str]:
    """What changed hosts, in order: `node: command` (reads and waits left out)."""
    steps = []
    for address, what in hosts.calls:
        if re.match(r"(systemctl (stop|start)|rm -rf|rke2 server --cluster-reset|test -f)", what):
            steps.append(f"{ADDRESS[address]}: {what}")
    return steps


async def test_a_restore_follows_rke2s_procedure() -> None:
    engine, store, hosts, _ = restoring_world()
    out = await restore_pass(engine, restore(store))
    st = restore(store).status
    assert st["phase"] == "Done" and out.retry_after is None, st
    steps = host_steps(hosts)
    assert steps[0] == f"s1: test -f {SNAPSHOT_FILE}"
    assert sorted(steps[1:5]) == [f"{n}: systemctl stop rke2-{r}" for n, r in
                                  (("a1", "agent"), ("s1", "server"), ("s2", "server"), ("s3", "server"))]  # fmt: skip
    assert steps[5:] == [
        f"s1: rke2 server --cluster-reset --cluster-reset-restore-path={SNAPSHOT_FILE}",
        "s1: systemctl start --no-block rke2-server",
        "s2: rm -rf /var/lib/rancher/rke2/server/db",
        "s2: systemctl start --no-block rke2-server",
        "s3: rm -rf /var/lib/rancher/rke2/server/db",
        "s3: systemctl start --no-block rke2-server",
        "a1: systemctl start --no-block rke2-agent",
    ]
    assert st["rejoined"] == ["s1", "s2", "s3", "a1"] and st["node"] == "s1"
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    assert [e.reason for e in out.events] == ["RestoreStarted", "ClusterReset", "RestoreDone"]
    # each step was recorded before the next began
    phases = [w[3]["phase"] for w in store.writes if w[0] == "rke2restores" and "phase" in w[3]]
    assert phases == ["Stopping", "Resetting", "StartingServer", "RejoiningServers", "StartingAgents", "Done"]


async def test_a_restarted_operator_resumes_without_resetting_again() -> None:
    engine, store, hosts, units = restoring_world()
    store.objects[("rke2restores", NS, "back")] = replace(restore(store), status={
        "phase": "RejoiningServers", "node": "s1", "snapshotPath": SNAPSHOT_FILE, "rejoined": ["s1"]})  # fmt: skip
    units.active = {"s1", "s2"}  # s2 was started (its database removed) when the operator stopped
    await restore_pass(engine, restore(store))
    steps = host_steps(hosts)
    assert not [s for s in steps if "cluster-reset" in s]
    assert "s2: rm -rf /var/lib/rancher/rke2/server/db" not in steps  # it runs: only waited for
    assert "s3: rm -rf /var/lib/rancher/rke2/server/db" in steps
    assert restore(store).status["phase"] == "Done"


async def test_refused_before_anything_is_stopped() -> None:
    for change, reason in (
        ({"node": "s9"}, "SnapshotNodeGone"),
        ({"phase": "Failed"}, "SnapshotNotReady"),
        ({"location": "s3://bucket/before"}, "SnapshotNotLocal"),
    ):
        engine, store, hosts, _ = restoring_world(**change)
        out = await restore_pass(engine, restore(store))
        st = restore(store).status
        assert st["phase"] == "Failed" and out.retry_after is None
        stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
        assert stalled["reason"] == reason, stalled
        assert hosts.calls == [], hosts.calls
    engine, store, hosts, _ = restoring_world()
    hosts.answers.insert(0, lambda address, what: (1, "") if what.startswith("test -f") else None)
    await restore_pass(engine, restore(store))
    assert next(c for c in restore(store).status["conditions"] if c["type"] == "Stalled")["reason"] == (
        "SnapshotFileMissing"
    )
    assert [c for _, c in hosts.calls if not c.startswith("test -f")] == []


async def test_a_failed_reset_fails_the_restore_and_gives_the_nodes_back() -> None:
    engine, store, hosts, _ = restoring_world()
    hosts.answers.insert(0, lambda address, what: (1, "level=fatal msg=\"bootstrap data already found and "
                                                      "encrypted with different token\"")
                         if "--cluster-reset" in what else None)  # fmt: skip
    await restore_pass(engine, restore(store))
    st = restore(store).status
    assert st["phase"] == "Failed" and "different token" in st["conditions"][0]["message"]
    assert not [s for s in host_steps(hosts) if "rm -rf" in s or "systemctl start" in s]
    # the cluster's passes take over again (they start what was stopped)
    node_out = await node_pass(engine, store.node(NS, "s2"), timer=False)
    assert node_out.status.phase != "Restoring"


async def test_the_cluster_and_its_nodes_stand_aside_while_a_restore_runs() -> None:
    engine, store, hosts, _ = restoring_world()
    store.objects[("rke2restores", NS, "back")] = replace(restore(store), status={"phase": "Resetting"})
    node_out = await node_pass(engine, store.node(NS, "s2"), timer=False)
    cluster_out = await cluster_pass(engine, store.cluster(NS, "prod"))  # type: ignore[arg-type]
    assert node_out.status.phase == "Restoring" and cluster_out.status.phase == "Restoring"
    ready = next(c for c in node_out.conditions if c.type == "Ready")
    assert ready.status is None and ready.reason == "Restoring"  # not checked, so not claimed
    assert hosts.calls == []


async def test_an_on_demand_snapshot_is_taken_once_and_found_again_after_a_restart() -> None:
    engine, store, hosts = world(status={"initServer": "s1", "targetVersion": "v1.36.3+rke2r1", "phase": "Ready"})
    for name in ("s1", "s2", "s3"):
        set_status(store, name, serving_status())
    hosts.answer(etcd_snapshots(node="s2"))
    store.objects[("rke2snapshots", NS, "nightly")] = ObjectRecord(NS, "nightly", {"cluster": "prod", "node": "s2"})
    await snapshot_pass(engine, store.objects[("rke2snapshots", NS, "nightly")])
    st = store.objects[("rke2snapshots", NS, "nightly")].status
    assert st["phase"] == "Ready" and st["node"] == "s2" and st["snapshotName"] == "nightly-s2-1800000000"
    assert st["location"].startswith("file:///") and st["size"] == 4096 and st["source"] == "OnDemand"
    saves = [c for c in hosts.commands() if "etcd-snapshot save" in c]
    assert saves == ["rke2 etcd-snapshot save --name nightly"]
    # Ready: never taken again
    await snapshot_pass(engine, store.objects[("rke2snapshots", NS, "nightly")])
    assert len([c for c in hosts.commands() if "etcd-snapshot save" in c]) == 1
    # an operator that stopped while Taking looks first, and finds the file it made
    store.objects[("rke2snapshots", NS, "nightly")] = replace(
        store.objects[("rke2snapshots", NS, "nightly")], status={"phase": "Taking", "node": "s2"}
    )
    await snapshot_pass(engine, store.objects[("rke2snapshots", NS, "nightly")])
    assert len([c for c in hosts.commands() if "etcd-snapshot save" in c]) == 1
    assert store.objects[("rke2snapshots", NS, "nightly")].status["phase"] == "Ready"


async def test_a_snapshot_on_a_node_that_is_not_a_server_is_refused() -> None:
    engine, store, hosts = world(status={"initServer": "s1", "phase": "Ready"})
    store.objects[("rke2snapshots", NS, "bad")] = ObjectRecord(NS, "bad", {"cluster": "prod", "node": "a1"})
    await snapshot_pass(engine, store.objects[("rke2snapshots", NS, "bad")])
    st = store.objects[("rke2snapshots", NS, "bad")].status
    assert st["phase"] == "Failed" and "a1 is not a server" in st["conditions"][0]["message"]
    assert hosts.calls == []
