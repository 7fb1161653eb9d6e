"""The operator SIGKILLed during a bring-up and during a rolling upgrade, then started again:
it resumes; never two servers down at once, no node upgraded twice, none left cordoned, and the
init server never re-initialised (its CA and token unchanged, one cluster in the datastore)."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from rke2fleet_sandbox.datastore import Datastore
from rke2fleet_sandbox.manifests import cluster_manifests
from tests.e2e.harness import Kube, datastore_events
from tests.e2e.test_day2 import NEW, OLD, all_running, assert_rollout_order, not_cordoned

from .conftest import RelE2E
from .hostside import sh

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

INIT_IDENTITY = (
    "sha256sum /var/lib/rancher/rke2/server/token /var/lib/rancher/rke2/server/tls/server-ca.crt 2>/dev/null"
)


def phases(kube: Kube) -> dict[str, str]:
    return {n["metadata"]["name"]: (n.get("status") or {}).get("phase", "") for n in kube.nodes()}


def init_identity(sb: Any, kube: Kube, cluster: str) -> tuple[str, str] | None:
    """(init server, sha256 of its token and CA) once both exist."""
    init = ((kube.get("rke2clusters", cluster) or {}).get("status") or {}).get("initServer")
    if not init:
        return None
    out = sh(sb, init, INIT_IDENTITY)
    return (init, out) if len(out.splitlines()) == 2 else None


def test_operator_killed_during_bring_up(e2e: RelE2E) -> None:
    sb = e2e.up(2, 1)
    kube = e2e.kube
    assert kube
    for h in sb.hosts:
        sb.set_start_delay(h, 2.0)  # a wider window for the kill
    kube.apply(cluster_manifests(sb, "boot"))
    op = e2e.operator()
    # Killed once the init server runs (its CA and token exist) and the bring-up goes on.
    identity = kube.wait("init server initialised", lambda: init_identity(sb, kube, "boot"), 90, 0.2)
    kube.wait(
        "bring-up mid-way",
        lambda: any(p in ("Installing", "Configuring", "Starting") for p in phases(kube).values()),
        60,
        0.1,
    )
    at_kill = phases(kube)
    op.stop(signal.SIGKILL)
    killed = time.monotonic()
    time.sleep(1)
    e2e.operator()
    kube.wait_phase("rke2clusters", "boot", "Ready", timeout=120)
    took = time.monotonic() - killed
    assert init_identity(sb, kube, "boot") == identity, "the init server was re-initialised"
    assert len(Datastore(sb.layout.datastore).clusters()) == 1, "a second cluster was initialised"
    events = datastore_events(sb)
    for h in sb.hosts:
        joins = [e for e in events if e["node"] == h.name and e["event"] == "join"]
        assert len(joins) == 1, f"{h.name} joined {len(joins)} times"
    print(f"\noperator killed during bring-up at {at_kill}: Ready {took:.1f}s after the kill; one init, one join each")


def test_operator_killed_during_rolling_upgrade(e2e: RelE2E) -> None:
    sb = e2e.up(3, 1)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "roll", version=OLD))
    op = e2e.operator()
    kube.wait_phase("rke2clusters", "roll", "Ready", timeout=120)
    identity = init_identity(sb, kube, "roll")
    assert identity
    since = time.time()
    for h in sb.hosts:
        sb.set_start_delay(h, 2.0)  # the kill lands while a server is mid-upgrade
    kube.patch_spec("rke2clusters", "roll", {"version": NEW})
    kube.wait(
        "a server mid-upgrade",
        lambda: any(
            p in ("Draining", "Installing", "Starting") and n.startswith("server") for n, p in phases(kube).items()
        ),
        60,
        0.1,
    )
    at_kill = phases(kube)
    op.stop(signal.SIGKILL)
    killed = time.monotonic()
    time.sleep(1)
    e2e.operator()
    kube.wait("every node at the new version", lambda: all_running(kube, NEW), 120)
    kube.wait_phase("rke2clusters", "roll", "Ready", timeout=60)
    took = time.monotonic() - killed
    # Never two servers down at once; cordoned before down, uncordoned after; one start at NEW each.
    assert_rollout_order(datastore_events(sb), [h.name for h in sb.servers], [h.name for h in sb.agents], since)
    assert not_cordoned(sb)
    assert all(not n["status"].get("cordoned") for n in kube.nodes())
    assert init_identity(sb, kube, "roll") == identity, "the init server was re-initialised"
    assert len(Datastore(sb.layout.datastore).clusters()) == 1
    print(f"\noperator killed mid-rollout at {at_kill}: all at {NEW} and Ready {took:.1f}s after the kill")
