"""CPU spent during a steady pass, read from /proc: the operator process, the hosts' sshd trees
(every session and the commands it ran) and the whole machine.

A process's `cutime`/`cstime` hold the CPU of the children it has reaped (and of theirs), so the
CPU of everything an sshd listener ever started is the sum, over its live tree, of each process's
own time plus its reaped children's. The operator keeps one connection per host open, so its
sessions' commands are reaped by a live `sshd: root@notty`, not by the listener: the whole tree
must be walked. A pass's host-side CPU is the growth of that sum over the pass.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    operator_s: float = 0.0  # the operator process (all threads)
    hosts_s: float = 0.0  # the hosts' sshd listeners and all they started (sessions, facts commands)
    machine_busy_s: float = 0.0  # every core, every process (other engineers' work included)
    machine_total_s: float = 0.0  # busy + idle, summed over the cores

    def __sub__(self, other: CpuSample) -> CpuSample:
        return CpuSample(self.operator_s - other.operator_s, self.hosts_s - other.hosts_s,
                         self.machine_busy_s - other.machine_busy_s,
                         self.machine_total_s - other.machine_total_s)  # fmt: skip


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime + cutime + cstime in ticks), or None if the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def tree_cpu_s(roots: Iterable[int]) -> float:
    """CPU seconds of the process trees under `roots`: live processes and everything they reaped."""
    children: dict[int, list[int]] = defaultdict(list)
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                children[st[0]].append(int(entry.name))
                ticks[int(entry.name)] = st[1]
    total, todo, seen = 0, [r for r in roots if r in ticks], set[int]()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += ticks.get(pid, 0)
        todo += children.get(pid, [])
    return total / TICK


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return (total - idle) / TICK, total / TICK


def own_cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), not its children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def sample(operator_pid: int | None, sshd_pids: Iterable[int]) -> CpuSample:
    busy, total = machine_cpu_s()
    operator = own_cpu_s(operator_pid) if operator_pid else 0.0
    return CpuSample(operator, tree_cpu_s(sshd_pids), busy, total)
