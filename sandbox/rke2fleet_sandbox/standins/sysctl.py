"""Stand-in for ``sysctl`` (procps) inside a sandbox host: reads and writes the host's simulated kernel
parameters (``sysctl_state``), never the machine's.

``sysctl KEY...``, ``-n``, ``-q``, ``-e``, ``-w KEY=VALUE`` (or a bare ``KEY=VALUE``), ``-p [FILE...]``
(default /etc/sysctl.conf), ``--system``, ``-a``; messages and exit codes as procps 4 prints them.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rke2fleet_sandbox.standins import sysctl_state as state
else:
    import sysctl_state as state


def main(argv: list[str]) -> int:
    names, files = [], []
    values_only = quiet = ignore = load = system = show_all = write = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-n", "--values"):
            values_only = True
        elif arg in ("-q", "--quiet"):
            quiet = True
        elif arg in ("-e", "--ignore"):
            ignore = True
        elif arg in ("-w", "--write"):
            write = True
        elif arg in ("-a", "-A", "-X", "--all"):
            show_all = True
        elif arg == "--system":
            system = True
        elif arg in ("-p", "--load") or arg.startswith(("-p", "--load=")):
            load = True
            inline = arg[2:] if arg.startswith("-p") else arg.partition("=")[2]
            if inline:
                files.append(inline)
        elif arg.startswith("-") and arg != "-":
            print(f"sysctl: invalid option -- '{arg.lstrip('-')[:1]}'", file=sys.stderr)
            return 1
        elif load:
            files.append(arg)
        else:
            names.append(arg)
        i += 1
    rc = 0

    def show(key: str, value: str) -> None:
        if not quiet:
            print(value if values_only else f"{key} = {value}")

    def error(message: str) -> None:
        print(f"sysctl: {message}", file=sys.stderr)

    if system:
        for path in state.system_files(with_sysctl_conf=True):
            if not quiet:
                print(f"* Applying {path} ...")
            if not state.apply_file(path, show, error):
                rc = 1
        return rc
    if load:
        for path in files or [state.SYSCTL_CONF]:
            try:
                if not state.apply_file(path, show, error):
                    rc = 1
            except OSError as exc:
                error(f'cannot open "{path}": {exc.strerror}')
                rc = 1
        return rc
    if show_all:
        for directory, _, leaves in os.walk(state.PROC_SYS):
            for leaf in sorted(leaves):
                key = os.path.relpath(os.path.join(directory, leaf), state.PROC_SYS).replace("/", ".")
                try:
                    show(key, state.read(key))
                except state.SysctlError:
                    continue
        return 0
    if not names:
        print("\nUsage:\n sysctl [options] [variable[=value] ...]", file=sys.stderr)
        return 1
    for name in names:
        key, sep, value = name.partition("=")
        key = state.normalize_key(key)
        try:
            if sep:
                show(key, state.write(key, value))
            elif write:
                error(f'"{key}" must be of the form name=value')
                rc = 1
            else:
                show(key, state.read(key))
        except state.SysctlError as exc:
            if not (ignore and "cannot stat" in str(exc)):
                error(str(exc))
                rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
