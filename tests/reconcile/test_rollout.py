"""rollout.py: which version changes are refused, and where a rollout stands (reference §8)."""

from __future__ import annotations

from typing import Any

import pytest

from rke2fleet.engine.records import NodeRecord
from rke2fleet.reconcile.rollout import rollout_view, snapshot_name, upgrade_problem


@pytest.mark.parametrize(
    ("current", "wanted", "reason"),
    [
        ("v1.36.2+rke2r1", "v1.36.3+rke2r1", None),
        ("v1.35.7+rke2r1", "v1.36.3+rke2r1", None),
        ("v1.36.3+rke2r1", "v1.36.3+rke2r1", None),
        ("v1.36.3+rke2r1", "v1.36.3+rke2r2", None),
        ("v1.36.4-rc1+rke2r1", "v1.36.4+rke2r1", None),
        ("v1.36.4-rc1+rke2r1", "v1.36.4-rc2+rke2r1", None),
        ("v1.36.3+rke2r1", "v1.36.4-rc1+rke2r1", None),
        ("v1.35.7+rke2r1", "v1.36.0-rc1+rke2r1", None),
        ("v1.34.10+rke2r1", "v1.36.3+rke2r1", "MinorSkip"),
        ("v1.33.13+rke2r2", "v1.36.3+rke2r1", "MinorSkip"),
        ("v1.34.10+rke2r1", "v1.36.0-rc1+rke2r1", "MinorSkip"),
        ("v1.36.3+rke2r1", "v1.35.7+rke2r1", "Downgrade"),
        ("v1.36.3+rke2r1", "v1.36.2+rke2r1", "Downgrade"),
        ("v1.36.3+rke2r2", "v1.36.3+rke2r1", "Downgrade"),
        ("v1.36.4+rke2r1", "v1.36.4-rc1+rke2r1", "Downgrade"),
        ("v1.36.4-rc2+rke2r1", "v1.36.4-rc1+rke2r1", "Downgrade"),
        ("v1.36.3+rke2r1", "v1.34.10+rke2r1", "Downgrade"),
    ],
)
def test_upgrade_problem(current: str, wanted: str, reason: str | None) -> None:
    problem = upgrade_problem(current, wanted)
    assert (problem[0] if problem else None) == reason
    if problem:
        message = problem[1]
        assert current in message and wanted in message


def test_messages_say_what_to_do() -> None:
    skip = upgrade_problem("v1.34.10+rke2r1", "v1.36.3+rke2r1")
    assert skip is not None and "upgrade to v1.35.x first" in skip[1]
    down = upgrade_problem("v1.36.3+rke2r1", "v1.35.7+rke2r1")
    assert down is not None and "snapshot" in down[1]


def test_snapshot_name_has_no_plus() -> None:
    assert snapshot_name("v1.36.3+rke2r1") == "pre-upgrade-v1.36.3-rke2r1"


T = "v1.36.3+rke2r1"
OLD = "v1.35.7+rke2r1"


def entry(name: str, running: str | None, phase: str = "Ready", last_error: str | None = None) -> NodeRecord:
    status: dict[str, Any] = {"phase": phase}
    if running:
        status["runningVersion"] = running
    if last_error:
        status["lastError"] = last_error
    return NodeRecord("default", name, {"role": "server" if name.startswith("s") else "agent"}, status)


# (case, nodes, phase, done, current, halted node, halted reason)
VIEWS: list[tuple[str, list[NodeRecord], str, list[str], list[str], str | None, str | None]] = [
    (
        "servers under way",
        [entry("s2", OLD, "Installing"), entry("s1", T), entry("a1", OLD)],
        "Servers",
        ["s1"],
        ["s2"],
        None,
        None,
    ),
    (
        "agents under way",
        [entry("s1", T), entry("a1", T), entry("a2", OLD, "Draining"), entry("a3", OLD)],
        "Agents",
        ["a1", "s1"],
        ["a2"],
        None,
        None,
    ),
    ("done", [entry("s1", T), entry("a1", T)], "Done", ["a1", "s1"], [], None, None),
    (
        "an agent failed",
        [entry("s1", T), entry("a1", OLD, "Failed", "drain of a1 failed: timeout"), entry("a2", OLD)],
        "Halted",
        ["s1"],
        [],
        "a1",
        "drain of a1 failed: timeout",
    ),
    (
        "a failed server is named before a failed agent",
        [entry("a1", OLD, "Failed", "x"), entry("s2", OLD, "Failed"), entry("s1", T)],
        "Halted",
        ["s1"],
        [],
        "s2",
        "failed",
    ),
    (
        "upgraded, then not counted by the cluster: halts the nodes behind it",
        [entry("s1", T, "NotReady"), entry("s2", OLD), entry("a1", OLD)],
        "Halted",
        ["s1"],
        [],
        "s1",
        "failed",
    ),
    (
        "failed but every node at target: no rollout to halt",
        [entry("s1", T), entry("a1", T, "Failed", "x")],
        "Done",
        ["a1", "s1"],
        [],
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("nodes", "phase", "done", "current", "halted_node", "halted_reason"),
    [v[1:] for v in VIEWS],
    ids=[v[0] for v in VIEWS],
)
def test_rollout_view(
    nodes: list[NodeRecord],
    phase: str,
    done: list[str],
    current: list[str],
    halted_node: str | None,
    halted_reason: str | None,
) -> None:
    view = rollout_view(T, nodes)
    assert (view.phase, view.done, view.current) == (phase, done, current)
    assert (view.halted_node, view.halted_reason) == (halted_node, halted_reason)
    assert view.in_progress is (phase != "Done")
    status = view.status()
    assert status["targetVersion"] == T and status["phase"] == phase
    assert status["halted"] == ({"node": halted_node, "reason": halted_reason} if halted_node else None)
