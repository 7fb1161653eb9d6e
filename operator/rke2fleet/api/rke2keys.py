"""Which config.yaml keys a user may pass through, from the RKE2 reference (§3).

RKE2 itself skips unknown keys with only a warning, and an agent silently ignores
server-only keys, so a typo would never surface: we refuse them up front.
"""

from __future__ import annotations

from typing import Literal

# Keys valid for `rke2 server` and `rke2 agent` (the operator-owned ones are listed below).
BOTH_ROLE_KEYS: frozenset[str] = frozenset(
    {
        "data-dir",
        "private-registry",
        "selinux",
        "profile",
        "protect-kernel-defaults",
        "kubelet-arg",
        "kube-proxy-arg",
        "resolv-conf",
        "debug",
        # Further agent flags of RKE2 that a fleet commonly sets.
        "lb-server-port",
        "container-runtime-endpoint",
        "snapshotter",
        "pause-image",
        "image-credential-provider-bin-dir",
        "image-credential-provider-config",
        "cloud-provider-name",
        "cloud-provider-config",
    }
)

SERVER_ONLY_KEYS: frozenset[str] = frozenset(
    {
        "advertise-address",
        "cluster-cidr",
        "service-cidr",
        "cluster-dns",
        "cluster-domain",
        "cni",
        "ingress-controller",
        "write-kubeconfig-mode",
        "write-kubeconfig-group",
        "kube-apiserver-arg",
        "kube-controller-manager-arg",
        "kube-scheduler-arg",
        "kube-cloud-controller-manager-arg",
        "etcd-arg",
        "disable",
        "system-default-registry",
        "secrets-encryption-provider",
        "disable-cloud-controller",
        "disable-kube-proxy",
        "egress-selector-mode",
        "disable-scheduler",
        "disable-apiserver",
        "disable-controller-manager",
        "disable-etcd",
        "service-node-port-range",
        "audit-policy-file",
        "pod-security-admission-config-file",
    }
)

# Prefix families of server-only keys (`etcd-*` covers `etcd-s3*` and the snapshot keys).
SERVER_ONLY_PREFIXES: tuple[str, ...] = ("etcd-",)

# Keys the operator writes itself, mapped to the place the user sets them instead.
OPERATOR_OWNED_KEYS: dict[str, str] = {
    "token": "use spec.tokenSecretRef of the RKE2Cluster",
    "token-file": "use spec.tokenSecretRef of the RKE2Cluster",
    "agent-token": "agents join with the cluster token from spec.tokenSecretRef of the RKE2Cluster",
    "server": "use spec.registrationAddress of the RKE2Cluster",
    "tls-san": "use spec.tlsSAN of the RKE2Cluster",
    "node-label": "use spec.nodeLabels of the RKE2Node",
    "node-taint": "use spec.nodeTaints of the RKE2Node",
    "node-name": "use spec.nodeName of the RKE2Node",
    "with-node-id": "node names must be known to the operator; use spec.nodeName of the RKE2Node",
    "node-ip": "use spec.nodeIP of the RKE2Node",
    "node-external-ip": "use spec.nodeExternalIP of the RKE2Node",
    "cluster-reset": "a one-shot restore flag; the operator runs restores itself",
    "cluster-reset-restore-path": "a one-shot restore flag; the operator runs restores itself",
}

Role = Literal["server", "agent"]


def is_server_only(key: str) -> bool:
    base = key.removesuffix("+")
    return base in SERVER_ONLY_KEYS or base.startswith(SERVER_ONLY_PREFIXES)


def config_key_problem(key: str, role: Role | None) -> str | None:
    """Why `key` may not appear in config passed through for `role` (None: either role), or None.

    `key+` (RKE2's append syntax) is judged like `key`. Messages name the key, never a value.
    """
    base = key.removesuffix("+")
    if base in OPERATOR_OWNED_KEYS:
        return f"key '{base}' is managed by the operator; {OPERATOR_OWNED_KEYS[base]}"
    if is_server_only(base):
        if role == "agent":
            return (
                f"key '{base}' is server-only; RKE2 agents ignore it (put it in serverConfig or on a server)"
            )
        return None
    if base in BOTH_ROLE_KEYS:
        return None
    # The key is already in the error path; not repeating it keeps a pasted secret out of one more place.
    return "unknown RKE2 config key (not among the server/agent keys RKE2 documents)"
