"""The benchmark's table: plain text for the terminal, Markdown for BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from fleetbench.bringup_cost import describe
from fleetbench.converge import ConvergeResult, Floor
from fleetbench.load import LoadResult
from fleetbench.steady import PassResult
from fleetbench.steady_report import steady_rows


@dataclass
class Results:
    floor: Floor | None = None
    converge_shape: tuple[int, int] = (0, 0)  # servers, agents
    facts_floor_s: float = 0.0
    converge: list[ConvergeResult] = field(default_factory=list)
    steady: list[PassResult] = field(default_factory=list)
    load: list[LoadResult] = field(default_factory=list)  # operator and Kopf-floor runs, in run order
    settings: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                          if ln.startswith("MemTotal")).split()[1])  # fmt: skip
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    memory = f"{mem_kb / 1024 / 1024:.1f} GiB RAM"
    return f"{os.cpu_count()} cores ({model}), {memory}, {platform.system()} {platform.release()}"


def rows(r: Results) -> list[tuple[str, str, str]]:
    """(measure, value, target) rows."""
    out: list[tuple[str, str, str]] = [("machine", machine(), ""), *((k, v, "") for k, v in r.settings.items())]
    if r.floor:
        out.append(("floor: install script, 1 idle host (no SSH)", f"{r.floor.install_s:.2f} s", ""))
        out.append(("floor: one `systemctl start` → active, 1 host", f"{r.floor.start_s:.2f} s", ""))
        servers, agents = r.converge_shape
        if servers or agents:
            value = f"{r.floor.converge_s(servers, agents, os.cpu_count() or 1):.1f} s"
            out.append((f"floor: host work of a {servers}+{agents} converge on these cores", value, ""))
    out.append(("floor: the facts command on 1 host (no SSH)", f"{r.facts_floor_s * 1000:.0f} ms", ""))
    for c in r.converge:
        value = f"{c.seconds:.1f} s (hosts ready {c.hosts_ready_seconds:.1f} s)"
        value += f"; {describe(c.costs)}" if c.costs else ""
        value += f"; {c.timeline}" if c.timeline else ""
        out.append((f"converge round {c.round}: {c.tool}", value, ""))
    mean = {t: _mean([c.seconds for c in r.converge if c.tool == t]) for t in ("operator", "ansible", "floor")}
    if mean["operator"] and mean["floor"]:
        ratio = mean["operator"] / mean["floor"]
        out.append(("converge: operator / floor (mean wall times)", f"{ratio:.2f}x", "<= 1.2x"))
    if mean["operator"] and mean["ansible"]:
        ratio = mean["ansible"] / mean["operator"]
        out.append(("converge: Ansible / operator (mean wall times)", f"{ratio:.2f}x", ">= 5x"))
    out += steady_rows(r.steady, r.facts_floor_s)
    out += [("FAILED", f, "") for f in r.failures]
    return out + load_rows(r.load)


def load_rows(loads: list[LoadResult]) -> list[tuple[str, str, str]]:
    """The operator's control-plane load runs and the Kopf floor's, in run order."""
    out: list[tuple[str, str, str]] = []
    rounds = len({ld.round for ld in loads}) > 1
    for ld in loads:
        value = (
            f"peak RSS {ld.peak_rss_mb:.0f} MB, CPU {ld.cpu_s:.1f} s ({ld.burst_cpu_s:.1f} s in the burst), "
            f"loop lag p50 {ld.lag_p50_ms:.1f} ms / p99 {ld.lag_p99_ms:.1f} ms "
            f"(max {ld.lag_max_ms:.0f} ms, {ld.probes} probes); paused nodes done in {ld.paused_s:.1f} s "
            f"(p99 until then {ld.burst_p99_ms:.1f} ms)"
        )
        if ld.subject == "operator":
            value += f", live cluster Ready in {ld.seconds:.1f} s"
        if ld.window_s > ld.seconds + 0.5:
            value += f", probed {ld.window_s:.1f} s (the operator's window)"
        writes = ", ".join(f"{n} {k}" for k, n in sorted(ld.writes_by_kind.items()))
        value += f"; API writes: {writes} ({ld.writes_after_burst} after the paused nodes were done)"
        if ld.parked_nodes:
            per = ld.parked_writes / ld.parked_nodes
            value += f"; {ld.parked_writes} writes to {ld.parked_nodes} paused nodes = {per:.2f} per node"
        value += f"; machine load average {ld.load_average[0]:.1f} → {ld.load_average[1]:.1f}"
        suffix = f", round {ld.round}" if rounds else ""
        if ld.subject == "floor":
            out.append((f"floor: Kopf alone, same {ld.objects} objects (tick {ld.node_tick:g} s){suffix}", value, ""))
        elif ld.subject == "watch":
            value = value.replace("paused nodes done in", "idle after")
            out.append((f"floor: Kopf watching only, same {ld.objects} objects{suffix}", value, ""))
        else:
            live = f"{ld.live_hosts} live at nice {ld.hosts_nice}"
            label = f"control plane: {ld.objects} RKE2Nodes ({live}, tick {ld.node_tick:g} s){suffix}"
            if ld.shards > 1:
                label = f"control plane: shard 0/{ld.shards} of {ld.objects} RKE2Nodes ({live})"
            out.append((label, value, "RSS < 150 MB, p99 <= 1.5x the watch-only floor"))
    return out + lag_ratio_rows(loads)


def lag_ratio_rows(loads: list[LoadResult]) -> list[tuple[str, str, str]]:
    """Per round: the operator's loop-lag p99 over the watch-only floor's, both over one window."""
    out: list[tuple[str, str, str]] = []
    for rnd in sorted({ld.round for ld in loads}):
        ours = next((ld for ld in loads if ld.round == rnd and ld.subject == "operator" and ld.shards <= 1), None)
        floor = next((ld for ld in loads if ld.round == rnd and ld.subject == "watch"), None)
        if ours is None or floor is None or not floor.lag_p99_ms:
            continue
        ratio = ours.lag_p99_ms / floor.lag_p99_ms
        burst = ours.burst_p99_ms / floor.burst_p99_ms if floor.burst_p99_ms else float("nan")
        value = (f"{ratio:.2f}x over the window ({ours.lag_p99_ms:.1f} / {floor.lag_p99_ms:.1f} ms), "
                 f"{burst:.2f}x in the burst ({ours.burst_p99_ms:.1f} / {floor.burst_p99_ms:.1f} ms)")  # fmt: skip
        out.append((f"loop lag p99: operator / watch-only floor, round {rnd}", value, "<= 1.5x"))
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def text_table(r: Results) -> str:
    data = rows(r)
    w0 = max(len(a) for a, _, _ in data)
    lines = [f"{a:<{w0}}  {b}" + (f"   [target {c}]" if c else "") for a, b, c in data]
    return "\n".join(lines)


def markdown_table(r: Results) -> str:
    lines = ["| measure | value | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(r)]
    return "\n".join(lines) + "\n"
