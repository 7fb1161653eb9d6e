"""SSHPool: one asyncssh connection per host, reused for many commands.

Commands on one host share its connection as channels, bounded by a per-host semaphore below
OpenSSH's MaxSessions (10). A lock per host serialises connecting; a closed connection (keepalive
failure, sshd restart) is replaced on next use. This is the only place the operator opens SSH.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncssh

from . import files
from .errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    HostAccessError,
    HostKeyRejected,
    HostUnreachable,
)
from .hostkeys import HostKeyVerifier, public_key_line
from .redact import redact
from .target import HostTarget, PoolKey

Outcome = Literal["ok", "error", "timeout", "unreachable"]
OnCommand = Callable[[Outcome, float], None]

DEFAULT_MAX_SESSIONS = 8  # below OpenSSH's default MaxSessions of 10
TAIL_CHARS = 2000
CHANNEL_OPEN_RETRIES = 6  # backoff 0.05 s, 0.10 s, ... about 1 s in all
_T = TypeVar("_T")


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str
    duration: float
    stdout_bytes: bytes = field(default=b"", repr=False)


class _Client(asyncssh.SSHClient):
    """Routes asyncssh's host-key question to the target's verifier."""

    def __init__(self, verifier: HostKeyVerifier) -> None:
        self._verifier = verifier

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self._verifier.validate(key)


@dataclass
class _Host:
    sessions: asyncio.Semaphore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: asyncssh.SSHClientConnection | None = None
    host_key: asyncssh.SSHKey | None = None
    accepted_key: str | None = None


def _tail(data: bytes, secrets: Sequence[str]) -> str:
    text = data.decode("utf-8", "replace")
    return redact(text, secrets)[-TAIL_CHARS:]


class SSHPool:
    def __init__(
        self,
        *,
        max_sessions_per_host: int = DEFAULT_MAX_SESSIONS,
        keepalive_interval: float = 15.0,
        keepalive_count_max: int = 3,
        on_command: OnCommand | None = None,
    ) -> None:
        self._max_sessions = max_sessions_per_host
        self._keepalive_interval = keepalive_interval
        self._keepalive_count_max = keepalive_count_max
        self._on_command = on_command
        self._hosts: dict[PoolKey, _Host] = {}
        self.connects = 0  # successful connections made, for tests and metrics
        self.bastion_connects = 0  # of those, to bastions

    # ----------------------------------------------------------------- connections

    def _host(self, target: HostTarget) -> _Host:
        host = self._hosts.get(target.pool_key)
        if host is None:
            host = self._hosts[target.pool_key] = _Host(asyncio.Semaphore(self._max_sessions))
        return host

    def accepted_key(self, target: HostTarget) -> str | None:
        """The host key accepted under AcceptNew with nothing recorded yet: record it in status."""
        host = self._hosts.get(target.pool_key)
        return host.accepted_key if host else None

    def host_key(self, target: HostTarget) -> str | None:
        """The verified key of the host's open connection, as an OpenSSH line."""
        host = self._hosts.get(target.pool_key)
        return public_key_line(host.host_key) if host and host.host_key else None

    async def _connection(self, target: HostTarget) -> tuple[asyncssh.SSHClientConnection, _Host, bool]:
        """Return an open, verified connection and whether it was made just now."""
        host = self._host(target)
        async with host.lock:
            conn = host.conn
            if conn is not None and not conn.is_closed() and host.host_key is not None:
                if HostKeyVerifier(target).trusts(host.host_key):
                    return conn, host, False
            if conn is not None:
                conn.close()
                host.conn = None
            conn, verifier = await self._connect(target)
            host.conn = conn
            host.host_key = conn.get_server_host_key()
            if verifier.accepted_new is not None:
                host.accepted_key = public_key_line(verifier.accepted_new)
            self.connects += 1
            return conn, host, True

    def _connect_options(self, target: HostTarget, verifier: HostKeyVerifier) -> dict[str, Any]:
        options: dict[str, Any] = {
            "port": target.port,
            "username": target.user,
            "client_keys": [target.client_key],
            # Never None: the trusted list is what asyncssh checks; others go to the verifier.
            "known_hosts": verifier.known_hosts,
            "agent_path": None,
            "config": None,
            "password_auth": False,
            "kbdint_auth": False,
            "connect_timeout": target.connect_timeout,
            "keepalive_interval": self._keepalive_interval,
            "keepalive_count_max": self._keepalive_count_max,
            "client_factory": lambda: _Client(verifier),
        }
        if verifier.accepts_first_key or verifier.probing:
            options["server_host_key_algs"] = "default"
        return options

    async def _bastion(self, via: HostTarget) -> asyncssh.SSHClientConnection:
        """The one connection to a bastion that every host behind it is tunnelled through."""
        host = self._host(via)
        async with host.lock:
            if host.conn is None or host.conn.is_closed():
                host.conn, _ = await self._connect(via)
                self.bastion_connects += 1
            return host.conn

    async def _connect(self, target: HostTarget) -> tuple[asyncssh.SSHClientConnection, HostKeyVerifier]:
        verifier = HostKeyVerifier(target)
        options = self._connect_options(target, verifier)
        if target.via is not None:  # errors reaching the bastion name the bastion
            options["tunnel"] = await self._bastion(target.via)
        try:
            conn = await asyncssh.connect(target.address, **options)
        except asyncssh.HostKeyNotVerifiable:
            raise verifier.rejection() from None
        except (asyncssh.KeyExchangeFailed, asyncssh.ConnectionLost, ConnectionResetError) as exc:
            cause = f"{type(exc).__name__}: {exc}"
            if verifier.trusted and verifier.seen is None:
                # Perhaps no host key of a pinned type (sshd just hangs up): see what it offers.
                raise await self._probe_rejection(target, cause) from None
            raise HostUnreachable(target.address, target.port, cause) from None
        except asyncssh.PermissionDenied:
            raise AuthenticationFailed(
                target.address, target.port, target.user, target.client_key_fingerprint
            ) from None
        except TimeoutError:
            raise HostUnreachable(
                target.address, target.port, f"connect timed out after {target.connect_timeout:g}s"
            ) from None
        except OSError as exc:
            # asyncio's message for a refused connect is "Connect call failed"; the errno says why.
            cause = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
            raise HostUnreachable(target.address, target.port, cause) from None
        except asyncssh.Error as exc:
            raise HostUnreachable(target.address, target.port, f"{type(exc).__name__}: {exc}") from None
        return conn, verifier

    async def _probe_rejection(self, target: HostTarget, cause: str) -> HostAccessError:
        probe = HostKeyVerifier(target, probing=True)
        options = self._connect_options(target, probe)
        try:
            if target.via is not None:
                options["tunnel"] = await self._bastion(target.via)
            conn = await asyncssh.connect(target.address, **options)
            conn.close()  # not reached in practice: a probe accepts no key
        except (asyncssh.Error, OSError, TimeoutError):
            pass
        if probe.seen is None:  # the host offered no key at all: it is the connection that failed
            return HostUnreachable(target.address, target.port, cause)
        return probe.rejection()

    def _drop(self, host: _Host, conn: asyncssh.SSHClientConnection) -> None:
        conn.close()
        if host.conn is conn:
            host.conn = None

    async def close(self) -> None:
        """Close every connection (operator shutdown)."""
        conns = [h.conn for h in self._hosts.values() if h.conn is not None]
        for host in self._hosts.values():
            host.conn = None
        for conn in conns:
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)

    # ----------------------------------------------------------------- commands

    def _report(self, outcome: Outcome, started: float) -> None:
        if self._on_command is not None:
            self._on_command(outcome, time.monotonic() - started)

    async def exec_raw(
        self,
        target: HostTarget,
        command: str,
        *,
        sudo: bool = True,
        input: bytes | Path | None = None,  # a Path: its content, streamed
        timeout: float | None = None,  # noqa: ASYNC109 - also kills the remote process on expiry
        label: str = "command",
    ) -> CommandResult:
        """Run one simple command line (already quoted) and return its result whatever the status.

        The command runs under coreutils ``timeout`` (through ``sudo -n`` for a non-root user when
        ``sudo``): sshd refuses signal requests on root sessions, so a client-side timeout alone
        would leave the remote command running.

        Retries once on a fresh connection when a reused one turns out dead before the command
        started (sshd restarted, connection dropped), never after it started.
        """
        started = time.monotonic()
        limit = target.command_timeout if timeout is None else timeout
        outcome: Outcome = "unreachable"
        prefix = "sudo -n " if sudo and not target.is_root else ""
        # The remote limit is a little longer, so the client's CommandTimeout always fires first.
        command = f"{prefix}timeout -k 5 {limit + 1:g} {command}"
        try:
            host = self._host(target)
            async with host.sessions:
                process, conn = await self._open(
                    target, host, lambda c: c.create_process(command, encoding=None)
                )
                try:
                    if isinstance(input, Path):
                        await files.stream_to(process.stdin, input)
                    elif input is not None:
                        process.stdin.write(input)
                    process.stdin.write_eof()
                    completed = await process.wait(timeout=limit)
                    # Hold the session slot until sshd has released its side of the channel.
                    process.close()
                    await process.wait_closed()
                except asyncssh.TimeoutError:
                    outcome = "timeout"
                    process.close()  # not waiting: the remote `timeout` ends the command
                    raise CommandTimeout(label, limit) from None
                except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError) as exc:
                    self._drop(host, conn)
                    raise HostUnreachable(
                        target.address, target.port, f"connection lost during {label}: {exc}"
                    ) from None
            status = completed.exit_status if completed.exit_status is not None else 255
            stdout = completed.stdout if isinstance(completed.stdout, bytes) else b""
            stderr = completed.stderr if isinstance(completed.stderr, bytes) else b""
            outcome = "ok" if status == 0 else "error"
            return CommandResult(
                exit_status=status,
                stdout=stdout.decode("utf-8", "replace"),
                stderr=stderr.decode("utf-8", "replace"),
                duration=time.monotonic() - started,
                stdout_bytes=stdout,
            )
        except (HostKeyRejected, AuthenticationFailed):
            outcome = "error"
            raise
        finally:
            self._report(outcome, started)

    async def _open(
        self,
        target: HostTarget,
        host: _Host,
        opener: Callable[[asyncssh.SSHClientConnection], Awaitable[_T]],
    ) -> tuple[_T, asyncssh.SSHClientConnection]:
        """Open a channel with ``opener`` on the host's connection (caller holds a session slot).

        A channel refused by a live connection (sshd still counting recently closed sessions
        against MaxSessions) is retried with a short backoff. A reused connection found dead is
        replaced once; nothing has run on the host yet at this point, so retrying is safe.
        """
        reconnected = False
        refusals = 0
        while True:
            conn, _, fresh = await self._connection(target)
            try:
                return await asyncio.wait_for(opener(conn), target.connect_timeout), conn
            except TimeoutError:
                # A host that stopped answering (frozen, network gone) never confirms the channel;
                # without a limit only keepalives would notice, minutes later.
                self._drop(host, conn)
                cause = f"no answer to a session request within {target.connect_timeout:g}s"
                raise HostUnreachable(target.address, target.port, cause) from None
            except asyncssh.ChannelOpenError as exc:
                if not conn.is_closed():
                    refusals += 1
                    if refusals > CHANNEL_OPEN_RETRIES:
                        raise HostUnreachable(
                            target.address, target.port, f"host refused a new session: {exc.reason}"
                        ) from None
                    await asyncio.sleep(0.05 * refusals)
                    continue
                cause = str(exc.reason)
            except (asyncssh.ConnectionLost, ConnectionError) as exc:
                cause = str(exc) or type(exc).__name__
            self._drop(host, conn)
            if fresh or reconnected:
                raise HostUnreachable(target.address, target.port, cause)
            reconnected = True

    async def run(
        self,
        target: HostTarget,
        argv: Sequence[str] | None = None,
        *,
        script: str | None = None,
        sudo: bool = True,
        input: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - also kills the remote process on expiry
        check: bool = True,
        secret_values: Sequence[str] = (),
    ) -> CommandResult:
        """Run ``argv`` (quoted with shlex.join) or a ``script`` (sent to ``sh -s`` on stdin).

        A non-root user runs it through ``sudo -n`` when ``sudo`` is true. With ``check`` a
        non-zero exit raises CommandFailed with ``secret_values`` redacted.
        """
        if (argv is None) == (script is None):
            raise ValueError("give exactly one of argv and script")
        if script is not None and input is not None:
            raise ValueError("a script is sent on stdin: it cannot take input too")
        if argv is not None:
            if not argv:
                raise ValueError("empty argv")
            command = shlex.join(argv)
            label = f"command {redact(argv[0], secret_values)!r}"
            stdin = input
        else:
            assert script is not None
            command = "sh -s"
            label = "remote script"
            stdin = script.encode()
        result = await self.exec_raw(target, command, sudo=sudo, input=stdin, timeout=timeout, label=label)
        if check and result.exit_status != 0:
            raise CommandFailed(
                label,
                result.exit_status,
                _tail(result.stderr.encode(), secret_values),
                _tail(result.stdout_bytes, secret_values),
            )
        return result

    # ----------------------------------------------------------------- files

    async def read_file(self, target: HostTarget, path: str, *, sudo: bool = True) -> bytes | None:
        """The file's content, or None when it does not exist."""
        return await files.read_file(self, target, path, sudo=sudo)

    async def write_file(
        self,
        target: HostTarget,
        path: str,
        data: bytes,
        *,
        mode: int = 0o600,
        owner: str = "root",
        group: str = "root",
    ) -> bool:
        """Write atomically when content, mode or owner differ; return whether it wrote."""
        return await files.write_file(self, target, path, data, mode=mode, owner=owner, group=group)

    async def put_file(self, target: HostTarget, path: str, source: Path, sha256: str, *, mode: int = 0o644) -> bool:
        """`write_file` of a local file, streamed (`sha256`: its digest, checked on the host)."""
        return await files.write_file(self, target, path, source, mode=mode, digest=sha256)
