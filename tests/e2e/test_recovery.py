"""Snapshots and restore end to end: an RKE2Snapshot gets its file on a server; an RKE2Restore
brings the cluster back to the snapshot (a node that joined after it is new to the restored
datastore, every etcd member rebuilt from the restored server) with every node Ready; a restore
whose snapshot's server is gone is refused before anything is stopped."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from rke2fleet_sandbox.manifests import node
from tests.e2e.conftest import E2E
from tests.e2e.harness import NS, Kube, sh
from tests.e2e.test_health import KUBECTL, manifests, phase, quorum_violations, ready_node, world_since

pytestmark = [pytest.mark.sandbox]


def snapshot_doc(name: str, cluster: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "rke2fleet.io/v1alpha1", "kind": "RKE2Snapshot",
            "metadata": {"name": name, "namespace": NS}, "spec": {"cluster": cluster, **spec}}  # fmt: skip


def restore_doc(name: str, cluster: str, snapshot: str) -> dict[str, Any]:
    return {
        "apiVersion": "rke2fleet.io/v1alpha1", "kind": "RKE2Restore",
        "metadata": {"name": name, "namespace": NS}, "spec": {"cluster": cluster, "snapshot": snapshot},
    }


def create(kube: Kube, plural: str, doc: dict[str, Any]) -> None:
    kube.custom.create_namespaced_custom_object("rke2fleet.io", "v1alpha1", NS, plural, doc)


def status(kube: Kube, plural: str, name: str) -> dict[str, Any]:
    return dict((kube.get(plural, name) or {}).get("status") or {})


def cluster_nodes(sb: Any) -> dict[str, tuple[str, str]]:
    """The restored cluster's own view: Node name → (Ready, EtcdIsVoter reason or '')."""
    items = json.loads(sh(sb, sb.servers[0], f"{KUBECTL} get nodes -o json"))["items"]
    out = {}
    for item in items:
        conds = {c["type"]: c for c in item["status"]["conditions"]}
        out[item["metadata"]["name"]] = (conds["Ready"]["status"], conds.get("EtcdIsVoter", {}).get("reason", ""))
    return out


@pytest.mark.timeout(600)
def test_snapshot_then_restore_back_to_it(e2e: E2E) -> None:
    sb = e2e.up(3, 2)
    kube = e2e.kube
    assert kube
    late = sb.agents[1]  # joins after the snapshot
    kube.apply(manifests(sb, "rs", hosts=[*sb.servers, sb.agents[0]], healthCheckInterval="2s"))
    e2e.operator()
    kube.wait_phase("rke2clusters", "rs", "Ready", timeout=120)

    create(kube, "rke2snapshots", snapshot_doc("before", "rs"))
    snap = kube.wait("snapshot Ready", lambda: (s := status(kube, "rke2snapshots", "before")).get("phase") == "Ready"
                     and s, 60)  # fmt: skip
    holder = next(h for h in sb.servers if h.name == snap["node"])
    assert snap["snapshotName"].startswith("before-") and snap["source"] == "OnDemand" and snap["size"] > 0
    path = snap["location"].removeprefix("file://")
    assert sh(sb, holder, f"test -f {path} && stat -c %s {path}").strip() == str(snap["size"])

    # After the snapshot: an agent joins (the restored datastore will not know it).
    kube.apply([node(late, "rs", NS, "agent")])
    kube.wait("late agent Ready", lambda: ready_node(kube, late.name), 90)

    since = time.time()
    create(kube, "rke2restores", restore_doc("back", "rs", "before"))
    kube.wait("cluster Restoring", lambda: phase(kube, "rke2clusters", "rs") == "Restoring", 30)
    done = kube.wait("restore Done", lambda: (s := status(kube, "rke2restores", "back")).get("phase") in
                     ("Done", "Failed") and s, 300)  # fmt: skip
    assert done["phase"] == "Done", done
    assert done["node"] == holder.name and sorted(done["rejoined"]) == sorted(h.name for h in sb.hosts)
    kube.wait_phase("rke2clusters", "rs", "Ready", timeout=90)
    kube.wait("every node Ready", lambda: all(ready_node(kube, h.name) for h in sb.hosts), 60)

    events = world_since(sb, since)
    resets = [e for e in events if e["event"] == "cluster-reset"]
    assert len(resets) == 1 and resets[0]["node"] == holder.name and resets[0]["snapshot"] == snap["snapshotName"]
    # The datastore is the snapshot's: only the agent that joined after it registers anew.
    assert sorted(e["node"] for e in events if e["event"] == "join") == [late.name]
    assert not [e for e in events if e["event"] == "start-refused"], "a node was refused after the restore"
    adds = [e for e in events if e["event"] == "member-add"]
    assert sorted(e["node"] for e in adds) == sorted(h.name for h in sb.servers if h is not holder)
    assert max(e["t"] for e in adds) > min(e["t"] for e in adds)  # rejoined one at a time
    seen = cluster_nodes(sb)
    assert set(seen) == {h.name for h in sb.hosts}
    assert all(ready == "True" for ready, _ in seen.values()), seen
    assert {n for n, (_, etcd) in seen.items() if etcd == "MemberNotLearner"} == {h.name for h in sb.servers}
    assert not quorum_violations([e for e in world_since(sb, 0) if e["t"] < since])

    # A restore whose snapshot's server is gone: refused, nothing stopped.
    other = next(h for h in sb.servers if h is not holder)
    create(kube, "rke2snapshots", snapshot_doc("on-other", "rs", node=other.name))
    kube.wait("second snapshot", lambda: status(kube, "rke2snapshots", "on-other").get("phase") == "Ready", 60)
    kube.delete("rke2nodes", other.name)
    kube.wait("server removed", lambda: kube.get("rke2nodes", other.name) is None, 120)
    kube.wait_phase("rke2clusters", "rs", "Ready", timeout=60)
    since = time.time()
    create(kube, "rke2restores", restore_doc("gone", "rs", "on-other"))
    refused = kube.wait("refused", lambda: (s := status(kube, "rke2restores", "gone")).get("phase") == "Failed"
                        and s, 30)  # fmt: skip
    stalled = next(c for c in refused["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "SnapshotNodeGone" and other.name in stalled["message"]
    assert not [e for e in world_since(sb, since) if e["event"] == "down"], "a unit was stopped"
    assert phase(kube, "rke2clusters", "rs") == "Ready", (kube.get("rke2clusters", "rs") or {}).get("status")
