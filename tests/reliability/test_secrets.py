"""Secrets kept: file modes on the hosts as specified, the operator's Secrets owned by their
RKE2Cluster, and a teardown scan that finds a leak when there is one (so its passing means
something). The scan itself runs after every test of this folder (see conftest.py)."""

from __future__ import annotations

import hashlib
from typing import Any

import kubernetes
import pytest

from rke2fleet import GROUP, VERSION
from rke2fleet_sandbox.manifests import cluster_manifests
from tests.e2e.conftest import scan_for_secrets
from tests.e2e.harness import NS

from .conftest import RelE2E
from .hostside import sh

pytestmark = [pytest.mark.sandbox]

CONFIG = "/etc/rancher/rke2/config.yaml"


@pytest.mark.parametrize("kubeconfig_mode", ["0600", "0640"])
def test_file_modes_secret_owners_and_scan(e2e: RelE2E, kubeconfig_mode: str) -> None:
    sb = e2e.up(1, 1, sudo_hosts=1)  # the agent logs in as a sudo user: its writes go the other way
    kube = e2e.kube
    assert kube
    kube.apply(cluster_manifests(sb, "sec", extra_spec={"serverConfig": {"write-kubeconfig-mode": kubeconfig_mode}}))
    e2e.operator()
    cl = kube.wait_phase("rke2clusters", "sec", "Ready", timeout=90)

    for host in sb.hosts:
        assert sh(sb, host, "stat -c '%a %U %G' /etc/rancher/rke2/config.yaml").split() == ["600", "root", "root"]
        # No temporary or uploaded copy of config.yaml (it holds the token) left anywhere. The sudo
        # user's home is the machine's, shared with other sandboxes: only this host's uploads
        # (their name carries a hash of the host and the path) are ours to judge.
        tag = hashlib.sha256(f"{host.address}:{host.port} {CONFIG}".encode()).hexdigest()[:8]
        left = sh(
            sb,
            host,
            "ls -a /etc/rancher/rke2 ~fleet 2>/dev/null"
            f" | grep -e '^\\.config\\.yaml\\.rke2fleet-' -e '-{tag}-' || true",
        )
        assert not left.strip(), left
    server = sb.servers[0]
    mode = sh(sb, server, "stat -c '%a %U' /etc/rancher/rke2/rke2.yaml").split()
    assert mode == [kubeconfig_mode.lstrip("0"), "root"]
    assert sh(sb, server, "stat -c %a /var/lib/rancher/rke2/server/token").strip() == "600"

    uid = cl["metadata"]["uid"]
    owned = {}
    for name in ("sec-token", "sec-kubeconfig"):

        def published(name: str = name) -> Any:
            return kube.secret(name) and kube.secret_object(name)

        secret = kube.wait(f"Secret {name}", published)
        refs = secret.metadata.owner_references or []
        owned[name] = [(r.kind, r.name, r.uid, r.controller) for r in refs]
        assert owned[name] == [("RKE2Cluster", "sec", uid, True)], owned[name]
    assert cl["status"].get("tokenSecretName", "sec-token") == "sec-token"

    # The scan sees what it must: the join token planted in a ConfigMap and in an RKE2Node's
    # annotation is found there, and nowhere else.
    token = (kube.secret("sec-token") or {})["token"].decode().strip()
    leak = kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(name="leak"), data={"x": f"...{token}..."}
    )
    kube.core.create_namespaced_config_map(NS, leak)
    leaks = scan_for_secrets(kube, sb, e2e.texts())
    assert leaks and all("emulator objects /api/v1/configmaps" in leak for leak in leaks), leaks
    kube.core.delete_namespaced_config_map("leak", NS)
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "rke2nodes", server.name, {"metadata": {"annotations": {"x": token}}}
    )
    leaks = scan_for_secrets(kube, sb, e2e.texts())
    assert leaks and all("rke2fleet.io/v1alpha1/rke2nodes" in leak for leak in leaks), leaks
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "rke2nodes", server.name, {"metadata": {"annotations": {"x": None}}}
    )
    assert scan_for_secrets(kube, sb, e2e.texts()) == []
    print(f"\nscanned: {', '.join(e2e.scanned_sources())}")
