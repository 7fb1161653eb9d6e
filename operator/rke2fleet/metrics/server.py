"""The HTTP endpoint Prometheus scrapes: prometheus_client's threaded server on our registry."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from rke2fleet.metrics.registry import REGISTRY


@dataclass
class MetricsServer:
    """A running endpoint; call it (or `stop()`) to shut it down. `port` is the bound port."""

    server: WSGIServer
    thread: threading.Thread
    port: int
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __call__(self) -> None:
        self.stop()


def start_metrics_server(port: int, host: str = "0.0.0.0") -> MetricsServer:  # noqa: S104 -- scraped from the pod network
    """Serve `/metrics` (any path, in fact) on host:port in a daemon thread; port 0 picks a free one."""
    server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    bound_port = int(server.server_address[1])
    return MetricsServer(server=server, thread=thread, port=bound_port)
