"""Node removal's rules and turn-taking, on the in-memory store."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from rke2fleet.api import parse_cluster_spec
from rke2fleet.engine.records import ClusterRecord, NodeRecord
from rke2fleet.engine.removal import remove_node
from rke2fleet.engine.turns import await_turn, verdict
from tests.engine.fakes import NS, V36, cluster_spec, health_answer, kube_nodes, serving_status, set_status, world

VOTER = "MemberNotLearner"


def running_world(servers: int = 3, agents: int = 1) -> tuple:  # type: ignore[type-arg]
    engine, store, hosts = world(servers, agents, status={"initServer": "s1", "targetVersion": V36})
    for i in range(servers):
        set_status(store, f"s{i + 1}", serving_status(V36))
    for i in range(agents):
        set_status(store, f"a{i + 1}", serving_status(V36, "agent"))
    return engine, store, hosts


async def test_retained_and_invalid_nodes_leave_the_host_alone() -> None:
    engine, store, hosts = running_world()
    store.put_node(replace(store.node(NS, "a1"), spec={**store.node(NS, "a1").spec, "deletionPolicy": "Retain"}))
    out = await remove_node(engine, store.node(NS, "a1"))
    assert out.retry_after is None and [e.reason for e in out.events] == ["Retained"] and hosts.calls == []


async def test_a_server_leaves_drained_then_its_node_deleted_then_uninstalled() -> None:
    engine, store, hosts = running_world()
    hosts.answer(health_answer(kube_nodes(*[(f"s{i}", "True", VOTER) for i in (1, 2, 3)], ("a1", "True", None))))
    out = await remove_node(engine, store.node(NS, "s3"))
    assert out.retry_after is None and [e.reason for e in out.events] == ["Uninstalled"]
    done = [c for c in hosts.commands() if "get nodes" not in c]
    assert "drain s3" in done[0] and "delete node s3" in done[1] and "rke2-uninstall.sh" in done[2]
    assert hosts.calls[-1][0] == "10.0.0.3"  # the uninstall runs on the leaving host
    assert not engine.memory.busy[(NS, "prod")]  # its turn is released


async def test_an_agent_is_uninstalled_before_its_node_is_deleted() -> None:
    engine, store, hosts = running_world()
    hosts.answer(health_answer(kube_nodes(*[(f"s{i}", "True", VOTER) for i in (1, 2, 3)], ("a1", "True", None))))
    await remove_node(engine, store.node(NS, "a1"))
    done = [c for c in hosts.commands() if "get nodes" not in c]
    assert "drain a1" in done[0] and "rke2-uninstall.sh" in done[1] and "delete node a1" in done[2]


async def test_removal_that_would_lose_quorum_is_refused_on_a_fresh_read() -> None:
    engine, store, hosts = running_world()
    # The statuses say all serve; the cluster says s2's member does not answer.
    nodes = kube_nodes(("s1", "True", VOTER), ("s2", "Unknown", "Unhealthy"), ("s3", "True", VOTER))
    hosts.answer(health_answer(nodes))
    out = await remove_node(engine, store.node(NS, "s3"))
    assert out.retry_after is not None and out.status is not None and out.status.phase == "Deleting"
    ready = next(c for c in out.conditions if c.type == "Ready")
    assert ready.reason == "QuorumProtected" and "s2" in ready.message
    assert not any("uninstall" in c or "delete node" in c for c in hosts.commands())


async def test_no_api_no_removal_and_the_last_server_waits_for_its_agents() -> None:
    engine, store, hosts = running_world()
    hosts.answer(health_answer("Error from server: etcdserver: request timed out", rc=1))
    out = await remove_node(engine, store.node(NS, "s1"))
    assert out.retry_after is not None and "cannot verify etcd quorum" in out.message
    engine, store, hosts = running_world(servers=1, agents=1)
    out = await remove_node(engine, store.node(NS, "s1"))
    assert out.retry_after is not None and [e.reason for e in out.events] == ["LastServer"] and hosts.calls == []


async def test_servers_leave_one_at_a_time() -> None:
    engine, store, hosts = running_world()
    engine.memory.busy[(NS, "prod")].add("s2")
    out = await remove_node(engine, store.node(NS, "s3"))
    assert out.retry_after is not None and "one at a time" in out.message and hosts.calls == []


def records(*nodes: tuple[str, str, dict]) -> list[NodeRecord]:  # type: ignore[type-arg]
    return [NodeRecord(NS, n, {"cluster": "prod", "role": role, "address": n}, st) for n, role, st in nodes]


def test_turns_follow_the_join_order_and_who_serves() -> None:
    cluster = parse_cluster_spec(cluster_spec())
    staged = {"phase": "Staged", "installedVersion": V36}
    fresh = records(("s1", "server", {}), ("s2", "server", staged), ("a1", "agent", staged))
    assert verdict("s1", fresh, set(), "s1", cluster).allowed  # the init server first
    assert not verdict("s2", fresh, set(), "s1", cluster).allowed
    up = records(("s1", "server", serving_status(V36)), ("s2", "server", staged), ("a1", "agent", staged))
    assert verdict("s2", up, set(), "s1", cluster).allowed
    assert not verdict("a1", up, set(), "s1", cluster).allowed  # agents after every server
    assert not verdict("s2", up, {"s1"}, "s1", cluster).allowed  # one server change at a time


async def test_await_turn_waits_on_the_store_only() -> None:
    engine, store, hosts = world(2, 0, status={"initServer": "s1", "targetVersion": V36})
    set_status(store, "s2", {"phase": "Staged", "installedVersion": V36})
    cluster = parse_cluster_spec(store.cluster(NS, "prod").spec)
    waiting = asyncio.ensure_future(await_turn(engine, store.node(NS, "s2"), "s1", cluster))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    set_status(store, "s1", serving_status(V36))
    assert await waiting is True and hosts.calls == []
    assert isinstance(store.cluster(NS, "prod"), ClusterRecord)
