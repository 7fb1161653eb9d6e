"""The management-cluster emulator: Kubernetes API semantics on a loopback port.

* `python -m rke2fleet_sandbox.emulator --host H --port P --kubeconfig PATH [--ready-file PATH]`
  serves until SIGTERM/SIGINT; it writes the kubeconfig, then the bound port into the ready file.
* `start_emulator(state_dir)` runs that as a detached process and waits until it is ready.
* `serve_emulator()` runs it inside the caller's event loop (tests that run Kopf in the same loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import yaml

from rke2fleet_sandbox.emulator_server import FleetEmulator

__all__ = ["EmulatorHandle", "FleetEmulator", "RunningEmulator", "main", "serve_emulator", "start_emulator",
           "write_kubeconfig"]

CONTEXT_NAME = "rke2fleet-sandbox"


def write_kubeconfig(path: Path, server_url: str, namespace: str = "default") -> None:
    """A kubeconfig for the emulator (plain HTTP, no credentials: the emulator does not authenticate)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT_NAME, "cluster": {"server": server_url}}],
        "users": [{"name": CONTEXT_NAME, "user": {}}],
        "contexts": [{"name": CONTEXT_NAME,
                      "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": namespace}}],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }
    _write_atomically(path, yaml.safe_dump(config, sort_keys=False), mode=0o600)


def _write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as stream:
        stream.write(text)
    os.replace(tmp, path)


@dataclasses.dataclass
class RunningEmulator:
    """An emulator served in the current event loop."""

    emulator: FleetEmulator
    url: str
    kubeconfig_path: Path | None


@contextlib.asynccontextmanager
async def serve_emulator(*, host: str = "127.0.0.1", port: int = 0, kubeconfig_path: Path | None = None,
                         crds: list[dict[str, Any]] | None = None) -> AsyncIterator[RunningEmulator]:
    emulator = FleetEmulator(crds=crds)
    async with emulator, kmock.Server(emulator, host=host, port=port) as server:
        url = f"http://{host}:{server.port}"
        if kubeconfig_path is not None:
            write_kubeconfig(kubeconfig_path, url)
        try:
            yield RunningEmulator(emulator, url, kubeconfig_path)
        finally:
            emulator.close_watches()  # open watch streams would otherwise hold the shutdown
            await asyncio.sleep(0)


@dataclasses.dataclass
class EmulatorHandle:
    """An emulator running as a detached process."""

    url: str
    kubeconfig_path: Path
    pid: int
    _process: subprocess.Popen[bytes] | None = dataclasses.field(default=None, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.pid, timeout, self._process)


def stop_process(pid: int, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM, then SIGKILL after `timeout`; reaps the child when it is ours."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if process is not None:
        process.wait(timeout=5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start_emulator(state_dir: Path, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0
                   ) -> EmulatorHandle:
    """Start `python -m rke2fleet_sandbox.emulator` detached; its log goes to `state_dir/emulator.log`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = state_dir / "emulator.kubeconfig"
    ready = state_dir / "emulator.ready"
    ready.unlink(missing_ok=True)
    with open(state_dir / "emulator.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rke2fleet_sandbox.emulator", "--host", host, "--port", str(port),
             "--kubeconfig", str(kubeconfig), "--ready-file", str(ready)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the emulator exited with code {process.returncode}; "
                               f"see {state_dir / 'emulator.log'}")
        if time.monotonic() > deadline:
            stop_process(process.pid, 2.0, process)
            raise TimeoutError(f"the emulator was not ready within {timeout} s")
        time.sleep(0.02)
    bound_port = int(ready.read_text().strip())
    return EmulatorHandle(f"http://{host}:{bound_port}", kubeconfig, process.pid, process)


async def _run(host: str, port: int, kubeconfig: Path, ready_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve_emulator(host=host, port=port, kubeconfig_path=kubeconfig) as running:
        bound_port = running.url.rsplit(":", 1)[1]
        print(f"rke2fleet emulator serving {running.url} (CRDs from {running.emulator.crds_source}); "
              f"kubeconfig {kubeconfig}", file=sys.stderr, flush=True)
        if ready_file is not None:
            _write_atomically(ready_file, bound_port + "\n")
        await stop.wait()
    if ready_file is not None:
        os.unlink(ready_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rke2fleet_sandbox.emulator",
                                     description="Kubernetes API emulator for the rke2fleet sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="where to write a kubeconfig")
    parser.add_argument("--ready-file", type=Path, help="the bound port is written here once serving")
    args = parser.parse_args(argv)
    asyncio.run(_run(args.host, args.port, args.kubeconfig, args.ready_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
