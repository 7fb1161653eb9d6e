"""Stand-in for ``journalctl -u UNIT [-n N] [--no-pager]``: prints the unit's captured log."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rke2fleet_sandbox.standins import standin_common as common
else:
    import standin_common as common


def main(argv: list[str]) -> int:
    units: list[str] = []
    lines: int | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-u", "--unit"):
            units.append(argv[i + 1])
            i += 1
        elif arg.startswith("--unit="):
            units.append(arg.split("=", 1)[1])
        elif arg in ("-n", "--lines"):
            lines = int(argv[i + 1])
            i += 1
        elif arg.startswith(("--lines=", "-n")) and arg not in ("--no-pager",):
            lines = int(arg.split("=", 1)[1] if "=" in arg else arg[2:])
        i += 1
    out: list[str] = []
    for unit in units:
        unit = unit if "." in unit else f"{unit}.service"
        try:
            out += (common.UNITS_DIR / unit / "journal.log").read_text().splitlines()
        except FileNotFoundError:
            pass
    if not out:
        print("-- No entries --")
        return 0
    if lines is not None:
        out = out[-lines:] if lines > 0 else []
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
