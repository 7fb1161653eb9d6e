"""The operator never takes over a Secret it did not create, and a tokenSecretRef must name a
Secret labelled for it: refused with a clear condition, nothing sent to any host."""

from __future__ import annotations

from typing import Any

import pytest

from rke2fleet.api import parse_cluster_spec
from rke2fleet.engine.access import Waiting, read_token
from rke2fleet.engine.cluster_pass import cluster_pass
from rke2fleet.engine.outcome import ClusterOutcome
from tests.engine.fakes import NS, cluster_spec, seed_secret, serving_status, set_status, world


def cond(out: ClusterOutcome, type_: str) -> Any:
    return next((c for c in out.conditions if c.type == type_), None)


async def test_a_foreign_secret_named_like_the_token_is_left_alone() -> None:
    engine, store, _ = world(cluster=cluster_spec())
    seed_secret(store, "prod-token", {"token": b"someone-elses-value"}, ours=False)
    out = await cluster_pass(engine, store.cluster(NS, "prod"))
    token = cond(out, "TokenReady")
    assert token.status is False and token.reason == "SecretConflict" and "prod-token" in token.message
    assert store.secrets[(NS, "prod-token")] == {"token": b"someone-elses-value"}  # untouched
    with pytest.raises(Waiting):  # node passes get no token from it
        await read_token(engine, NS, "prod", parse_cluster_spec(cluster_spec()))
    assert "someone-elses-value" not in str(out)


async def test_an_exported_token_secret_is_adopted() -> None:
    """`rke2fleet export` writes the managed-by label and no owner: the operator takes it over."""
    engine, store, _ = world(cluster=cluster_spec())
    seed_secret(store, "prod-token", {"token": b"t0ken"})
    store.secret_owners[(NS, "prod-token")] = []
    out = await cluster_pass(engine, store.cluster(NS, "prod"))
    assert cond(out, "TokenReady").status is True
    assert await read_token(engine, NS, "prod", parse_cluster_spec(cluster_spec())) == "t0ken"


async def test_a_token_secret_of_another_cluster_conflicts() -> None:
    engine, store, _ = world(cluster=cluster_spec())
    seed_secret(store, "prod-token", {"token": b"t0ken"})
    store.secret_owners[(NS, "prod-token")] = ["uid-of-another-cluster"]
    out = await cluster_pass(engine, store.cluster(NS, "prod"))
    assert cond(out, "TokenReady").reason == "SecretConflict"


async def test_token_secret_ref_needs_the_label() -> None:
    spec = cluster_spec(tokenSecretRef={"name": "mine", "key": "token"})
    engine, store, _ = world(cluster=spec)
    seed_secret(store, "mine", {"token": b"given"}, ours=False)
    out = await cluster_pass(engine, store.cluster(NS, "prod"))
    token = cond(out, "TokenReady")
    assert token.status is False and token.reason == "TokenSecretNotLabelled"
    assert "rke2fleet.io/token=true" in token.message
    seed_secret(store, "mine", {"token": b"given"}, ours=False, labels={"rke2fleet.io/token": "true"})
    out = await cluster_pass(engine, store.cluster(NS, "prod"))
    assert cond(out, "TokenReady").status is True
    assert await read_token(engine, NS, "prod", parse_cluster_spec(spec)) == "given"


async def test_a_foreign_kubeconfig_secret_is_not_overwritten() -> None:
    status = {"initServer": "s1", "targetVersion": "v1.36.3+rke2r1"}
    engine, store, hosts = world(servers=1, agents=0, cluster=cluster_spec(), status=status)
    set_status(store, "s1", serving_status())
    seed_secret(store, "prod-kubeconfig", {"value": b"theirs"}, ours=False)
    out = await cluster_pass(engine, store.cluster(NS, "prod"))
    kc = cond(out, "KubeconfigReady")
    assert kc.status is False and kc.reason == "SecretConflict"
    assert store.secrets[(NS, "prod-kubeconfig")] == {"value": b"theirs"}
    assert "read /etc/rancher/rke2/rke2.yaml" not in hosts.commands()  # not even read
