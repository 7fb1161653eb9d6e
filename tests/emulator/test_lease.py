"""Leader election on a coordination.k8s.io Lease against the emulator: one holder at a time,
a standby takes over only after a lease duration of silence (by its own clock), a stale write
is refused (409), and a released lease is taken at once."""

from __future__ import annotations

import asyncio
import threading

import pytest
from kubernetes.config import kube_config

from rke2fleet.store.api import KubeApi
from rke2fleet.store.lease import LeaderElector, LeaseConfig
from rke2fleet_sandbox.emulator import RunningEmulator

from .conftest import Api

LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/rke2fleet"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make(running: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(running.kubeconfig_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    def build(identity: str, clock: Clock) -> LeaderElector:
        config = LeaseConfig("rke2fleet", "default", identity, lease_duration=15, renew_deadline=10, retry_period=2)
        return LeaderElector(config, KubeApi(), clock=clock)

    return build


async def test_one_leader_then_takeover_after_silence_then_release(make: object, api: Api) -> None:
    clock = Clock()
    a, b = make("a", clock), make("b", clock)  # type: ignore[operator]
    assert await asyncio.to_thread(a.try_acquire_or_renew)
    assert not await asyncio.to_thread(b.try_acquire_or_renew)
    lease = await api.ok("GET", LEASE)
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseDurationSeconds"] == 15
    clock.now += 10  # a renews in time: b keeps waiting
    assert await asyncio.to_thread(a.try_acquire_or_renew)
    assert not await asyncio.to_thread(b.try_acquire_or_renew)
    clock.now += 14.9
    assert not await asyncio.to_thread(b.try_acquire_or_renew)
    clock.now += 0.2  # a silent for a lease duration as b saw it
    assert await asyncio.to_thread(b.try_acquire_or_renew)
    lease = await api.ok("GET", LEASE)
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    assert not await asyncio.to_thread(a.try_acquire_or_renew)  # a sees b now

    # a's keep loop gives up once its renew deadline passed.
    lost = threading.Event()
    stop = threading.Event()
    a.config = LeaseConfig("rke2fleet", "default", "a", 15, renew_deadline=10, retry_period=0.01)
    clock.now += 11
    await asyncio.to_thread(a.keep, stop, lost.set)
    assert lost.is_set()

    await asyncio.to_thread(b.release)
    lease = await api.ok("GET", LEASE)
    assert lease["spec"]["holderIdentity"] == "" and lease["spec"]["leaseDurationSeconds"] == 1
    assert await asyncio.to_thread(a.try_acquire_or_renew)  # taken at once, no waiting


async def test_a_stale_resource_version_is_refused(make: object, api: Api) -> None:
    a = make("a", Clock())  # type: ignore[operator]
    assert await asyncio.to_thread(a.try_acquire_or_renew)
    lease = await api.ok("GET", LEASE)
    assert await asyncio.to_thread(a.try_acquire_or_renew)  # bumps resourceVersion
    lease["spec"]["holderIdentity"] = "thief"
    status, _ = await api.call("PUT", LEASE, lease)
    assert status == 409


def test_a_standby_answers_its_liveness_probe() -> None:
    import socket
    import urllib.error
    import urllib.request

    from rke2fleet.handlers.runner import standby_health

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = standby_health(port)
    try:
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
