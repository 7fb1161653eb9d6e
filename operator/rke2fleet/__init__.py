"""rke2fleet: a Kubernetes operator that manages fleets of RKE2 nodes over SSH."""

import warnings

# cryptography 51 deprecates DSA, and asyncssh's modules name its DSA types when they are imported:
# five warnings on stderr at every start of the CLI or the operator that tell our users nothing
# (the notice is for asyncssh, which names the types; no user of ours can act on it).
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh\.")

__version__ = "0.1.0"

GROUP = "rke2fleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
