"""Manifests for a cluster on sandbox hosts: the SSH key Secret, an RKE2Cluster, its RKE2Nodes.

Used by the demo, the end-to-end tests and the benchmark, so they all describe a sandbox
cluster the way a user would (pinned host keys, the sandbox's installer as script URL).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from rke2fleet import API_VERSION
from rke2fleet_sandbox.state import SandboxHost
from rke2fleet_sandbox.world import Sandbox

SSH_SECRET = "fleet-ssh"  # noqa: S105 -- the Secret's name, not a password
DEFAULT_VERSION = "v1.35.7+rke2r1"


def ssh_secret(sandbox: Sandbox, namespace: str) -> dict[str, Any]:
    pem = sandbox.client_key_pem().encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/ssh-auth",
        "metadata": {"name": SSH_SECRET, "namespace": namespace},
        "data": {"ssh-privatekey": base64.b64encode(pem).decode()},
    }


def cluster(
    sandbox: Sandbox, name: str, namespace: str, *, servers: int, version: str | None = DEFAULT_VERSION,
    extra_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "ssh": {"privateKeySecretRef": {"name": SSH_SECRET, "key": "ssh-privatekey"}},
        "install": {"scriptURL": f"{sandbox.installer_url}/install.sh"},
        "serverConfig": {"write-kubeconfig-mode": "0600"},
        "readinessTimeout": "2m",
        "driftCheckInterval": "5m",
    }
    if version:
        spec["version"] = version
    if servers > 1:
        spec["registrationAddress"] = sandbox.load_balancer_address
        spec["tlsSAN"] = [sandbox.load_balancer_address]
    spec.update(extra_spec or {})
    return {"apiVersion": API_VERSION, "kind": "RKE2Cluster",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def node(host: SandboxHost, cluster_name: str, namespace: str, role: str, *, name: str | None = None,
         extra_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "cluster": cluster_name, "role": role, "address": host.address, "port": host.port,
        "hostKey": host.host_key_line,
    }
    if host.user != "root":
        spec["user"] = host.user
    spec.update(extra_spec or {})
    return {"apiVersion": API_VERSION, "kind": "RKE2Node",
            "metadata": {"name": name or host.name, "namespace": namespace}, "spec": spec}


def cluster_manifests(
    sandbox: Sandbox, name: str = "demo", namespace: str = "default", *,
    hosts: Sequence[SandboxHost] | None = None, version: str | None = DEFAULT_VERSION,
    extra_spec: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every host of the sandbox (or `hosts`) in one cluster, each in the role the sandbox hints."""
    chosen = list(hosts if hosts is not None else sandbox.hosts)
    servers = [h for h in chosen if h.role == "server"]
    docs = [ssh_secret(sandbox, namespace),
            cluster(sandbox, name, namespace, servers=len(servers), version=version, extra_spec=extra_spec)]
    docs += [node(h, name, namespace, h.role) for h in chosen]
    return docs


def apply_manifests(kubeconfig: str, docs: Sequence[dict[str, Any]]) -> None:
    """Create (or merge-patch) the documents, as `kubectl apply` would for these kinds."""
    import kubernetes
    from kubernetes.client.exceptions import ApiException

    client = kubernetes.config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    core = kubernetes.client.CoreV1Api(client)
    custom = kubernetes.client.CustomObjectsApi(client)
    try:
        for doc in docs:
            ns = doc["metadata"]["namespace"]
            name = doc["metadata"]["name"]
            if doc["kind"] == "Secret":
                try:
                    core.create_namespaced_secret(ns, doc)  # type: ignore[arg-type]
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    core.patch_namespaced_secret(name, ns, doc)
                continue
            group, version = doc["apiVersion"].split("/")
            plural = doc["kind"].lower() + "s"
            try:
                custom.create_namespaced_custom_object(group, version, ns, plural, doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                custom.patch_namespaced_custom_object(group, version, ns, plural, name, {"spec": doc["spec"]})
    finally:
        client.close()
