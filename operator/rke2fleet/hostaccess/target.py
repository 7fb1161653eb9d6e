"""What the pool needs to know to reach one host."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import asyncssh
from pydantic import SecretBytes

HostKeyPolicy = Literal["Strict", "AcceptNew"]

PoolKey = tuple[str, int, str, str, str]


@dataclass(frozen=True)
class HostTarget:
    """One host as the operator reaches it.

    ``pinned_keys`` are OpenSSH public key lines (``ssh-ed25519 AAAA... [comment]``) taken from
    ``RKE2Node.spec.hostKey`` and/or the known_hosts Secret (see ``hostkeys.known_hosts_keys``).
    ``recorded_key`` is the key recorded in the node's status by an earlier AcceptNew connection.
    ``private_key`` is the PEM client key, held in memory only and kept out of repr/str.
    """

    address: str
    private_key: SecretBytes = field(repr=False)
    port: int = 22
    user: str = "root"
    pinned_keys: tuple[str, ...] = ()
    host_key_policy: HostKeyPolicy = "Strict"
    recorded_key: str | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 300.0
    via: HostTarget | None = None  # a bastion: connections are tunnelled through it (`ssh -J`)

    @cached_property
    def client_key(self) -> asyncssh.SSHKey:
        """The parsed private key (parsed once per target object)."""
        return asyncssh.import_private_key(self.private_key.get_secret_value())

    @cached_property
    def client_key_fingerprint(self) -> str:
        return str(self.client_key.get_fingerprint("sha256"))

    @property
    def pool_key(self) -> PoolKey:
        """Connections are shared by targets with the same endpoint, user, client key and path."""
        via = f"{self.via.user}@{self.via.endpoint}" if self.via else ""
        return (self.address, self.port, self.user, self.client_key_fingerprint, via)

    @property
    def is_root(self) -> bool:
        return self.user == "root"

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"
