"""TCP load balancer for sandbox HA clusters: the fixed registration address of the seed layout.

Listens on its own loopback address (9345 for joins, 6443 for the API) and forwards each
connection to the first server that accepts it, starting the search one server further on
every connection (round-robin start, first-alive). No health checks, as with a plain L4
balancer: a server whose sshd host is frozen still completes the TCP handshake.

Run as its own process: `python -m rke2fleet_sandbox.loadbalancer --listen ADDR
--port 9345 --port 6443 --backend ADDR ...`; it prints `ready` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence

from rke2fleet_sandbox.hosts import SandboxError, said_ready

CONNECT_TIMEOUT = 2.0
DEFAULT_PORTS = (9345, 6443)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


class LoadBalancer:
    def __init__(self, listen: str, ports: Sequence[int], backends: Sequence[str]) -> None:
        self.listen = listen
        self.ports = list(ports)
        self.backends = list(backends)
        self._turn = itertools.count()
        self._servers: list[asyncio.Server] = []

    async def _connect_backend(
        self, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        if not self.backends:
            return None
        start = next(self._turn) % len(self.backends)
        for i in range(len(self.backends)):
            backend = self.backends[(start + i) % len(self.backends)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(backend, port), CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                continue
        return None

    def _handler(self, port: int) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            upstream = await self._connect_backend(port)
            if upstream is None:
                writer.close()
                return
            up_reader, up_writer = upstream
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                for w in (writer, up_writer):
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()

        return handle

    async def start(self) -> None:
        for port in self.ports:
            server = await asyncio.start_server(self._handler(port), self.listen, port, reuse_address=True)
            self._servers.append(server)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()


async def _serve(args: argparse.Namespace) -> None:
    lb = LoadBalancer(args.listen, args.port or list(DEFAULT_PORTS), args.backend)
    await lb.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await lb.close()


def start_load_balancer(
    listen: str,
    backends: Sequence[str],
    ports: Sequence[int] = DEFAULT_PORTS,
    log_path: str | None = None,
    netns_pid: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start the balancer as a daemon-like child (own session); `await_ready` waits for it to listen.

    `netns_pid`: run it in that process's network namespace (a network site's)."""
    argv = [sys.executable, "-m", "rke2fleet_sandbox.loadbalancer", "--listen", listen]
    if netns_pid is not None:
        argv = ["nsenter", "-t", str(netns_pid), "-n", "--", *argv]
    for port in ports:
        argv += ["--port", str(port)]
    for backend in backends:
        argv += ["--backend", backend]
    with open(log_path or "/dev/null", "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True
        )
    return proc


def await_ready(proc: subprocess.Popen[bytes], what: str) -> None:
    if not said_ready(proc):
        raise SandboxError(f"{what} did not start (exit {proc.returncode})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rke2fleet_sandbox.loadbalancer")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, action="append", default=[])
    parser.add_argument("--backend", action="append", default=[])
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
