"""Stand-in for the ``rke2`` binary, installed as ``bin/rke2`` (a shell shim passing ``--standin-version``).

Kept tiny on purpose: ``rke2 --version`` runs on every reconcile pass, and a script (unlike an
imported module) is compiled again on every run. Everything else is in ``rke2_node``.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
DEFAULT_VERSION = "v1.35.7+rke2r1"
GO_VERSION = "go version go1.26.5 X:boringcrypto"


def main(argv: list[str]) -> int:
    version, args = (argv[1], argv[2:]) if argv[:1] == ["--standin-version"] else (DEFAULT_VERSION, argv)
    if not args or args[0] in ("--version", "-v", "version"):
        import hashlib

        commit = hashlib.sha1(version.encode()).hexdigest()  # noqa: S324 - a fake commit id, not security
        print(f"rke2 version {version} ({commit})\n{GO_VERSION}")
        return 0
    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import rke2_node
    else:
        import rke2_node
    return rke2_node.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
