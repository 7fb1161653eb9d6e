"""The Kopf floor: a Kopf operator for our two kinds with none of rke2fleet's logic.

The control-plane load target (1,000 RKE2Nodes, loop lag p99 < 50 ms) is measured on the real
operator; this module is what Kopf alone costs for the same objects, run through the same load
scenario (`load.control_plane_load(..., subject="floor")`). Whatever lag it shows is the floor
no handler code of ours can go below.

What it keeps, as the real operator has it (`operator/rke2fleet/handlers/`):
* the kinds `rke2fleet.io/v1alpha1` rke2clusters and rke2nodes, cluster-wide, standalone;
* an index on each kind, with the same keys and entry shape as `handlers/indexes.py`;
* on.resume / on.create / on.update(field="spec") on both kinds, and on.delete on both (so Kopf
  adds the same finalizer to the same objects), filtered as ours: a node of a paused cluster
  that carries no finalizer is "parked" (`handlers/parked.py`) and gets only an on.event
  handler, the rest these handlers;
* one status write per object per change, the same fields a paused node gets from
  `handlers/parked.node_parked` (phase, observedGeneration, Ready/Reconciling/Stalled
  conditions) built from a template, so the API writes and the watch events carry the same bytes;
* timers at RKE2FLEET_NODE_TICK / RKE2FLEET_CLUSTER_TICK (interval = initial delay), like ours;
* the process of `runner.run_operator`: `gc.freeze()` before `kopf.run`, and Kopf's index
  start-up made linear (`handlers/kopf_toggles.py`, loaded by path; without it Kopf alone does not
  settle 10,000 objects in 18 minutes here);
* the settings of `handlers/runner.configure` (finalizer name, annotation progress and diff-base
  storage, posting level INFO, no worker limit, timeouts, cancellation_polling) and the logging
  of `runner.run_operator` (INFO, Kopf's per-tick "Timer … succeeded." lines dropped).

What it leaves out (the part of the lag that is ours): parsing specs (pydantic), the paused check
and status diffing, per-node locks, metrics, the timers' bodies (due/woken checks; a paused
cluster's timer counting its nodes on the index every tick), SSH and the live nodes' bring-up
(here the 1 % live nodes get one status write like the rest), and the imports of rke2fleet,
asyncssh and prometheus-client (its RSS is Kopf's, with the kubernetes client and pydantic that
Kopf itself imports when they are installed).

With RKE2FLEET_FLOOR_WATCH_ONLY=1 it is the least a Kopf operator does with these objects: the
two indexes and nothing else (no handler, timer, finalizer or write), i.e. Kopf listing and
watching them and running a worker per object (`load.control_plane_load(..., subject="watch")`).
No Kopf operator holding these objects can have less lag on this machine, whatever it does.

Run: `python kopf_floor_operator.py --health-port PORT` with KUBECONFIG set (operator_proc does).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import logging
import os
import runpy
from pathlib import Path
from typing import Any

import kopf

GROUP = "rke2fleet.io"  # as rke2fleet.GROUP/VERSION; literal so nothing of rke2fleet is imported
VERSION = "v1alpha1"
NODE_TICK = float(os.environ.get("RKE2FLEET_NODE_TICK", "20"))
# Kopf's linear start-up (rke2fleet's patch, a file that imports nothing of rke2fleet).
TOGGLES = Path(__file__).resolve().parents[2] / "operator" / "rke2fleet" / "handlers" / "kopf_toggles.py"
CLUSTER_TICK = float(os.environ.get("RKE2FLEET_CLUSTER_TICK", "5"))


@kopf.on.startup()
async def configure(*, settings: kopf.OperatorSettings, **_: Any) -> None:
    # The same values as operator/rke2fleet/handlers/runner.py:configure.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.networking.connect_timeout = 10
    settings.execution.max_workers = 8
    settings.background.cancellation_polling = 1
    settings.background.instant_exit_timeout = 0.5


@kopf.index(GROUP, VERSION, "rke2clusters")
async def clusters(*, namespace: Any, name: str, spec: Any, status: Any, uid: str, meta: Any, **_: Any) -> Any:
    # The fields of the operator's ClusterRecord (rke2fleet.engine.records), in a plain dict.
    entry = {"namespace": namespace, "name": name, "spec": dict(spec), "status": dict(status), "uid": uid,
             "generation": meta.get("generation")}  # fmt: skip
    return {(namespace, name): {**entry, "deleting": bool(meta.get("deletionTimestamp"))}}


@kopf.index(GROUP, VERSION, "rke2nodes")
async def nodes(*, namespace: Any, name: str, spec: Any, status: Any, meta: Any, **_: Any) -> Any:
    # The fields of the operator's NodeRecord (rke2fleet.engine.records), in a plain dict.
    entry = {"namespace": namespace, "name": name, "spec": dict(spec), "status": dict(status),
             "generation": meta.get("generation")}  # fmt: skip
    _indexed(namespace, name)
    return {(namespace, spec.get("cluster")): {**entry, "deleting": bool(meta.get("deletionTimestamp"))}}


# Watch-only mode writes nothing the bench could wait for: it logs when every node is indexed.
EXPECTED = int(os.environ.get("RKE2FLEET_FLOOR_EXPECT_NODES", "0"))
INDEXED_LINE = "watch floor: every node indexed"  # as operator_proc.KopfWatchProcess.INDEXED_LINE
_seen: set[tuple[Any, str]] = set()


def _indexed(namespace: Any, name: str) -> None:
    if EXPECTED and len(_seen) < EXPECTED:
        _seen.add((namespace, name))
        if len(_seen) == EXPECTED:
            logging.getLogger(__name__).info(INDEXED_LINE)


def paused_status(generation: Any, cluster: str) -> dict[str, Any]:
    """The status a paused node gets from the operator's first pass (same keys and sizes)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {"type": type_, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": now, "observedGeneration": generation}  # fmt: skip

    return {
        "phase": "Paused",
        "conditions": [cond("Ready", "False", "Paused", f"cluster {cluster} is paused"),
                       cond("Reconciling", "False", "Paused", ""), cond("Stalled", "False", "Paused", "")],
        "observedGeneration": generation,
    }  # fmt: skip


async def node_changed(*, spec: Any, meta: Any, status: Any, patch: Any, **_: Any) -> None:
    if status.get("phase") != "Paused":  # written once, as ours (a quiet pass writes nothing)
        for key, value in paused_status(meta.get("generation"), str(spec.get("cluster"))).items():
            patch.status[key] = value


async def cluster_changed(*, spec: Any, status: Any, patch: Any, **_: Any) -> None:
    phase = "Paused" if spec.get("paused") else "Pending"
    if status.get("phase") != phase:
        patch.status["phase"] = phase


async def nothing(**_: Any) -> None:
    """Timers and deletion handlers: Kopf's own work only (a deletion handler adds the finalizer)."""


def parked(*, meta: Any, namespace: Any, spec: Any, clusters: Any, **_: Any) -> bool:
    """As handlers/parked.parked: no finalizer yet, and the node's cluster is paused."""
    if f"{GROUP}/finalizer" in (meta.get("finalizers") or ()):
        return False
    try:
        return any(c["spec"].get("paused") and not c["deleting"] for c in clusters[(namespace, spec.get("cluster"))])
    except KeyError:
        return False


def tended(**kw: Any) -> bool:
    return not parked(**kw)


async def node_parked(*, type: Any, **kw: Any) -> None:
    if type != "DELETED":
        await node_changed(**kw)


def register() -> None:
    """The handlers of each kind, under the handler ids ours have (they name the annotations)."""
    for kind, changed, tick in (("node", node_changed, NODE_TICK), ("cluster", cluster_changed, CLUSTER_TICK)):
        plural = f"rke2{kind}s"
        when = tended if kind == "node" else None
        kopf.on.resume(GROUP, VERSION, plural, when=when)(changed)
        kopf.on.create(GROUP, VERSION, plural, when=when)(changed)
        kopf.on.update(GROUP, VERSION, plural, field="spec", when=when)(changed)
        kopf.timer(GROUP, VERSION, plural, id=f"{kind}_tick", interval=tick, initial_delay=tick, when=when)(nothing)
        kopf.on.delete(GROUP, VERSION, plural, id=f"{kind}_deleted", when=when)(nothing)
    kopf.on.event(GROUP, VERSION, "rke2nodes", when=parked)(node_parked)


if os.environ.get("RKE2FLEET_FLOOR_WATCH_ONLY") != "1":
    register()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Kopf alone, for the rke2fleet load benchmark's floor")
    p.add_argument("--health-port", type=int, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    objects_log = logging.getLogger("kopf.objects")
    objects_log.setLevel(logging.INFO)
    objects_log.addFilter(lambda r: not (str(r.msg).startswith("Timer '") and str(r.msg).endswith("succeeded.")))
    # As handlers/runner.run_operator does before kopf.run: the same process and the same Kopf.
    gc.freeze()
    runpy.run_path(str(TOGGLES))["patch_toggle_sets"]()
    kopf.run(standalone=True, clusterwide=True, liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
