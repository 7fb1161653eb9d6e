"""Stand-in for ``systemctl`` (bind-mounted over /usr/bin/systemctl inside a sandbox host).

Kept tiny on purpose: a script is compiled on every run, an imported module is cached, and
``systemctl is-active`` runs in every reconcile pass. The supervisor of a started unit runs as
``systemctl.py __supervise UNIT`` (rke2-killall.sh looks for that command line).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rke2fleet_sandbox.standins import systemctl_cli
else:
    import systemctl_cli

if __name__ == "__main__":
    sys.exit(systemctl_cli.main(sys.argv[1:]))
