"""End to end over real sshd hosts (the hosts engineer's Sandbox): install, start, join through the LB."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from rke2fleet_sandbox.datastore import Datastore
from tests.sandbox_standins.hosthelpers import wait_until

world = pytest.importorskip("rke2fleet_sandbox.world")

V = "v1.36.3+rke2r1"


@pytest.fixture
def sandbox(tmp_path):
    sb = world.Sandbox.up(tmp_path / "sb", servers=2, agents=1, sudo_hosts=1, emulator=False,
                          node_ready_delay=0.3, learner_delay=0.3)
    try:
        yield sb
    finally:
        assert sb.down() == []


def ssh(sb, host, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    known = Path(sb.state_dir) / "known_hosts.test"
    known.write_text(sb.known_hosts())
    wrapped = f"sudo -n sh -c {shlex.quote(command)}" if host.sudo else command
    return subprocess.run(
        ["ssh", "-i", str(sb.client_key_path), "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-p", str(host.port), f"{host.user}@{host.address}", wrapped],
        capture_output=True, text=True, timeout=timeout, check=False)


def test_cluster_over_ssh_through_the_load_balancer(sandbox):
    s1, s2 = sandbox.servers
    (agent,) = sandbox.agents
    assert agent.sudo
    lb = sandbox.load_balancer_address
    url = sandbox.installer_url
    for host, role in ((s1, "server"), (s2, "server"), (agent, "agent")):
        out = ssh(sandbox, host, f"curl -sfL {url} | INSTALL_RKE2_VERSION={V} INSTALL_RKE2_TYPE={role} sh -")
        assert out.returncode == 0, out.stderr
        assert ssh(sandbox, host, "hostname").stdout.strip() == host.name

    assert ssh(sandbox, s1, f"mkdir -p /etc/rancher/rke2 && printf 'token: t0ken\\ntls-san: [{lb}]\\n' "
                            "> /etc/rancher/rke2/config.yaml && systemctl start rke2-server").returncode == 0
    join = f"server: https://{lb}:9345\\ntoken: t0ken\\n"
    for host, unit in ((s2, "rke2-server"), (agent, "rke2-agent")):
        cmd = f"mkdir -p /etc/rancher/rke2 && printf '{join}' > /etc/rancher/rke2/config.yaml && systemctl start {unit}"
        out = ssh(sandbox, host, cmd)
        assert out.returncode == 0, out.stderr + ssh(sandbox, host, f"journalctl -u {unit} -n 20").stdout

    kubectl = "KUBECONFIG=/etc/rancher/rke2/rke2.yaml /var/lib/rancher/rke2/bin/kubectl get nodes -o json"
    items = json.loads(ssh(sandbox, s2, kubectl).stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in items) == sorted([s1.name, s2.name, agent.name])
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in items} == {V}

    def ready() -> dict[str, str]:
        out = ssh(sandbox, s2, kubectl)
        if out.returncode != 0:
            return {"kubectl": out.stderr.strip()}
        return {n["metadata"]["name"]: n["status"]["conditions"][0]["status"] for n in json.loads(out.stdout)["items"]}

    wait_until(lambda: set(ready().values()) == {"True"})  # 0.3 s after each unit was active
    # the first server goes down: two etcd members, one left, no quorum (hence RKE2's odd counts);
    # the LB still reaches s2, whose apiserver says etcd fails
    assert ssh(sandbox, s1, "systemctl stop rke2-server").returncode == 0
    assert ready() == {"kubectl": "Error from server: etcdserver: request timed out"}
    readyz = ssh(sandbox, agent, f"curl -s -o /dev/null -w '%{{http_code}}' http://{lb}:6443/readyz")
    assert readyz.stdout == "500"
    # s1 back: quorum again; the agent stopped instead shows Unknown from s2
    assert ssh(sandbox, s1, "systemctl start rke2-server").returncode == 0
    assert ssh(sandbox, agent, "systemctl stop rke2-agent").returncode == 0
    wait_until(lambda: ready() == {s1.name: "True", s2.name: "True", agent.name: "Unknown"})
    assert ssh(sandbox, agent, "systemctl restart rke2-agent").returncode == 0

    store = Datastore(_datastore_dir(sandbox))
    events = [(e["node"], e["event"]) for e in store.events()]
    assert events.index((s1.name, "ready")) < events.index((s2.name, "join")) < events.index((agent.name, "join"))
    assert events.index((s1.name, "down")) < len(events) - 1
    assert time.time() - store.events()[0]["t"] < 120


def _datastore_dir(sandbox) -> str:
    info = sandbox.run_on_host(sandbox.servers[0], "cat /run/rke2fleet/host.json").stdout
    return str(json.loads(info)["datastoreDir"])
