"""Typed errors of host access.

Every message is safe to put in a status condition or an Event: it names the host and the cause,
never a token, a private key or a command's secret argument (callers pass those as
``secret_values`` and they are redacted before the error is built).
"""

from __future__ import annotations

from typing import Literal

HostKeyReason = Literal["unknown", "changed"]


class HostAccessError(Exception):
    """Base of every error raised while reaching a host."""


class HostUnreachable(HostAccessError):
    """Connecting failed (refused, timed out, reset) or the connection broke mid-command."""

    def __init__(self, address: str, port: int, cause: str) -> None:
        self.address = address
        self.port = port
        self.cause = cause
        super().__init__(f"host {address}:{port} unreachable: {cause}")


class HostKeyRejected(HostAccessError):
    """The host presented a key that the host-key policy does not trust."""

    def __init__(
        self,
        address: str,
        port: int,
        *,
        fingerprint_seen: str | None,
        reason: HostKeyReason,
        advice: str,
    ) -> None:
        self.address = address
        self.port = port
        self.fingerprint_seen = fingerprint_seen
        self.reason = reason
        seen = fingerprint_seen or "an unidentified key"
        what = "is not pinned" if reason == "unknown" else "does not match the trusted key"
        super().__init__(f"host key {seen} presented by {address}:{port} {what}; {advice}")


class AuthenticationFailed(HostAccessError):
    """The host refused the private key for the user."""

    def __init__(self, address: str, port: int, user: str, key_fingerprint: str) -> None:
        self.address = address
        self.port = port
        self.user = user
        super().__init__(
            f"host {address}:{port} refused public-key login as {user!r} "
            f"(client key {key_fingerprint}); check the host's authorized_keys"
        )


class CommandFailed(HostAccessError):
    """A remote command exited non-zero (texts already redacted)."""

    def __init__(self, command: str, exit_status: int, stderr_tail: str, stdout_tail: str = "") -> None:
        self.command = command
        self.exit_status = exit_status
        self.stderr_tail = stderr_tail
        self.stdout_tail = stdout_tail
        detail = stderr_tail.strip() or stdout_tail.strip() or "(no output)"
        super().__init__(f"{command} exited with status {exit_status}: {detail}")


class CommandTimeout(HostAccessError):
    """A remote command did not finish within its timeout."""

    def __init__(self, command: str, timeout: float) -> None:
        self.command = command
        self.timeout = timeout
        super().__init__(f"{command} did not finish within {timeout:g}s")
