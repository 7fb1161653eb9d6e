"""Heavy stand-ins (rke2fleet_sandbox.costs): every systemctl verb through Python, a slower rke2
start-up and install; the light default keeps the shell fast path."""

from __future__ import annotations

import time

import pytest

from rke2fleet_sandbox import costs
from rke2fleet_sandbox.hosts import shim_script
from tests.sandbox_standins.hosthelpers import V, is_active, journal, start


def test_costs_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (costs.HEAVY_ENV, costs.STARTUP_ENV, costs.INSTALL_ENV):
        monkeypatch.delenv(name, raising=False)
    assert costs.host_json_costs() == {}
    assert b"systemctl_query.sh" in shim_script("systemctl")
    monkeypatch.setenv(costs.HEAVY_ENV, "1")
    assert costs.host_json_costs() == {"startupDelay": costs.HEAVY_STARTUP, "installDelay": costs.HEAVY_INSTALL,
                                       "heavyStandins": True}  # fmt: skip
    assert b"systemctl_query.sh" not in shim_script("systemctl")
    monkeypatch.setenv(costs.STARTUP_ENV, "7,4")
    monkeypatch.setenv(costs.INSTALL_ENV, "0")
    assert costs.host_json_costs() == {"startupDelay": {"server": 7.0, "agent": 4.0}, "heavyStandins": True}
    monkeypatch.delenv(costs.HEAVY_ENV)
    monkeypatch.setenv(costs.STARTUP_ENV, "2.5")
    assert costs.host_json_costs() == {"startupDelay": {"server": 2.5, "agent": 2.5}}
    monkeypatch.setenv(costs.STARTUP_ENV, "-1")
    with pytest.raises(ValueError, match="negative"):
        costs.host_json_costs()


def _traced_query(host) -> str:  # type: ignore[no-untyped-def]
    """The shim's own trace of one query verb: which path answered it."""
    return str(host.run("sh -x /usr/bin/systemctl is-active rke2-server").stderr)


def test_light_queries_take_the_shell_fast_path(make_host, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(costs.HEAVY_ENV, raising=False)
    host = make_host("light-q")
    trace = _traced_query(host)
    assert "_q_main" in trace and "systemctl.py" not in trace


def test_heavy_mode_takes_the_heavy_path(installer, make_host, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(costs.HEAVY_ENV, "1")
    monkeypatch.setenv(costs.STARTUP_ENV, "1.5,0.5")
    monkeypatch.setenv(costs.INSTALL_ENV, "0.5")
    host = make_host("heavy-q")
    trace = _traced_query(host)
    assert "_q_main" not in trace and "systemctl.py is-active rke2-server" in trace  # every verb: Python
    t0 = time.monotonic()
    host.install(installer.url, f"INSTALL_RKE2_VERSION={V}")
    assert time.monotonic() - t0 >= 0.5  # the install delay
    host.write_config("token: s3cret")
    t0 = time.monotonic()
    assert start(host).returncode == 0, journal(host)  # blocking: until READY
    assert time.monotonic() - t0 >= 1.5  # the server's start-up delay
    assert is_active(host) == "active"
    assert "rke2 is up and running" in journal(host)
