"""A sandbox host's simulated kernel parameters (stdlib only; the ``sysctl`` shim and the systemctl
stand-in's ``systemd-sysctl`` import it).

The machine's kernel is never written. Each host keeps its own values as files under
``/run/rke2fleet/proc-sys/<key with / for .>`` (a private tmpfs); a key without such a file reads as the
machine's value (``/proc/sys``, read only). The keys RKE2's CIS check and the kubelet's
protect-kernel-defaults read (``SIMULATED``) are seeded with the machine's values when the host comes
up and bind-mounted over their ``/proc/sys`` files, so whatever reads ``/proc/sys`` (the rke2 stand-in
as RKE2 does, ``cat``) sees the host's simulated value; the rest of ``/proc/sys`` is mounted read-only
inside the host (a stray write fails, as ``sysctl`` reports it: permission denied).

A value is written in place (never by rename): a bind mount holds on to its file's inode.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

STATE_DIR = os.environ.get("RKE2FLEET_SYSCTL_DIR", "/run/rke2fleet/proc-sys")
PROC_SYS = "/proc/sys"
# RKE2's CIS kernel parameters (pkg/cli/cmds/profile_linux.go) and the kubelet's protect-kernel-defaults.
SIMULATED = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
             "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes")
# What procps's `sysctl --system` reads, in this order of precedence for files of the same name;
# systemd-sysctl reads the same directories (without /etc/sysctl.conf).
SYSTEM_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
SYSCTL_CONF = "/etc/sysctl.conf"


class SysctlError(Exception):
    """A key that cannot be read or written, with procps's message."""


def key_path(key: str) -> str:
    return key.strip().replace(".", "/")


def normalize_key(key: str) -> str:
    return key.strip().replace("/", ".")


def state_file(key: str) -> str:
    return os.path.join(STATE_DIR, key_path(key))


def exists(key: str) -> bool:
    return os.path.exists(state_file(key)) or os.path.isfile(os.path.join(PROC_SYS, key_path(key)))


def read(key: str) -> str:
    """The host's value of ``key`` (its simulated one, else the machine's)."""
    for path in (state_file(key), os.path.join(PROC_SYS, key_path(key))):
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            continue
        except PermissionError:
            raise SysctlError(f'permission denied on key "{normalize_key(key)}"') from None
        except OSError as exc:
            raise SysctlError(f"reading key \"{normalize_key(key)}\": {exc.strerror}") from None
    raise SysctlError(f"cannot stat {PROC_SYS}/{key_path(key)}: No such file or directory")


def _is_int_list(text: str) -> bool:
    return bool(text.split()) and all(part.lstrip("-").isdigit() for part in text.split())


def write(key: str, value: str) -> str:
    """Set ``key`` on this host only; returns the value as the kernel keeps it. Root only, and only
    for keys the kernel has; a numeric parameter takes numbers only (EINVAL)."""
    key = normalize_key(key)
    if not exists(key):
        raise SysctlError(f"cannot stat {PROC_SYS}/{key_path(key)}: No such file or directory")
    if os.geteuid() != 0:
        raise SysctlError(f'permission denied on key "{key}"')
    value = "\t".join(value.split())
    current = read(key)
    if _is_int_list(current) and not _is_int_list(value):
        raise SysctlError(f'setting key "{key}": Invalid argument')
    path = state_file(key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:  # in place: the file may be bind-mounted over /proc/sys
        f.write(value + "\n")
    return value


def parse_file(path: str) -> list[tuple[str, str, bool]]:
    """(key, value, ignore errors) of a sysctl.conf file: ``key = value`` lines, ``#``/``;`` comments,
    a leading ``-`` ignores a failing key. Raises ``OSError`` when the file cannot be read."""
    entries = []
    with open(path) as f:
        for raw in f.read().splitlines():
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            ignore = line.startswith("-")
            key, sep, value = line.lstrip("-").partition("=")
            if not sep:
                continue
            entries.append((normalize_key(key), value.strip(), ignore))
    return entries


def system_files(with_sysctl_conf: bool) -> list[str]:
    """The sysctl.d files in the order they apply (by name; of two files with one name, the one of
    the earlier directory), then /etc/sysctl.conf for procps's ``--system``."""
    chosen: dict[str, str] = {}
    for directory in SYSTEM_DIRS:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = os.path.join(directory, name)
    files = [chosen[name] for name in sorted(chosen)]
    if with_sysctl_conf and os.path.exists(SYSCTL_CONF):
        files.append(SYSCTL_CONF)
    return files


def apply_file(path: str, on_set: Callable[[str, str], None], on_error: Callable[[str], None]) -> bool:
    """Apply one file; False when some key failed (not counting ``-`` keys)."""
    ok = True
    for key, value, ignore in parse_file(path):
        try:
            on_set(key, write(key, value))
        except SysctlError as exc:
            if not ignore:
                on_error(str(exc))
                ok = False
    return ok
