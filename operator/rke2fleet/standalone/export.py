"""`rke2fleet export`: what the operator needs beside the manifests to take a cluster built by
`apply` over as it is: the join token apply generated and the host keys it accepted (AcceptNew),
as Secrets to `kubectl apply`; on request the kubeconfig. This command prints secrets on
purpose: send its output to a file or straight to kubectl."""

from __future__ import annotations

import base64
from typing import Any

import yaml

from rke2fleet import GROUP
from rke2fleet.standalone.state import StateDir


def _secret(state: StateDir, name: str, data: dict[str, bytes], component: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": state.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "rke2fleet",
                "app.kubernetes.io/component": component,
                f"{GROUP}/cluster": state.name,
            },
        },
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def known_hosts(state: StateDir) -> str:
    """known_hosts lines of the host keys apply accepted (`[address]:port key`)."""
    lines = []
    for path in sorted((state.root / "hostkeys").glob("*.json")):
        entry = state.read("hostkeys", path.name) or {}
        address, port, key = entry.get("address"), int(entry.get("port") or 22), entry.get("key")
        if address and key:
            lines.append(f"{address if port == 22 else f'[{address}]:{port}'} {key}")
    return "".join(line + "\n" for line in lines)


def export(state: StateDir, *, kubeconfig: bool = False) -> str:
    if kubeconfig:
        kept = state.secret(f"{state.name}-kubeconfig")
        if kept is None:
            raise LookupError(f"no kubeconfig in {state.root} yet: run rke2fleet apply first")
        return base64.b64decode(kept["data"]["value"]).decode()
    docs: list[dict[str, Any]] = []
    token = state.secret(f"{state.name}-token")
    if token is not None:
        docs.append(_secret(state, f"{state.name}-token", {"token": base64.b64decode(token["data"]["token"])},
                            "join-token"))  # fmt: skip
    hosts = known_hosts(state)
    if hosts:
        docs.append(_secret(state, f"{state.name}-known-hosts", {"known_hosts": hosts.encode()}, "known-hosts"))
    header = (
        f"# Apply beside the manifests of RKE2Cluster {state.namespace}/{state.name} so that the operator takes\n"
        "# the cluster over as it is. Holds secrets: keep it out of Git.\n"
    )
    if hosts:
        ref = f"{{name: {state.name}-known-hosts, key: known_hosts}}"
        header += f"# Host keys accepted on first contact: set spec.ssh.knownHostsSecretRef {ref}\n"
    return header + yaml.safe_dump_all(docs, sort_keys=False) if docs else header
