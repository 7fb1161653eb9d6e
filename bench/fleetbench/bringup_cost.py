"""What a bring-up costs each host: SSH commands (sessions counted by its sshd) and CPU.

CPU is read from /proc over every live process of the host's mount namespace: user + system
time, plus that of its reaped children (`cutime`/`cstime`: sshd waits for its sessions, a session
for its commands, the unit supervisor for the rke2 daemon, so finished commands are counted in
their live ancestors). Taken at the start and at the end of the converge; the difference is the
bring-up's. What a process reparented out of the host (a double fork) spent after its parent
ended and before it died is missed, alike for every tool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rke2fleet_sandbox import hosts as H
from rke2fleet_sandbox.world import Sandbox

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICK  # utime stime cutime cstime


def host_cpu(sandbox: Sandbox) -> dict[str, float]:
    """CPU seconds of each host's processes and their reaped descendants, by host name."""
    by_ns = H.pids_in_namespaces(h.mnt_ns for h in sandbox.hosts)
    return {h.name: sum(_cpu(pid) for pid in by_ns.get(h.mnt_ns, [])) for h in sandbox.hosts}


@dataclass(frozen=True)
class RoleCost:
    role: str
    nodes: int
    commands: float  # SSH commands per node (mean)
    max_commands: int
    cpu_ms: float  # host CPU per node (mean)


def role_costs(sandbox: Sandbox, sessions: dict[str, list[float]], before: dict[str, float],
               after: dict[str, float]) -> list[RoleCost]:  # fmt: skip
    """Per role: SSH commands and host CPU per node between two `host_cpu` readings."""
    out = []
    for role in ("server", "agent"):
        names = [h.name for h in sandbox.hosts if h.role == role]
        if not names:
            continue
        counts = [len(sessions.get(n, [])) for n in names]
        cpu = [after.get(n, 0.0) - before.get(n, 0.0) for n in names]
        out.append(RoleCost(role, len(names), sum(counts) / len(names), max(counts), 1000 * sum(cpu) / len(names)))
    return out


def describe(costs: list[RoleCost]) -> str:
    return "; ".join(
        f"{c.role}s: {c.commands:.1f} cmd/node (max {c.max_commands}), host CPU {c.cpu_ms:.0f} ms/node" for c in costs
    )
