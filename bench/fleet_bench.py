"""`make bench`: the operator against an Ansible baseline on sandbox hosts, at fleet size.

1. converge: servers + agents bare → Ready, operator and Ansible alternately (`--rounds` each);
2. steady state: passes with nothing to do, SSH commands counted on the hosts, API writes
   counted by the emulator; 3. the same at each `--scale` size; 4. control-plane load with
   `--objects` RKE2Nodes, alternated with Kopf alone on the same objects (its floor) and with
   Kopf only watching them (the floor of any Kopf operator).
Prints a table (see BENCHMARKS.md for what limits each number).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleetbench import operator_proc
from fleetbench.converge import converge_ansible, converge_floor, converge_operator, facts_floor, start_floor
from fleetbench.fleet import Fleet
from fleetbench.load import LoadResult, control_plane_load
from fleetbench.report import Results, markdown_table, text_table
from fleetbench.steady import PassResult, drift_window, wake_pass

from rke2fleet.reconcile.tokens import generate_token
from rke2fleet_sandbox.hosts import SandboxError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--servers", type=int, default=3, help="servers of the converge fleet (default 3)")
    p.add_argument("--agents", type=int, default=47, help="agents of the converge fleet (default 47)")
    p.add_argument("--rounds", type=int, default=2, help="operator/Ansible alternations (default 2)")
    p.add_argument("--scale", default="50,100,200", help="host counts of the steady-state runs (1 server + N-1 agents)")
    p.add_argument("--objects", type=int, default=1000, help="RKE2Nodes for the control-plane load (default 1000)")
    p.add_argument("--node-tick", type=float, default=2.0, help="RKE2FLEET_NODE_TICK of the operator (default 2)")
    p.add_argument("--cluster-tick", type=float, default=1.0, help="RKE2FLEET_CLUSTER_TICK (default 1)")
    p.add_argument("--drift", type=float, default=10.0, help="driftCheckInterval of the drift window, s (default 10)")
    p.add_argument("--kopf-floor", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the load on Kopf alone (bench/fleetbench/kopf_floor_operator.py) and on "
                        "Kopf watching only (the same script, watch-only mode), alternated with the operator "
                        "(default on when --objects > 0)")
    p.add_argument("--load-rounds", type=int, default=2, help="operator/floor alternations of the load (default 2)")
    p.add_argument("--load-shards", default="1",
                   help="shard counts N of the load: for each N > 1 the operator runs as `--shard 0/N` over the "
                        "same objects (after the unsharded rounds; operator only), e.g. 1,2,4")
    p.add_argument("--live-hosts", type=int, default=None,
                   help="live hosts (a real cluster brought up) among the load's objects (default 1 %%, at least 2)")
    p.add_argument("--load-hosts-nice", type=int, default=0,
                   help="nice value of the load's sandbox hosts (their sshds and all they start): hosts are other "
                        "machines than the operator's, here they share its cores (0 = same priority)")
    p.add_argument("--profile", default=None,
                   help="py-spy each load run (50 Hz, 20 s) and the operator over each steady wake pass "
                        "(100 Hz), speedscope JSON, into this directory")
    p.add_argument("--operator-source", default=None,
                   help="run the operator from this source root (a patched copy of operator/) instead")
    p.add_argument("--skip-ansible", action="store_true", help="operator rounds only (for before/after runs)")
    p.add_argument("--skip-floor", action="store_true",
                   help="no floor run (the baseline's steps as bare SSH commands) in the converge rounds")
    p.add_argument("--heavy-standins", action="store_true",
                   help="stand-ins that cost what stock hosts cost (every systemctl verb in Python, slower "
                        "rke2 start-up and install; RKE2FLEET_SANDBOX_HEAVY, rke2fleet_sandbox/costs.py)")
    p.add_argument("--workdir", default=None, help="where sandboxes and logs go (default: a new temp dir)")
    p.add_argument("--json", default=None, help="also write the figures as JSON to this file")
    p.add_argument("--markdown", default=None, help="also write the table as Markdown to this file")
    return p.parse_args(argv)


def _revision() -> str:
    """The commit measured (and whether the operator's files differ from it)."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "operator"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"git {rev}" + (" + uncommitted changes under operator/" if dirty else "")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def steady_state(fleet: Fleet, args: argparse.Namespace) -> list[PassResult]:
    profile = Path(args.profile) / f"steady-wake-{len(fleet.sb.hosts)}.json" if args.profile else None
    if profile:
        profile.parent.mkdir(parents=True, exist_ok=True)
    wake = wake_pass(fleet, args.node_tick, "59m", profile)
    drift = drift_window(fleet, args.node_tick, args.drift)
    log(f"  steady {len(fleet.sb.hosts)} hosts: wake {wake.per_pass:.2f} cmd/pass in {wake.seconds:.2f}s, "
        f"drift {drift.per_pass:.2f} cmd/pass, node writes {wake.node_writes}+{drift.node_writes}")  # fmt: skip
    return [wake, drift]


def control_plane_loads(workdir: Path, args: argparse.Namespace) -> list[LoadResult]:
    """The operator, then (with --kopf-floor) Kopf alone and Kopf watching only, each over a window
    as long as the operator's,
    alternated --load-rounds times so both see the same machine load."""
    profile = Path(args.profile) if args.profile else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    out: list[LoadResult] = []
    for rnd in range(1, max(1, args.load_rounds) + 1):
        subjects = ["operator", "floor", "watch"] if args.kopf_floor else ["operator"]
        window = 0.0
        for subject in subjects:
            ld = control_plane_load(workdir, args.objects, args.node_tick, args.cluster_tick,
                                    subject=subject, round_=rnd, min_window=window, profile_dir=profile,
                                    live_hosts=args.live_hosts, hosts_nice=args.load_hosts_nice)  # fmt: skip
            window = ld.seconds if subject == "operator" else window
            out.append(ld)
            _log_load(ld)
    for shards in (int(n) for n in args.load_shards.split(",") if n.strip() and int(n) > 1):
        ld = control_plane_load(workdir, args.objects, args.node_tick, args.cluster_tick, shards=shards,
                                live_hosts=args.live_hosts, hosts_nice=args.load_hosts_nice)  # fmt: skip
        out.append(ld)
        _log_load(ld)
    return out


def _log_load(ld: LoadResult) -> None:
    log(f"load {ld.round}: {ld.subject} (shard 0/{ld.shards}) {ld.objects} objects processed in {ld.seconds:.1f}s, "
        f"p99 {ld.lag_p99_ms:.1f} ms, peak RSS {ld.peak_rss_mb:.0f} MB")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every sandbox and operator started so far is ended.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print("fleet_bench: the sandbox needs root (namespaces, sshd)", file=sys.stderr)
        return 2
    scale = [int(n) for n in args.scale.split(",") if n.strip()]
    if args.operator_source:
        operator_proc.OPERATOR_SOURCE = str(Path(args.operator_source).resolve())
    if args.heavy_standins:  # read by every Sandbox.up of this run (rke2fleet_sandbox.costs)
        os.environ["RKE2FLEET_SANDBOX_HEAVY"] = "1"
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rke2fleet-bench-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o700)
    res = Results(settings={
        "command": "python bench/fleet_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "operator tree": args.operator_source or _revision(),
        "operator ticks": f"RKE2FLEET_NODE_TICK={args.node_tick:g}, RKE2FLEET_CLUSTER_TICK={args.cluster_tick:g}",
        "stand-ins": "heavy (RKE2FLEET_SANDBOX_HEAVY=1)" if args.heavy_standins else "light (default)",
    })  # fmt: skip
    log(f"work directory {workdir}")
    res.floor = start_floor(workdir)
    res.converge_shape = (args.servers, args.agents) if args.rounds else (0, 0)
    log(f"floor: install {res.floor.install_s:.2f}s, systemctl start → active {res.floor.start_s:.2f}s")
    size = args.servers + args.agents
    steady_done: set[int] = set()
    for rnd in range(1, args.rounds + 1):
        token = generate_token()
        with Fleet(workdir, f"op{rnd}", args.servers, args.agents) as fleet:
            c = converge_operator(fleet, rnd, token, args.node_tick, args.cluster_tick)
            res.converge.append(c)
            log(f"round {rnd}: operator {c.seconds:.1f}s (hosts ready {c.hosts_ready_seconds:.1f}s)")
            if rnd == 1:
                res.facts_floor_s = facts_floor(fleet)
                if size in scale:
                    res.steady += steady_state(fleet, args)
                    steady_done.add(size)
        if not args.skip_floor:
            with Fleet(workdir, f"floor{rnd}", args.servers, args.agents) as fleet:
                c = converge_floor(fleet, rnd, token)
                res.converge.append(c)
                log(f"round {rnd}: floor {c.seconds:.1f}s (hosts ready {c.hosts_ready_seconds:.1f}s)")
        if args.skip_ansible:
            continue
        with Fleet(workdir, f"ansible{rnd}", args.servers, args.agents) as fleet:
            c = converge_ansible(fleet, workdir, rnd, token)
            res.converge.append(c)
            log(f"round {rnd}: ansible {c.seconds:.1f}s (hosts ready {c.hosts_ready_seconds:.1f}s)")
    for n in scale:
        if n in steady_done:
            continue
        try:
            with Fleet(workdir, f"scale{n}", 1, n - 1) as fleet:
                c = converge_operator(fleet, 0, generate_token(), args.node_tick, args.cluster_tick)
                log(f"scale {n}: converged in {c.seconds:.1f}s")
                if not res.facts_floor_s:
                    res.facts_floor_s = facts_floor(fleet)
                res.steady += steady_state(fleet, args)
        except (TimeoutError, SandboxError) as exc:  # one size failing must not lose the others' figures
            log(f"scale {n}: {exc}")
            res.failures.append(f"scale {n}: {exc}")
    if args.objects:
        res.load = control_plane_loads(workdir, args)
    print()
    print(text_table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(dataclasses.asdict(res), indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
