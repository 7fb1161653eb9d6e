"""Two operator processes, two shards of one fleet: each cluster (with its nodes) is reconciled by
the process of its shard only; neither touches the other's objects or hosts."""

from __future__ import annotations

import time

import pytest

from rke2fleet.handlers.shards import shard_of
from tests.e2e.conftest import E2E
from tests.e2e.harness import NS
from tests.e2e.test_health import manifests

pytestmark = [pytest.mark.sandbox]


def test_two_shards_split_the_clusters(e2e: E2E) -> None:
    assert (shard_of(NS, "alpha", 2), shard_of(NS, "beta", 2)) == (0, 1)
    sb = e2e.up(2, 0)
    kube = e2e.kube
    assert kube
    kube.apply(manifests(sb, "alpha", hosts=[sb.servers[0]]))
    kube.apply(manifests(sb, "beta", hosts=[sb.servers[1]])[1:])
    zero = e2e.operator("--shard", "0/2", log="operator-0.log")
    one = e2e.operator("--shard", "1/2", log="operator-1.log")
    kube.wait_phase("rke2clusters", "alpha", "Ready", timeout=120)
    kube.wait_phase("rke2clusters", "beta", "Ready", timeout=120)
    alpha_host, beta_host = sb.servers[0].name, sb.servers[1].name
    assert f"node {alpha_host}:" in zero.log() and f"node {beta_host}:" not in zero.log()
    assert f"node {beta_host}:" in one.log() and f"node {alpha_host}:" not in one.log()
    # Each object carries its own shard's finalizer only, and keeps it: a shard never strips
    # another's (Kopf removes its finalizer from objects none of its handlers match).
    time.sleep(3)
    for name, shard in ((alpha_host, 0), (beta_host, 1)):
        for plural, obj in (("rke2nodes", name), ("rke2clusters", "alpha" if shard == 0 else "beta")):
            meta = (kube.get(plural, obj) or {})["metadata"]
            assert meta.get("finalizers") == [f"rke2fleet.io/finalizer-shard-{shard}-of-2"], meta
    assert zero.metric("rke2fleet_ssh_commands_total") > 0 and one.metric("rke2fleet_ssh_commands_total") > 0
