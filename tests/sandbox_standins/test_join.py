"""Joining: agents and servers with right and wrong credentials, config mismatches, duplicate names."""

from __future__ import annotations

import json
import time

from tests.sandbox_standins.hosthelpers import wait_node_ready

V_OLD, V_NEW = "v1.35.7+rke2r1", "v1.36.3+rke2r1"


def first_server(installer, make_host, name="srv-a", extra=""):
    host = make_host(name)
    host.install(installer.url, f"INSTALL_RKE2_VERSION={V_OLD} INSTALL_RKE2_TYPE=server")
    host.write_config(f"token: s3cret\n{extra}")
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 0
    return host


def token_of(server):
    return server.run("cat /var/lib/rancher/rke2/server/token", check=True).stdout.strip()


def node_table(server):
    return {n["metadata"]["name"]: n for n in json.loads(server.kubectl("get nodes -o json").stdout)["items"]}


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_agent_joins_with_right_token_and_fails_with_wrong(installer, make_host):
    server = first_server(installer, make_host)
    good = make_host("agent-ok")
    good.install(installer.url, f"INSTALL_RKE2_VERSION={V_OLD} INSTALL_RKE2_TYPE=agent")
    good.write_config(f"server: https://{server.address}:9345\ntoken: {token_of(server)}")
    assert good.run("systemctl start rke2-agent", timeout=30).returncode == 0
    assert good.run("systemctl is-active rke2-agent").stdout.strip() == "active"
    wait_node_ready(server, "agent-ok")
    nodes = node_table(server)
    assert nodes["agent-ok"]["status"]["conditions"][0]["status"] == "True"
    assert "node-role.kubernetes.io/control-plane" not in nodes["agent-ok"]["metadata"]["labels"]

    bad = make_host("agent-bad")
    bad.install(installer.url, f"INSTALL_RKE2_VERSION={V_OLD} INSTALL_RKE2_TYPE=agent")
    bad.write_config(f"server: https://{server.address}:9345\ntoken: wrong-password")
    start = bad.run("systemctl start rke2-agent", timeout=30)
    assert start.returncode == 1 and "failed because the control process exited" in start.stderr
    log = bad.run("journalctl -u rke2-agent -n 20 --no-pager").stdout
    assert "level=fatal" in log and "401 Unauthorized" in log
    assert "wrong-password" not in log
    # Restart=always: the unit keeps trying and is not active
    assert bad.run("systemctl is-active rke2-agent").stdout.strip() == "activating"
    assert wait_for(lambda: "Scheduled restart job" in bad.run("journalctl -u rke2-agent").stdout)
    assert "agent-bad" not in node_table(server)

    # a secure token naming another CA is refused before any password is sent
    other_ca = make_host("agent-ca")
    other_ca.install(installer.url, f"INSTALL_RKE2_VERSION={V_OLD} INSTALL_RKE2_TYPE=agent")
    other_ca.write_config(f"server: https://{server.address}:9345\ntoken: K10{'0' * 64}::server:s3cret")
    assert other_ca.run("systemctl start rke2-agent", timeout=30).returncode == 1
    assert "token CA hash does not match" in other_ca.run("journalctl -u rke2-agent").stdout


def test_unreachable_server_fails_the_join(installer, make_host):
    agent = make_host("agent-x")
    agent.install(installer.url, f"INSTALL_RKE2_VERSION={V_OLD} INSTALL_RKE2_TYPE=agent")
    agent.write_config("server: https://127.0.3.253:9345\ntoken: abc")
    assert agent.run("systemctl start rke2-agent", timeout=30).returncode == 1
    assert "failed to get CA certs" in agent.run("journalctl -u rke2-agent").stdout


def test_second_server_joins_and_critical_config_mismatch_fails(installer, make_host):
    server = first_server(installer, make_host, extra="cluster-cidr: 10.42.0.0/16")
    same = make_host("srv-b")
    same.install(installer.url, f"INSTALL_RKE2_VERSION={V_OLD}")
    same.write_config(f"server: https://{server.address}:9345\ntoken: s3cret")
    assert same.run("systemctl start rke2-server", timeout=30).returncode == 0
    assert token_of(same) == token_of(server)  # same CA, same password
    # a joined server serves registration too (so a load balancer can use it)
    ca = server.run("cat /var/lib/rancher/rke2/server/tls/server-ca.crt").stdout
    assert same.run(f"curl -sf http://{same.address}:9345/cacerts").stdout == ca
    differs = make_host("srv-c")
    differs.install(installer.url, f"INSTALL_RKE2_VERSION={V_OLD}")
    differs.write_config(f"server: https://{same.address}:9345\ntoken: s3cret\ncluster-cidr: 10.99.0.0/16")
    assert differs.run("systemctl start rke2-server", timeout=30).returncode == 1
    log = differs.run("journalctl -u rke2-server").stdout
    assert "critical configuration value mismatch between servers" in log and "cluster-cidr" in log
    assert set(node_table(server)) == {"srv-a", "srv-b"}


def test_duplicate_node_name_is_rejected_until_the_node_is_deleted(installer, make_host):
    server = first_server(installer, make_host)
    one = make_host("worker-1")
    twin = make_host("worker-2")
    for host in (one, twin):
        host.install(installer.url, f"INSTALL_RKE2_VERSION={V_OLD} INSTALL_RKE2_TYPE=agent")
        host.write_config(f"server: https://{server.address}:9345\ntoken: s3cret\nnode-name: worker")
    assert one.run("systemctl start rke2-agent", timeout=30).returncode == 0
    assert twin.run("systemctl start rke2-agent", timeout=30).returncode == 1
    assert "Node password rejected, duplicate hostname" in twin.run("journalctl -u rke2-agent").stdout
    # restarting the legitimate owner keeps working (same /etc/rancher/node/password)
    assert one.run("systemctl restart rke2-agent", timeout=30).returncode == 0
    assert one.run("systemctl stop rke2-agent").returncode == 0
    assert server.kubectl("delete node worker").stdout.strip() == 'node "worker" deleted'
    assert wait_for(lambda: twin.run("systemctl is-active rke2-agent").stdout.strip() == "active", 15)


def test_installed_differs_from_running_until_restart(installer, make_host, datastore):
    server = first_server(installer, make_host)
    server.install(installer.url, f"INSTALL_RKE2_VERSION={V_NEW} INSTALL_RKE2_TYPE=server")
    assert V_NEW in server.run("rke2 --version").stdout
    assert node_table(server)["srv-a"]["status"]["nodeInfo"]["kubeletVersion"] == V_OLD
    assert server.run("systemctl restart rke2-server", timeout=30).returncode == 0
    assert node_table(server)["srv-a"]["status"]["nodeInfo"]["kubeletVersion"] == V_NEW
    events = [(e["event"], e["version"]) for e in datastore.events() if e["node"] == "srv-a"]
    assert ("down", V_OLD) in events and events[-1] == ("ready", V_NEW)
    assert events.index(("down", V_OLD)) < events.index(("start", V_NEW))


def test_unit_refuses_the_other_role(installer, make_host):
    server = first_server(installer, make_host)
    out = server.run("systemctl start rke2-agent", timeout=30)
    # ExecCondition: systemd skips the start (no error) and the unit stays inactive
    assert out.returncode == 0
    assert server.run("systemctl is-active rke2-agent").stdout.strip() == "inactive"
    assert "Skipped due to 'exec-condition'" in server.run("journalctl -u rke2-agent").stdout
    assert server.run("systemctl is-active rke2-server").stdout.strip() == "active"


def test_node_not_ready_while_stopped_and_cordon_drain(installer, make_host):
    server = first_server(installer, make_host)
    agent = make_host("agent-1")
    agent.install(installer.url, f"INSTALL_RKE2_VERSION={V_OLD} INSTALL_RKE2_TYPE=agent")
    agent.write_config(f"server: https://{server.address}:9345\ntoken: s3cret")
    assert agent.run("systemctl start rke2-agent", timeout=30).returncode == 0
    wait_node_ready(server, "agent-1")
    drain = server.kubectl("drain agent-1 --timeout=30s")
    assert drain.returncode == 1 and "--ignore-daemonsets" in drain.stderr
    assert server.kubectl("drain agent-1 --ignore-daemonsets --delete-emptydir-data").returncode == 0
    assert "Ready,SchedulingDisabled" in server.kubectl("get nodes").stdout
    assert agent.run("systemctl stop rke2-agent").returncode == 0
    table = server.kubectl("get nodes -o wide").stdout
    assert "NotReady,SchedulingDisabled" in table and agent.address in table
    assert server.kubectl("uncordon agent-1").stdout.strip() == "node/agent-1 uncordoned"
    assert agent.kubectl("get nodes").returncode == 1  # agents have no kubeconfig
