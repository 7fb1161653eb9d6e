"""Helpers the stand-in tests share: an installed, configured server host, polling, Node conditions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

V = "v1.35.7+rke2r1"


def installed_server(installer: Any, make_host: Any, name: str) -> Any:
    """A host with RKE2 `V` installed by the sandbox installer and a config.yaml with a token."""
    host = make_host(name)
    host.install(installer.url, f"INSTALL_RKE2_VERSION={V}")
    host.write_config("token: s3cret")
    return host


def rke2_host(installer: Any, make_host: Any, name: str, config: str, role: str = "server",
              version: str = V, **host_json: object) -> Any:
    """A host with RKE2 installed (``role``) and ``config`` as its config.yaml; not started."""
    host = make_host(name, **host_json)
    host.install(installer.url, f"INSTALL_RKE2_VERSION={version} INSTALL_RKE2_TYPE={role}")
    host.write_config(config)
    return host


def start(host: Any, role: str = "server", block: bool = True) -> Any:
    """``systemctl start [--no-block] rke2-<role>``: the CompletedProcess."""
    return host.run(f"systemctl start {'' if block else '--no-block '}rke2-{role}", timeout=60)


def is_active(host: Any, role: str = "server") -> str:
    return str(host.run(f"systemctl is-active rke2-{role}").stdout.strip())


def journal(host: Any, role: str = "server") -> str:
    return str(host.run(f"journalctl -u rke2-{role} --no-pager").stdout)


def three_servers(installer: Any, make_host: Any, prefix: str, **host_json: object) -> tuple[Any, Any, Any]:
    """An init server and two joined ones, all started and voting etcd members."""
    first = rke2_host(installer, make_host, f"{prefix}-a", "token: s3cret", **host_json)
    assert start(first).returncode == 0, journal(first)
    join = f"server: https://{first.address}:9345\ntoken: s3cret"
    others = [rke2_host(installer, make_host, f"{prefix}-{x}", join, **host_json) for x in "bc"]
    for host in others:
        assert start(host).returncode == 0, journal(host)
    names = [first.name] + [h.name for h in others]
    wait_until(lambda: all(node_conditions(first, n).get("EtcdIsVoter", {}).get("status") == "True"
                           for n in names))
    return first, others[0], others[1]


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def node_conditions(server: Any, name: str) -> dict[str, dict[str, str]]:
    """{condition type: condition} of Node ``name`` as ``kubectl get node`` on ``server`` shows it
    ({} when kubectl fails or the Node does not exist)."""
    out = server.kubectl(f"get node {name} -o json")
    if out.returncode != 0:
        return {}
    return {c["type"]: c for c in json.loads(out.stdout)["status"]["conditions"]}


def wait_node_ready(server: Any, name: str, timeout: float = 15.0) -> None:
    """Until Node ``name`` is Ready (it lags its unit by the host's nodeReadyDelay)."""
    wait_until(lambda: node_conditions(server, name).get("Ready", {}).get("status") == "True", timeout)
