"""Host access: the one way the operator reaches a host (SSH on asyncssh).

``SSHPool`` runs commands and writes files over one connection per host; ``HostTarget`` says how
to reach and trust a host; every failure is a ``HostAccessError`` whose message is status-safe.
"""

from .errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    HostAccessError,
    HostKeyRejected,
    HostUnreachable,
)
from .hostkeys import fingerprint, known_hosts_keys, parse_public_key, public_key_line
from .pool import CommandResult, OnCommand, Outcome, SSHPool
from .redact import redact
from .target import HostKeyPolicy, HostTarget

__all__ = [
    "AuthenticationFailed",
    "CommandFailed",
    "CommandResult",
    "CommandTimeout",
    "HostAccessError",
    "HostKeyPolicy",
    "HostKeyRejected",
    "HostTarget",
    "HostUnreachable",
    "OnCommand",
    "Outcome",
    "SSHPool",
    "fingerprint",
    "known_hosts_keys",
    "parse_public_key",
    "public_key_line",
    "redact",
]
