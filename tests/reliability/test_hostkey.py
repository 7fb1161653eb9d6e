"""A host's key replaced (a machine in the middle) under the running operator: refused under
Strict and, once a key is recorded, under AcceptNew; the condition names the fingerprint seen;
nothing reaches the host (no login in its sshd log, its files unchanged).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from rke2fleet.hostaccess import fingerprint
from rke2fleet_sandbox.manifests import cluster_manifests
from tests.e2e.harness import Kube

from .conftest import RelE2E
from .hostside import drop_sessions, logins, sh

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

HOST_STATE = (
    "sha256sum /etc/rancher/rke2/config.yaml; stat -c '%n %Y %i' /etc/rancher/rke2/config.yaml;"
    " ls -la /etc/rancher/rke2 /var/lib/rancher/rke2 /usr/local/bin"
)


def rejected(kube: Kube, name: str) -> dict[str, Any] | None:
    c = kube.condition("rke2nodes", name, "HostKeyVerified")
    return c if c and c["status"] == "False" else None


def mitm_refused(e2e: RelE2E, policy: str) -> None:
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube
    docs = cluster_manifests(sb, "mitm", extra_spec={"driftCheckInterval": "2s"})
    if policy == "AcceptNew":
        docs[1]["spec"]["ssh"]["hostKeyPolicy"] = "AcceptNew"
        for d in docs[2:]:
            d["spec"].pop("hostKey")  # nothing pinned: the first key seen is recorded
    kube.apply(docs)
    e2e.operator()
    kube.wait_phase("rke2clusters", "mitm", "Ready", timeout=90)
    victim = sb.agents[0]
    if policy == "AcceptNew":
        recorded = kube.wait(
            "hostKey recorded", lambda: (kube.get("rke2nodes", victim.name) or {}).get("status", {}).get("hostKey")
        )
        assert recorded.split()[:2] == victim.host_key_line.split()[:2]
    old_key = victim.host_key_line
    state_before = sh(sb, victim, HOST_STATE)
    logins_before = logins(sb, victim)

    new_key = sb.replace_host_key(victim)  # someone else answers at this address from now on
    drop_sessions(sb, victim)  # the open connection goes: the operator must connect anew
    swapped = time.monotonic()
    seen = fingerprint(new_key)
    c = kube.wait("HostKeyVerified=False", lambda: rejected(kube, victim.name), timeout=40)
    took = time.monotonic() - swapped
    assert seen in c["message"], c["message"]
    assert kube.wait(
        "HostKeyRejected Event",
        lambda: [e for e in kube.events(victim.name) if e.reason == "HostKeyRejected" and seen in e.message],
        timeout=15,
    )
    time.sleep(5)  # more passes, each refused again
    assert logins(sb, victim) == logins_before, "a login was accepted by the replaced host"
    assert sh(sb, victim, HOST_STATE) == state_before
    # The other node proceeds undisturbed.
    server = kube.get("rke2nodes", sb.servers[0].name)
    assert server and server["status"]["phase"] == "Ready"
    if policy == "AcceptNew":
        after = (kube.get("rke2nodes", victim.name) or {}).get("status", {}).get("hostKey")
        assert after.split()[:2] == old_key.split()[:2] != new_key.split()[:2], (
            "the recorded key was overwritten by the new one"
        )
    print(f"\n{policy}: key swap refused in {took:.1f}s, logins on the host after the swap: 0, files unchanged")


def test_replaced_host_key_refused_under_strict(e2e: RelE2E) -> None:
    mitm_refused(e2e, "Strict")


def test_changed_key_refused_under_accept_new(e2e: RelE2E) -> None:
    mitm_refused(e2e, "AcceptNew")
