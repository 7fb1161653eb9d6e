"""tokens.py (reference §4) and engine/turns.py node_views (the snapshot ordering reads)."""

from __future__ import annotations

from typing import Any

import pytest

from rke2fleet.engine.records import NodeRecord
from rke2fleet.engine.turns import node_views
from rke2fleet.reconcile.ordering import may_disrupt
from rke2fleet.reconcile.tokens import generate_token, is_secure, token_values

HEX = "ab" * 32


def test_generated_tokens_are_short_form_and_random() -> None:
    a, b = generate_token(), generate_token()
    assert a != b
    assert len(a) == 64 and int(a, 16) >= 0
    assert not is_secure(a)


@pytest.mark.parametrize(
    ("token", "secure", "values"),
    [
        (f"K10{HEX}::server:pw", True, [f"K10{HEX}::server:pw", "pw"]),
        (f"K10{HEX}::node:p:w", True, [f"K10{HEX}::node:p:w", "p:w"]),
        (f"K10{HEX}::agent:pw", False, [f"K10{HEX}::agent:pw"]),
        (f"K10{HEX[:-2]}::server:pw", False, [f"K10{HEX[:-2]}::server:pw"]),
        ("short-token", False, ["short-token"]),
        ("", False, []),
    ],
)
def test_token_forms_and_redaction_values(token: str, secure: bool, values: list[str]) -> None:
    assert is_secure(token) is secure
    assert token_values(token) == values


def entry(name: str, role: str = "server", **status: Any) -> NodeRecord:
    return NodeRecord("default", name, {"cluster": "c", "role": role, "address": f"{name}.example.com"}, status)


# What the cluster's own view says of a serving server (the Ready condition alone is not it).
READY_COND = [
    {"type": "Ready", "status": "True"},
    {"type": "ServiceActive", "status": "True"},
    {"type": "NodeReady", "status": "True"},
    {"type": "EtcdVoter", "status": "True", "reason": "MemberNotLearner"},
]
NOT_READY_COND = [{"type": "Ready", "status": "False"}]
LEARNER_COND = [*READY_COND[:3], {"type": "EtcdVoter", "status": "False", "reason": "MemberIsLearner"}]
NODE_NOT_READY_COND = [
    {"type": "Ready", "status": "True"},  # a stale claim: the cluster's view decides
    {"type": "ServiceActive", "status": "True"},
    {"type": "NodeReady", "status": "False", "reason": "KubeletNotReady"},
    {"type": "EtcdVoter", "status": "True"},
]
# Serving, but a change is pending for it (a rollout waits for its turn): not Ready, yet up.
PENDING_COND = [{"type": "Ready", "status": "False", "reason": "Waiting"}, *READY_COND[1:]]


@pytest.mark.parametrize(
    ("status", "ready", "started", "failed"),
    [
        ({}, False, False, False),
        ({"phase": "Pending"}, False, False, False),
        ({"phase": "Installing"}, False, True, False),
        ({"phase": "Ready", "conditions": READY_COND, "installedVersion": "v1.36.3+rke2r1"}, True, True, False),
        ({"phase": "Ready", "conditions": NOT_READY_COND}, False, True, False),
        ({"phase": "Starting", "conditions": LEARNER_COND}, False, True, False),
        ({"phase": "NotReady", "conditions": NODE_NOT_READY_COND}, False, True, False),
        ({"phase": "Pending", "conditions": PENDING_COND, "installedVersion": "v1.36.3+rke2r1"}, True, True, False),
        ({"phase": "Failed", "installedVersion": "v1.36.3+rke2r1"}, False, True, True),
        ({"phase": "Pending", "installedVersion": "v1.36.3+rke2r1"}, False, True, False),
        # Installed and configured ahead of its turn, never started.
        ({"phase": "Staged", "installedVersion": "v1.36.3+rke2r1"}, False, False, False),
    ],
)
def test_node_views(status: dict[str, Any], ready: bool, started: bool, failed: bool) -> None:
    (view,) = node_views([entry("s1", **status)], set())
    assert (view.ready, view.started, view.failed, view.busy) == (ready, started, failed, False)
    assert (view.role, view.address) == ("server", "s1.example.com")


def test_agents_serve_without_etcd_and_old_releases_without_its_report() -> None:
    agent = entry("a1", "agent", conditions=READY_COND[:3])
    unreported = {"type": "EtcdVoter", "status": "Unknown", "reason": "NotReported"}
    server_old = entry("s1", conditions=[*READY_COND[:3], unreported])
    assert [v.ready for v in node_views([agent, server_old], set())] == [True, True]


def test_a_fresh_read_of_the_cluster_overrides_the_statuses() -> None:
    from rke2fleet.reconcile.health import ClusterHealth, NodeHealth

    entries = [entry("s1", conditions=READY_COND), entry("s2", conditions=LEARNER_COND)]
    health = ClusterHealth(
        nodes={
            "s1": NodeHealth("s1", False, "NodeStatusUnknown", "Kubelet stopped posting node status.", True),
            "s2": NodeHealth("s2", True, "KubeletReady", "", True, "MemberNotLearner"),
        },
        reports_etcd=True,
    )
    assert [v.ready for v in node_views(entries, set(), health)] == [False, True]
    unreadable = ClusterHealth(error="Kubernetes API not readable")
    assert [v.ready for v in node_views(entries, set(), unreadable)] == [True, False]  # statuses, then


def test_node_views_busy_and_running() -> None:
    views = node_views([entry("s1", runningVersion="v1.36.3+rke2r1"), entry("a1", "agent")], {"a1"})
    assert [(v.name, v.role, v.busy, v.running) for v in views] == [
        ("s1", "server", False, "v1.36.3+rke2r1"),
        ("a1", "agent", True, None),
    ]


@pytest.mark.parametrize("phase", ["Unreachable", "Failed"])
def test_never_installed_unreachable_server_does_not_block_the_join(phase: str) -> None:
    entries = [
        entry("s1", phase="Ready", conditions=READY_COND, installedVersion="v1.36.3+rke2r1"),
        entry("s2", phase="Pending"),
        entry("s3", phase=phase),
    ]
    views = node_views(entries, set())
    assert not views[2].started
    assert may_disrupt(views[1], views, "s1", agent_batch=1).allowed


def test_staged_servers_do_not_block_the_join_order() -> None:
    """Every server stages at once; a later one that is only staged must not hold up an earlier
    one (nor the init server), or the bring-up would deadlock."""
    entries = [
        entry("s1", phase="Staged", installedVersion="v1.36.3+rke2r1"),
        entry("s2", phase="Staged", installedVersion="v1.36.3+rke2r1"),
        entry("s3", phase="Staged", installedVersion="v1.36.3+rke2r1"),
    ]
    views = node_views(entries, set())
    assert may_disrupt(views[0], views, "s1", agent_batch=1).allowed
    assert not may_disrupt(views[1], views, "s1", agent_batch=1).allowed  # s1 is not Ready yet
    views = node_views([entry("s1", phase="Ready", conditions=READY_COND), *entries[1:]], set())
    assert may_disrupt(views[1], views, "s1", agent_batch=1).allowed
    assert not may_disrupt(views[2], views, "s1", agent_batch=1).allowed
