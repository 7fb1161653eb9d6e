"""plan.py: plan_node is a pure function of desired state and facts (reference §7, §8)."""

from __future__ import annotations

from typing import Any

import pytest

from rke2fleet.reconcile.plan import Step, plan_node
from tests.reconcile.builders import V35, V36, cluster_spec, converged_facts, desired

S = Step
OTHER_SHA = "00" * 32
UPGRADE = (S.CORDON, S.DRAIN, S.INSTALL, S.RESTART, S.WAIT_READY, S.UNCORDON)

# (case, facts changes from a converged host, plan_node kwargs, expected steps in order)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], tuple[Step, ...]]] = [
    ("converged", {}, {}, ()),
    (
        "fresh host",
        {"version": None, "config_sha256": None, "server": ("disabled", "inactive")},
        {},
        (S.INSTALL, S.WRITE_CONFIG, S.ENABLE, S.START, S.WAIT_READY),
    ),
    ("config differs", {"config_sha256": OTHER_SHA}, {}, (S.WRITE_CONFIG, S.RESTART, S.WAIT_READY)),
    # written by a pass that died before its restart: the files match, the process does not
    ("restart owed", {"restart_pending": True}, {}, (S.RESTART, S.WAIT_READY)),
    ("restart owed, new config again", {"restart_pending": True, "config_sha256": OTHER_SHA}, {},
     (S.WRITE_CONFIG, S.RESTART, S.WAIT_READY)),
    ("config deleted", {"config_sha256": None}, {}, (S.WRITE_CONFIG, S.RESTART, S.WAIT_READY)),
    (
        "config differs, stopped",
        {"config_sha256": OTHER_SHA, "server": ("enabled", "inactive")},
        {},
        (S.WRITE_CONFIG, S.START, S.WAIT_READY),
    ),
    ("version change on a live node", {"version": V35}, {}, UPGRADE),
    (
        "version change, drain off",
        {"version": V35},
        {"drain": False},
        (S.CORDON, S.INSTALL, S.RESTART, S.WAIT_READY, S.UNCORDON),
    ),
    (
        "version and config change",
        {"version": V35, "config_sha256": OTHER_SHA},
        {},
        (S.CORDON, S.DRAIN, S.INSTALL, S.WRITE_CONFIG, S.RESTART, S.WAIT_READY, S.UNCORDON),
    ),
    (
        "installed the target, still runs the old one",
        {"version": V36, "running": V35},
        {},
        (S.CORDON, S.DRAIN, S.RESTART, S.WAIT_READY, S.UNCORDON),
    ),
    ("live, running unknown, old binary", {"version": V35, "data_bin": ""}, {}, UPGRADE),
    ("live, running unknown, target binary", {"version": V36, "data_bin": ""}, {}, ()),
    ("binary replaced while running the target", {"version": V35, "running": V36}, {}, (S.INSTALL,)),
    ("binary deleted while running the target", {"version": None, "running": V36}, {}, (S.INSTALL,)),
    (
        "old version, stopped: no cordon",
        {"version": V35, "server": ("enabled", "inactive")},
        {},
        (S.INSTALL, S.START, S.WAIT_READY),
    ),
    ("left cordoned earlier", {}, {"cordoned": True}, (S.UNCORDON,)),
    ("cordoned during an upgrade: one uncordon", {"version": V35}, {"cordoned": True}, UPGRADE),
    ("stopped", {"server": ("enabled", "inactive")}, {}, (S.START, S.WAIT_READY)),
    ("failed", {"server": ("enabled", "failed")}, {}, (S.START, S.WAIT_READY)),
    ("disabled", {"server": ("disabled", "active")}, {}, (S.ENABLE,)),
    ("activating", {"server": ("enabled", "activating")}, {}, (S.WAIT_READY,)),
    (
        "activating with a new config",
        {"server": ("enabled", "activating"), "config_sha256": OTHER_SHA},
        {},
        (S.WRITE_CONFIG, S.RESTART, S.WAIT_READY),
    ),
]


@pytest.mark.parametrize(("facts_changes", "kwargs", "steps"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_steps(facts_changes: dict[str, Any], kwargs: dict[str, Any], steps: tuple[Step, ...]) -> None:
    d = desired("server")
    plan = plan_node(d, converged_facts(d, **facts_changes), **kwargs)
    assert plan.steps == steps
    assert bool(plan) is bool(steps)
    assert plan.upgrades is (S.CORDON in steps)


@pytest.mark.parametrize("role", ["server", "agent"])
def test_each_role_watches_its_own_unit(role: str) -> None:
    d = desired(role)
    assert not plan_node(d, converged_facts(d))
    other = "agent" if role == "server" else "server"
    # Only the other role's unit runs: this role's unit must be enabled and started.
    f = converged_facts(d, **{role: ("disabled", "inactive"), other: ("enabled", "active")})
    assert plan_node(d, f).steps == (S.ENABLE, S.START, S.WAIT_READY)


def test_channel_target_accepts_any_installed_version() -> None:
    d = desired(cluster=cluster_spec(version=None, channel="stable"))
    assert d.version is None
    assert not plan_node(d, converged_facts(d, version=V35))
    assert plan_node(d, converged_facts(d, version=None, running=None)).steps[0] is S.INSTALL


def test_reasons_name_versions_and_causes() -> None:
    d = desired()
    plan = plan_node(d, converged_facts(d, version=V35, config_sha256=OTHER_SHA))
    why = {a.step: a.why for a in plan.actions}
    assert why[S.CORDON] == f"runs {V35}; want {V36}"
    assert why[S.INSTALL] == f"installed {V35}; want {V36}"
    assert why[S.RESTART] == "new version and new config"
    assert "write-config (config.yaml differs)" in plan.summary()


@pytest.mark.parametrize(
    ("facts_changes", "kwargs", "disruptive"),
    [
        ({}, {"cordoned": True}, False),
        ({"server": ("disabled", "active")}, {}, False),
        ({"server": ("enabled", "activating")}, {}, False),
        ({"config_sha256": OTHER_SHA}, {}, True),
        ({"server": ("enabled", "inactive")}, {}, True),
        ({"version": V35, "running": V36}, {}, True),
    ],
)
def test_disruptive(facts_changes: dict[str, Any], kwargs: dict[str, Any], disruptive: bool) -> None:
    d = desired()
    assert plan_node(d, converged_facts(d, **facts_changes), **kwargs).disruptive is disruptive


@pytest.mark.parametrize(
    ("facts_changes", "kinds"),
    [
        ({}, []),
        (
            {"version": None, "config_sha256": None, "server": ("disabled", "inactive")},
            ["config", "service", "version"],
        ),
        ({"server": ("enabled", "inactive")}, ["service"]),
        ({"server": ("disabled", "active")}, ["service"]),
        ({"version": V35, "running": V36}, ["version"]),
        ({"version": V36, "running": V35}, ["version"]),
        ({"version": V35}, ["version"]),
        pytest.param(
            {"config_sha256": OTHER_SHA},
            ["config"],
            id="config-only drift",
        ),
    ],
)
def test_drift_kinds(facts_changes: dict[str, Any], kinds: list[str]) -> None:
    d = desired()
    assert plan_node(d, converged_facts(d, **facts_changes)).drift_kinds() == kinds
