"""Fixtures for the demo tests: `rke2fleet demo` run as a real subprocess (stdout a pipe, not a
TTY), watched from outside so that "nothing left running" can be checked after it exits."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rke2fleet_sandbox.hosts import owns_namespace, pids_in_namespaces
from rke2fleet_sandbox.state import ProcessRecord, RuntimeRecord, process_start_time

RUN_TIMEOUT = 300.0


def _cannot_run() -> str | None:
    if os.geteuid() != 0:
        return "the demo's sandbox needs root"
    for tool in ("unshare", "nsenter", "/usr/sbin/sshd", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    return None


SKIP_REASON = _cannot_run()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if SKIP_REASON is None:
        return
    for item in items:
        if item.get_closest_marker("sandbox") is not None and "tests/demo" in str(item.path):
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


def snapshot_host_processes(record: RuntimeRecord) -> set[tuple[int, int]]:
    """The live processes of the recorded hosts' namespaces, identified by pid and start time.

    Namespace inodes are recycled at once by other sandboxes on this machine, so "left behind"
    means: a process seen in our hosts while the demo ran that still lives, not "anything in
    namespace N now".
    """
    ours = [h for h in record.hosts if h.mnt_ns and owns_namespace(h)]
    listed = pids_in_namespaces([h.mnt_ns for h in ours])
    found = set()
    # A namespace whose holder still lives after the listing was ours during the listing.
    for host in ours:
        if not owns_namespace(host):
            continue
        for pid in listed[host.mnt_ns]:
            start = process_start_time(pid)
            if start is not None:
                found.add((pid, start))
    return found


class DemoRun:
    """`python -m rke2fleet <argv>` in the background; its output and the sandbox record it writes."""

    def __init__(self, argv: list[str], state_dir: Path, env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.lines: list[str] = []
        self.record: RuntimeRecord | None = None
        self.client_key = ""
        # Every process seen in the hosts' namespaces while the demo ran: (pid, start time).
        self.host_processes: set[tuple[int, int]] = set()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rke2fleet", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def _observe(self) -> None:
        """Remember the newest sandbox record (hosts, namespaces, services) while it exists."""
        runtime = self.state_dir / "runtime.json"
        try:
            self.record = RuntimeRecord.from_json(runtime.read_text())
            if not self.client_key:
                self.client_key = (self.state_dir / "client_ed25519").read_text()
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if self.record is not None and self.proc.poll() is None:
            self.host_processes |= snapshot_host_processes(self.record)

    def wait_for_line(self, needle: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in self.lines):
            assert self.proc.poll() is None, f"exited before printing {needle!r}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {needle!r} within {timeout}s:\n{self.output}"
            self._observe()
            time.sleep(0.1)
        self._observe()

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(60)
                raise AssertionError(f"still running after {timeout}s:\n{self.output}")
            self._observe()
            time.sleep(0.2)
        self._reader.join(10)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def processes_of(record: RuntimeRecord) -> list[ProcessRecord]:
    procs = [h.holder for h in record.hosts] + [h.sshd for h in record.hosts if h.sshd]
    return procs + list(record.services.values())


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line or environment names `text` (the state directory)."""
    found = []
    needle = text.encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for part in ("cmdline", "environ"):
            try:
                data = Path(f"/proc/{entry.name}/{part}").read_bytes()
            except OSError:
                continue
            if needle in data and process_start_time(int(entry.name)) is not None:
                found.append(int(entry.name))
                break
    return found


def assert_nothing_left(record: RuntimeRecord, state_dir: Path, host_processes: set[tuple[int, int]]) -> None:
    """No process the sandbox recorded or that ran in its hosts is alive, none names the state
    directory, and the directory is gone."""
    alive = [rec.pid for rec in processes_of(record) if rec.alive()]
    assert not alive, f"recorded processes still alive: {alive}"
    assert len(host_processes) >= 2 * len(record.hosts), "the hosts' processes were never observed"
    left = [pid for pid, start in host_processes if process_start_time(pid) == start]
    assert not left, f"processes left from the hosts: {left}"
    assert not processes_mentioning(str(state_dir)), "processes still refer to the state directory"
    assert not state_dir.exists(), f"{state_dir} still exists"


@pytest.fixture
def demo_state_dir(tmp_path: Path) -> Iterator[Path]:
    """The state directory for one test; whatever a failing test leaves there is taken down."""
    state_dir = tmp_path / "demo-state"
    yield state_dir
    if (state_dir / "runtime.json").exists():
        subprocess.run(
            [sys.executable, "-m", "rke2fleet", "sandbox", "down", "--state-dir", str(state_dir)],
            capture_output=True,
            timeout=120,
            check=False,
        )
