"""ordering.py: who may be disrupted now (reference §5 bring-up order, §8 rollouts)."""

from __future__ import annotations

import pytest

from rke2fleet.reconcile.ordering import NodeView, choose_init_server, may_disrupt
from tests.reconcile.builders import V35, V36

NAMES = ("s1", "s2", "s3", "a1", "a2", "a3")


def cluster(
    *,
    ready: str = "",
    started: str = "",
    busy: str = "",
    failed: str = "",
    running: dict[str, str] | None = None,
    default_running: str | None = None,
) -> list[NodeView]:
    """Three servers s1..s3 and three agents a1..a3; each keyword names the nodes it applies to."""
    on = {k: set(v.split()) for k, v in {"ready": ready, "started": started, "busy": busy, "failed": failed}.items()}
    return [
        NodeView(
            name=n,
            role="server" if n.startswith("s") else "agent",
            address=f"10.0.0.{i}",
            ready=n in on["ready"],
            started=n in on["started"] or n in on["ready"] or n in on["failed"],
            busy=n in on["busy"],
            running=(running or {}).get(n, default_running),
            failed=n in on["failed"],
        )
        for i, n in enumerate(NAMES, 1)
    ]


def allowed(
    me: str,
    nodes: list[NodeView],
    init: str = "s1",
    *,
    agent_batch: int = 2,
    server_batch: int = 1,
    upgrade_to: str | None = None,
) -> bool:
    view = next(n for n in nodes if n.name == me)
    verdict = may_disrupt(view, nodes, init, agent_batch=agent_batch, server_batch=server_batch, upgrade_to=upgrade_to)
    assert verdict.reason
    return verdict.allowed


ALL = "s1 s2 s3 a1 a2 a3"
SERVERS = "s1 s2 s3"

# (case, cluster snapshot, init server, who may go now among the nodes not busy already)
BRING_UP = [
    ("nothing started: the init server alone", cluster(), "s1", {"s1"}),
    ("init chosen by address, not name", cluster(), "s2", {"s2"}),
    ("init starting: nobody else", cluster(started="s1", busy="s1"), "s1", set()),
    ("init Ready: it or the next server", cluster(ready="s1"), "s1", {"s1", "s2"}),
    ("second server joining: nobody else", cluster(ready="s1", started="s2", busy="s2"), "s1", set()),
    ("two servers Ready: the third", cluster(ready="s1 s2"), "s1", {"s1", "s2", "s3"}),
    ("all servers Ready: agents", cluster(ready=SERVERS), "s1", set(NAMES)),
    ("a server went down: agents wait", cluster(ready="s1 s3 a1", started="s2"), "s1", {"s2"}),
    ("everything Ready: anyone may change", cluster(ready=ALL), "s1", set(NAMES)),
]


@pytest.mark.parametrize(("nodes", "init", "may_go"), [c[1:] for c in BRING_UP], ids=[c[0] for c in BRING_UP])
def test_bring_up_order(nodes: list[NodeView], init: str, may_go: set[str]) -> None:
    assert {n.name for n in nodes if not n.busy and allowed(n.name, nodes, init)} == may_go


def test_server_waits_for_a_started_later_server_that_is_down() -> None:
    # s3 is down: restarting s2 now would leave one of three etcd members up.
    nodes = cluster(ready="s1 s2", started="s3")
    assert not allowed("s2", nodes)
    assert allowed("s3", nodes)


def test_bring_up_agent_batch_limit() -> None:
    nodes = cluster(ready=SERVERS, busy="a1 a2", started="a1 a2")
    assert not allowed("a3", nodes, agent_batch=2)
    assert allowed("a3", nodes, agent_batch=3)


def test_agent_without_servers_waits() -> None:
    agent = NodeView("a1", "agent", "10.0.0.4", ready=False, started=False, busy=False)
    assert not may_disrupt(agent, [agent], None, agent_batch=5).allowed


def rollout(me: str, nodes: list[NodeView], *, agent_batch: int, server_batch: int) -> bool:
    return allowed(me, nodes, agent_batch=agent_batch, server_batch=server_batch, upgrade_to=V36)


# (case, cluster snapshot, agent_batch, server_batch, who may go now among the nodes not busy already)
ROLLOUT = [
    ("servers first, agents wait", cluster(ready=ALL, default_running=V35), 2, 1, {"s1", "s2", "s3"}),
    ("one server at a time", cluster(ready=ALL, busy="s1", default_running=V35), 2, 1, set()),
    ("serverConcurrency 2", cluster(ready=ALL, busy="s1", default_running=V35), 2, 2, {"s2", "s3"}),
    ("serverConcurrency 2, full", cluster(ready=ALL, busy="s1 s2", default_running=V35), 2, 2, set()),
    (
        "agents wait until every server runs the target",
        cluster(ready=ALL, running={"s1": V36, "s2": V36}, default_running=V35),
        2,
        1,
        {"s1", "s2", "s3"},
    ),
    (
        "agents in name order, one batch",
        cluster(ready=ALL, running={"s1": V36, "s2": V36, "s3": V36}, default_running=V35),
        2,
        1,
        {"s1", "s2", "s3", "a1", "a2"},
    ),
    (
        "batch full",
        cluster(ready=ALL, busy="a1 a2", running={"s1": V36, "s2": V36, "s3": V36}, default_running=V35),
        2,
        1,
        {"s1", "s2", "s3"},
    ),
    (
        "window moves on when an agent is done",
        cluster(ready=ALL, busy="a2", running={"s1": V36, "s2": V36, "s3": V36, "a1": V36}, default_running=V35),
        2,
        1,
        {"s1", "s2", "s3", "a3"},
    ),
    (
        "halted: another started agent failed",
        cluster(ready="s1 s2 s3 a2 a3", failed="a1", running={"s1": V36, "s2": V36, "s3": V36}, default_running=V35),
        3,
        1,
        {"s1", "s2", "s3", "a1"},
    ),
]


@pytest.mark.parametrize(
    ("nodes", "agent_batch", "server_batch", "may_go"), [c[1:] for c in ROLLOUT], ids=[c[0] for c in ROLLOUT]
)
def test_rollout_order(nodes: list[NodeView], agent_batch: int, server_batch: int, may_go: set[str]) -> None:
    asking = [n for n in nodes if not n.busy]  # a busy node already has its go-ahead
    got = {n.name for n in asking if rollout(n.name, nodes, agent_batch=agent_batch, server_batch=server_batch)}
    assert got == may_go


def test_rollout_reasons_say_why() -> None:
    behind = cluster(ready=ALL, running={"s1": V36}, default_running=V35)
    assert "servers first" in may_disrupt(behind[3], behind, "s1", agent_batch=1, upgrade_to=V36).reason
    halted = cluster(ready=ALL, failed="a1", running=dict.fromkeys(("s1", "s2", "s3"), V36), default_running=V35)
    assert (
        may_disrupt(halted[4], halted, "s1", agent_batch=3, upgrade_to=V36).reason == "rollout halted: agent a1 failed"
    )


@pytest.mark.parametrize(
    ("servers", "registration", "recorded", "init"),
    [
        ([("s1", "10.0.0.1"), ("s2", "10.0.0.2")], "10.0.0.2", None, "s2"),
        ([("s2", "10.0.0.2"), ("s1", "10.0.0.1")], "lb.example.com", None, "s1"),
        ([("s2", "10.0.0.2"), ("s1", "10.0.0.1")], None, None, "s1"),
        ([("s1", "10.0.0.1"), ("s2", "10.0.0.2")], "10.0.0.1", "s2", "s2"),
        ([("s1", "10.0.0.1"), ("s2", "10.0.0.2")], "10.0.0.1", "s9", None),
        ([], "10.0.0.1", None, None),
    ],
    ids=["address wins", "by name", "no address", "recorded sticks", "recorded gone", "no servers"],
)
def test_choose_init_server(
    servers: list[tuple[str, str]], registration: str | None, recorded: str | None, init: str | None
) -> None:
    assert choose_init_server(servers, registration, recorded) == init


def test_a_live_change_takes_one_role_at_a_time() -> None:
    """A restart rolling through a running cluster: the bring-up lets agents go with every
    server Ready; a live change also waits for the node of the other role that is going down
    (it was Ready when last read)."""
    nodes = cluster(ready=ALL, busy="s2")
    agent = next(n for n in nodes if n.name == "a1")
    assert may_disrupt(agent, nodes, "s1", agent_batch=1).allowed  # the bring-up's rule
    live = may_disrupt(agent, nodes, "s1", agent_batch=1, live=True)
    assert not live.allowed and "s2" in live.reason
    nodes = cluster(ready=ALL, busy="a2")
    server = next(n for n in nodes if n.name == "s1")
    assert may_disrupt(server, nodes, "s1", agent_batch=1).allowed
    live = may_disrupt(server, nodes, "s1", agent_batch=1, live=True)
    assert not live.allowed and "a2" in live.reason
    agent = next(n for n in nodes if n.name == "a1")
    assert not may_disrupt(agent, nodes, "s1", agent_batch=1, live=True).allowed  # agentConcurrency 1
    assert may_disrupt(agent, nodes, "s1", agent_batch=2, live=True).allowed
