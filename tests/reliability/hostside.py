"""What the hosts themselves say: sshd's log (logins), files, processes. Never asked over SSH,
so counting does not disturb what is counted."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from pydantic import SecretBytes

from rke2fleet.hostaccess import HostTarget
from rke2fleet_sandbox.state import SandboxHost
from rke2fleet_sandbox.world import Sandbox

ACCEPTED = "Accepted publickey"  # sshd logs it at LogLevel INFO for every authenticated login


def sshd_log(sb: Sandbox, host: SandboxHost | str) -> str:
    name = host if isinstance(host, str) else host.name
    path = sb.layout.logs / f"{name}.sshd.log"
    return path.read_text(errors="replace") if path.exists() else ""


def logins(sb: Sandbox, host: SandboxHost | str) -> int:
    """Authenticated SSH connections the host accepted so far."""
    return sshd_log(sb, host).count(ACCEPTED)


def all_logins(sb: Sandbox) -> dict[str, int]:
    return {h.name: logins(sb, h) for h in sb.hosts}


def sh(sb: Sandbox, host: SandboxHost | str, command: str) -> str:
    """A shell command inside the host's namespaces (not over SSH)."""
    out = sb.run_on_host(host, command).stdout
    return out.decode(errors="replace") if isinstance(out, bytes) else str(out)


def drop_sessions(sb: Sandbox, host: SandboxHost | str) -> int:
    """SIGKILL the host's sshd session processes (not the listener): every open connection dies
    at once, as when the network cuts it. Returns how many were killed."""
    h = sb.host(host if isinstance(host, str) else host.name)
    listener = h.sshd.pid if h.sshd else None
    killed = 0
    for pid in sb.host_pids(h.name):
        with contextlib.suppress(OSError):
            if pid != listener and Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def target_for(sb: Sandbox, host: SandboxHost, **overrides: object) -> HostTarget:
    """How the operator would reach this host (pinned key, the sandbox's client key)."""
    fields: dict[str, object] = {
        "address": host.address,
        "port": host.port,
        "user": host.user,
        "private_key": SecretBytes(sb.client_key_pem().encode()),
        "pinned_keys": (host.host_key_line,),
        "connect_timeout": 3.0,
        "command_timeout": 20.0,
    }
    fields.update(overrides)
    return HostTarget(**fields)  # type: ignore[arg-type]
