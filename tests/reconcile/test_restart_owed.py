"""A restart owed: from a running node's first changed file until systemd has queued the restart
(RESTART_MARKER on the host, read with the facts), so that a pass cut in between is made good."""

from __future__ import annotations

import asyncio
import shlex
from typing import Any

from pydantic import SecretBytes

from rke2fleet.hostaccess import HostTarget
from rke2fleet.reconcile.apply import apply_plan
from rke2fleet.reconcile.paths import RESTART_MARKER
from rke2fleet.reconcile.plan import plan_node
from rke2fleet.reconcile.steps import Step, StepContext
from tests.engine.fakes import FakeHosts
from tests.reconcile.builders import converged_facts, desired

OTHER_SHA = "00" * 32
SETTLE = f"&& rm -f {shlex.quote(RESTART_MARKER)}"


def applied(**facts_changes: Any) -> tuple[tuple[Step, ...], list[str]]:
    """The plan made from a host with these facts, and the commands its apply ran, in order."""
    d = desired("agent")
    facts = converged_facts(d, **facts_changes)
    plan = plan_node(d, facts)
    hosts = FakeHosts()
    hosts.answer(lambda _, what: (0, "state=active\n") if "state=" in what else None)
    target = HostTarget("127.0.0.1", SecretBytes(b"unused"))
    ctx = StepContext(hosts=hosts, target=target, desired=d, secrets=[], readiness_timeout=30, facts=facts)  # type: ignore[arg-type]
    asyncio.run(apply_plan(plan, ctx))
    return plan.steps, hosts.commands()


def test_the_restart_is_owed_from_the_first_changed_file_until_it_is_queued() -> None:
    steps, commands = applied(config_sha256=OTHER_SHA)
    assert steps == (Step.WRITE_CONFIG, Step.RESTART, Step.WAIT_READY)
    assert commands[:2] == [f"write {RESTART_MARKER}", "write /etc/rancher/rke2/config.yaml"]
    restart = commands[2]
    assert restart.startswith("systemctl restart --no-block rke2-agent ") and SETTLE in restart
    assert sum(SETTLE in c for c in commands) == 1


def test_an_owed_restart_is_made_although_the_files_match() -> None:
    steps, commands = applied(restart_pending=True)
    assert steps == (Step.RESTART, Step.WAIT_READY)
    assert not any(c.startswith("write ") for c in commands)
    assert SETTLE in commands[0]


def test_a_stopped_node_that_owed_a_restart_settles_it_with_its_start() -> None:
    steps, commands = applied(restart_pending=True, agent=("enabled", "inactive"))
    assert steps == (Step.START, Step.WAIT_READY)
    assert "systemctl start --no-block rke2-agent" in commands[0] and SETTLE in commands[0]


def test_a_bring_up_owes_nothing() -> None:
    _, commands = applied(config_sha256=None, agent=("disabled", "inactive"))
    assert not any(RESTART_MARKER in c for c in commands)
