"""What the engine knows of the objects it reconciles: as the store lists them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rke2fleet.api.rke2keys import Role


@dataclass(frozen=True)
class ClusterRecord:
    namespace: str
    name: str
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    uid: str = ""
    generation: int | None = None
    deleting: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class NodeRecord:
    namespace: str
    name: str
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    generation: int | None = None
    deleting: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def cluster(self) -> str:
        return str(self.spec.get("cluster") or "")

    @property
    def cluster_key(self) -> tuple[str, str]:
        return (self.namespace, self.cluster)

    @property
    def role(self) -> Role:
        return "server" if self.spec.get("role") == "server" else "agent"

    @property
    def node_name(self) -> str:
        """Its Kubernetes Node's name."""
        return str(self.spec.get("nodeName") or self.name)

    @property
    def phase(self) -> str | None:
        phase = self.status.get("phase")
        return str(phase) if phase else None

    def condition(self, type_: str) -> dict[str, Any] | None:
        for c in self.status.get("conditions") or []:
            if c.get("type") == type_:
                return dict(c)
        return None

    def condition_true(self, type_: str) -> bool:
        for c in self.status.get("conditions") or ():  # no copy: the cluster pass asks this of every node
            if c.get("type") == type_:
                return bool(c.get("status") == "True")
        return False

    @property
    def serving(self) -> bool:
        """As its last pass saw it: the node runs its part of the cluster (unit active, its Node
        Ready, a server a voting etcd member), whether or not a change is pending for it."""
        if not (self.condition_true("ServiceActive") and self.condition_true("NodeReady")):
            return False
        if self.role != "server":
            return True
        etcd = self.condition("EtcdVoter") or {}
        return etcd.get("status") == "True" or etcd.get("reason") == "NotReported"

    @property
    def runs(self) -> bool:
        """RKE2 runs on it, or did at its last pass."""
        return bool(self.status.get("runningVersion")) or self.condition_true("ServiceActive")


@dataclass(frozen=True)
class ObjectRecord:
    """An RKE2Snapshot or RKE2Restore as the store lists it."""

    namespace: str
    name: str
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    generation: int | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    deleting: bool = False

    @property
    def cluster(self) -> str:
        return str(self.spec.get("cluster") or "")

    @property
    def cluster_key(self) -> tuple[str, str]:
        return (self.namespace, self.cluster)

    @property
    def phase(self) -> str | None:
        phase = self.status.get("phase")
        return str(phase) if phase else None
