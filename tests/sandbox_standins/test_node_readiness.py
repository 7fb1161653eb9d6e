"""The Node's Ready condition lags the unit: NotReady (CNI not initialized) for the host's ready delay
after the service is active, kept NotReady by the ``cni-broken`` switch, Unknown once the kubelet (the
rke2 process) stops posting status."""

from __future__ import annotations

import json
import os
import signal
import time

from rke2fleet_sandbox import hostfaults
from tests.sandbox_standins.hosthelpers import is_active, node_conditions, rke2_host, start, wait_until

CNI = ("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
       "message:Network plugin returns error: cni plugin not initialized")


def ready(server, name):
    cond = node_conditions(server, name)["Ready"]
    return cond["status"], cond["reason"], cond["message"]


def status_column(server, name):
    rows = [line.split() for line in server.kubectl("get nodes").stdout.splitlines()[1:]]
    return {row[0]: row[1] for row in rows}[name]


def test_not_ready_for_the_delay_after_active(installer, make_host):
    server = rke2_host(installer, make_host, "rdy-a", "token: s3cret", nodeReadyDelay=2)
    assert start(server).returncode == 0
    active = time.monotonic()
    assert is_active(server) == "active"
    assert ready(server, "rdy-a") == ("False", "KubeletNotReady", CNI)
    assert status_column(server, "rdy-a") == "NotReady"
    node = json.loads(server.kubectl("get node rdy-a -o json").stdout)
    assert {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"} in node["spec"]["taints"]
    wait_until(lambda: ready(server, "rdy-a")[0] == "True")
    assert time.monotonic() - active >= 1.5
    assert ready(server, "rdy-a") == ("True", "KubeletReady", "kubelet is posting ready status")
    assert status_column(server, "rdy-a") == "Ready"
    assert "taints" not in json.loads(server.kubectl("get node rdy-a -o json").stdout)["spec"]

    # the switch file overrides host.json from the next start
    hostfaults.set_node_ready_delay(server.faults_dir, 0)
    assert server.run("systemctl restart rke2-server", timeout=30).returncode == 0
    assert ready(server, "rdy-a")[0] == "True"


def test_cni_broken_keeps_the_node_not_ready_and_stopped_kubelet_is_unknown(installer, make_host):
    server = rke2_host(installer, make_host, "cni-a", "token: s3cret", nodeReadyDelay=0)
    assert start(server).returncode == 0
    agent = rke2_host(installer, make_host, "cni-ag", f"server: https://{server.address}:9345\ntoken: s3cret",
                      role="agent", nodeReadyDelay=0.2)
    hostfaults.break_cni(agent.faults_dir)
    assert start(agent, "agent").returncode == 0
    time.sleep(1)
    assert ready(server, "cni-ag") == ("False", "KubeletNotReady", CNI)
    assert status_column(server, "cni-ag") == "NotReady"
    assert is_active(agent, "agent") == "active"  # the unit is fine; the Node is not
    hostfaults.break_cni(agent.faults_dir, enabled=False)
    assert ready(server, "cni-ag")[0] == "True"

    # a stopped (SIGSTOP) kubelet stops posting status: Unknown, and the unreachable taint
    pid = json.loads(agent.run("cat /run/rke2fleet/units/rke2-agent.service/status.json").stdout)["mainPid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        assert ready(server, "cni-ag") == ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
        node = json.loads(server.kubectl("get node cni-ag -o json").stdout)
        assert {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"} in node["spec"]["taints"]
        assert status_column(server, "cni-ag") == "NotReady"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert ready(server, "cni-ag")[0] == "True"
    assert agent.run("systemctl stop rke2-agent").returncode == 0
    assert ready(server, "cni-ag")[0] == "Unknown"
    # agents carry no EtcdIsVoter condition; servers do
    assert "EtcdIsVoter" not in node_conditions(server, "cni-ag")
    assert node_conditions(server, "cni-a")["EtcdIsVoter"]["status"] == "True"
