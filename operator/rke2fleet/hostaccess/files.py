"""Reading and atomically writing remote files through the pool.

A write is ONE remote command (one round trip, through sudo for a non-root user): the content
comes on its stdin (never in argv) into a temporary file in the target's directory; only if its
sha256 is the one sent (a cut connection leaves a short file) and it differs from the target in
content, mode or owner does it get its owner and mode, get synced, and get renamed over the
target: a reader sees the old file or the new one, never a partial one.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from .errors import CommandFailed

if TYPE_CHECKING:
    from .pool import SSHPool
    from .target import HostTarget

ABSENT_STATUS = 44  # exit status of the read script when the file does not exist
_NAME = re.compile(r"[a-z_][a-z0-9_.-]*\$?", re.IGNORECASE)

_READ_SCRIPT = """\
if [ -e "$1" ]; then exec cat -- "$1"; fi
exit 44
"""

# Args: path mode(octal) owner group sha256-of-stdin. Prints "written" or "unchanged".
_WRITE_SCRIPT = """\
set -eu
p=$1 mode=$2 owner=$3 group=$4 want=$5 tmp=
uid=$(id -u -- "$owner")
gid=$(getent group "$group" | cut -d: -f3)
[ -n "$gid" ] || { echo "unknown group $group" >&2; exit 3; }
d=$(dirname -- "$p") b=$(basename -- "$p")
[ -d "$d" ] || mkdir -p -m 0755 -- "$d"
# Temporary files of earlier writes of this file whose connection was cut before the rename.
rm -f -- "$d/.$b.rke2fleet-"*
trap '[ -z "$tmp" ] || rm -f -- "$tmp"' EXIT
umask 077
tmp=$(mktemp -- "$d/.$b.rke2fleet-XXXXXX")
cat > "$tmp"
got=$(sha256sum < "$tmp"); got=${got%% *}
[ "$got" = "$want" ] || { echo "content arrived incomplete ($got)" >&2; exit 4; }
if [ -f "$p" ] && cmp -s -- "$tmp" "$p" && [ "$(stat -c '%a %u %g' -- "$p")" = "$mode $uid $gid" ]; then
  echo unchanged
  exit 0
fi
chown -- "$uid:$gid" "$tmp"
chmod -- "$mode" "$tmp"  # after chown, which may clear setuid/setgid bits
sync -- "$tmp"
mv -f -- "$tmp" "$p"
tmp=
echo written
"""


async def stream_to(stdin: asyncssh.SSHWriter[bytes], path: Path) -> None:
    """A local file to a command's stdin without holding it in memory (release assets)."""
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            stdin.write(chunk)
            await stdin.drain()


def _validate(path: str, mode: int, owner: str, group: str) -> None:
    if not path.startswith("/") or path.endswith("/"):
        raise ValueError(f"remote path must be an absolute file path: {path!r}")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"invalid mode {mode:o}")
    for name in (owner, group):
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid user or group name {name!r}")


async def read_file(pool: SSHPool, target: HostTarget, path: str, *, sudo: bool = True) -> bytes | None:
    """The file's content (None: it does not exist), by one command like every other host access:
    bounded by the command timeout, and the same on hosts without an SFTP subsystem."""
    label = f"read of {path}"
    result = await pool.exec_raw(
        target, "sh -s -- " + shlex.quote(path), sudo=sudo, input=_READ_SCRIPT.encode(), label=label
    )
    if result.exit_status == ABSENT_STATUS:
        return None
    if result.exit_status != 0:
        raise CommandFailed(label, result.exit_status, result.stderr[-2000:])
    return result.stdout_bytes


async def write_file(
    pool: SSHPool,
    target: HostTarget,
    path: str,
    data: bytes | Path,
    *,
    mode: int = 0o600,
    owner: str = "root",
    group: str = "root",
    digest: str | None = None,
) -> bool:
    """`data`: the content, or a local file streamed whose sha256 is `digest`."""
    _validate(path, mode, owner, group)
    if isinstance(data, Path):
        if digest is None:
            raise ValueError("a streamed file needs its digest")
    else:
        digest = hashlib.sha256(data).hexdigest()
    command = "sh -c " + shlex.join([_WRITE_SCRIPT, "sh", path, f"{mode:o}", owner, group, digest])
    label = f"write of {path}"
    result = await pool.exec_raw(target, command, input=data, label=label)
    outcome = result.stdout.strip()
    if result.exit_status != 0 or outcome not in ("written", "unchanged"):
        raise CommandFailed(label, result.exit_status, result.stderr[-2000:])
    return outcome == "written"
