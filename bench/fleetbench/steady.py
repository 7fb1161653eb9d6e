"""Steady state: passes over converged nodes with nothing to do, counted on the hosts (sshd
session lines) and by the emulator (audit log).

Two honest triggers, both through the spec a user edits:
* wake pass: a change of the cluster's `driftCheckInterval` wakes every node's timer; each node
  then runs one full pass at its next tick. Clock: the patch → the last host's session closed
  (so it holds up to one node tick of waiting for the timers, by design of the timers).
* drift window: with `driftCheckInterval` = D, each node runs one pass per D (+ up to one tick);
  a window of D + tick, opened once the wake pass is over, holds about one pass per node.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fleetbench.fleet import CLUSTER, Fleet
from fleetbench.operator_proc import BENCH_USER_AGENT, writes

BURST_GAP = 1.0  # sessions of one host closer than this belong to the same pass


@dataclass
class PassResult:
    hosts: int
    kind: str  # wake | drift
    seconds: float  # wake: patch → last host's session closed; drift: the window length
    passes: int  # passes seen on the hosts (bursts of sessions)
    sessions: int  # SSH sessions (exec/sftp channels) on the hosts
    max_per_pass: int  # most sessions in one host's pass
    hosts_missed: int  # hosts with no session in the window
    node_writes: int  # API writes other than to the RKE2Cluster (node status, Events, Secrets)
    writes_by_kind: dict[str, int] = field(default_factory=dict)  # every write, e.g. 'patch rke2clusters/status'

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


def _summarise(fleet: Fleet, kind: str, seconds: float, per_host: dict[str, list[float]],
               audit: list[dict[str, Any]]) -> PassResult:
    groups = {h: bursts(ts) for h, ts in per_host.items()}
    node_writes, other = classify_writes(audit)
    return PassResult(
        hosts=len(fleet.sb.hosts), kind=kind, seconds=seconds,
        passes=sum(len(g) for g in groups.values()),
        sessions=sum(len(ts) for ts in per_host.values()),
        max_per_pass=max((len(b) for g in groups.values() for b in g), default=0),
        hosts_missed=sum(1 for ts in per_host.values() if not ts),
        node_writes=node_writes, writes_by_kind=other,
    )  # fmt: skip


def wake_pass(fleet: Fleet, node_tick: float, new_interval: str) -> PassResult:
    assert fleet.sshds is not None
    wait_quiet(fleet, quiet=node_tick + 1.0, timeout=120)
    fleet.kube.reset_audit()
    t0 = time.monotonic()
    fleet.kube.patch_spec("rke2clusters", CLUSTER, {"driftCheckInterval": new_interval})
    deadline = t0 + 60 + node_tick
    while time.monotonic() < deadline:
        seen, ended = fleet.sshds.log.since(t0), fleet.sshds.log.ended_since(t0)
        # every host had its session, and every session started has closed (at 200 hosts the
        # last sessions close seconds after the last one started)
        if all(seen.values()) and all(len(ended.get(h, ())) >= len(ts) for h, ts in seen.items()):
            break
        time.sleep(0.05)
    time.sleep(BURST_GAP + 0.5)  # a pass's follow-up commands, if any, land in its burst
    per_host = fleet.sshds.log.since(t0)
    # Done when the last host's session closed (its start if sshd logged no close).
    ends = [max(ts) for ts in fleet.sshds.log.ended_since(t0).values() if ts]
    firsts = [min(ts) for ts in per_host.values() if ts]
    done = max(ends + firsts) if firsts else float("nan")
    return _summarise(fleet, "wake", done - t0, per_host, fleet.kube.audit())


def drift_window(fleet: Fleet, node_tick: float, interval: float) -> PassResult:
    """Set `driftCheckInterval` to `interval`, let the wake pass end, then watch one interval + tick."""
    assert fleet.sshds is not None
    fleet.kube.patch_spec("rke2clusters", CLUSTER, {"driftCheckInterval": f"{interval:g}s"})
    time.sleep(node_tick + 2 * BURST_GAP + 1.0)
    fleet.kube.reset_audit()
    t0 = time.monotonic()
    length = interval + node_tick
    time.sleep(length)
    per_host = fleet.sshds.log.since(t0, t0 + length)
    return _summarise(fleet, "drift", length, per_host, fleet.kube.audit())
