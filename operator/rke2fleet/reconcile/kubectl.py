"""kubectl on a server node (reference §7), the operator's only view into the RKE2 cluster."""

from __future__ import annotations

KUBECTL = "/var/lib/rancher/rke2/bin/kubectl"
KUBECONFIG = "/etc/rancher/rke2/rke2.yaml"


def kubectl(*args: str) -> list[str]:
    return ["env", f"KUBECONFIG={KUBECONFIG}", KUBECTL, *args]


def drain(node_name: str, timeout_s: float) -> list[str]:
    return kubectl(
        "drain", node_name, "--ignore-daemonsets", "--delete-emptydir-data", "--force", f"--timeout={int(timeout_s)}s"
    )


def cordon(node_name: str) -> list[str]:
    return kubectl("cordon", node_name)


def uncordon(node_name: str) -> list[str]:
    return kubectl("uncordon", node_name)


def delete_node(node_name: str) -> list[str]:
    return kubectl("delete", "node", node_name, "--ignore-not-found")


UNINSTALL_SCRIPT = """
set -e
for p in /usr/local/bin /opt/rke2/bin /usr/bin; do
  if [ -x "$p/rke2-uninstall.sh" ]; then "$p/rke2-uninstall.sh"; exit 0; fi
done
echo "rke2-uninstall.sh not found: nothing installed"
"""
