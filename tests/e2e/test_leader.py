"""Two replicas, one Lease: the standby watches nothing and touches no host; the leader is killed
(SIGKILL, no release) in the middle of a rolling upgrade; the standby takes over within the
lease duration and finishes the rollout: never two servers down, no node restarted twice."""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import E2E
from tests.e2e.harness import NS, datastore_events
from tests.e2e.test_health import manifests, quorum_violations

pytestmark = [pytest.mark.sandbox]

OLD, NEW = "v1.35.7+rke2r1", "v1.36.3+rke2r1"
LEASE_ARGS = ("--leader-elect", "--lease-namespace", NS, "--lease-duration", "6", "--renew-deadline", "4",
              "--retry-period", "1")  # fmt: skip


def holder(e2e: E2E) -> str:
    assert e2e.kube
    try:
        lease: Any = e2e.kube.custom.get_namespaced_custom_object(
            "coordination.k8s.io", "v1", NS, "leases", "rke2fleet"
        )
    except Exception:  # not created yet
        return ""
    return str(lease["spec"].get("holderIdentity") or "")


def test_the_standby_takes_over_a_rollout_when_the_leader_dies(e2e: E2E) -> None:
    sb = e2e.up(3, 1)
    kube = e2e.kube
    assert kube
    kube.apply(manifests(sb, "ha", version=OLD))
    leader = e2e.operator(*LEASE_ARGS, log="operator-a.log", POD_NAME="replica-a")
    kube.wait("replica-a leads", lambda: holder(e2e) == "replica-a", timeout=30)
    standby = e2e.operator(*LEASE_ARGS, log="operator-b.log", POD_NAME="replica-b")
    kube.wait_phase("rke2clusters", "ha", "Ready", timeout=120)
    assert "waiting to lead" in standby.log() and "Handler" not in standby.log()
    assert standby.metric("rke2fleet_leader") == 0 and leader.metric("rke2fleet_leader") == 1  # both scraped

    mark = time.time()
    kube.patch_spec("rke2clusters", "ha", {"version": NEW})
    servers = [h.name for h in sb.servers]

    def upgrading() -> bool:
        return any(e["event"] == "down" and e["node"] in servers for e in datastore_events(sb) if e["t"] >= mark)

    kube.wait("the first server's upgrade under way", upgrading, timeout=90)
    assert leader.proc
    leader.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    kube.wait("replica-b leads", lambda: holder(e2e) == "replica-b", timeout=30)
    takeover = time.monotonic() - killed
    kube.wait("the new leader says so", lambda: standby.metric("rke2fleet_leader") == 1, timeout=10)
    assert takeover <= 6 + 1 + 3, f"took {takeover:.1f}s"  # lease duration + a retry period + slack

    def upgraded() -> bool:
        nodes = kube.nodes()
        return len(nodes) == 4 and all((n.get("status") or {}).get("runningVersion") == NEW for n in nodes)

    kube.wait("every node on the new version", upgraded, timeout=240)
    kube.wait_phase("rke2clusters", "ha", "Ready", timeout=60)
    events = [e for e in datastore_events(sb) if e["t"] >= mark]
    assert quorum_violations(datastore_events(sb)) == []
    starts = Counter(e["node"] for e in events if e["event"] == "start")
    assert all(n == 1 for n in starts.values()) and len(starts) == 4, starts  # one restart per node
    print(f"takeover after the leader's death: {takeover:.1f}s")
