"""kubectl on a server node (reference §7), the operator's only view into the RKE2 cluster, and
the uninstall script (reference §9)."""

from __future__ import annotations

from rke2fleet.reconcile.paths import UNINSTALL_DIRS, Paths


def kubectl(paths: Paths, *args: str) -> list[str]:
    return ["env", f"KUBECONFIG={paths.kubeconfig}", paths.kubectl, *args]


def drain(paths: Paths, node_name: str, timeout_s: float) -> list[str]:
    return kubectl(
        paths,
        "drain", node_name, "--ignore-daemonsets", "--delete-emptydir-data", "--force", f"--timeout={int(timeout_s)}s",
    )  # fmt: skip


def cordon(paths: Paths, node_name: str) -> list[str]:
    return kubectl(paths, "cordon", node_name)


def uncordon(paths: Paths, node_name: str) -> list[str]:
    return kubectl(paths, "uncordon", node_name)


def delete_node(paths: Paths, node_name: str) -> list[str]:
    return kubectl(paths, "delete", "node", node_name, "--ignore-not-found")


UNINSTALL_SCRIPT = f"""
set -e
for p in {" ".join(UNINSTALL_DIRS)}; do
  if [ -x "$p/rke2-uninstall.sh" ]; then "$p/rke2-uninstall.sh"; exit 0; fi
done
echo "rke2-uninstall.sh not found: nothing installed"
"""
