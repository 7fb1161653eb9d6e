"""Reading and atomically writing remote files through the pool.

A write happens only when the remote sha256, mode or owner differ. The new content goes to a
temporary file in the target's directory, is synced, gets its owner and mode, and is renamed over
the target: a reader sees the old file or the new one, never a partial one.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import secrets
import shlex
from typing import TYPE_CHECKING

import asyncssh

from .errors import CommandFailed, HostAccessError, HostUnreachable

if TYPE_CHECKING:
    from .pool import SSHPool
    from .target import HostTarget

ABSENT_STATUS = 44  # exit status of the read script when the file does not exist
_NAME = re.compile(r"[a-z_][a-z0-9_.-]*\$?", re.IGNORECASE)

_READ_SCRIPT = """\
if [ -e "$1" ]; then exec cat -- "$1"; fi
exit 44
"""

# Prints "<uid> <gid> <sha256|absent> <mode|-> <uid|-> <gid|->"; creates the directory if missing.
_CHECK_SCRIPT = """\
set -eu
p=$1 owner=$2 group=$3
uid=$(id -u -- "$owner")
gid=$(getent group "$group" | cut -d: -f3)
[ -n "$gid" ] || { echo "unknown group $group" >&2; exit 3; }
if [ -f "$p" ]; then
  h=$(sha256sum < "$p"); h=${h%% *}
  st=$(stat -c '%a %u %g' -- "$p")
else
  h=absent st='- - -'
  d=$(dirname -- "$p")
  [ -d "$d" ] || mkdir -p -m 0755 -- "$d"
fi
# Temporary files of earlier writes of this file whose connection was cut before the rename.
d=$(dirname -- "$p") b=$(basename -- "$p")
rm -f -- "$d/.$b.rke2fleet-"*
echo "$uid $gid $h $st"
"""

# Non-root path: the upload (private, in the user's home) is installed as a temporary file in
# the target directory with owner and mode set, synced, then renamed over the target.
_INSTALL_SCRIPT = """\
set -eu
src=$1 p=$2 mode=$3 owner=$4 group=$5 tmp=
trap 'rm -f -- "$src"; [ -z "$tmp" ] || rm -f -- "$tmp"' EXIT
umask 077
d=$(dirname -- "$p") b=$(basename -- "$p")
tmp=$(mktemp -- "$d/.$b.rke2fleet-XXXXXX")
install -m "$mode" -o "$owner" -g "$group" -- "$src" "$tmp"
sync -- "$tmp"
mv -f -- "$tmp" "$p"
tmp=
"""


def _validate(path: str, mode: int, owner: str, group: str) -> None:
    if not path.startswith("/") or path.endswith("/"):
        raise ValueError(f"remote path must be an absolute file path: {path!r}")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"invalid mode {mode:o}")
    for name in (owner, group):
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid user or group name {name!r}")


async def read_file(pool: SSHPool, target: HostTarget, path: str, *, sudo: bool = True) -> bytes | None:
    if not target.is_root and sudo:
        command = "sh -s -- " + shlex.quote(path)
        label = f"read of {path}"
        result = await pool.exec_raw(target, command, input=_READ_SCRIPT.encode(), label=label)
        if result.exit_status == ABSENT_STATUS:
            return None
        if result.exit_status != 0:
            raise CommandFailed(label, result.exit_status, result.stderr[-2000:])
        return result.stdout_bytes
    async with pool.sftp_session(target) as sftp:
        try:
            async with sftp.open(path, "rb") as handle:
                data = await handle.read()
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPError as exc:
            raise CommandFailed(f"SFTP read of {path}", 1, str(exc.reason)) from None
    return data if isinstance(data, bytes) else str(data).encode()


async def write_file(
    pool: SSHPool,
    target: HostTarget,
    path: str,
    data: bytes,
    *,
    mode: int = 0o600,
    owner: str = "root",
    group: str = "root",
) -> bool:
    _validate(path, mode, owner, group)
    args = shlex.join([path, owner, group])
    label = f"check of {path}"
    check = await pool.exec_raw(
        target, "sh -s -- " + args, input=_CHECK_SCRIPT.encode(), label=label
    )
    fields = check.stdout.split()
    if check.exit_status != 0 or len(fields) != 6:
        raise CommandFailed(label, check.exit_status, check.stderr[-2000:])
    uid, gid, remote_sha, remote_mode, remote_uid, remote_gid = fields
    wanted = (hashlib.sha256(data).hexdigest(), f"{mode:o}", uid, gid)
    if (remote_sha, remote_mode, remote_uid, remote_gid) == wanted:
        return False
    try:
        if target.is_root:
            await _write_as_root(pool, target, path, data, mode, int(uid), int(gid))
        else:
            await _write_with_sudo(pool, target, path, data, mode, owner, group)
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError) as exc:
        # The connection broke mid-transfer (the socket error surfaces raw from SFTP).
        cause = f"connection lost during the write of {path}: {type(exc).__name__}"
        raise HostUnreachable(target.address, target.port, cause) from None
    return True


async def _write_as_root(
    pool: SSHPool, target: HostTarget, path: str, data: bytes, mode: int, uid: int, gid: int
) -> None:
    directory, name = posixpath.split(path)
    tmp = posixpath.join(directory, f".{name}.rke2fleet-{secrets.token_hex(6)}")
    async with pool.sftp_session(target) as sftp:
        try:
            # Created 0600 so the content is never readable by others, even for a moment.
            async with sftp.open(tmp, "xb", asyncssh.SFTPAttrs(permissions=0o600)) as handle:
                await handle.write(data)
                await handle.fsync()
                await handle.chown(uid, gid)
                await handle.chmod(mode)  # after chown, which may clear setuid/setgid bits
            await sftp.posix_rename(tmp, path)
        except BaseException as exc:
            try:
                await sftp.remove(tmp)
            except (asyncssh.Error, OSError):
                pass
            if isinstance(exc, asyncssh.SFTPError):
                raise CommandFailed(f"SFTP write of {path}", 1, str(exc.reason)) from None
            raise


async def _write_with_sudo(
    pool: SSHPool, target: HostTarget, path: str, data: bytes, mode: int, owner: str, group: str
) -> None:
    async with pool.sftp_session(target) as sftp:
        home = str(await sftp.realpath("."))
        # Uploads for this file on this host left by earlier writes whose connection was cut
        # before the install (the host in the name: a home directory may be shared by hosts).
        prefix = f".rke2fleet-upload-{hashlib.sha256(f'{target.endpoint} {path}'.encode()).hexdigest()[:8]}-"
        for entry in await sftp.readdir(home):
            if str(entry.filename).startswith(prefix):
                await sftp.remove(posixpath.join(home, str(entry.filename)))
        upload = posixpath.join(home, prefix + secrets.token_hex(8))
        try:
            async with sftp.open(upload, "xb", asyncssh.SFTPAttrs(permissions=0o600)) as handle:
                await handle.write(data)
        except asyncssh.SFTPError as exc:
            raise CommandFailed(f"SFTP upload for {path}", 1, str(exc.reason)) from None
    label = f"install of {path}"
    command = "sh -s -- " + shlex.join([upload, path, f"{mode:o}", owner, group])
    try:
        result = await pool.exec_raw(target, command, input=_INSTALL_SCRIPT.encode(), label=label)
    except HostAccessError:
        await _remove_quietly(pool, target, upload)
        raise
    if result.exit_status != 0:
        await _remove_quietly(pool, target, upload)  # sudo refused: the script's trap never ran
        raise CommandFailed(label, result.exit_status, result.stderr[-2000:])


async def _remove_quietly(pool: SSHPool, target: HostTarget, path: str) -> None:
    try:
        async with pool.sftp_session(target) as sftp:
            await sftp.remove(path)
    except (HostAccessError, asyncssh.Error, OSError):
        pass
