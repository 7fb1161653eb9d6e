"""`rke2fleet run`: the operator process (Kopf), with its settings, memo and endpoints."""

from __future__ import annotations

import argparse
import gc
import http.server
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from typing import Any

import kopf

from rke2fleet import GROUP, config
from rke2fleet.engine.core import close, connect
from rke2fleet.handlers.kopf_toggles import patch_toggle_sets
from rke2fleet.handlers.shards import finalizer, parse_shard
from rke2fleet.handlers.state import FleetState
from rke2fleet.logs import configure_logging
from rke2fleet.store.kube import KubeStore
from rke2fleet.store.lease import LeaderElector, LeaseConfig


@kopf.on.startup()
async def configure(*, settings: kopf.OperatorSettings, memo: Any, logger: Any, **_: Any) -> None:
    from rke2fleet import metrics

    settings.persistence.finalizer = finalizer()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # No settings.queueing.worker_limit: Kopf holds a worker per object until all objects are
    # indexed, so a limit below the object count deadlocks start-up (seen at 200 nodes). SSH
    # fan-out is bounded by the pool (sessions per host) and by waiting turns in memory.
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.networking.connect_timeout = 10
    settings.execution.max_workers = 8
    # A timer running when its node is deleted is re-checked this often (default 60 s), so a
    # deletion never waits a minute on a timer that has already finished.
    settings.background.cancellation_polling = 1
    # The node timers wait for their tick inside the handler (see node.node_tick) and return as
    # soon as Kopf's stop flag is set: give them that moment instead of orphaning them.
    settings.background.instant_exit_timeout = 0.5

    def on_command(result: Any, duration: float) -> None:
        metrics.observe_ssh_command(result, duration)

    store = KubeStore()
    memo.fleet = FleetState(engine=connect(store, on_command), store=store)
    port = config.SETTINGS.metrics_port  # 0 as well when a standby's server already serves it
    memo.metrics_server = metrics.start_metrics_server(port) if port else None
    metrics.set_leader(True)
    logger.info("rke2fleet started")


@kopf.on.cleanup()
async def shutdown(*, memo: Any, **_: Any) -> None:
    fleet: FleetState | None = getattr(memo, "fleet", None)
    if fleet is not None:
        await close(fleet.engine)
        fleet.store.close()
    server = getattr(memo, "metrics_server", None)
    if server is not None:
        server.stop()


def register_handlers() -> None:
    """Importing the handler modules registers them with Kopf's default registry."""
    from rke2fleet.handlers import cluster, indexes, node, objects, parked  # noqa: F401


class QuietTimers(logging.Filter):
    """Drop Kopf's per-tick "Timer '…' succeeded." lines: at fleet size they are most of the log
    and say nothing (a tick that changes something logs its own line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and str(record.msg).startswith("Timer '")
            and str(record.msg).endswith("succeeded.")
        )


def run_operator(args: argparse.Namespace) -> int:
    configure_logging(verbose=args.verbose, log_format=getattr(args, "log_format", "text"))
    # Kopf's own per-request debug logging is noise at fleet size.
    logging.getLogger("kopf.objects").setLevel(logging.INFO)
    logging.getLogger("kopf.objects").addFilter(QuietTimers())
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    try:
        index, count = parse_shard(getattr(args, "shard", "0/1"))
    except ValueError as exc:
        print(f"rke2fleet run: {exc}", file=sys.stderr)
        return 2
    config.configure(metrics_port=args.metrics_port, shard_index=index, shard_count=count)
    register_handlers()
    # Everything imported so far lives as long as the process: out of the cyclic collector's
    # reach, a full collection no longer walks it (with 1,000 objects such walks stalled the loop
    # for 0.1-1.8 s in the load bench). Reference counting still frees what it frees.
    gc.freeze()
    if not patch_toggle_sets():
        logging.getLogger(__name__).warning("Kopf's ToggleSet is not the one rke2fleet patches: start-up stays O(N^2)")
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    namespaces = tuple(args.namespace)
    stop, lost = threading.Event(), threading.Event()
    elector = _elector(args)
    early_metrics = None
    if elector is not None:
        from rke2fleet import metrics

        # A standby is scraped too (rke2fleet_leader 0): a target down then means a pod down.
        if args.metrics_port:
            early_metrics = metrics.start_metrics_server(args.metrics_port)
            config.configure(metrics_port=0)
        metrics.set_leader(False)
        # A standby watches nothing and touches no host until it leads.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        probe = standby_health(args.health_port) if args.health_port else None
        try:
            if not elector.acquire(stop):
                return 0
        finally:
            if probe is not None:  # Kopf's own liveness endpoint takes the port over
                probe.shutdown()
                probe.server_close()

        def on_lost() -> None:
            lost.set()
            stop.set()

        threading.Thread(target=elector.keep, args=(stop, on_lost), name="lease", daemon=True).start()
    try:
        kopf.run(
            standalone=True,
            clusterwide=args.all_namespaces or not namespaces,
            namespaces=namespaces,
            liveness_endpoint=liveness,
            stop_flag=stop if elector is not None else None,
        )
    finally:
        stop.set()
        if elector is not None and not lost.is_set():
            elector.release()
        if early_metrics is not None:
            early_metrics.stop()
    return 1 if lost.is_set() else 0


class _Alive(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path.startswith("/healthz") else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def standby_health(port: int) -> http.server.ThreadingHTTPServer:
    """/healthz while a standby waits for the lease (alive, and ready to take over)."""
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), _Alive)  # noqa: S104 - a probe port in a pod
    threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    return server


def _elector(args: argparse.Namespace) -> LeaderElector | None:
    if not getattr(args, "leader_elect", False):
        return None
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    namespace = args.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"
    settings = config.SETTINGS
    shard = f"-shard-{settings.shard_index}-of-{settings.shard_count}" if settings.shard_count > 1 else ""
    return LeaderElector(LeaseConfig(
        name=args.lease_name + shard, namespace=namespace, identity=identity, lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline, retry_period=args.retry_period,
    ))  # fmt: skip
