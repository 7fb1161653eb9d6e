"""The API contract: models of RKE2Cluster / RKE2Node, their validation, CRD generation."""

from rke2fleet.api.cluster import InstallSpec, RKE2ClusterSpec, SSHSpec, UpgradeSpec
from rke2fleet.api.common import Condition, SecretKeySelector, parse_duration, version_key
from rke2fleet.api.errors import FieldError, SpecError
from rke2fleet.api.node import RKE2NodeSpec
from rke2fleet.api.parse import parse_cluster_spec, parse_node_spec
from rke2fleet.api.status import RKE2ClusterStatus, RKE2NodeStatus, RolloutHalt, RolloutStatus

__all__ = [
    "Condition",
    "FieldError",
    "InstallSpec",
    "RKE2ClusterSpec",
    "RKE2ClusterStatus",
    "RKE2NodeSpec",
    "RKE2NodeStatus",
    "RolloutHalt",
    "RolloutStatus",
    "SSHSpec",
    "SecretKeySelector",
    "SpecError",
    "UpgradeSpec",
    "parse_cluster_spec",
    "parse_duration",
    "parse_node_spec",
    "version_key",
]
