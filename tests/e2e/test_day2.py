"""Day 2 end to end: rolling upgrades, refusals, snapshots, config rollouts, drift repair."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
import yaml

from rke2fleet_sandbox.installer import installer_stats
from rke2fleet_sandbox.manifests import cluster_manifests
from tests.e2e.conftest import E2E
from tests.e2e.harness import Kube, datastore_events, sh

pytestmark = [pytest.mark.sandbox]

OLD, NEW = "v1.35.7+rke2r1", "v1.36.3+rke2r1"
KUBECTL = "KUBECONFIG=/etc/rancher/rke2/rke2.yaml /var/lib/rancher/rke2/bin/kubectl"


def down_intervals(events: list[dict[str, Any]], node: str, since: float) -> list[tuple[float, float]]:
    """When the node's RKE2 was not running: from each exit to the next Ready."""
    out: list[tuple[float, float]] = []
    down_at: float | None = None
    for e in sorted(events, key=lambda e: e["t"]):
        if e["node"] != node or e["t"] < since:
            continue
        if e["event"] == "down" and down_at is None:
            down_at = e["t"]
        elif e["event"] == "ready" and down_at is not None:
            out.append((down_at, e["t"]))
            down_at = None
    if down_at is not None:
        out.append((down_at, float("inf")))
    return out


def overlaps(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    return any(x0 < y1 and y0 < x1 for x0, x1 in a for y0, y1 in b)


def all_running(kube: Kube, version: str) -> bool:
    nodes = kube.nodes()
    return bool(nodes) and all(
        (n.get("status") or {}).get("runningVersion") == version and (n.get("status") or {}).get("phase") == "Ready"
        for n in nodes
    )


def assert_rollout_order(events: list[dict[str, Any]], servers: list[str], agents: list[str], since: float) -> None:
    downs = {n: down_intervals(events, n, since) for n in servers + agents}
    for i, a in enumerate(servers):
        for b in servers[i + 1 :]:
            assert not overlaps(downs[a], downs[b]), f"servers {a} and {b} were down at the same time"
    last_server_up = max(end for n in servers for _, end in downs[n])
    for a in agents:
        assert all(start >= last_server_up for start, _ in downs[a]), (
            f"agent {a} went down before the servers were done"
        )
    for n in servers + agents:
        mine = [e for e in events if e["node"] == n and e["t"] >= since]
        cordon = [e["t"] for e in mine if e["event"] == "cordon"]
        uncordon = [e["t"] for e in mine if e["event"] == "uncordon"]
        first_down = min((s for s, _ in downs[n]), default=None)
        assert cordon and first_down is not None and cordon[0] <= first_down, f"{n} not cordoned before going down"
        assert uncordon and uncordon[-1] >= max(e for _, e in downs[n]), f"{n} not uncordoned after"
        starts = [e for e in mine if e["event"] == "start" and e.get("version") == NEW]
        assert len(starts) == 1, f"{n} started {len(starts)} times at {NEW}"


def not_cordoned(sb: Any) -> bool:
    out = sh(sb, sb.servers[0], f"{KUBECTL} get nodes -o json")
    import json

    return not any(n["spec"].get("unschedulable") for n in json.loads(out)["items"])


@pytest.mark.slow
def test_rolling_upgrade_ha(e2e: E2E) -> None:
    sb = e2e.up(3, 2)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "up", version=OLD, extra_spec={"upgrade": {"agentConcurrency": 1}}))
    e2e.operator()
    kube.wait_phase("rke2clusters", "up", "Ready", timeout=120)
    since = time.time()
    started = time.monotonic()
    kube.patch_spec("rke2clusters", "up", {"version": NEW})
    kube.wait("every node at the new version", lambda: all_running(kube, NEW), 240)
    cl = kube.wait_phase("rke2clusters", "up", "Ready", timeout=60)
    print(f"5-node rolling upgrade {OLD} -> {NEW}: {time.monotonic() - started:.1f}s")
    servers = [h.name for h in sb.servers]
    agents = [h.name for h in sb.agents]
    assert_rollout_order(datastore_events(sb), servers, agents, since)
    assert not_cordoned(sb)
    snap = "pre-upgrade-" + NEW.replace("+", "-")
    assert cl["status"]["lastSnapshot"] == snap
    init = next(h for h in sb.servers if h.name == cl["status"]["initServer"])
    assert snap in sh(sb, init, "ls /var/lib/rancher/rke2/server/db/snapshots/")
    assert cl["status"]["rollout"]["phase"] == "Done"
    assert sorted(cl["status"]["rollout"]["done"]) == sorted(servers + agents)


@pytest.mark.slow
def test_operator_killed_mid_rollout_finishes_correctly(e2e: E2E) -> None:
    sb = e2e.up(3, 1)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "kill", version=OLD))
    op = e2e.operator()
    kube.wait_phase("rke2clusters", "kill", "Ready", timeout=120)
    since = time.time()
    for h in sb.servers:  # slow starts, so the kill lands while a server is mid-upgrade
        sb.set_start_delay(h, 2.0)
    kube.patch_spec("rke2clusters", "kill", {"version": NEW})

    def mid_upgrade() -> bool:
        return any((n.get("status") or {}).get("phase") in ("Draining", "Installing", "Starting") for n in kube.nodes())

    kube.wait("a node mid-upgrade", mid_upgrade, 60, interval=0.1)
    op.stop(signal.SIGKILL)
    time.sleep(1)
    e2e.operator()
    kube.wait("every node at the new version", lambda: all_running(kube, NEW), 240)
    kube.wait_phase("rke2clusters", "kill", "Ready", timeout=60)
    assert_rollout_order(datastore_events(sb), [h.name for h in sb.servers], [h.name for h in sb.agents], since)
    assert not_cordoned(sb)
    assert all(not (n["status"].get("cordoned")) for n in kube.nodes())


def test_minor_skip_and_downgrade_refused(e2e: E2E) -> None:
    sb = e2e.up(1, 0)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "ref", version=OLD))
    e2e.operator()
    kube.wait_phase("rke2clusters", "ref", "Ready", timeout=60)
    fetched = installer_stats(sb.state_dir).get("/install.sh", 0)
    for wanted, reason in (("v1.37.1+rke2r1", "MinorSkip"), ("v1.34.10+rke2r1", "Downgrade")):
        kube.patch_spec("rke2clusters", "ref", {"version": wanted})

        def refused(reason: str = reason) -> dict | None:
            c = kube.condition("rke2clusters", "ref", "UpgradeHalted")
            return c if c and c["status"] == "True" and c["reason"] == reason else None

        c = kube.wait(f"{reason} refused", refused, 30)
        assert wanted in c["message"]
        assert [e for e in kube.events("ref") if e.reason == reason]
        stalled = kube.condition("rke2clusters", "ref", "Stalled")
        assert stalled and stalled["status"] == "True"
        time.sleep(2)
        assert installer_stats(sb.state_dir).get("/install.sh", 0) == fetched  # nothing touched
        node = kube.get("rke2nodes", sb.servers[0].name)
        assert node and node["status"]["runningVersion"] == OLD
    cl = kube.get("rke2clusters", "ref")
    assert cl and cl["status"]["targetVersion"] == OLD


def test_snapshot_failure_halts_then_upgrade_proceeds(e2e: E2E) -> None:
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "snap", version=OLD))
    e2e.operator()
    kube.wait_phase("rke2clusters", "snap", "Ready", timeout=60)
    sb.fail_snapshot(sb.servers[0])
    kube.patch_spec("rke2clusters", "snap", {"version": NEW})

    def halted() -> dict | None:
        c = kube.condition("rke2clusters", "snap", "UpgradeHalted")
        return c if c and c["status"] == "True" and c["reason"] == "SnapshotFailed" else None

    c = kube.wait("snapshot failure halts", halted, 30)
    assert "snapshot" in c["message"]
    time.sleep(2)
    assert all(n["status"]["runningVersion"] == OLD for n in kube.nodes())
    assert not sh(sb, sb.servers[0], "ls /var/lib/rancher/rke2/server/db/snapshots/").strip()
    sb.fail_snapshot(sb.servers[0], enabled=False)
    kube.wait("every node at the new version", lambda: all_running(kube, NEW), 120)


@pytest.mark.slow
def test_failed_node_halts_rollout_and_fixing_resumes(e2e: E2E) -> None:
    sb = e2e.up(1, 2)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "halt", version=OLD, extra_spec={"upgrade": {"agentConcurrency": 1}}))
    e2e.operator()
    kube.wait_phase("rke2clusters", "halt", "Ready", timeout=60)
    bad, other = sb.agents
    # A person leaves a broken drop-in on agent-1: RKE2 refuses to start there from now on.
    sh(
        sb,
        bad,
        "mkdir -p /etc/rancher/rke2/config.yaml.d && printf 'node-label: [unclosed\\n' "
        "> /etc/rancher/rke2/config.yaml.d/99-broken.yaml",
    )
    kube.patch_spec("rke2clusters", "halt", {"version": NEW})

    def halted() -> dict | None:
        c = kube.condition("rke2clusters", "halt", "UpgradeHalted")
        return c if c and c["status"] == "True" and bad.name in c["message"] else None

    kube.wait("rollout halted on the broken agent", halted, 120)
    time.sleep(3)
    assert kube.get("rke2nodes", other.name)["status"]["runningVersion"] == OLD  # type: ignore[index]
    assert [e for e in kube.events("halt") if e.reason == "NodeFailed"]
    sh(sb, bad, "rm -f /etc/rancher/rke2/config.yaml.d/99-broken.yaml")
    kube.wait("rollout resumed and finished", lambda: all_running(kube, NEW), 120)


def test_config_rollout_restarts_servers_one_at_a_time(e2e: E2E) -> None:
    sb = e2e.up(3, 0)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "cfg"))
    e2e.operator()
    kube.wait_phase("rke2clusters", "cfg", "Ready", timeout=120)
    since = time.time()
    kube.patch_spec("rke2clusters", "cfg", {"serverConfig": {"write-kubeconfig-mode": "0600", "debug": True}})

    def rolled() -> bool:
        return all(
            yaml.safe_load(sh(sb, h, "cat /etc/rancher/rke2/config.yaml")).get("debug") is True for h in sb.servers
        ) and all_running(kube, OLD)

    kube.wait("config rolled out", rolled, 120)
    events = datastore_events(sb)
    downs = {h.name: down_intervals(events, h.name, since) for h in sb.servers}
    names = list(downs)
    for i, a in enumerate(names):
        assert len(downs[a]) == 1, f"{a} restarted {len(downs[a])} times"
        for b in names[i + 1 :]:
            assert not overlaps(downs[a], downs[b]), f"{a} and {b} restarted at the same time"


def test_cluster_change_wakes_its_nodes_before_their_tick(e2e: E2E) -> None:
    """A node's timer checks its cluster every NODE_TICK; a change of the cluster's desired state
    wakes the timers at once instead (indexes.clusters → FleetState.wake_nodes)."""
    tick = 30.0
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "wake"))
    started = time.monotonic()
    e2e.operator(RKE2FLEET_NODE_TICK=str(tick))
    kube.wait_phase("rke2clusters", "wake", "Ready", timeout=120)
    # Past the timers' initial delay (a tick after the operator's start, which takes 2-5 s):
    # every node timer now waits for its next tick, some 2 x tick + 2 s after `started`, i.e.
    # about 20 s after the patch below.
    time.sleep(max(0.0, started + tick + 10 - time.monotonic()))
    t0 = time.monotonic()
    kube.patch_spec("rke2clusters", "wake", {"agentConfig": {"debug": True}})
    agent = sb.agents[0]

    def applied() -> bool:
        return yaml.safe_load(sh(sb, agent, "cat /etc/rancher/rke2/config.yaml")).get("debug") is True

    kube.wait("agent config changed", applied, 60)
    took = time.monotonic() - t0
    print(f"cluster change on the agent's host {took:.1f}s after the patch (node tick {tick:g}s)")
    assert took < tick / 2, f"the change waited for the node's tick ({took:.1f}s)"


def test_cluster_status_follows_its_nodes_before_its_tick(e2e: E2E) -> None:
    """The cluster's timer aggregates every CLUSTER_TICK, or as soon as one of its nodes changed
    (indexes.nodes → FleetState.mark_cluster_dirty): Ready follows the last Ready node at once."""
    tick = 30.0
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "follow"))
    e2e.operator(RKE2FLEET_CLUSTER_TICK=str(tick))
    names = [h.name for h in sb.hosts]

    def nodes_ready() -> bool:
        return all(((kube.get("rke2nodes", n) or {}).get("status") or {}).get("phase") == "Ready" for n in names)

    kube.wait("nodes Ready", nodes_ready, 120, interval=0.1)
    t0 = time.monotonic()
    kube.wait_phase("rke2clusters", "follow", "Ready", timeout=2 * tick)
    took = time.monotonic() - t0
    print(f"cluster Ready {took:.1f}s after its last node (cluster tick {tick:g}s)")
    assert took < tick / 3, f"the cluster waited for its tick ({took:.1f}s)"


def test_drift_repaired_within_one_interval(e2e: E2E) -> None:
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "drift", extra_spec={"driftCheckInterval": "3s"}))
    e2e.operator()
    kube.wait_phase("rke2clusters", "drift", "Ready", timeout=60)
    agent = sb.agents[0]
    good = sh(sb, agent, "sha256sum /etc/rancher/rke2/config.yaml").split()[0]

    def drift_event(kind: str) -> list:
        return [e for e in kube.events(agent.name) if e.reason == "Drifted" and kind in e.message]

    # config.yaml edited by hand
    sh(sb, agent, "echo 'debug: true' >> /etc/rancher/rke2/config.yaml")
    kube.wait(
        "config repaired", lambda: sh(sb, agent, "sha256sum /etc/rancher/rke2/config.yaml").split()[0] == good, 15
    )
    assert kube.wait("Drifted event (config)", lambda: drift_event("config.yaml differs"), 10)
    # unit stopped
    sh(sb, agent, "systemctl stop rke2-agent")
    kube.wait("unit restarted", lambda: sh(sb, agent, "systemctl is-active rke2-agent").strip() == "active", 20)
    # unit disabled
    sh(sb, agent, "systemctl disable rke2-agent")
    kube.wait("unit re-enabled", lambda: sh(sb, agent, "systemctl is-enabled rke2-agent").strip() == "enabled", 20)
    # binary replaced by another version
    sh(
        sb,
        agent,
        f"curl -sfL {sb.installer_url}/install.sh | INSTALL_RKE2_VERSION=v1.35.6+rke2r1 INSTALL_RKE2_TYPE=agent sh -",
    )
    kube.wait("binary repaired", lambda: OLD in sh(sb, agent, "rke2 --version"), 20)
    kube.wait("node Ready again", lambda: all_running(kube, OLD), 30)
    kube.wait(
        "Drifted cleared",
        lambda: (kube.condition("rke2nodes", agent.name, "Drifted") or {}).get("status") == "False",
        15,
    )
    # The binary was replaced but RKE2 kept running the right version: reinstalled, not restarted.
    assert [
        e
        for e in kube.events(agent.name)
        if e.reason == "Drifted" and "install" in e.message and "restart" not in e.message
    ]


def test_drift_only_reported_under_report(e2e: E2E) -> None:
    sb = e2e.up(1, 0)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "rep", extra_spec={"driftCheckInterval": "3s", "driftPolicy": "Report"}))
    e2e.operator()
    kube.wait_phase("rke2clusters", "rep", "Ready", timeout=60)
    host = sb.servers[0]
    sh(sb, host, "echo 'debug: true' >> /etc/rancher/rke2/config.yaml")
    edited = sh(sb, host, "sha256sum /etc/rancher/rke2/config.yaml").split()[0]

    def drifted() -> dict | None:
        c = kube.condition("rke2nodes", host.name, "Drifted")
        return c if c and c["status"] == "True" else None

    c = kube.wait("Drifted=True", drifted, 15)
    assert "config.yaml differs" in c["message"] and "reported only" in c["message"]
    time.sleep(4)
    assert sh(sb, host, "sha256sum /etc/rancher/rke2/config.yaml").split()[0] == edited
