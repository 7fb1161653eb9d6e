"""The cluster pass on the in-memory store: init server, token, version approval, snapshot,
kubeconfig, the phase summary, and what it asks the hosts (nothing, where nothing is needed)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rke2fleet.engine.cluster_pass import cluster_pass
from rke2fleet.engine.cluster_secrets import SOURCE_ANNOTATION, kubeconfig_source
from rke2fleet.engine.outcome import ClusterOutcome, fields_of
from rke2fleet.reconcile.tokens import password_sha256
from tests.engine.fakes import (
    NS,
    V34,
    V35,
    V36,
    cluster_spec,
    etcd_snapshots,
    health_answer,
    kube_nodes,
    seed_secret,
    serving_status,
    set_status,
    world,
)


def cond(out: ClusterOutcome, type_: str) -> Any:
    return next((c for c in out.conditions if c.type == type_), None)


async def run(store: Any, engine: Any) -> ClusterOutcome:
    crec = store.cluster(NS, "prod")
    return await cluster_pass(engine, crec)


async def test_a_new_cluster_chooses_its_init_server_and_generates_a_token() -> None:
    engine, store, hosts = world(cluster=cluster_spec(registrationAddress="10.0.0.2"))
    out = await run(store, engine)
    status = fields_of(out.status)
    assert status["initServer"] == "s2"  # the server at the registration address
    assert status["targetVersion"] == V36
    assert status["servers"] == "0/3" and status["agents"] == "0/1" and status["phase"] == "Provisioning"
    token = store.secrets[(NS, "prod-token")]["token"]
    assert len(token) == 64 and status["tokenSecretName"] == "prod-token"
    assert cond(out, "TokenReady").status is True and cond(out, "Ready").status is False
    # The only host contact: looking for an existing token on the init server (adoption).
    assert hosts.commands() == ["read /var/lib/rancher/rke2/server/token"]
    assert [e.reason for e in out.events] == ["Provisioning"]  # the phase's first Event


async def test_an_existing_clusters_token_is_adopted() -> None:
    engine, store, hosts = world(cluster=cluster_spec())
    hosts.files[("10.0.0.1", "/var/lib/rancher/rke2/server/token")] = b"K10" + b"ab" * 32 + b"::server:old\n"
    out = await run(store, engine)
    assert store.secrets[(NS, "prod-token")]["token"].endswith(b"::server:old")
    assert cond(out, "TokenReady").reason == "Adopted"


async def test_invalid_spec_and_missing_registration_address_stall_without_hosts() -> None:
    engine, store, hosts = world()
    store.put_cluster(replace(store.cluster(NS, "prod"), spec={"version": "latest!"}))
    out = await run(store, engine)
    assert out.permanent and out.status.phase == "Failed" and cond(out, "Stalled").status is True
    engine, store, hosts = world(cluster={k: v for k, v in cluster_spec().items() if k != "registrationAddress"})
    out = await run(store, engine)
    assert out.status.phase == "Failed" and cond(out, "Ready").reason == "RegistrationAddressRequired"
    assert not out.permanent and hosts.calls == []


async def test_paused_touches_nothing() -> None:
    engine, store, hosts = world(cluster=cluster_spec(paused=True))
    out = await run(store, engine)
    assert out.status.phase == "Paused" and cond(out, "Ready").reason == "Paused" and hosts.calls == []


def running(approved: str = V35, **extra: Any) -> Any:
    """A running 3+1 cluster at `approved`, every node serving, the health read answered."""
    version = approved
    engine, store, hosts = world(cluster=cluster_spec(**extra), status={
        "initServer": "s1", "targetVersion": approved, "tokenSecretName": "prod-token", "phase": "Ready"})  # fmt: skip
    seed_secret(store, "prod-token", {"token": b"t0ken"})
    for name in ("s1", "s2", "s3"):
        set_status(store, name, serving_status(version))
    set_status(store, "a1", serving_status(version, "agent"))
    everyone = kube_nodes(*[(n, "True", "MemberNotLearner") for n in ("s1", "s2", "s3")], ("a1", "True", None))
    hosts.answer(health_answer(everyone, password_sha256("t0ken")))
    hosts.answer(etcd_snapshots())
    return engine, store, hosts


async def test_an_upgrade_is_approved_after_its_snapshot_on_a_serving_server() -> None:
    engine, store, hosts = running(V35)
    out = await run(store, engine)
    assert out.status.target_version == V36 and out.status.last_snapshot == "pre-upgrade-v1.36.3-rke2r1"
    assert any("etcd-snapshot save --name pre-upgrade-v1.36.3-rke2r1" in c for c in hosts.commands("10.0.0.1"))
    assert [e.reason for e in out.events][:2] == ["SnapshotTaken", "UpgradeStarted"]
    # recorded as an RKE2Snapshot like one a person asks for, its status from `etcd-snapshot ls`
    snap = store.snapshot(NS, "prod-pre-upgrade-v1.36.3-rke2r1")
    assert snap is not None and snap.spec == {"cluster": "prod", "node": "s1"}
    assert snap.status["phase"] == "Ready" and snap.status["source"] == "PreUpgrade"
    assert snap.status["snapshotName"] == "pre-upgrade-v1.36.3-rke2r1-s1-1800000000" and snap.status["size"] == 4096
    assert out.status.rollout is not None and out.status.rollout.phase == "Servers"
    assert out.status.phase == "Provisioning" and cond(out, "Ready").reason == "Upgrading"


async def test_a_failed_snapshot_approves_nothing() -> None:
    engine, store, hosts = running(V35)
    hosts.answers.insert(0, lambda addr, what: (1, "fatal: etcd not running") if "etcd-snapshot" in what else None)
    out = await run(store, engine)
    assert out.status.target_version is None  # still the old one in status
    assert cond(out, "UpgradeHalted").reason == "SnapshotFailed"


async def test_downgrades_and_skipped_minors_are_refused() -> None:
    for approved, reason in ((V36, "Downgrade"), (V34, "MinorSkip")):
        engine, store, hosts = running(approved, version=V35 if reason == "Downgrade" else V36)
        out = await run(store, engine)
        assert cond(out, "UpgradeHalted").reason == reason and cond(out, "Stalled").status is True
        assert "target_version" not in out.status.model_fields_set
        assert not any("etcd-snapshot" in c for c in hosts.commands())


async def test_ready_needs_every_node_and_the_kubeconfig() -> None:
    engine, store, hosts = running(V36)
    hosts.files[("10.0.0.1", "/etc/rancher/rke2/rke2.yaml")] = KUBECONFIG
    out = await run(store, engine)
    assert out.status.phase == "Ready" and cond(out, "Ready").status is True
    assert out.status.kubeconfig_secret_name == "prod-kubeconfig"
    assert b"https://10.0.0.100:6443" in store.secrets[(NS, "prod-kubeconfig")]["value"]
    assert out.recheck == []
    # The next pass reads rke2.yaml again only when the node passes saw it change.
    hosts.calls.clear()
    store.put_cluster(replace(store.cluster(NS, "prod"), status={**store.cluster(NS, "prod").status, "phase": "Ready"}))
    engine.memory.kubeconfig_seen[(NS, "s1")] = "cafe"
    store.secret_annotations[(NS, "prod-kubeconfig")] = {SOURCE_ANNOTATION: kubeconfig_source("cafe", "10.0.0.100")}
    await run(store, engine)
    assert not any(c.startswith("read") for c in hosts.commands())


async def test_a_node_that_stops_answering_degrades_the_cluster_and_is_rechecked() -> None:
    engine, store, hosts = running(V36)
    hosts.files[("10.0.0.1", "/etc/rancher/rke2/rke2.yaml")] = KUBECONFIG
    hosts.answers.clear()
    frozen = kube_nodes(("s1", "True", "MemberNotLearner"), ("s2", "True", "MemberNotLearner"),
                        ("s3", "True", "MemberNotLearner"), ("a1", "Unknown", None))  # fmt: skip
    hosts.answer(health_answer(frozen, password_sha256("t0ken")))
    out = await run(store, engine)
    assert out.recheck == ["a1"]  # its status still says it serves: its pass looks at once
    unknown = [{"type": "Ready", "status": "Unknown", "reason": "Unreachable"}]
    set_status(store, "a1", {**serving_status(V36, "agent", "Unreachable"), "conditions": unknown})
    out = await run(store, engine)
    assert out.status.phase == "Degraded" and "a1 (Unreachable)" in cond(out, "Ready").message
    assert out.status.agents == "0/1"


async def test_a_token_secret_edited_by_hand_is_rotated_the_rke2_way() -> None:
    engine, store, hosts = running(V36)
    seed_secret(store, "prod-token", {"token": b"edited"})
    out = await run(store, engine)
    rotate = [c for c in hosts.commands("10.0.0.1") if "token rotate" in c]
    assert len(rotate) == 1 and "edited" not in rotate[0]  # the new token goes on stdin only
    intent = next(w for w in store.writes if w[0] == "rke2clusters")
    assert intent[3]["tokenRotation"]["phase"] == "Rotating"  # written before the command runs
    assert out.status.token_rotation is not None and out.status.token_rotation.phase == "Servers"
    assert out.status.token_rotation.server == "s1"
    assert engine.memory.cluster_tokens[(NS, "prod")] == password_sha256("edited")
    assert cond(out, "TokenReady").reason == "TokenRotating" and out.status.phase == "Provisioning"
    assert "TokenRotated" in [e.reason for e in out.events] and "edited" not in str(fields_of(out.status))


async def test_a_health_read_older_than_the_rotation_does_not_rotate_again() -> None:
    """The servers' token files as a cached read saw them before the rotation say 'old': that
    must not make the next pass rotate once more."""
    engine, store, hosts = running(V36)
    seed_secret(store, "prod-token", {"token": b"edited"})
    out = await run(store, engine)  # reads health (old token, cached), then rotates on s1
    store.put_cluster(replace(store.cluster(NS, "prod"), status={  # type: ignore[type-var]
        **store.cluster(NS, "prod").status, "tokenRotation": fields_of(out.status)["tokenRotation"]}))  # type: ignore[union-attr]
    await run(store, engine)  # the cached read again (healthCheckInterval 30s)
    assert len([c for c in hosts.commands() if "token rotate" in c]) == 1
    assert engine.memory.server_tokens[(NS, "prod")]["s1"] == password_sha256("edited")


async def test_a_failed_rotation_is_reported_and_servers_out_of_step_stall() -> None:
    engine, store, hosts = running(V36)
    seed_secret(store, "prod-token", {"token": b"edited"})
    hosts.answer(lambda addr, what: (1, "401 Unauthorized edited") if "token rotate" in what else None)
    out = await run(store, engine)
    assert cond(out, "TokenReady").reason == "TokenRotationFailed" and "edited" not in cond(out, "TokenReady").message
    assert out.status.phase == "Degraded"
    engine, store, hosts = running(V36)
    engine.memory.server_tokens[(NS, "prod")].update(s2="aa" * 32, s3="bb" * 32)  # nobody rotated these
    out = await run(store, engine)
    assert cond(out, "TokenReady").reason == "TokenStateUnknown" and cond(out, "Stalled").status is True
    assert not any("token rotate" in c for c in hosts.commands())


async def test_no_api_no_ready_and_every_node_is_rechecked() -> None:
    engine, store, hosts = running(V36)
    hosts.answers.clear()
    hosts.answer(health_answer("Error from server: etcdserver: request timed out", rc=1))
    out = await run(store, engine)
    assert out.status.phase == "Degraded" and cond(out, "Ready").reason == "KubernetesAPIUnavailable"
    assert sorted(out.recheck) == ["a1", "s1", "s2", "s3"]


KUBECONFIG = b"""apiVersion: v1
kind: Config
clusters:
- cluster: {certificate-authority-data: Q0E=, server: 'https://127.0.0.1:6443'}
  name: default
contexts:
- context: {cluster: default, user: default}
  name: default
current-context: default
users:
- name: default
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
"""


async def test_the_new_token_rolls_servers_then_agents() -> None:
    engine, store, hosts = running(V36)
    seed_secret(store, "prod-token", {"token": b"new"})
    new = password_sha256("new")
    rotation = {"phase": "Servers", "server": "s1", "done": []}
    store.put_cluster(replace(store.cluster(NS, "prod"), status={**store.cluster(NS, "prod").status,
                                                                 "tokenRotation": rotation}))  # fmt: skip
    hosts.answers.clear()
    hosts.answer(health_answer(kube_nodes(*[(f"s{i}", "True", "MemberNotLearner") for i in (1, 2, 3)],
                                          ("a1", "True", None)), new))  # fmt: skip
    engine.memory.server_tokens[(NS, "prod")].update(s1=new, s2=password_sha256("t0ken"), s3=password_sha256("t0ken"))
    out = await run(store, engine)  # s2, s3 still hold the old token: the servers' turn
    assert out.status.token_rotation is not None and out.status.token_rotation.phase == "Servers"
    assert engine.memory.cluster_tokens[(NS, "prod")] == new  # the rotated server is right
    assert not any("token rotate" in c for c in hosts.commands())
    engine.memory.server_tokens[(NS, "prod")].update(s2=new, s3=new)
    a1 = store.node(NS, "a1").status
    differs = {"type": "Configured", "status": "False", "reason": "Differs"}
    stale = [differs if c["type"] == "Configured" else c for c in a1["conditions"]]
    set_status(store, "a1", {**a1, "conditions": stale})  # its config.yaml still holds the old token
    out = await run(store, engine)
    assert out.status.token_rotation.phase == "Agents" and out.status.token_rotation.done == ["s1", "s2", "s3"]
    set_status(store, "a1", a1)
    out = await run(store, engine)
    assert out.status.token_rotation.phase == "Done" and "TokenRotated" in [e.reason for e in out.events]
