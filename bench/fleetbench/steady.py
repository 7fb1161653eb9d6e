"""Steady state: passes over converged nodes with nothing to do, counted on the hosts (sshd
session lines) and by the emulator (audit log), with the CPU each side spent (`hostcpu`).

Two honest triggers, both through the spec a user edits:
* wake pass: a change of the cluster's `driftCheckInterval` wakes every node's timer; each node
  then runs one full pass. Clock: the patch → the last host's session closed.
* drift passes: with `driftCheckInterval` = D, each node runs its next pass D after its own
  (wake) pass ended, plus up to one tick. The window is measured per host: it stays open until
  every host has had its drift pass (the first burst of sessions after its wake pass), or until
  a deadline sized from D, the tick and the wake pass's spread; a host without one is a failure.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetbench import hostcpu
from fleetbench.fleet import CLUSTER, Fleet
from fleetbench.operator_proc import BENCH_USER_AGENT, writes

BURST_GAP = 1.0  # sessions of one host closer than this belong to the same pass
WAKE_TIMEOUT = 60.0  # + 0.1 s per host: patch → every host's session closed


@dataclass
class PassResult:
    hosts: int
    kind: str  # wake | drift
    seconds: float  # wake: patch → last host's session closed; drift: the window length
    passes: int  # passes seen on the hosts (bursts of sessions)
    sessions: int  # SSH sessions (exec/sftp channels) on the hosts
    max_per_pass: int  # most sessions in one host's pass
    hosts_missed: int  # hosts with no pass in the window
    node_writes: int  # API writes other than to the RKE2Cluster (node status, Events, Secrets)
    writes_by_kind: dict[str, int] = field(default_factory=dict)  # every write, e.g. 'patch rke2clusters/status'
    missed: list[str] = field(default_factory=list)  # names of (up to 10) hosts without a pass
    operator_cpu_s: float = 0.0  # the operator process's CPU over `seconds`
    hosts_cpu_s: float = 0.0  # the hosts' sshds and everything they ran, over `seconds`
    machine_busy_s: float = 0.0  # all cores busy over `seconds` (anything on the machine)
    machine_total_s: float = 0.0  # cores x `seconds`
    operator_idle_cpu_per_s: float = 0.0  # the operator's CPU per second while nothing was due

    @property
    def per_pass(self) -> float:
        return self.sessions / self.passes if self.passes else 0.0


def bursts(times: list[float]) -> list[list[float]]:
    out: list[list[float]] = []
    for t in sorted(times):
        if out and t - out[-1][-1] < BURST_GAP:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def classify_writes(entries: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
    """(writes not to an RKE2Cluster, every write by 'verb resource[/subresource]').

    Writes by the bench's own client (the spec patch that triggers a pass) are left out.
    """
    node, kinds = 0, Counter[str]()
    for e in writes(entries):
        if e.get("userAgent") == BENCH_USER_AGENT:
            continue
        resource = str(e.get("resource"))
        kinds[f"{e['verb']} {resource}{'/' + e['subresource'] if e.get('subresource') else ''}"] += 1
        if resource != "rke2clusters":
            node += 1
    return node, dict(kinds)


def cpu_now(fleet: Fleet) -> hostcpu.CpuSample:
    assert fleet.sshds is not None
    return hostcpu.sample(fleet.operator.pid if fleet.operator else None, fleet.sshds.pids())


def wait_quiet(fleet: Fleet, quiet: float, timeout: float) -> None:
    """Until no host has seen an SSH session for `quiet` seconds."""
    assert fleet.sshds is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recent = fleet.sshds.log.since(time.monotonic() - quiet)
        if not any(recent.values()):
            return
        time.sleep(0.25)
    raise TimeoutError(f"the hosts never went quiet for {quiet}s")


def idle_cpu_rate(fleet: Fleet, seconds: float) -> float:
    """The operator's CPU per second while no pass is due (its timers and watches)."""
    c0, t0 = cpu_now(fleet).operator_s, time.monotonic()
    time.sleep(seconds)
    return (cpu_now(fleet).operator_s - c0) / (time.monotonic() - t0)


def await_pass(fleet: Fleet, t0: float, timeout: float) -> float:
    """Until every host had a session since `t0` and every session started has closed (at 500
    hosts the last sessions close seconds after the last one started); returns that time."""
    assert fleet.sshds is not None
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        seen, ended = fleet.sshds.log.since(t0), fleet.sshds.log.ended_since(t0)
        if all(seen.values()) and all(len(ended.get(h, ())) >= len(ts) for h, ts in seen.items()):
            break
        time.sleep(0.05)
    # Done when the last host's session closed (its start if sshd logged no close).
    ends = [max(ts) for ts in fleet.sshds.log.ended_since(t0).values() if ts]
    firsts = [min(ts) for ts in fleet.sshds.log.since(t0).values() if ts]
    return max(ends + firsts) if firsts else time.monotonic()


def _summarise(fleet: Fleet, kind: str, seconds: float, groups: dict[str, list[list[float]]],
               audit: list[dict[str, Any]], cpu: hostcpu.CpuSample) -> PassResult:
    node_writes, other = classify_writes(audit)
    return PassResult(
        hosts=len(fleet.sb.hosts), kind=kind, seconds=seconds,
        passes=sum(len(g) for g in groups.values()),
        sessions=sum(len(b) for g in groups.values() for b in g),
        max_per_pass=max((len(b) for g in groups.values() for b in g), default=0),
        hosts_missed=sum(1 for g in groups.values() if not g),
        missed=sorted(h for h, g in groups.items() if not g)[:10],
        node_writes=node_writes, writes_by_kind=other,
        operator_cpu_s=cpu.operator_s, hosts_cpu_s=cpu.hosts_s,
        machine_busy_s=cpu.machine_busy_s, machine_total_s=cpu.machine_total_s,
    )  # fmt: skip


def start_profile(fleet: Fleet, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (100 Hz, speedscope JSON) on the operator until `stop_profile`."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if fleet.operator is None or not Path(spy).exists():
        return None
    proc = subprocess.Popen(
        [spy, "record", "--nonblocking", "-r", "100", "--format", "speedscope", "-o", str(out),
         "--pid", str(fleet.operator.pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)  # py-spy attached
    return proc


def stop_profile(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wake_pass(fleet: Fleet, node_tick: float, new_interval: str, profile: Path | None = None) -> PassResult:
    """`profile`: py-spy the operator over the pass into this file."""
    assert fleet.sshds is not None
    wait_quiet(fleet, quiet=node_tick + 1.0, timeout=120 + 0.2 * len(fleet.sb.hosts))
    idle = idle_cpu_rate(fleet, 2 * node_tick)
    spy = start_profile(fleet, profile) if profile else None
    fleet.kube.reset_audit()
    c0, t0 = cpu_now(fleet), time.monotonic()
    fleet.kube.patch_spec("rke2clusters", CLUSTER, {"driftCheckInterval": new_interval})
    done = await_pass(fleet, t0, WAKE_TIMEOUT + 0.1 * len(fleet.sb.hosts) + node_tick)
    cpu = cpu_now(fleet) - c0
    stop_profile(spy)
    time.sleep(BURST_GAP + 0.5)  # a pass's follow-up commands, if any, land in its burst
    groups = {h: bursts(ts) for h, ts in fleet.sshds.log.since(t0).items()}
    res = _summarise(fleet, "wake", done - t0, groups, fleet.kube.audit(), cpu)
    res.operator_idle_cpu_per_s = idle
    return res


def drift_window(fleet: Fleet, node_tick: float, interval: float) -> PassResult:
    """Set `driftCheckInterval` to `interval`; after each host's wake pass, wait for its next pass.

    The window opens when the wake pass is over and closes when every host has had its drift
    pass (and its sessions closed), at the latest `interval` + tick + the wake's spread + 10 s
    later. Commands are counted in each host's drift pass (the burst after its wake burst, which
    may start before the window opens when the wake pass outlasts the interval); API writes are
    those after the wake pass, plus the node writes during it when some drift pass started then."""
    assert fleet.sshds is not None
    tp = time.monotonic()
    fleet.kube.patch_spec("rke2clusters", CLUSTER, {"driftCheckInterval": f"{interval:g}s"})
    wake_end = await_pass(fleet, tp, WAKE_TIMEOUT + 0.1 * len(fleet.sb.hosts) + node_tick)
    time.sleep(max(0.0, wake_end + BURST_GAP + 0.5 - time.monotonic()))
    n0 = len(fleet.kube.audit())
    c0, t0 = cpu_now(fleet), time.monotonic()
    deadline = t0 + interval + node_tick + (wake_end - tp) + 10.0
    while time.monotonic() < deadline:
        drift = _drift_passes(fleet, tp)
        if all(drift.values()) and time.monotonic() - max(b[-1] for g in drift.values() for b in g) > BURST_GAP:
            break
        time.sleep(0.1)
    end = time.monotonic()
    cpu = cpu_now(fleet) - c0
    audit = fleet.kube.audit()
    groups = _drift_passes(fleet, tp)
    res = _summarise(fleet, "drift", end - t0, groups, audit[n0:], cpu)
    early = classify_writes(audit[:n0])[0]
    if early and any(b[0] < t0 for g in groups.values() for b in g):
        res.node_writes += early  # drift passes ran before the window opened: theirs may be among them
        res.writes_by_kind["node writes before the window (wake and early drift passes)"] = early
    elif early:
        res.writes_by_kind["node writes in the drift patch's wake pass (not counted)"] = early
    return res


def _drift_passes(fleet: Fleet, since: float) -> dict[str, list[list[float]]]:
    """Per host, its drift pass: the first burst of sessions after its wake burst (or nothing)."""
    assert fleet.sshds is not None
    return {h: bursts(ts)[1:2] for h, ts in fleet.sshds.log.since(since).items()}
