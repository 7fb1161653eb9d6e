"""A minimal private host fixture for the stand-in tests.

Each host is a long-lived holder process in its own mount + UTS namespace (``unshare``), with tmpfs
over the host-private paths, the host.json of the contract and the systemctl/journalctl shims
bind-mounted over /usr/bin; commands enter it with ``nsenter``. Addresses 127.0.3.x keep clear of
the hosts engineer's 127.0.1.x sandboxes.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rke2fleet_sandbox.costs import host_json_costs
from rke2fleet_sandbox.datastore import Datastore
from rke2fleet_sandbox.hosts import SHIMMED_TOOLS, private_system_lines, shim_script, tool_path
from rke2fleet_sandbox.installer import InstallerHandle, start_installer
from rke2fleet_sandbox.world import bindable

STANDINS = Path(__file__).resolve().parents[2] / "sandbox" / "rke2fleet_sandbox" / "standins"
PRIVATE = ["/etc/rancher", "/var/lib/rancher", "/usr/local", "/run/rke2fleet"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Each xdist worker gets its own 60 addresses: two workers' servers on one address collide on port 9345.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_addresses = itertools.count()

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for unshare")


def mount_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


class NsHost:
    def __init__(self, name: str, address: str, root: Path, datastore_dir: Path,
                 extra: dict[str, object] | None = None) -> None:
        self.extra = dict(extra or {})  # more host.json keys (nodeReadyDelay, learnerPromoteDelay)
        self.name = name
        self.address = address
        self.root = root
        self.faults_dir = root / "faults"
        self.datastore_dir = datastore_dir
        self.holder: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.faults_dir.mkdir(parents=True)
        info = {"name": self.name, "address": self.address, "stateDir": str(self.root),
                "datastoreDir": str(self.datastore_dir), "faultsDir": str(self.faults_dir),
                "python": sys.executable, "standinsDir": str(STANDINS), **host_json_costs(), **self.extra}
        (self.root / "host.json").write_text(json.dumps(info))
        lines = ["set -e"]
        # The runtime dir first: it holds the private /etc layer and the simulated kernel parameters.
        for path in ["/run/rke2fleet"] + [p for p in PRIVATE if p != "/run/rke2fleet"]:
            lines.append(f"mkdir -p {path} && mount -t tmpfs -o mode=0755 tmpfs {path}")
            if path == "/run/rke2fleet":
                lines += private_system_lines("/run/rke2fleet")
        lines.append(f"hostname {self.name}")
        lines.append(f"cp {self.root}/host.json /run/rke2fleet/host.json")
        for tool in SHIMMED_TOOLS:
            (self.root / f"shim-{tool}").write_bytes(shim_script(tool))
            lines.append(f"cp {self.root}/shim-{tool} /run/rke2fleet/{tool} && chmod 755 /run/rke2fleet/{tool}")
            lines.append(f"mount --bind /run/rke2fleet/{tool} {tool_path(tool)}")
        lines.append(f"touch {self.root}/ready")
        lines.append("exec sleep infinity")
        self.holder = subprocess.Popen(
            ["unshare", "-m", "-u", "--propagation", "private", "sh", "-c", "\n".join(lines)],
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not (self.root / "ready").exists():
            assert self.holder.poll() is None, "namespace holder died"
            assert time.monotonic() < deadline, "namespace holder not ready"
            time.sleep(0.01)

    def run(self, script: str, env: dict[str, str] | None = None, timeout: float = 60,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        assert self.holder is not None
        full_env = {"PATH": DEFAULT_PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
        proc = subprocess.run(["nsenter", "-t", str(self.holder.pid), "-m", "-u", "sh", "-c", script],
                              env=full_env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{script!r} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def install(self, url: str, env: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(f"curl -sfL {url} | {env} sh -", check=check)

    def write_config(self, text: str, name: str = "config.yaml") -> None:
        path = "/etc/rancher/rke2/" + name
        self.run(f"mkdir -p $(dirname {path}) && cat > {path} <<'EOF'\n{text}\nEOF", check=True)

    def kubectl(self, args: str) -> subprocess.CompletedProcess[str]:
        return self.run(f"KUBECONFIG=/etc/rancher/rke2/rke2.yaml /var/lib/rancher/rke2/bin/kubectl {args}")

    def stop(self) -> None:
        if self.holder is None:
            return
        ns = mount_ns(self.holder.pid)
        for _ in range(3):  # supervisors restart services: kill until nothing is left
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and int(entry.name) != self.holder.pid and mount_ns(int(entry.name)) == ns:
                    try:
                        os.kill(int(entry.name), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            time.sleep(0.05)
        self.holder.kill()
        self.holder.wait()
        self.holder = None



def _free_address() -> str:
    """The worker's next address whose RKE2 ports are free: another run on this machine (or a host
    it left behind) may hold one."""
    for _ in range(60):
        address = f"127.0.3.{10 + 60 * (_WORKER % 4) + next(_addresses) % 60}"
        if all(bindable(address, port) for port in (9345, 6443)):
            return address
    raise AssertionError("no free 127.0.3.x address for a test host")


@pytest.fixture
def installer(tmp_path: Path) -> Iterator[InstallerHandle]:
    port = 18000 + os.getpid() % 1000
    handle = start_installer(tmp_path / "installer", host="127.0.3.254", port=port)
    yield handle
    handle.stop()


@pytest.fixture
def make_host(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    hosts: list[NsHost] = []
    datastore = tmp_path / "datastore"
    # As on a sandbox: the installer endpoint also stands in for docker.io's registry (/v2/).
    docker_io = request.getfixturevalue("installer").url if "installer" in request.fixturenames else None

    def make(name: str, **host_json: object) -> NsHost:
        """A started host; keyword arguments are added to its host.json (e.g. nodeReadyDelay=0;
        registryEndpoints={"docker.io": URL} for another docker.io, {} for none)."""
        address = _free_address()
        if docker_io and "registryEndpoints" not in host_json:
            host_json["registryEndpoints"] = {"docker.io": docker_io}
        host = NsHost(name, address, tmp_path / name, datastore, host_json)
        hosts.append(host)
        host.start()
        return host

    yield make
    for host in hosts:
        host.stop()


@pytest.fixture
def make_load_balancer(tmp_path: Path) -> Iterator[object]:
    """Factory: a sandbox load balancer (9345, 6443) in front of the given addresses; its address."""
    from rke2fleet_sandbox.loadbalancer import await_ready, start_load_balancer

    procs: list[subprocess.Popen[bytes]] = []

    def make(backends: list[str]) -> str:
        address = _free_address()
        proc = start_load_balancer(address, backends, log_path=str(tmp_path / f"lb-{address}.log"))
        procs.append(proc)
        await_ready(proc, "load balancer")
        return address

    yield make
    for proc in procs:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def datastore(tmp_path: Path) -> Datastore:
    return Datastore(tmp_path / "datastore")
