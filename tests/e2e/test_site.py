"""RKE2's home ground end to end (reference §13): an air-gapped install from pushed assets (and
a corrupted asset refused with nothing installed), registries.yaml and the proxy environment with
a rolling change, the CIS profile (prepared, and refused by RKE2 where not), add-on manifests on
every server and gone when dropped, and a cluster reachable only through a bastion whose hosts
have no SFTP subsystem."""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2fleet.reconcile.paths import RESTART_MARKER
from rke2fleet_sandbox.installer import installer_stats, write_airgap_bundle
from rke2fleet_sandbox.manifests import cluster_manifests
from tests.e2e.conftest import E2E
from tests.e2e.harness import NS, Kube, datastore_events, sh

pytestmark = [pytest.mark.sandbox]

VERSION = "v1.35.7+rke2r1"
KUBECTL = "KUBECONFIG=/etc/rancher/rke2/rke2.yaml /var/lib/rancher/rke2/bin/kubectl"
CERT_MANAGER: dict[str, Any] = {
    "apiVersion": "helm.cattle.io/v1",
    "kind": "HelmChart",
    "metadata": {"name": "cert-manager", "namespace": "kube-system"},
    "spec": {"repo": "https://charts.jetstack.io", "chart": "cert-manager", "targetNamespace": "cert-manager"},
}


def cond(kube: Kube, plural: str, name: str, type_: str) -> dict[str, Any]:
    return kube.condition(plural, name, type_) or {}


def docs(sb: Any, name: str, *, hosts: Any = None, **spec: Any) -> list[dict[str, Any]]:
    out = cluster_manifests(sb, name, namespace=NS, hosts=hosts, version=VERSION, extra_spec=spec)
    out[1]["spec"]["ssh"]["connectTimeout"] = "3s"
    return out


def unit_environment(sb: Any, host: Any, unit: str) -> str:
    """The environment of the unit's main process (as the stand-in systemd records its pid)."""
    pid = json.loads(sh(sb, host, f"cat /run/rke2fleet/units/{unit}.service/status.json"))["mainPid"]
    return Path(f"/proc/{pid}/environ").read_bytes().decode().replace("\0", "\n")


def secret(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}  # fmt: skip


def test_airgapped_install_from_pushed_assets_and_a_corrupted_one_refused(e2e: E2E, tmp_path: Path) -> None:
    sb = e2e.up(1, 1, network="isolated")
    kube = e2e.kube
    assert kube
    # The hosts cannot reach the installer: an online install could not work here.
    probe = sb.run_on_host(sb.hosts[0], f"curl -sf --max-time 5 {sb.installer_url}/install.sh >/dev/null")
    assert probe.returncode != 0
    releases = tmp_path / "releases"
    bundle = write_airgap_bundle(releases / VERSION, VERSION)
    tarball = bundle / "rke2.linux-amd64.tar.gz"
    good = tarball.read_bytes()
    tarball.write_bytes(good[:-10] + b"corrupted!")
    before = installer_stats(sb.state_dir)
    kube.apply(docs(sb, "vault", install={"airgap": {"artifactsURL": f"file://{releases}/{{version}}"}}))
    e2e.operator()
    server = sb.servers[0].name
    refused = kube.wait("the corrupted tarball refused", lambda: (
        c if (c := cond(kube, "rke2nodes", server, "Installed")).get("reason") == "ArtifactInvalid" else None
    ), timeout=60)  # fmt: skip
    assert "rke2.linux-amd64.tar.gz" in refused["message"] and refused["status"] == "False"
    for host in sb.hosts:  # nothing pushed, nothing installed
        assert sh(sb, host, "ls /usr/local/bin/rke2 /var/lib/rke2fleet 2>/dev/null; true").strip() == ""
    tarball.write_bytes(good)  # the mirror is repaired: the next pass goes on
    kube.wait_phase("rke2clusters", "vault", "Ready", timeout=120)
    for host in sb.hosts:
        images = sh(sb, host, "ls /var/lib/rancher/rke2/agent/images/").split()
        assert "rke2-images.linux-amd64.tar.zst" in images
        assert VERSION in sh(sb, host, "/usr/local/bin/rke2 --version")
    assert installer_stats(sb.state_dir) == before  # no host fetched anything


def test_registries_and_proxy_land_0600_and_a_change_rolls_one_node_at_a_time(e2e: E2E) -> None:
    sb = e2e.up(1, 2)
    kube = e2e.kube
    assert kube
    registries = {
        "mirrors": {"docker.io": {"endpoint": [f"{sb.installer_url}"]}},
        "configs": {sb.installer_url.split("//")[1]: {"authSecretRef": {"name": "mirror-auth"}}},
    }
    proxy = {"httpProxy": "http://proxy.site:3128", "httpsProxy": "http://proxy.site:3128", "noProxy": [".site"]}
    kube.apply([secret("mirror-auth", username="puller", password="mirror-pull-s3cret-0001")])
    kube.apply(docs(sb, "site", registries=registries, proxy=proxy))
    e2e.operator()
    kube.wait_phase("rke2clusters", "site", "Ready", timeout=120)
    for host in sb.hosts:
        unit = "rke2-server" if host.role == "server" else "rke2-agent"
        stat = sh(sb, host, f"stat -c '%a %U' /etc/rancher/rke2/registries.yaml /etc/default/{unit}").split()
        assert stat == ["600", "root", "600", "root"]
        reg = yaml.safe_load(sh(sb, host, "cat /etc/rancher/rke2/registries.yaml"))
        assert reg["mirrors"]["docker.io"]["endpoint"] == [sb.installer_url]
        auth = next(iter(reg["configs"].values()))["auth"]
        assert auth == {"username": "puller", "password": "mirror-pull-s3cret-0001"}
        env = unit_environment(sb, host, unit)
        assert "HTTP_PROXY=http://proxy.site:3128" in env
        no_proxy = next(ln for ln in env.splitlines() if ln.startswith("NO_PROXY=")).split("=", 1)[1].split(",")
        assert {"127.0.0.0/8", "10.42.0.0/16", "10.43.0.0/16", ".svc", ".cluster.local", ".site"} <= set(no_proxy)
    mark = time.time()
    registries["mirrors"]["docker.io"]["endpoint"] = [sb.installer_url, "https://mirror-2.site:5000"]
    kube.patch_spec("rke2clusters", "site", {"registries": registries})

    def restarted() -> list[dict[str, Any]] | None:
        ev = [e for e in datastore_events(sb) if e["t"] >= mark and e["event"] in ("start", "ready")]
        return ev if len({e["node"] for e in ev if e["event"] == "ready"}) == 3 else None

    events = kube.wait("every node restarted with the new registries.yaml", restarted, timeout=120)

    def story() -> str:  # what a failure needs to be understood: the cluster's events and the systemctl calls
        lines = [f"{e['t'] - mark:8.3f} {e['node']} {e['event']}" for e in datastore_events(sb) if e["t"] >= mark]
        for host in sb.hosts:
            for ln in sh(sb, host, "cat /run/rke2fleet/units/systemctl.log").splitlines():
                t, _, call = ln.partition(" ")
                if float(t) >= mark and "is-" not in call and "show" not in call:
                    lines.append(f"{float(t) - mark:8.3f} {host.name} systemctl {call}")
        return "\n".join(sorted(lines))

    down: set[str] = set()
    for e in sorted(events, key=lambda e: e["t"]):  # never two nodes restarting at once
        if e["event"] == "start":
            assert not down, f"{e['node']} restarted while {down} was not Ready yet:\n{story()}"
            down.add(e["node"])
        else:
            down.discard(e["node"])
    kube.wait_phase("rke2clusters", "site", "Ready", timeout=60)
    assert "mirror-2.site" in sh(sb, sb.agents[1], "cat /etc/rancher/rke2/registries.yaml")


def fail_next_restart(sb: Any, host: Any) -> None:
    """The host's next `systemctl restart` fails as systemd's does when its D-Bus call times out
    (nothing restarted), then systemctl works again: a wrapper bound over it in the host's own
    mount namespace."""
    shim = sh(sb, host, "cat /usr/bin/systemctl").splitlines()
    wrapper = "\n".join([
        "#!/bin/sh",
        'if [ "$1" = restart ] && rm /run/faults/fail-restart 2>/dev/null; then',
        '  echo "Failed to restart $4.service: Connection timed out" >&2; exit 1',
        "fi",
        *shim[1:],
    ]) + "\n"  # fmt: skip
    res = sb.run_on_host(host, "mkdir -p /run/faults && cat > /run/faults/systemctl && chmod 755 /run/faults/systemctl"
                         " && touch /run/faults/fail-restart && mount --bind /run/faults/systemctl /usr/bin/systemctl",
                         input=wrapper.encode())  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_a_restart_lost_after_its_files_changed_is_still_made(e2e: E2E) -> None:
    """The restart that takes a changed registries.yaml fails on the host: the file on disk is the
    wanted one, but RKE2 reads it only as it starts. The next pass restarts the node all the same
    (the restart is owed from the first changed file until it is queued)."""
    sb = e2e.up(1, 1)
    kube = e2e.kube
    assert kube
    registries = {"mirrors": {"docker.io": {"endpoint": [sb.installer_url]}}}
    kube.apply(docs(sb, "owed", registries=registries))
    e2e.operator()
    kube.wait_phase("rke2clusters", "owed", "Ready", timeout=120)
    agent = sb.agents[0]
    fail_next_restart(sb, agent)
    mark = time.time()
    registries["mirrors"]["docker.io"]["endpoint"].append("https://mirror-2.site:5000")
    kube.patch_spec("rke2clusters", "owed", {"registries": registries})

    def restarted() -> bool:
        return any(e["node"] == agent.name and e["event"] == "ready" for e in datastore_events(sb) if e["t"] >= mark)

    kube.wait("the agent restarted after its failed restart", restarted, timeout=120)
    assert sh(sb, agent, "ls /run/faults/fail-restart 2>/dev/null; true").strip() == ""  # it did fail once
    assert "mirror-2.site" in sh(sb, agent, "cat /etc/rancher/rke2/registries.yaml")
    assert sh(sb, agent, f"ls {RESTART_MARKER} 2>/dev/null; true").strip() == ""
    kube.wait_phase("rke2clusters", "owed", "Ready", timeout=60)


def test_cis_prepared_by_the_operator_refused_by_rke2_where_not_and_addons(e2e: E2E) -> None:
    sb = e2e.up(2, 1)
    kube = e2e.kube
    assert kube
    cis = {"serverConfig": {"profile": "cis", "write-kubeconfig-mode": "0600"}, "agentConfig": {"profile": "cis"}}
    kube.apply(docs(sb, "hardened", hosts=[sb.servers[0], sb.agents[0]], **cis, addons=[CERT_MANAGER]))
    kube.apply(docs(sb, "unprepared", hosts=[sb.servers[1]], **cis, prepareHosts=False)[1:])
    e2e.operator()
    kube.wait_phase("rke2clusters", "hardened", "Ready", timeout=120)
    for host in (sb.servers[0], sb.agents[0]):
        assert sh(sb, host, "getent passwd etcd").startswith("etcd:")
        assert "kernel.panic" in sh(sb, host, "cat /etc/sysctl.d/60-rke2-cis.conf")
    # RKE2 itself refuses the host nobody prepared, and the node says so in RKE2's words.
    unprepared = sb.servers[1].name
    failed = kube.wait("RKE2's refusal reported", lambda: (
        c if (c := cond(kube, "rke2nodes", unprepared, "ServiceActive")).get("reason") == "ServiceFailed" else None
    ), timeout=90)  # fmt: skip
    assert "invalid kernel parameter value" in failed["message"]  # RKE2's own words
    assert sh(sb, sb.servers[1], "getent passwd etcd; true").strip() == ""  # the operator did not touch it

    # The add-on: on the server, applied by RKE2, listed in status; dropped: file and chart gone.
    server = sb.servers[0]
    path = "/var/lib/rancher/rke2/server/manifests/rke2fleet-helmchart-cert-manager.yaml"
    assert sh(sb, server, f"stat -c %a {path}").strip() == "600"
    assert sh(sb, sb.agents[0], f"ls {path} 2>/dev/null; true").strip() == ""
    kube.wait("the HelmChart in the cluster", lambda: "cert-manager" in sh(
        sb, server, f"{KUBECTL} get helmcharts -n kube-system -o name"), timeout=30)  # fmt: skip
    status = kube.wait("status lists it Applied", lambda: (kube.get("rke2clusters", "hardened") or {})
                       .get("status", {}).get("addons"), timeout=30)  # fmt: skip
    assert [(a["name"], a["state"]) for a in status] == [("cert-manager", "Applied")]
    kube.patch_spec("rke2clusters", "hardened", {"addons": []})
    kube.wait("the HelmChart deleted", lambda: "cert-manager" not in sh(
        sb, server, f"{KUBECTL} get helmcharts -n kube-system -o name"), timeout=60)  # fmt: skip
    assert sh(sb, server, f"ls {path} 2>/dev/null; true").strip() == ""
    kube.wait("status without it", lambda: (kube.get("rke2clusters", "hardened") or {})
              .get("status", {}).get("addons") == [], timeout=30)  # fmt: skip
    assert any(e.reason == "AddonRemoved" for e in kube.events("hardened"))


def test_behind_a_bastion_without_sftp(e2e: E2E, tmp_path: Path) -> None:
    sb = e2e.up(3, 1, network="bastion", sftp=False)
    kube = e2e.kube
    assert kube
    for host in sb.hosts:  # the operator's side cannot reach any host directly
        with pytest.raises(OSError):
            socket.create_connection((host.address, host.port), timeout=2).close()
    bastion = sb.bastion
    spec = {"ssh": {"privateKeySecretRef": {"name": "fleet-ssh", "key": "ssh-privatekey"}, "connectTimeout": "5s",
                    "bastion": {"address": bastion.address, "port": bastion.port, "user": bastion.user,
                                "hostKey": bastion.host_key_line}}}  # fmt: skip
    write_airgap_bundle(tmp_path / "releases" / VERSION, VERSION)  # the site has no egress either
    airgap = {"airgap": {"artifactsURL": f"file://{tmp_path}/releases/{{version}}"}}
    kube.apply(docs(sb, "hidden", install=airgap, **spec))
    op = e2e.operator()
    kube.wait_phase("rke2clusters", "hidden", "Ready", timeout=180)
    assert sb.bastion_logins() == 1  # one bastion connection, shared by every host behind it
    assert op.metric("rke2fleet_ssh_commands_total") > 0
