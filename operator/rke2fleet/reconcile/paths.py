"""Where RKE2 keeps things on a host (reference §3, §4, §6, §7), in one place.

config.yaml and rke2.yaml live under /etc/rancher/rke2; everything else under the data dir,
which a node may move with the `data-dir` config key: the paths follow it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CONFIG_PATH = "/etc/rancher/rke2/config.yaml"
KUBECONFIG_PATH = "/etc/rancher/rke2/rke2.yaml"
REGISTRIES_PATH = "/etc/rancher/rke2/registries.yaml"
CIS_SYSCTL_PATH = "/etc/sysctl.d/60-rke2-cis.conf"
# The shipped CIS sysctl file: tarball prefixes, then the RPM's place (reference §13).
CIS_SYSCTL_SOURCES = (
    "/usr/local/share/rke2/rke2-cis-sysctl.conf",
    "/opt/rke2/share/rke2/rke2-cis-sysctl.conf",
    "/usr/share/rke2/rke2-cis-sysctl.conf",
)
# Where air-gap assets are pushed (per version), outside RKE2's own dirs so an uninstall keeps them.
ARTIFACTS_DIR = "/var/lib/rke2fleet/artifacts"
# Present from a running node's first changed file to its restart being queued: an operator that
# dies in between (or a lost connection) leaves it, and the next pass restarts the node although
# its files already match (RKE2 reads them only as it starts).
RESTART_MARKER = "/var/lib/rke2fleet/restart-pending"
DEFAULT_DATA_DIR = "/var/lib/rancher/rke2"
# Where the install script puts the binary: tarball (default prefix, or /opt/rke2 when /usr/local
# is read-only) or RPM (reference §2).
BINARIES = ("/usr/local/bin/rke2", "/opt/rke2/bin/rke2", "/usr/bin/rke2")
UNINSTALL_DIRS = ("/usr/local/bin", "/opt/rke2/bin", "/usr/bin")


@dataclass(frozen=True)
class Paths:
    data_dir: str = DEFAULT_DATA_DIR
    kubeconfig: str = KUBECONFIG_PATH  # `write-kubeconfig` moves it
    config: str = CONFIG_PATH
    registries: str = REGISTRIES_PATH  # `private-registry` moves it

    @property
    def token(self) -> str:
        """The cluster's join token on a server (secure form)."""
        return f"{self.data_dir}/server/token"

    @property
    def etcd_db(self) -> str:
        """A server's etcd database (removed before it rejoins a restored cluster)."""
        return f"{self.data_dir}/server/db"

    @property
    def data_bin(self) -> str:
        """A link to the bin dir of the version RKE2 last started (kubectl, containerd, …)."""
        return f"{self.data_dir}/bin"

    @property
    def kubectl(self) -> str:
        return f"{self.data_bin}/kubectl"

    @property
    def manifests(self) -> str:
        """A server's auto-deploy manifests (add-ons)."""
        return f"{self.data_dir}/server/manifests"


def environment_file(unit: str) -> str:
    """The unit's EnvironmentFile (Debian's place; RKE2's units read /etc/sysconfig/ too)."""
    return f"/etc/default/{unit}"


DEFAULT = Paths()


def paths_for(config: Mapping[str, Any]) -> Paths:
    """The paths of a node whose config.yaml holds `config` (passthrough keys included)."""
    data_dir = str(config.get("data-dir") or DEFAULT_DATA_DIR).rstrip("/") or DEFAULT_DATA_DIR
    kubeconfig = str(config.get("write-kubeconfig") or KUBECONFIG_PATH)
    registries = str(config.get("private-registry") or REGISTRIES_PATH)
    return Paths(data_dir=data_dir, kubeconfig=kubeconfig, registries=registries)
