"""rke2fleet: a Kubernetes operator that manages fleets of RKE2 nodes over SSH."""

__version__ = "0.1.0"

GROUP = "rke2fleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
