"""Host-key trust: known_hosts parsing, OpenSSH fingerprints and the Strict / AcceptNew policies."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable

import asyncssh

from .errors import HostKeyReason, HostKeyRejected
from .target import HostTarget

REKEY_ADVICE = (
    "if the host was re-keyed on purpose, put its new public key in spec.hostKey "
    "(or the known_hosts Secret) and, under AcceptNew, clear the key recorded in the node's status"
)
PIN_ADVICE = (
    "pin the host's public key in spec.hostKey (or the known_hosts Secret) "
    "or set hostKeyPolicy: AcceptNew"
)


def parse_public_key(line: str) -> asyncssh.SSHKey:
    """Parse one OpenSSH public key line (``type base64 [comment]``)."""
    try:
        return asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"not an OpenSSH public key line: {exc}") from None


def public_key_line(key: asyncssh.SSHKey) -> str:
    """The key as an OpenSSH line without comment, the form recorded in status."""
    kind, blob = bytes(key.export_public_key("openssh")).decode().split()[:2]
    return f"{kind} {blob}"


def fingerprint(key: asyncssh.SSHKey | str) -> str:
    """``SHA256:...`` fingerprint as printed by ``ssh-keygen -l``."""
    if isinstance(key, str):
        key = parse_public_key(key)
    return str(key.get_fingerprint("sha256"))


def _host_names(address: str, port: int) -> tuple[str, ...]:
    # OpenSSH writes the bare name for port 22 and "[name]:port" otherwise, and matches only that.
    return (address.lower(),) if port == 22 else (f"[{address.lower()}]:{port}",)


def _hashed_matches(pattern: str, names: Iterable[str]) -> bool:
    # |1|base64(salt)|base64(HMAC-SHA1(salt, name))
    parts = pattern.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt = base64.b64decode(parts[2])
        digest = base64.b64decode(parts[3])
    except (binascii.Error, ValueError):
        return False
    return any(
        hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest) for name in names
    )


def _wildcard_matches(pattern: str, name: str) -> bool:
    # Only '*' and '?' are wildcards in known_hosts; '[' and ']' are literal ("[host]:port").
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, name) is not None


def _hosts_field_matches(field: str, names: tuple[str, ...]) -> bool:
    if field.startswith("|"):
        return _hashed_matches(field, names)
    matched = False
    for pattern in field.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if any(_wildcard_matches(pattern, name) for name in names):
            if negated:
                return False  # an explicit negation wins over every positive match
            matched = True
    return matched


def known_hosts_keys(text: str, address: str, port: int = 22) -> tuple[str, ...]:
    """Public key lines that ``text`` (known_hosts format) trusts for ``address`` on ``port``.

    Handles hashed (``|1|``) entries, ``[host]:port`` entries, comma lists, ``*``/``?`` wildcards
    and ``!`` negations. ``@cert-authority`` lines are ignored (host certificates are not used)
    and a key listed under ``@revoked`` for the host is never returned.
    """
    names = _host_names(address, port)
    trusted: list[str] = []
    revoked: set[str] = set()
    for raw in text.splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else None
        if len(fields) < 3 or not _hosts_field_matches(fields[0], names):
            continue
        line = f"{fields[1]} {fields[2]}"
        if marker == "@revoked":
            revoked.add(line)
        elif marker is None:
            trusted.append(line)
    return tuple(dict.fromkeys(k for k in trusted if k not in revoked))


class HostKeyVerifier:
    """Decides, for one connection attempt, whether the key a host presents is trusted.

    asyncssh is given the trusted keys (so it negotiates their algorithms) and calls
    :meth:`validate` for any other key; :meth:`validate` records what it saw so that a refusal
    can name the fingerprint, and under AcceptNew with nothing trusted it accepts the first key.
    """

    def __init__(self, target: HostTarget, *, probing: bool = False) -> None:
        self.target = target
        # A probe trusts nothing: it only learns which key the host offers, to name it in a refusal.
        self.probing = probing
        keys = list(target.pinned_keys)
        if target.host_key_policy == "AcceptNew" and target.recorded_key:
            keys.append(target.recorded_key)
        self.trusted: list[asyncssh.SSHKey] = [parse_public_key(k) for k in keys]
        self.seen: asyncssh.SSHKey | None = None
        self.accepted_new: asyncssh.SSHKey | None = None

    @property
    def accepts_first_key(self) -> bool:
        return self.target.host_key_policy == "AcceptNew" and not self.trusted and not self.probing

    @property
    def known_hosts(self) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
        """asyncssh's ``known_hosts`` argument: never None, so checking is never switched off."""
        return ([] if self.probing else list(self.trusted), [], [])

    def trusts(self, key: asyncssh.SSHKey) -> bool:
        """Whether an already-verified connection's key is still acceptable for this target."""
        return key in self.trusted or self.accepts_first_key

    def validate(self, key: asyncssh.SSHKey) -> bool:
        self.seen = key
        if self.accepts_first_key:
            self.accepted_new = key
            return True
        return False

    def rejection(self) -> HostKeyRejected:
        reason: HostKeyReason = "changed" if self.trusted else "unknown"
        return HostKeyRejected(
            self.target.address,
            self.target.port,
            fingerprint_seen=fingerprint(self.seen) if self.seen is not None else None,
            reason=reason,
            advice=REKEY_ADVICE if reason == "changed" else PIN_ADVICE,
        )
