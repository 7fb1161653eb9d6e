"""The supervisor of one started unit (``systemctl.py __supervise UNIT``, detached, one per unit).

Mimics ``Type=notify`` (ready when the service writes ``$NOTIFY_FILE``), ``Restart=always`` with
RestartSec (or the host's ``restart-delay`` fault) and the journal lines systemd writes around it.

It lives as long as the unit, on hosts that share a few cores by the dozen, where the real systemd
costs nothing per unit; so it imports only ``os``/``signal``/``select``/``time`` (no subprocess,
threading, json or pathlib) and sleeps in ``select`` between events: the unit's output, its exit
(SIGCHLD) and SIGTERM all arrive on file descriptors, the latter two through ``signal.set_wakeup_fd``.
The notify file is polled only until the unit is ready.
"""

from __future__ import annotations

import os
import select
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal

    from rke2fleet_sandbox.standins import unitstate
else:
    import _signal as signal  # `signal` minus its IntEnum wrappers (enum, functools...: ~5 ms a start)

    import unitstate

READY_POLL_SECONDS = 0.01  # while activating: how often the notify file is looked for
OUTPUT_DRAIN_SECONDS = 2.0  # after the main process exits: how long its output may still arrive
# Python ignores these; a service must start with the default action (as subprocess's restore_signals).
RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


def unit_entries(path: str) -> list[tuple[str, str]]:
    """Every ``Key=value`` line of a unit file, in order (a key may repeat: EnvironmentFile=)."""
    entries = []
    with open(path) as f:
        for line in f.read().splitlines():
            line = line.strip()
            if "=" in line and not line.startswith(("#", ";", "[")):
                key, value = line.split("=", 1)
                entries.append((key.strip(), value.strip()))
    return entries


def parse_unit(path: str) -> dict[str, str]:
    """The unit's settings, the last of a repeated key winning."""
    return dict(unit_entries(path))


# systemd's default PATH for services (Debian); the manager passes little else of its own environment.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The sandbox's own plumbing, passed through from whoever ran `systemctl start` (the real systemd
# would not pass the caller's environment: a shell's HTTP_PROXY must not reach the service).
PLUMBING_PREFIXES = ("RKE2FLEET_", "PYTHON")


def specifiers(text: str, unit: str) -> str:
    """``%N`` (the unit name without its type suffix), ``%n`` (the full name), ``%%``."""
    return text.replace("%%", "\0").replace("%N", unit.rsplit(".", 1)[0]).replace("%n", unit).replace("\0", "%")


def read_environment_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines as systemd reads an EnvironmentFile: ``#``/``;`` comments, optional quotes
    around the value; raises ``OSError`` when the file cannot be read."""
    values = {}
    with open(path) as f:
        for raw in f.read().splitlines():
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            key, sep, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                continue  # systemd: "Ignoring invalid environment assignment"
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                quote, value = value[0], value[1:-1]
                if quote == '"':
                    value = value.replace('\\"', '"').replace("\\\\", "\\")
            values[key] = value
    return values


def unit_environment(unit: str, entries: list[tuple[str, str]], inherited: dict[str, str]) -> dict[str, str]:
    """The environment systemd gives the unit's process: its default PATH, then ``Environment=`` and
    ``EnvironmentFile=`` (read at every start, ``-`` for optional files) in the order of the unit.
    Raises ``OSError`` for a missing file without ``-`` (systemd refuses to start the unit)."""
    env = {k: v for k, v in inherited.items() if k.startswith(PLUMBING_PREFIXES)}
    env["PATH"] = DEFAULT_PATH
    for key, value in entries:
        if key == "Environment":
            for assignment in _split_quoted(value):
                name, sep, val = assignment.partition("=")
                if sep:
                    env[name] = specifiers(val, unit)
        elif key == "EnvironmentFile":
            optional = value.startswith("-")
            path = specifiers(value.lstrip("-"), unit)
            try:
                env.update(read_environment_file(path))
            except FileNotFoundError:
                if not optional:
                    raise
    return env


def _split_quoted(value: str) -> list[str]:
    """``Environment=`` words: space-separated, each optionally in double quotes."""
    words, current, quoted = [], "", False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif ch.isspace() and not quoted:
            if current:
                words.append(current)
            current = ""
        else:
            current += ch
    if current:
        words.append(current)
    return words


def journal(unit: str, ident: str, message: str) -> None:
    journal_lines(unit, ident, [message])


def journal_lines(unit: str, ident: str, messages: list[str]) -> None:
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
    prefix = f"{stamp} {os.uname().nodename} {ident}: "
    with open(os.path.join(unitstate.unit_dir(unit), "journal.log"), "a") as f:
        f.write("".join(f"{prefix}{message}\n" for message in messages))


class Supervisor:
    """One unit's life: start, wait for ready, pump output, restart after exits until SIGTERM."""

    def __init__(self, unit: str) -> None:
        path = unitstate.unit_file(unit)
        assert path is not None, f"unit {unit} has no unit file"
        self.unit = unit
        self.entries = unit_entries(path)
        self.spec = dict(self.entries)
        self.argv = self.spec["ExecStart"].split()
        self.description = self.spec.get("Description", unit)
        self.udir = unitstate.unit_dir(unit)
        self.notify = os.path.join(self.udir, "ready")
        self.stopping = False
        self.attempt = 0
        self.exits = 0

    # -- signals -------------------------------------------------------------------------------
    def install_signals(self) -> int:
        """SIGTERM and SIGCHLD wake the select loop through the returned descriptor."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)

        def on_term(signum: int, frame: object) -> None:
            self.stopping = True  # the loop terminates the main process when it wakes

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so the wakeup fd is written
        return wake_r

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> int:
        wake = self.install_signals()
        while not self.stopping:
            self.attempt += 1
            for stale in (self.notify, os.path.join(self.udir, "node.json")):
                try:
                    os.unlink(stale)
                except FileNotFoundError:
                    pass
            self.status("activating", "start")
            journal(self.unit, "systemd[1]", f"Starting {self.unit} - {self.description}...")
            try:
                env = unit_environment(self.unit, self.entries, dict(os.environ))
            except OSError as exc:
                journal_lines(self.unit, "systemd[1]", [
                    f"{self.unit}: Failed to load environment files: {exc.strerror}",
                    f"{self.unit}: Failed to run 'start' task: {exc.strerror}",
                    f"{self.unit}: Failed with result 'resources'.",
                    f"Failed to start {self.unit} - {self.description}.",
                ])
                unitstate.write_status(self.unit, state="failed", substate="failed", result="resources",
                                       exits=self.exits + 1)
                return 0
            pid, output = self.spawn(env)
            self.status("activating", "start", mainPid=pid)
            code = self.wait_main(pid, output, wake)
            record_exit(self.udir, code)
            if self.stopping:
                break
            self.exits += 1
            journal_lines(self.unit, "systemd[1]", [
                f"{self.unit}: Main process exited, code=exited, status={code}/FAILURE" if code > 0
                else f"{self.unit}: Main process exited, code=killed, status={-code}",
                f"{self.unit}: Failed with result 'exit-code'.",
            ])
            delay = self.restart_delay()
            self.status("activating", "auto-restart", lastExit=code)
            if self.sleep_unless_stopped(delay, wake):
                break
            journal(self.unit, "systemd[1]", f"{self.unit}: Scheduled restart job, restart counter is at {self.exits}.")
        journal(self.unit, "systemd[1]", f"Stopped {self.unit} - {self.description}.")
        unitstate.write_status(self.unit, state="inactive", substate="dead", exits=self.exits)
        return 0

    def status(self, state: str, substate: str, **extra: int) -> None:
        unitstate.write_status(self.unit, state=state, substate=substate, supervisorPid=os.getpid(),
                               attempt=self.attempt, exits=self.exits, **extra)

    def spawn(self, env: dict[str, str]) -> tuple[int, int]:
        """Start ExecStart with stdin from /dev/null and stdout+stderr into a pipe: (pid, pipe)."""
        out_r, out_w = os.pipe()  # both non-inheritable: the child gets out_w only through dup2
        env = dict(env, NOTIFY_FILE=self.notify)
        try:
            pid = os.posix_spawnp(self.argv[0], self.argv, env, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, out_w, 2),
            ], setsigdef=RESTORED_SIGNALS)
        finally:
            os.close(out_w)
        return pid, out_r

    def wait_main(self, pid: int, output: int, wake: int) -> int:
        """Pump the main process's output into the journal until it exits; its exit code
        (negative: killed by that signal). Marks the unit active when the notify file appears."""
        ready, terminated = False, False
        code: int | None = None
        drain_until = 0.0
        pending = b""  # an output line not finished yet
        ident = f"{os.path.basename(self.argv[0])}[{pid}]"
        while True:
            if code is not None:
                timeout: float | None = max(0.0, drain_until - time.monotonic())
            else:
                timeout = None if ready else READY_POLL_SECONDS
            fds = [wake, output] if output >= 0 else [wake]
            readable = select.select(fds, [], [], timeout)[0]
            if wake in readable:
                os.read(wake, 512)
            if output in readable:
                data = os.read(output, 65536)
                if data:
                    pending = self.pump(ident, pending + data)
                else:  # EOF: every writer is gone
                    if pending:
                        self.pump(ident, pending + b"\n")
                        pending = b""
                    os.close(output)
                    output = -1
            if self.stopping and not terminated and code is None:
                os.kill(pid, signal.SIGTERM)  # not yet reaped, so the pid cannot be someone else's
                terminated = True
            if code is None:
                code = self.reap(pid)
                if code is not None:
                    drain_until = time.monotonic() + OUTPUT_DRAIN_SECONDS
            if code is None and not ready and os.path.exists(self.notify):
                ready = True
                self.status("active", "running", mainPid=pid)
                journal(self.unit, "systemd[1]", f"Started {self.unit} - {self.description}.")
            if code is not None and (output < 0 or time.monotonic() >= drain_until):
                if output >= 0:
                    os.close(output)
                return code

    def pump(self, ident: str, data: bytes) -> bytes:
        """Journal the complete lines of ``data``; return the unfinished rest."""
        *lines, rest = data.split(b"\n")
        if lines:
            journal_lines(self.unit, ident, [line.decode(errors="replace") for line in lines])
        return rest

    def reap(self, pid: int) -> int | None:
        try:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return -signal.SIGKILL  # reaped elsewhere: cannot happen with one child, be safe
        return os.waitstatus_to_exitcode(wait_status) if done == pid else None

    def restart_delay(self) -> float:
        if TYPE_CHECKING:
            from rke2fleet_sandbox.standins import standin_common as common
        else:
            import standin_common as common

        delay = common.fault_seconds("restart-delay")
        if delay is None:
            delay = float(self.spec.get("RestartSec", "1").rstrip("s") or 1)
        return delay

    def sleep_unless_stopped(self, seconds: float, wake: int) -> bool:
        """Wait ``seconds``; True as soon as SIGTERM arrives."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if select.select([wake], [], [], remaining)[0]:
                os.read(wake, 512)
        return True


def record_exit(udir: str, code: int) -> None:
    """The node is down: record it in the cluster's datastore (the process cannot when killed)."""
    try:
        with open(os.path.join(udir, "node.json")) as f:
            text = f.read()
    except FileNotFoundError:
        return
    import json

    if TYPE_CHECKING:
        from rke2fleet_sandbox.standins import fleetstore
    else:
        import fleetstore

    try:
        node = json.loads(text)
    except json.JSONDecodeError:
        return
    fleetstore.Datastore(node["datastoreDir"]).record(
        node["cluster"], node["node"], "down", version=node["version"], role=node["role"], exitCode=code)


def supervise(unit: str) -> int:
    os.closerange(3, 65536)  # whatever the spawning shell let through: the unit must not hold it open
    return Supervisor(unit).run()
