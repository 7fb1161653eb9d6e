"""Bring-up end to end: bare sandbox hosts → Ready RKE2 cluster, driven by the real operator."""

from __future__ import annotations

import base64
import time

import pytest
import yaml

from rke2fleet_sandbox.manifests import cluster_manifests
from tests.e2e.conftest import E2E
from tests.e2e.harness import api_writes, audit, datastore_events, reset_audit, sh

pytestmark = [pytest.mark.sandbox]


def test_single_server_generated_token_and_kubeconfig(e2e: E2E) -> None:
    sb = e2e.up(1, 0)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "one"))
    e2e.operator()
    cluster = kube.wait_phase("rke2clusters", "one", "Ready", timeout=60)
    st = cluster["status"]
    assert st["initServer"] == sb.hosts[0].name
    assert st["servers"] == "1/1" and st["agents"] == "0/0"
    assert st["observedGeneration"] == cluster["metadata"]["generation"]
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == cluster["metadata"]["generation"]

    # Generated token: random, owned by the cluster, labelled as ours, and the one on the host.
    token_secret = kube.secret_object("one-token")
    owner = token_secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("RKE2Cluster", "one", cluster["metadata"]["uid"])
    assert token_secret.metadata.labels["app.kubernetes.io/managed-by"] == "rke2fleet"
    token = base64.b64decode(token_secret.data["token"]).decode()
    assert len(token) >= 32
    host_token = sh(sb, sb.hosts[0], "cat /var/lib/rancher/rke2/server/token").strip()
    assert host_token.endswith("::server:" + token)

    # config.yaml: root-owned 0600, no server: key on the init server, the token inside.
    stat = sh(sb, sb.hosts[0], "stat -c '%a %U' /etc/rancher/rke2/config.yaml").split()
    assert stat == ["600", "root"]
    config = yaml.safe_load(sh(sb, sb.hosts[0], "cat /etc/rancher/rke2/config.yaml"))
    assert "server" not in config and config["token"] == token and config["node-name"] == sb.hosts[0].name

    # Kubeconfig Secret: URL rewritten to the server's address, names = cluster name, CA present.
    kc = yaml.safe_load(kube.secret("one-kubeconfig")["value"])  # type: ignore[index]
    assert kc["clusters"][0]["cluster"]["server"] == f"https://{sb.hosts[0].address}:6443"
    assert kc["clusters"][0]["name"] == kc["users"][0]["name"] == kc["contexts"][0]["name"] == "one"
    assert kc["current-context"] == "one"
    assert kc["clusters"][0]["cluster"]["certificate-authority-data"]
    raw = yaml.safe_load(sh(sb, sb.hosts[0], "cat /etc/rancher/rke2/rke2.yaml"))
    assert (
        kc["clusters"][0]["cluster"]["certificate-authority-data"]
        == raw["clusters"][0]["cluster"]["certificate-authority-data"]
    )
    node = kube.get("rke2nodes", sb.hosts[0].name)
    assert node and node["status"]["runningVersion"] == "v1.35.7+rke2r1"


def test_ha_join_order_and_quiet_second_pass(e2e: E2E) -> None:
    sb = e2e.up(3, 2)
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "ha"))
    started = time.monotonic()
    op = e2e.operator()
    cluster = kube.wait_phase("rke2clusters", "ha", "Ready", timeout=120)
    print(f"HA 3+2 Ready in {time.monotonic() - started:.1f}s")
    assert cluster["status"]["servers"] == "3/3" and cluster["status"]["agents"] == "2/2"
    init = cluster["status"]["initServer"]
    assert init == "server-1"  # no server has the LB's address: first by name

    events = [e for e in datastore_events(sb) if e["event"] in ("join", "ready")]
    servers = [h.name for h in sb.servers]
    agents = [h.name for h in sb.agents]

    def t(node: str, event: str) -> float:
        return min(e["t"] for e in events if e["node"] == node and e["event"] == event)

    # Init server Ready before anything else joins.
    assert all(t(init, "ready") <= t(n, "join") for n in servers + agents if n != init)
    # Other servers one at a time: each joins only after the previous one is Ready.
    others = sorted(n for n in servers if n != init)
    for prev, nxt in zip([init, *others], others, strict=False):
        assert t(prev, "ready") <= t(nxt, "join"), f"{nxt} joined before {prev} was Ready"
    # Agents after every server.
    last_server_ready = max(t(n, "ready") for n in servers)
    assert all(t(a, "join") >= last_server_ready for a in agents)

    # Joiners point at the registration address (the load balancer).
    cfg = yaml.safe_load(sh(sb, sb.agents[0], "cat /etc/rancher/rke2/config.yaml"))
    assert cfg["server"] == f"https://{sb.load_balancer_address}:9345"
    cfg = yaml.safe_load(sh(sb, sb.servers[1], "cat /etc/rancher/rke2/config.yaml"))
    assert sb.load_balancer_address in cfg["tls-san"]

    # A pass with nothing to do: one SSH command per node, no write over SSH or to the API.
    time.sleep(3)
    reset_audit(sb.kubeconfig_path)  # type: ignore[arg-type]
    inode_before = {h.name: sh(sb, h, "stat -c %i:%Y /etc/rancher/rke2/config.yaml") for h in sb.hosts}
    cmds_before = op.metric("rke2fleet_ssh_commands_total")
    restarts_before = len([e for e in datastore_events(sb) if e["event"] == "start"])
    # Force a full pass on every node by touching the cluster spec's no-op field? No: wait for drift ticks.
    kube.patch_spec("rke2clusters", "ha", {"driftCheckInterval": "3s"})
    time.sleep(5)
    reset_audit(sb.kubeconfig_path)  # type: ignore[arg-type]
    cmds_before = op.metric("rke2fleet_ssh_commands_total")
    time.sleep(4.5)
    cmds = op.metric("rke2fleet_ssh_commands_total") - cmds_before
    writes = api_writes(audit(sb.kubeconfig_path))  # type: ignore[arg-type]
    assert writes == [], [(w["verb"], w["resource"], w.get("subresource"), w["name"]) for w in writes]
    assert 5 <= cmds <= 5 * 2 + 1, cmds  # one per node per pass (at most two passes in the window)
    assert all(sh(sb, h, "stat -c %i:%Y /etc/rancher/rke2/config.yaml") == inode_before[h.name] for h in sb.hosts)
    assert len([e for e in datastore_events(sb) if e["event"] == "start"]) == restarts_before
