"""Control-plane load: many RKE2Node objects, most in a paused cluster (no SSH for them).

Event-loop lag cannot be measured inside the operator without changing it, so it is measured
from outside: Kopf's liveness endpoint (`--health-port`) is served by aiohttp ON the operator's
event loop, so its response time while the objects are processed is the loop-lag proxy (it adds
one local HTTP round trip, about a millisecond). Peak RSS is VmHWM from /proc/<pid>/status.

The same scenario and measurement run on the Kopf floor (`kopf_floor_operator.py`: Kopf alone on
our kinds) give the lag that Kopf's own per-object processing costs on this machine.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetbench.fleet import CLUSTER, Fleet
from fleetbench.operator_proc import BENCH_USER_AGENT, KopfFloorProcess, KopfWatchProcess, OperatorProcess, writes
from fleetbench.steady import classify_writes
from rke2fleet import API_VERSION
from rke2fleet.handlers.shards import shard_of
from rke2fleet.reconcile.tokens import generate_token

PARKED = "parked"
PARKED_PER_CLUSTER = 100  # paused clusters of this many nodes (spread over shards by cluster)
PROBE_PERIOD = 0.010
SUBJECTS: dict[str, type[OperatorProcess]] = {
    "operator": OperatorProcess,
    "floor": KopfFloorProcess,
    "watch": KopfWatchProcess,
}
PROFILE_SECONDS = 20


@dataclass(frozen=True)
class LoadResult:
    subject: str  # "operator", "floor" (Kopf alone) or "watch" (Kopf watching and indexing only)
    round: int
    node_tick: float
    objects: int
    live_hosts: int
    hosts_nice: int  # the hosts' nice value (0: the operator's priority)
    shards: int  # > 1: the operator ran as shard 0 of this many
    # operator start → every paused node shows Paused and (operator only: the floor does not
    # bring hosts up) the live cluster is Ready
    seconds: float
    paused_s: float  # start → every paused node shows Paused (Kopf's start-up burst is over)
    window_s: float  # how long the probe ran: `seconds`, or longer to match another run's window
    peak_rss_mb: float
    cpu_s: float  # the subject's CPU time (user + system) from start to the end of the window
    burst_cpu_s: float  # … from start until the paused nodes were done
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    burst_p99_ms: float  # p99 of the probes started before `paused_s`
    probes: int
    probe_failures: int
    load_average: tuple[float, float]  # the machine's 1-minute load average at start and at end
    # API writes of the subject over the window ('patch rke2nodes/status': n, …), and how many of
    # them came after the paused nodes were done
    writes_by_kind: dict[str, int]
    writes_after_burst: int
    # API writes to the paused nodes it handles (first sight: finalizer, annotations, status…),
    # and how many such nodes there are
    parked_writes: int = 0
    parked_nodes: int = 0


class LoopProbe(threading.Thread):
    """GET the liveness URL every 10 ms; response times once it first answers."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="loop-probe")
        self.url = url
        self.samples: list[float] = []
        self.times: list[float] = []  # time.monotonic() at each sample's start
        self.failures = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            t0, started = time.perf_counter(), time.monotonic()
            try:
                urllib.request.urlopen(self.url, timeout=5).read()  # noqa: S310 -- local probe URL
                self.samples.append(time.perf_counter() - t0)
                self.times.append(started)
            except (urllib.error.URLError, OSError):
                if self.samples:
                    self.failures += 1
            self.stopped.wait(max(0.0, PROBE_PERIOD - (time.perf_counter() - t0)))


def parked_docs(count: int, host_key: str) -> list[dict[str, Any]]:
    """Paused clusters of PARKED_PER_CLUSTER nodes, `count` nodes in all, on addresses nothing
    listens on (never contacted)."""
    docs: list[dict[str, Any]] = []
    for first in range(0, count, PARKED_PER_CLUSTER):
        name = f"{PARKED}-{first // PARKED_PER_CLUSTER:03d}"
        docs.append({
            "apiVersion": API_VERSION, "kind": "RKE2Cluster", "metadata": {"name": name, "namespace": "default"},
            "spec": {"version": "v1.35.7+rke2r1", "paused": True, "registrationAddress": "10.255.0.1",
                     "ssh": {"privateKeySecretRef": {"name": "fleet-ssh", "key": "ssh-privatekey"}}},
        })  # fmt: skip
        docs += [
            {"apiVersion": API_VERSION, "kind": "RKE2Node",
             "metadata": {"name": f"{PARKED}-{i:05d}", "namespace": "default"},
             "spec": {"cluster": name, "role": "server" if i - first < 3 else "agent",
                      "address": f"10.255.{i // 250}.{i % 250 + 2}", "hostKey": host_key}}
            for i in range(first, min(count, first + PARKED_PER_CLUSTER))
        ]  # fmt: skip
    return docs


def handled(cluster: str, shards: int) -> bool:
    """Whether `--shard 0/<shards>` takes the cluster (the process the bench measures)."""
    return shards <= 1 or shard_of("default", cluster, shards) == 0


def all_paused(nodes: list[dict[str, Any]], shards: int = 1) -> bool:
    parked = [n for n in nodes if n["spec"]["cluster"].startswith(PARKED) and handled(n["spec"]["cluster"], shards)]
    return all((n.get("status") or {}).get("phase") == "Paused" for n in parked)


class ShardProcess(OperatorProcess):
    """The operator as shard 0 of `shards` (`rke2fleet run --shard 0/N`): it still watches every
    object (Kopf lists them all) but handles only its clusters' nodes."""

    shards = 1

    def argv(self) -> list[str]:
        return [*super().argv(), "--shard", f"0/{self.shards}"]


def percentile(samples: list[float], q: float) -> float:
    if len(samples) < 2:
        return samples[0] if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def start_profile(op: OperatorProcess, probe: LoopProbe, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (non-blocking, 50 Hz, PROFILE_SECONDS) on `op` from its first liveness answer on."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return None
    deadline = time.monotonic() + 60
    while not probe.samples and time.monotonic() < deadline:
        time.sleep(0.05)
    return subprocess.Popen(
        [spy, "record", "--nonblocking", "-r", "50", "-d", str(PROFILE_SECONDS), "--format", "speedscope",
         "-o", str(out), "--pid", str(op.pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def control_plane_load(
    workdir: Path, objects: int, node_tick: float, cluster_tick: float, *,
    subject: str = "operator", round_: int = 1, min_window: float = 0.0, profile_dir: Path | None = None,
    shards: int = 1, live_hosts: int | None = None, hosts_nice: int = 0,
) -> LoadResult:  # fmt: skip
    """Create the objects, start `subject` on them, probe its loop until all are processed (and at
    least `min_window` seconds, so two subjects are compared over windows of the same length).
    With `shards` > 1 the operator runs as shard 0 of them and "all" is its share. `hosts_nice`:
    the hosts' sshds (and so every session, stand-in and daemon they start) run at that nice value:
    the live cluster's bring-up is the hosts' work, on other machines than the operator's in a real
    site; here it would otherwise take the operator's (and only the operator's: the floors bring no
    host up) share of the cores, and the loop lag would measure the hosts."""
    live = live_hosts or max(2, objects // 100)
    load_before = os.getloadavg()[0]
    with Fleet(workdir, f"load-{subject}{round_}-{shards}", 1, live - 1) as fleet:
        for host in fleet.sb.hosts:
            pid = fleet.sb.host(host).sshd
            if hosts_nice and pid is not None:
                os.setpriority(os.PRIO_PROCESS, pid.pid, hosts_nice)
        fleet.kube.create_token_secret(generate_token())
        docs = fleet.manifests("1h") + parked_docs(objects - live, fleet.sb.hosts[0].host_key_line)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # 10,000 one by one take minutes
            list(pool.map(fleet.kube.create, docs))
        fleet.kube.reset_audit()
        process: Callable[..., OperatorProcess] = SUBJECTS[subject]
        if process is KopfWatchProcess:
            process = functools.partial(KopfWatchProcess, expected_nodes=objects)
        elif shards > 1:
            process = type("Shard0", (ShardProcess,), {"shards": shards})
        op = fleet.start_operator(node_tick, cluster_tick, process)
        probe = LoopProbe(op.healthz)
        t0 = time.monotonic()
        probe.start()
        spy = start_profile(op, probe, profile_dir / f"{subject}-{round_}.speedscope.json") if profile_dir else None
        try:
            paused_at, burst_cpu, live_at = wait_processed(fleet, op, t0, subject, shards, objects)
            seconds = max(paused_at, live_at) - t0
            time.sleep(max(0.0, min_window - (time.monotonic() - t0)))
            window = max(seconds, time.monotonic() - t0)
            audit = fleet.kube.audit()
        finally:
            probe.stopped.set()
            probe.join(timeout=10)
            if spy is not None:
                try:
                    spy.wait(PROFILE_SECONDS + 30)
                except subprocess.TimeoutExpired:
                    spy.kill()
        rss, cpu = op.peak_rss_mb(), op.cpu_seconds()
    ms = [s * 1000 for s in probe.samples]
    burst_end = time.time() - (time.monotonic() - paused_at)  # the audit's clock is the wall clock
    return LoadResult(
        subject=subject, round=round_, node_tick=node_tick, objects=objects, live_hosts=live, hosts_nice=hosts_nice,
        shards=shards,
        seconds=seconds, paused_s=paused_at - t0, window_s=window, peak_rss_mb=rss, cpu_s=cpu,
        burst_cpu_s=burst_cpu,
        burst_p99_ms=percentile([m for m, at in zip(ms, probe.times, strict=True) if at <= paused_at], 99),
        lag_p50_ms=percentile(ms, 50), lag_p99_ms=percentile(ms, 99), lag_max_ms=max(ms, default=float("nan")),
        probes=len(ms), probe_failures=probe.failures, load_average=(load_before, os.getloadavg()[0]),
        writes_by_kind=classify_writes(audit)[1],
        writes_after_burst=sum(classify_writes([e for e in audit if e["time"] > burst_end])[1].values()),
        parked_writes=len(parked_writes(audit)),
        parked_nodes=sum(1 for d in docs if d["kind"] == "RKE2Node" and d["metadata"]["name"].startswith(PARKED)
                         and handled(d["spec"]["cluster"], shards)),
    )  # fmt: skip


def parked_writes(audit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The subject's writes to paused nodes (metadata and status alike)."""
    return [
        e for e in writes(audit)
        if e.get("resource") == "rke2nodes" and str(e.get("name")).startswith(PARKED)
        and e.get("userAgent") != BENCH_USER_AGENT
    ]  # fmt: skip


def wait_processed(
    fleet: Fleet, op: OperatorProcess, t0: float, subject: str, shards: int, objects: int
) -> tuple[float, float, float]:
    """(monotonic time the paused nodes were done, the subject's CPU seconds then, monotonic time
    the live cluster was Ready). The paused nodes (Kopf's start-up burst) and, for the operator,
    the live cluster's bring-up over SSH (the floors bring no host up; neither does a shard that
    does not hold it) end at different times: note both."""
    deadline = time.monotonic() + 600 + objects / 20
    poll = max(1.0, objects / 5000)  # listing 10,000 objects is work for the machine too
    paused_at: float | None = None
    burst_cpu = 0.0
    live_at = None if subject == "operator" and handled(CLUSTER, shards) else t0
    while paused_at is None or live_at is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the objects were not all processed in {deadline - t0:.0f}s")
        if isinstance(op, KopfWatchProcess):  # it writes nothing: it logs when all are indexed
            if paused_at is None and op.all_indexed():
                paused_at, burst_cpu = time.monotonic(), op.cpu_seconds()
        elif paused_at is None and all_paused(fleet.kube.items("rke2nodes"), shards):
            paused_at, burst_cpu = time.monotonic(), op.cpu_seconds()
        if live_at is None and fleet.kube.phase("rke2clusters", CLUSTER) == "Ready":
            live_at = time.monotonic()
        time.sleep(poll)
    return paused_at, burst_cpu, live_at
