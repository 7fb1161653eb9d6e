"""The steady-state rows of the benchmark's table: per scale, and linearity between scales."""

from __future__ import annotations

import os

from fleetbench.steady import PassResult

Row = tuple[str, str, str]


def _cpu(p: PassResult) -> str:
    cores = os.cpu_count() or 1
    out = (
        f"CPU: operator {p.operator_cpu_s:.2f} s ({p.operator_cpu_s / max(1, p.hosts) * 1000:.1f} ms/host), "
        f"hosts' sshds and commands {p.hosts_cpu_s:.2f} s ({p.hosts_cpu_s / max(1, p.hosts) * 1000:.1f} ms/host), "
        f"machine busy {p.machine_busy_s:.1f} of {p.machine_total_s:.1f} core-s"
    )
    if p.kind == "wake":
        # What the hosts' side of the pass measured in this run costs on these cores, and with the operator.
        out += (
            f"; measured floor: hosts {p.hosts_cpu_s / cores:.2f} s, "
            f"hosts + operator {(p.hosts_cpu_s + p.operator_cpu_s) / cores:.2f} s on {cores} cores; "
            f"operator idle {p.operator_idle_cpu_per_s * 1000:.0f} ms CPU/s"
        )
    return out


def pass_row(p: PassResult, facts_floor_s: float) -> Row:
    missed = f", {p.hosts_missed} hosts without a pass" if p.hosts_missed else ""
    by_kind = "; ".join(f"{n} {k}" for k, n in sorted(p.writes_by_kind.items())) or "none"
    value = (
        f"{p.per_pass:.2f} cmd/node/pass (max {p.max_per_pass}), API writes: {by_kind}, "
        f"{p.passes} passes{missed}"
    )
    if p.kind == "wake":
        # Every host's facts command runs on this machine's cores: N x cost / cores at best.
        floor = p.hosts * facts_floor_s / (os.cpu_count() or 1)
        value += f", trigger → last host done {p.seconds:.2f} s (host-CPU floor {floor:.2f} s)"
    else:
        value += f", window {p.seconds:.1f} s (until every host had its pass)"
    value += "; " + _cpu(p)
    target = "≤ 1 cmd, 0 writes" + (", ≤ 2 s at 50" if p.kind == "wake" else ", every host")
    return (f"steady {p.kind} pass, {p.hosts} hosts", value, target)


def linearity_row(passes: list[PassResult]) -> Row | None:
    """Per-host cost at the largest scale over the smallest, for the wake pass (1.00 = linear)."""
    wakes = sorted((p for p in passes if p.kind == "wake"), key=lambda p: p.hosts)
    if len(wakes) < 2 or wakes[0].hosts == wakes[-1].hosts:
        return None
    a, b = wakes[0], wakes[-1]

    def ratio(x: float, y: float) -> str:
        return f"{(y / b.hosts) / (x / a.hosts):.2f}" if x > 0 and y > 0 else "n/a"

    value = (
        f"per-host cost at {b.hosts} / at {a.hosts} hosts: wall time {ratio(a.seconds, b.seconds)} "
        f"({a.seconds / a.hosts * 1000:.1f} → {b.seconds / b.hosts * 1000:.1f} ms/host), operator CPU "
        f"{ratio(a.operator_cpu_s, b.operator_cpu_s)}, hosts' CPU {ratio(a.hosts_cpu_s, b.hosts_cpu_s)}, "
        f"measured floor (hosts + operator CPU / cores) "
        f"{ratio(a.hosts_cpu_s + a.operator_cpu_s, b.hosts_cpu_s + b.operator_cpu_s)}"
    )
    return (f"steady wake pass: linearity {a.hosts} → {b.hosts} hosts", value, "≈ 1.00 (linear)")


def steady_rows(passes: list[PassResult], facts_floor_s: float) -> list[Row]:
    out = [pass_row(p, facts_floor_s) for p in passes]
    lin = linearity_row(passes)
    out += [lin] if lin else []
    out += [("FAILED", f"steady {p.kind} pass, {p.hosts} hosts: {p.hosts_missed} hosts without a pass "
             f"({', '.join(p.missed)}{', …' if p.hosts_missed > len(p.missed) else ''})", "")
            for p in passes if p.hosts_missed]  # fmt: skip
    return out
