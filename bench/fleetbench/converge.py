"""Converge: bare hosts → every node Ready, by the operator and by the Ansible baseline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from fleetbench.ansible_run import inventory, run_playbook
from fleetbench.bringup_cost import RoleCost, host_cpu, role_costs
from fleetbench.fleet import CLUSTER, Fleet
from fleetbench.floor_run import run_floor
from rke2fleet.reconcile.tokens import generate_token

CONVERGE_TIMEOUT = 900.0


@dataclass(frozen=True)
class ConvergeResult:
    tool: str  # operator | ansible | floor
    round: int
    seconds: float  # launch of the tool → it reports done (cluster Ready / playbook exit)
    hosts_ready_seconds: float  # launch → last host's rke2 ready in the datastore (host side)
    costs: list[RoleCost] = field(default_factory=list)  # per role: SSH commands and host CPU per node
    timeline: str = ""  # when the servers, the first and the last agent were ready (host side)


def timeline(fleet: Fleet, wall0: float) -> str:
    ready = fleet.ready_times()
    servers = [f"{ready[h.name] - wall0:.1f}" for h in fleet.sb.servers if h.name in ready]
    agents = sorted(ready[h.name] - wall0 for h in fleet.sb.agents if h.name in ready)
    tail = f", agents {agents[0]:.1f}-{agents[-1]:.1f} s" if agents else ""
    return f"servers ready at {'/'.join(servers)} s{tail}"


def _costs(fleet: Fleet, t0: float, wall0: float, before: dict[str, float]) -> tuple[list[RoleCost], str]:
    """SSH commands and host CPU per node since `t0` (monotonic; `wall0` on the wall clock), the
    hosts' CPU then `before`; and the timeline."""
    assert fleet.sshds is not None
    return role_costs(fleet.sb, fleet.sshds.log.since(t0), before, host_cpu(fleet.sb)), timeline(fleet, wall0)


def converge_operator(fleet: Fleet, round_: int, token: str, node_tick: float, cluster_tick: float,
                      drift: str = "1h") -> ConvergeResult:
    """Manifests applied first, then the clock starts with the operator process."""
    fleet.kube.create_token_secret(token)
    for doc in fleet.manifests(drift):
        fleet.kube.create(doc)
    cpu0, wall0, t0 = host_cpu(fleet.sb), time.time(), time.monotonic()
    fleet.start_operator(node_tick, cluster_tick)
    done = fleet.kube.wait_phase("rke2clusters", CLUSTER, "Ready", timeout=CONVERGE_TIMEOUT)
    last_ready = fleet.wait_all_ready(timeout=30)
    return ConvergeResult("operator", round_, done - t0, last_ready - wall0, *_costs(fleet, t0, wall0, cpu0))


def converge_ansible(fleet: Fleet, workdir: Path, round_: int, token: str) -> ConvergeResult:
    docs = fleet.manifests("1h")
    cpu0, wall0, t0 = host_cpu(fleet.sb), time.time(), time.monotonic()
    run = run_playbook(workdir, f"{fleet.label}", fleet.sb, docs, token)
    if run.returncode != 0:
        raise RuntimeError(f"ansible-playbook exited with {run.returncode} (see {run.log})")
    last_ready = fleet.wait_all_ready(timeout=30)
    return ConvergeResult("ansible", round_, run.seconds, last_ready - wall0, *_costs(fleet, t0, wall0, cpu0))


def converge_floor(fleet: Fleet, round_: int, token: str) -> ConvergeResult:
    """The baseline's steps as bare SSH commands (fleetbench.floor_run), from the same inputs."""
    inv = inventory(fleet.sb, fleet.manifests("1h"), token)
    cpu0, wall0, t0 = host_cpu(fleet.sb), time.time(), time.monotonic()
    run = run_floor(fleet.sb, inv)
    last_ready = fleet.wait_all_ready(timeout=30)
    return ConvergeResult("floor", round_, run.seconds, last_ready - wall0, *_costs(fleet, t0, wall0, cpu0))


@dataclass(frozen=True)
class Floor:
    install_s: float  # the install script on one idle host, run inside it without SSH
    start_s: float  # one blocking `systemctl start` → active (median)

    def converge_s(self, servers: int, agents: int, cores: int) -> float:
        """Host work alone, no SSH, no tool: servers one after another, agents spread over the cores."""
        one = self.install_s + self.start_s
        return servers * one + agents * one / max(1, cores)


def start_floor(workdir: Path, samples: int = 3) -> Floor:
    """The stand-in's own install and start paths on one idle host (median of `samples` starts),
    run inside the host without SSH."""
    with Fleet(workdir, "floor", 1, 0) as fleet:
        sb = fleet.sb
        host = sb.hosts[0]
        script = (
            f"curl -sfL {sb.installer_url}/install.sh | INSTALL_RKE2_VERSION=v1.35.7+rke2r1 sh - >/dev/null 2>&1"
            f" && mkdir -p /etc/rancher/rke2 && printf 'token: %s\\nnode-name: {host.name}\\n' "
            f"{generate_token()} > /etc/rancher/rke2/config.yaml && systemctl enable rke2-server >/dev/null 2>&1"
        )
        t0 = time.monotonic()
        if sb.run_on_host(host, script).returncode != 0:
            raise RuntimeError("floor: install on the sandbox host failed")
        install = time.monotonic() - t0
        times = []
        for _ in range(samples):
            t0 = time.monotonic()
            res = sb.run_on_host(host, "systemctl start rke2-server && systemctl is-active rke2-server")
            times.append(time.monotonic() - t0)
            if res.stdout.strip() != b"active":
                raise RuntimeError("floor: rke2-server did not become active")
            sb.run_on_host(host, "systemctl stop rke2-server")
        return Floor(install, sorted(times)[len(times) // 2])


def facts_floor(fleet: Fleet, samples: int = 5) -> float:
    """What the operator's one facts command costs on a host by itself (no SSH): the median of
    `samples` runs of the facts script inside one converged host."""
    from rke2fleet.reconcile.facts import FACTS_SCRIPT

    host = fleet.sb.hosts[-1]
    times = []
    for _ in range(samples):
        t0 = time.monotonic()
        fleet.sb.run_on_host(host, "sh -s", input=FACTS_SCRIPT.encode())
        times.append(time.monotonic() - t0)
    return sorted(times)[len(times) // 2]
