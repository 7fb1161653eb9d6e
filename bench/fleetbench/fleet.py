"""One benchmark fleet: a fresh sandbox (sshds at LogLevel=VERBOSE), its API client and manifests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from fleetbench.operator_proc import NS, TOKEN_SECRET, Api, OperatorProcess
from fleetbench.sessions import VerboseSshds
from rke2fleet_sandbox.datastore import Datastore
from rke2fleet_sandbox.manifests import SSH_SECRET, cluster_manifests
from rke2fleet_sandbox.world import Sandbox

CLUSTER = "bench"
LARGE_FLEET = 100  # hosts; above it the cluster's ssh.connectTimeout is LARGE_FLEET_CONNECT_TIMEOUT
LARGE_FLEET_CONNECT_TIMEOUT = "60s"


class Fleet:
    def __init__(self, workdir: Path, label: str, servers: int, agents: int) -> None:
        self.workdir = workdir
        self.label = label
        self.servers = servers
        self.agents = agents
        self.sandbox: Sandbox | None = None
        self.sshds: VerboseSshds | None = None
        self.api: Api | None = None
        self.operator: OperatorProcess | None = None

    def __enter__(self) -> Fleet:
        self.sandbox = Sandbox.up(self.workdir / f"sandbox-{self.label}", self.servers, self.agents)
        try:
            self.sshds = VerboseSshds(self.sandbox).start()
            assert self.sandbox.kubeconfig_path is not None
            self.api = Api(self.sandbox.kubeconfig_path)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        if self.sshds is not None:
            self.sshds.stop()
        if self.api is not None:
            self.api.close()
        if self.sandbox is not None:
            self.sandbox.down()
        if self.sshds is not None:
            self.sshds.reap()

    @property
    def sb(self) -> Sandbox:
        assert self.sandbox is not None
        return self.sandbox

    @property
    def kube(self) -> Api:
        assert self.api is not None
        return self.api

    def manifests(self, drift_check_interval: str) -> list[dict[str, Any]]:
        """The cluster as a user would write it; the join token is ours (`tokenSecretRef`), so the
        Ansible run can use the very same one."""
        extra: dict[str, Any] = {"tokenSecretRef": {"name": TOKEN_SECRET, "key": "token"},
                                 "driftCheckInterval": drift_check_interval}
        if self.servers + self.agents > LARGE_FLEET:
            # Hundreds of sshds, their hosts and the operator on 2 shared cores: a session request
            # can wait past the default 10 s, and each such wait drops and re-makes a connection.
            extra["ssh"] = {"privateKeySecretRef": {"name": SSH_SECRET, "key": "ssh-privatekey"},
                            "connectTimeout": LARGE_FLEET_CONNECT_TIMEOUT}
        return cluster_manifests(self.sb, CLUSTER, NS, extra_spec=extra)

    def start_operator(
        self, node_tick: float, cluster_tick: float, process: Callable[..., OperatorProcess] = OperatorProcess
    ) -> OperatorProcess:
        """The operator (or, with `process=KopfFloorProcess`, Kopf alone) on this fleet's API."""
        assert self.sb.kubeconfig_path is not None
        self.operator = process(
            self.sb.kubeconfig_path, self.workdir / f"operator-{self.label}.log",
            node_tick=node_tick, cluster_tick=cluster_tick,
        ).start()  # fmt: skip
        return self.operator

    def ready_times(self) -> dict[str, float]:
        """Wall-clock time (time.time) each node first reported ready to the sandbox datastore."""
        out: dict[str, float] = {}
        for e in Datastore(self.sb.layout.datastore).events():
            if e["event"] == "ready":
                out.setdefault(str(e["node"]), float(e["t"]))
        return out

    def wait_all_ready(self, timeout: float) -> float:
        """Until every host's rke2 reported ready to the datastore; returns the wall time of the last."""
        names = {h.name for h in self.sb.hosts}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = self.ready_times()
            if names <= ready.keys():
                return max(ready[n] for n in names)
            time.sleep(0.1)
        missing = sorted(names - self.ready_times().keys())
        raise TimeoutError(f"{len(missing)} hosts not ready after {timeout:.0f}s: {missing[:5]}")
