"""Bad input through the running operator: every spec-level rule of the API's bad-input table
(tests/api/test_api_rules.py) as an RKE2Cluster or RKE2Node applied to the emulator, which, like a
lax API server, does not check the CRD schema. Each must be answered with a condition and an
Event naming the field path, and no host may see a single SSH login.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import pytest

from rke2fleet import GROUP, VERSION
from rke2fleet_sandbox.manifests import cluster, node, ssh_secret
from tests.api.conftest import mutate
from tests.api.test_api_rules import CASES, Case
from tests.e2e.harness import NS, Kube

from .conftest import RelE2E
from .hostside import all_logins

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

SPEC_CASES = [c for c in CASES if not c.object_level]


def object_name(i: int, case: Case) -> str:
    return f"bad-{i:02d}-" + re.sub(r"[^a-z0-9-]", "-", case.id.lower())[:40]


def bad_object(i: int, case: Case, sb: Any) -> dict[str, Any]:
    """The case's object, renamed, in the test namespace; a node's address, host key and cluster
    point at the sandbox (unless the case is about them), so that a slip would reach a real host."""
    doc = mutate(case.base, case.edits)
    doc["metadata"] = {"name": object_name(i, case), "namespace": NS}
    if case.base != "cluster":
        spec = doc["spec"]
        host = sb.servers[0] if case.base == "server" else sb.agents[0]
        edited = {p.split(".")[1] for p in case.edits if p.startswith("spec.")}
        if "cluster" not in edited:
            spec["cluster"] = "good"
        if "address" not in edited:
            spec["address"] = host.address
        if "port" not in edited:
            spec["port"] = host.port
        if "hostKey" not in edited and "hostKey" in spec:
            spec["hostKey"] = host.host_key_line
    return doc


def answered(kube: Kube, plural: str, name: str, path: str) -> bool:
    obj = kube.get(plural, name) or {}
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["reason"] == "InvalidSpec" and path in c["message"] for c in conds)


def test_malformed_objects_are_refused_without_touching_a_host(e2e: RelE2E) -> None:
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube
    good_cluster = cluster(sb, "good", NS, servers=1)
    # A valid node of an invalid cluster must not be touched either.
    bad_parent = cluster(sb, "bad-parent", NS, servers=1, extra_spec={"ssh": {"port": 0}})
    orphan = node(sb.agents[0], "bad-parent", NS, "agent", name="good-node-of-bad-cluster")
    kube.apply([ssh_secret(sb, NS), good_cluster, bad_parent, orphan])
    docs = [bad_object(i, c, sb) for i, c in enumerate(SPEC_CASES)]
    for doc in docs:
        plural = "rke2clusters" if doc["kind"] == "RKE2Cluster" else "rke2nodes"
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, copy.deepcopy(doc))
    logins_before = all_logins(sb)
    started = time.monotonic()
    e2e.operator()

    pending = {(d["kind"], d["metadata"]["name"]): c for d, c in zip(docs, SPEC_CASES, strict=True)}

    def all_answered() -> bool:
        for (kind, name), case in list(pending.items()):
            if answered(kube, "rke2clusters" if kind == "RKE2Cluster" else "rke2nodes", name, case.path):
                del pending[(kind, name)]
        return not pending

    kube.wait(f"{len(docs)} InvalidSpec conditions", all_answered, timeout=90, interval=1.0)
    took = time.monotonic() - started

    # An Event per object, saying what is wrong (the field path).
    def events_complete() -> list[str]:
        events = kube.events()
        missing = []
        for doc, case in zip(docs, SPEC_CASES, strict=True):
            name = doc["metadata"]["name"]
            if not any(
                e.involved_object.name == name and e.reason == "InvalidSpec" and case.path in (e.message or "")
                for e in events
            ):
                missing.append(name)
        return missing

    kube.wait("an InvalidSpec Event per object", lambda: not events_complete(), timeout=30, interval=1.0)
    bad = kube.condition("rke2clusters", "bad-parent", "Ready")
    assert bad and bad["reason"] == "InvalidSpec" and "spec.ssh.port" in bad["message"]
    waiting = kube.wait(
        "the valid node of the invalid cluster waits",
        lambda: (
            (c := kube.condition("rke2nodes", "good-node-of-bad-cluster", "Ready"))
            and c["reason"] == "ClusterInvalid"
            and c
        ),
        timeout=30,
    )
    assert "bad-parent" in waiting["message"]
    time.sleep(4)  # a few more node ticks: still nothing may reach a host
    logins = all_logins(sb)
    assert logins == logins_before == {h.name: 0 for h in sb.hosts}, logins
    print(
        f"\n{len(docs)} malformed objects ({sum(d['kind'] == 'RKE2Cluster' for d in docs)} clusters, "
        f"{sum(d['kind'] == 'RKE2Node' for d in docs)} nodes) answered in {took:.1f}s; "
        f"SSH logins on the hosts: {sum(logins.values())}"
    )
