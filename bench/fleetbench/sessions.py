"""Count SSH commands ON THE HOSTS: each host's sshd, restarted at LogLevel=VERBOSE, logs one
`Starting session: command|subsystem ...` line per exec/SFTP channel (OpenSSH session.c).

sshd's stderr comes to this process through a pipe; one reader thread stamps every line with
the time it arrived, so a session's start time is known to within milliseconds.
"""

from __future__ import annotations

import selectors
import subprocess
import threading
import time
from dataclasses import dataclass, field

from rke2fleet_sandbox import hosts as H
from rke2fleet_sandbox.world import Sandbox

SESSION_MARK = b"Starting session: "
CLOSE_MARK = b"Close session: "  # session_close(), also at VERBOSE
RESTART_TIMEOUT = 20.0


@dataclass
class SessionLog:
    """Session start and end times per host name (monotonic clock)."""

    starts: dict[str, list[float]] = field(default_factory=dict)
    ends: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def since(self, t0: float, t1: float | None = None) -> dict[str, list[float]]:
        with self.lock:
            return {h: [t for t in ts if t >= t0 and (t1 is None or t <= t1)] for h, ts in self.starts.items()}

    def ended_since(self, t0: float) -> dict[str, list[float]]:
        with self.lock:
            return {h: [t for t in ts if t >= t0] for h, ts in self.ends.items()}


class VerboseSshds:
    """Replace every host's sshd with the same sshd at LogLevel=VERBOSE, piped to us.

    The new sshd runs inside the host's namespace (nsenter), so `Sandbox.down()` ends it with
    the host. Its lines are also appended to `logs/<host>.sshd.verbose.log`.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.log = SessionLog()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True, name="sshd-log-pump")

    def start(self) -> VerboseSshds:
        # Hundreds of sshds restarting on 2 shared cores: allow time per host.
        deadline = time.monotonic() + RESTART_TIMEOUT + 0.2 * len(self.sandbox.hosts)
        for host in self.sandbox.hosts:
            self.sandbox.stop_sshd(host)
            plan = H.HostPlan(host.name, host.role, host.address, host.user, host.port)
            argv = [*H.sshd_argv(self.sandbox.layout, plan), "-o", "LogLevel=VERBOSE"]
            proc = subprocess.Popen(
                [*H.enter_argv(host), *argv],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True,
            )  # fmt: skip
            self._procs[host.name] = proc
            self.log.starts[host.name] = []
            self.log.ends[host.name] = []
            assert proc.stderr is not None
            self._selector.register(proc.stderr, selectors.EVENT_READ, host.name)
        self._thread.start()
        for host in self.sandbox.hosts:
            H.wait_listening(host.address, host.port, deadline, self._procs[host.name], netns_pid=H.reach_from(host))
        return self

    def pids(self) -> list[int]:
        """The sshd listeners (each host's; the sessions are their children)."""
        return [proc.pid for proc in self._procs.values()]

    def _pump(self) -> None:
        files = {name: open(self.sandbox.layout.logs / f"{name}.sshd.verbose.log", "ab") for name in self._procs}
        buffers: dict[str, bytes] = dict.fromkeys(self._procs, b"")
        try:
            while not self._stop.is_set() and self._selector.get_map():
                for key, _ in self._selector.select(timeout=0.2):
                    name = str(key.data)
                    chunk = key.fileobj.read1(65536)  # type: ignore[union-attr]
                    now = time.monotonic()
                    if not chunk:
                        self._selector.unregister(key.fileobj)
                        continue
                    files[name].write(chunk)
                    lines = (buffers[name] + chunk).split(b"\n")
                    buffers[name] = lines.pop()
                    hits = sum(1 for line in lines if SESSION_MARK in line)
                    closes = sum(1 for line in lines if CLOSE_MARK in line)
                    if hits or closes:
                        with self.log.lock:
                            self.log.starts[name].extend([now] * hits)
                            self.log.ends[name].extend([now] * closes)
        finally:
            for f in files.values():
                f.close()

    def stop(self) -> None:
        """Stop reading (the sshds themselves end with the sandbox)."""
        self._stop.set()
        self._thread.join(timeout=2)

    def reap(self) -> None:
        """Collect the exit status of the sshds (ended with their host by `Sandbox.down()`)."""
        for proc in self._procs.values():
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            if proc.stderr is not None:
                proc.stderr.close()
