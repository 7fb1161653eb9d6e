"""Host fault switches: sshd stopped / killed / restarted, a host frozen, a host key replaced,
the service-start faults the stand-ins read from the host's faults directory (start failure and
delays, a broken CNI, the Node's ready delay) and aged certificates.

Freezing stops (SIGSTOP) every process of the host's mount namespace: the kernel still
completes TCP handshakes on sshd's listening socket, so new connections and open sessions
*hang* instead of failing, as with a host that stopped answering.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import TYPE_CHECKING

from rke2fleet_sandbox import hostfaults
from rke2fleet_sandbox import hosts as H
from rke2fleet_sandbox.state import SandboxHost

if TYPE_CHECKING:
    from rke2fleet_sandbox.world import Sandbox

SSHD_RESTART_TIMEOUT = 10.0


def stop_sshd(sandbox: Sandbox, host: SandboxHost) -> None:
    """SIGTERM the listening sshd (open sessions survive, as with `systemctl stop ssh`)."""
    if host.sshd is not None:
        H.stop_process(host.sshd, signal.SIGTERM)
        host.sshd = None
        sandbox.save()


def kill_sshd(sandbox: Sandbox, host: SandboxHost) -> None:
    """SIGKILL the listening sshd: connections are refused from now on."""
    if host.sshd is not None:
        H.stop_process(host.sshd, signal.SIGKILL)
        host.sshd = None
        sandbox.save()


def start_sshd(sandbox: Sandbox, host: SandboxHost) -> None:
    """Start sshd again (no-op while it runs) and wait until it answers."""
    if host.sshd is not None and host.sshd.alive():
        return
    proc = H.start_sshd(sandbox.layout, host)
    host.sshd = sandbox._adopt(proc)
    sandbox.save()
    deadline = time.monotonic() + SSHD_RESTART_TIMEOUT
    H.wait_listening(host.address, host.port, deadline, proc, netns_pid=H.reach_from(host))


def freeze(sandbox: Sandbox, host: SandboxHost) -> None:
    """SIGSTOP every process of the host: it stops answering, connections hang."""
    H.signal_namespace(host, signal.SIGSTOP)


def thaw(sandbox: Sandbox, host: SandboxHost) -> None:
    """SIGCONT every process of the host: hung connections resume."""
    H.signal_namespace(host, signal.SIGCONT)


def replace_host_key(sandbox: Sandbox, host: SandboxHost) -> str:
    """Give the host a new host key (as a re-imaged or impersonated host has) and restart sshd.

    Returns the new public key line; `sandbox.json` is updated.
    """
    H.generate_key(H.host_key_path(sandbox.layout, host.name), host.name)
    host.host_key_line = H.public_key_line(H.host_key_path(sandbox.layout, host.name).with_suffix(".pub"))
    stop_sshd(sandbox, host)
    start_sshd(sandbox, host)
    return host.host_key_line


def fail_next_start(host: SandboxHost, enabled: bool = True) -> None:
    """The next start of the host's rke2 service fails (consumed by that start)."""
    hostfaults.fail_next_start(host.faults_dir, enabled)


def set_start_delay(host: SandboxHost, seconds: float | None) -> None:
    """The host's rke2 service takes `seconds` to become ready (None or 0: no delay)."""
    hostfaults.set_start_delay(host.faults_dir, seconds)


def break_cni(host: SandboxHost, enabled: bool = True) -> None:
    """The host's Node stays NotReady (CNI not initialized) while its rke2 unit is active."""
    hostfaults.break_cni(host.faults_dir, enabled)


def set_node_ready_delay(host: SandboxHost, seconds: float | None) -> None:
    """From the next start of its rke2 service, the host's Node becomes Ready `seconds` after the
    unit is active (None: the sandbox's `node_ready_delay` again)."""
    hostfaults.set_node_ready_delay(host.faults_dir, seconds)


def age_certificates(sandbox: Sandbox, host: SandboxHost, days: float, data_dir: str | None = None) -> str:
    """Move both dates of the host's RKE2 leaf certificates `days` back (rewritten inside the host);
    returns what was aged (one `<file> notAfter <date>` line per certificate)."""
    cmd = hostfaults.age_certificates_command(sys.executable, H.STANDINS_DIR, days, data_dir)
    result = H.run_on_host(host, cmd, timeout=60)
    if result.returncode != 0:
        raise H.SandboxError(f"host {host.name}: ageing certificates failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode()
