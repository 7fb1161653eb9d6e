"""Installer + service + token + rke2.yaml on a first server, and the version shown by rke2/kubectl."""

from __future__ import annotations

import hashlib
import json
import os

from rke2fleet_sandbox.installer import installer_stats
from tests.sandbox_standins.hosthelpers import wait_node_ready


def test_first_server_install_start_token_kubeconfig(installer, make_host, datastore, tmp_path):
    host = make_host("srv-a")
    out = host.install(installer.url, "INSTALL_RKE2_VERSION=v1.35.7+rke2r1 INSTALL_RKE2_TYPE=server")
    assert "unpacking tarball" in out.stdout
    version = host.run("rke2 --version", check=True).stdout.splitlines()
    assert version[0].startswith("rke2 version v1.35.7+rke2r1 (") and len(version[0].split("(")[1]) == 41
    assert version[1].startswith("go version go")
    # installed, but never enabled or started; daemon-reload ran
    assert host.run("systemctl is-enabled rke2-server").stdout.strip() == "disabled"
    assert host.run("systemctl is-active rke2-server").returncode == 3
    assert "daemon-reload" in host.run("cat /run/rke2fleet/units/systemctl.log").stdout
    assert host.run("test -e /etc/rancher/rke2/config.yaml").returncode != 0

    host.write_config('token: my-shared-secret\nwrite-kubeconfig-mode: "0644"\nnode-label:\n  - tier=gold')
    assert host.run("systemctl enable rke2-server", check=True).returncode == 0
    assert host.run("systemctl start rke2-server", timeout=30).returncode == 0
    assert host.run("systemctl is-active rke2-server").stdout.strip() == "active"
    assert "rke2 is up and running" in host.run("journalctl -u rke2-server -n 50 --no-pager").stdout

    ca = host.run("cat /var/lib/rancher/rke2/server/tls/server-ca.crt", check=True).stdout
    token = host.run("cat /var/lib/rancher/rke2/server/token", check=True).stdout.strip()
    assert token == f"K10{hashlib.sha256(ca.encode()).hexdigest()}::server:my-shared-secret"
    assert host.run("stat -c %a /var/lib/rancher/rke2/server/token").stdout.strip() == "600"
    assert host.run("readlink /var/lib/rancher/rke2/server/node-token").stdout.strip() == "token"
    assert host.run("stat -c %a /etc/rancher/rke2/rke2.yaml").stdout.strip() == "644"
    kubeconfig = host.run("cat /etc/rancher/rke2/rke2.yaml").stdout
    assert "server: https://127.0.0.1:6443" in kubeconfig and "client-key-data" in kubeconfig

    wait_node_ready(host, "srv-a")  # the Node lags the unit (nodeReadyDelay, 1 s by default)
    nodes = json.loads(host.kubectl("get nodes -o json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["srv-a"]
    assert nodes[0]["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.7+rke2r1"
    assert nodes[0]["metadata"]["labels"]["tier"] == "gold"
    assert {"type": "Ready"}.items() <= nodes[0]["status"]["conditions"][0].items()
    assert nodes[0]["status"]["conditions"][0]["status"] == "True"

    stats = installer_stats(tmp_path / "installer")
    assert stats["/"] == 1 and "/install.sh" not in stats
    assert stats["/releases/download/v1.35.7+rke2r1/rke2.linux-amd64.tar.gz"] == 1
    # the file system is private to the host
    assert not os.path.exists("/var/lib/rancher/rke2/server/token") or "K10" not in open(
        "/var/lib/rancher/rke2/server/token").read()
    events = [e["event"] for e in datastore.events()]
    assert [e for e in events if e in ("join", "start", "ready")][:3] == ["join", "start", "ready"]
    assert events.index("start") < events.index("member-add") < events.index("ready")  # a new etcd cluster
