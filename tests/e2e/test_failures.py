"""Failure paths end to end: each gets a clear condition and Event, and nothing more is done."""

from __future__ import annotations

import base64
import time

import pytest
import yaml

from rke2fleet_sandbox.installer import installer_stats
from rke2fleet_sandbox.manifests import cluster, cluster_manifests, node, ssh_secret
from tests.e2e.conftest import E2E
from tests.e2e.harness import NS, Kube, datastore_events, sh
from tests.gitops_health import assert_gitops

pytestmark = [pytest.mark.sandbox]


def cond_is(kube: Kube, name: str, type_: str, status: str, reason: str | None = None) -> dict | None:
    c = kube.condition("rke2nodes", name, type_)
    if c and c["status"] == status and (reason is None or c["reason"] == reason):
        return c
    return None


def cond_is_cluster(kube: Kube, name: str, type_: str, status: str, reason: str | None = None) -> dict | None:
    c = kube.condition("rke2clusters", name, type_)
    if c and c["status"] == status and (reason is None or c["reason"] == reason):
        return c
    return None


def warning_events(kube: Kube, name: str, reason: str) -> list:
    return [e for e in kube.events(name) if e.type == "Warning" and e.reason == reason]


def rke2_installed(sb, host) -> bool:  # type: ignore[no-untyped-def]
    return sh(sb, host, "test -e /usr/local/bin/rke2 && echo yes || echo no").strip() == "yes"


def test_given_token_and_wrong_token(e2e: E2E) -> None:
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube
    given = "given-token-" + "a1b2c3d4" * 4
    docs = [
        ssh_secret(sb, NS),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "my-token", "namespace": NS, "labels": {"rke2fleet.io/token": "true"}},
            "data": {"token": base64.b64encode(given.encode()).decode()},
        },
        cluster(sb, "tok", NS, servers=1, extra_spec={"tokenSecretRef": {"name": "my-token", "key": "token"}}),
        node(sb.servers[0], "tok", NS, "server"),
    ]
    kube.apply(docs)
    e2e.operator()
    kube.wait_phase("rke2clusters", "tok", "Ready", timeout=60)
    assert sh(sb, sb.servers[0], "cat /var/lib/rancher/rke2/server/token").strip().endswith("::server:" + given)
    assert kube.secret("tok-token") is None  # no generated token when one is given

    # The user changes the token Secret, then adds an agent: the cluster rotates to the new token
    # the RKE2 way (rke2 token rotate on the server, then the server restarted with it), and the
    # agent joins with it.
    changed = "changed-" * 6
    kube.core.patch_namespaced_secret("my-token", NS, {"data": {"token": base64.b64encode(changed.encode()).decode()}})
    kube.apply([node(sb.agents[0], "tok", NS, "agent")])
    agent = sb.agents[0].name
    kube.wait_phase("rke2nodes", agent, "Ready", timeout=90)
    kube.wait_phase("rke2clusters", "tok", "Ready", timeout=60)
    cl = kube.get("rke2clusters", "tok") or {}
    assert cl["status"]["tokenRotation"]["phase"] == "Done" and cl["status"]["agents"] == "1/1"
    assert sh(sb, sb.servers[0], "cat /var/lib/rancher/rke2/server/token").strip().endswith("::server:" + changed)
    events = datastore_events(sb)
    assert [e["event"] for e in events].count("token-rotate") == 1
    assert not [e for e in events if e["event"] == "start-refused"]
    assert "changed-changed" not in str(cl) and "changed-changed" not in str(kube.get("rke2nodes", agent))


def test_unreachable_then_recovers(e2e: E2E) -> None:
    sb = e2e.up(1, 0)
    kube = e2e.kube
    assert kube
    sb.stop_sshd(sb.servers[0])
    kube.apply(cluster_manifests(sb, "down"))
    e2e.operator()
    name = sb.servers[0].name
    c = kube.wait("Reachable=False", lambda: cond_is(kube, name, "Reachable", "False", "Unreachable"), 30)
    assert sb.servers[0].address in c["message"]
    assert kube.wait("Unreachable Event", lambda: warning_events(kube, name, "Unreachable"), 10)
    assert kube.get("rke2nodes", name)["status"]["phase"] == "Unreachable"  # type: ignore[index]
    sb.start_sshd(sb.servers[0])
    kube.wait_phase("rke2clusters", "down", "Ready", timeout=60)


def test_host_key_mismatch_touches_nothing(e2e: E2E) -> None:
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube
    docs = cluster_manifests(sb, "mitm")
    # The server's pinned key is the agent host's key: whoever answers at that address is not it.
    docs[2]["spec"]["hostKey"] = sb.agents[0].host_key_line
    kube.apply(docs[:3])
    e2e.operator()
    name = sb.servers[0].name
    c = kube.wait("HostKeyVerified=False", lambda: cond_is(kube, name, "HostKeyVerified", "False"), 30)
    assert "SHA256:" in c["message"], c["message"]
    assert cond_is(kube, name, "Ready", "Unknown", "HostKeyNotVerified")
    assert_gitops(kube.get("rke2nodes", name) or {}, "node-degraded-hostkey", argocd="Degraded", kstatus="Failed",
                  flux=False, why="the host presented another key than the pinned one")  # fmt: skip
    assert kube.wait("HostKeyRejected Event", lambda: warning_events(kube, name, "HostKeyRejected"), 10)
    assert not rke2_installed(sb, sb.servers[0])
    assert not sh(sb, sb.servers[0], "ls /etc/rancher/rke2 2>/dev/null").strip()


def test_installer_failure_then_recovery(e2e: E2E) -> None:
    sb = e2e.up(1, 0)
    kube = e2e.kube
    assert kube
    sb.set_installer_fault("fail")
    kube.apply(cluster_manifests(sb, "inst"))
    e2e.operator()
    name = sb.servers[0].name
    c = kube.wait("Installed=False", lambda: cond_is(kube, name, "Installed", "False", "InstallFailed"), 30)
    assert "install" in c["message"].lower()
    assert kube.wait("InstallFailed Event", lambda: warning_events(kube, name, "InstallFailed"), 10)
    assert not rke2_installed(sb, sb.servers[0])
    sb.set_installer_fault(None)
    kube.wait_phase("rke2clusters", "inst", "Ready", timeout=90)
    assert installer_stats(sb.state_dir).get("/install.sh", 0) >= 2


def test_label_change_touches_only_that_node(e2e: E2E) -> None:
    sb = e2e.up(1, 2)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "lbl"))
    e2e.operator()
    kube.wait_phase("rke2clusters", "lbl", "Ready", timeout=60)
    stamp = {h.name: sh(sb, h, "stat -c %i:%Y /etc/rancher/rke2/config.yaml") for h in sb.hosts}
    starts = {
        h.name: len([e for e in datastore_events(sb) if e["node"] == h.name and e["event"] == "start"])
        for h in sb.hosts
    }
    target = sb.agents[0]
    kube.patch_spec("rke2nodes", target.name, {"nodeLabels": ["tier=gold"]})

    def relabelled() -> bool:
        cfg = yaml.safe_load(sh(sb, target, "cat /etc/rancher/rke2/config.yaml"))
        obj = kube.get("rke2nodes", target.name) or {}
        return cfg.get("node-label") == ["tier=gold"] and (obj.get("status") or {}).get("phase") == "Ready"

    kube.wait("label rolled out", relabelled, 30)
    time.sleep(2)
    for h in sb.hosts:
        new_starts = len([e for e in datastore_events(sb) if e["node"] == h.name and e["event"] == "start"])
        if h.name == target.name:
            assert new_starts == starts[h.name] + 1
        else:
            assert new_starts == starts[h.name], h.name
            assert sh(sb, h, "stat -c %i:%Y /etc/rancher/rke2/config.yaml") == stamp[h.name], h.name


def test_deletion_uninstall_and_retain(e2e: E2E) -> None:
    sb = e2e.up(1, 2)
    kube = e2e.kube
    assert kube
    docs = cluster_manifests(sb, "del")
    keep = sb.agents[1]
    next(d for d in docs if d["metadata"]["name"] == keep.name)["spec"]["deletionPolicy"] = "Retain"
    kube.apply(docs)
    e2e.operator()
    kube.wait_phase("rke2clusters", "del", "Ready", timeout=60)
    gone = sb.agents[0]
    kube.delete("rke2nodes", gone.name)
    kube.wait("object removed", lambda: kube.get("rke2nodes", gone.name) is None, 60)
    assert not rke2_installed(sb, gone)
    assert not sh(sb, gone, "ls /etc/rancher/rke2 2>/dev/null").strip()
    nodes = sh(sb, sb.servers[0], "KUBECONFIG=/etc/rancher/rke2/rke2.yaml /var/lib/rancher/rke2/bin/kubectl get nodes")
    assert gone.name not in nodes and keep.name in nodes

    kube.delete("rke2nodes", keep.name)
    kube.wait("retained object removed", lambda: kube.get("rke2nodes", keep.name) is None, 30)
    assert rke2_installed(sb, keep)
    assert sh(sb, keep, "systemctl is-active rke2-agent").strip() == "active"


def test_paused_cluster_touches_no_host(e2e: E2E) -> None:
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "zzz", extra_spec={"paused": True}))
    e2e.operator()
    cl = kube.wait_phase("rke2clusters", "zzz", "Paused", timeout=30)
    paused = kube.wait_phase("rke2nodes", sb.servers[0].name, "Paused", timeout=30)
    why = "spec.paused: true before the first pass"
    assert_gitops(cl, "cluster-suspended-paused", argocd="Suspended", kstatus="Current", flux=False, why=why)
    assert_gitops(paused, "node-suspended-paused", argocd="Suspended", kstatus="Current", flux=False, why=why)
    time.sleep(3)
    assert not any(rke2_installed(sb, h) for h in sb.hosts)
    # Never taken on: no finalizer, no Kopf annotation (its one write is the status above).
    for host in sb.hosts:
        meta = kube.get("rke2nodes", host.name)["metadata"]
        assert not meta.get("finalizers") and not any("rke2fleet.io" in a for a in meta.get("annotations") or {})
    kube.patch_spec("rke2clusters", "zzz", {"paused": False})
    kube.wait_phase("rke2clusters", "zzz", "Ready", timeout=60)
    for host in sb.hosts:  # taken on now: deleting the node will clean its host up
        assert kube.get("rke2nodes", host.name)["metadata"]["finalizers"] == ["rke2fleet.io/finalizer"]


def test_two_servers_need_registration_address(e2e: E2E) -> None:
    sb = e2e.up(2, 0)
    kube = e2e.kube
    assert kube
    docs = cluster_manifests(sb, "noreg")
    docs[1]["spec"].pop("registrationAddress")
    docs[1]["spec"].pop("tlsSAN")
    kube.apply(docs)
    e2e.operator()
    cl = kube.wait_phase("rke2clusters", "noreg", "Failed", timeout=30)
    ready = next(c for c in cl["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "RegistrationAddressRequired" and "registrationAddress" in ready["message"]
    stalled = next(c for c in cl["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    time.sleep(2)
    assert not any(rke2_installed(sb, h) for h in sb.hosts)
