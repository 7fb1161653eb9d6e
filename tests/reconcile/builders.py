"""Builders for the reconcile tests: valid specs, facts-script output, node views.

Specs go through the real API parser so the tests exercise what the operator really gets.
"""

from __future__ import annotations

import copy
from typing import Any

from rke2fleet.api import RKE2ClusterSpec, RKE2NodeSpec, parse_cluster_spec, parse_node_spec
from rke2fleet.reconcile.desired import DesiredNode, desired_node
from rke2fleet.reconcile.facts import HostFacts, parse_facts

V35 = "v1.35.7+rke2r1"
V36 = "v1.36.3+rke2r1"
TOKEN = "K10" + "ab" * 32 + "::server:s3cr3t-password"

CLUSTER: dict[str, Any] = {
    "version": V36,
    "registrationAddress": "rke2.example.com",
    "ssh": {"privateKeySecretRef": {"name": "fleet-ssh", "key": "ssh-privatekey"}},
}


def cluster_spec(**changes: Any) -> RKE2ClusterSpec:
    """The base cluster with top-level camelCase keys replaced (None removes a key)."""
    spec = copy.deepcopy(CLUSTER)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return parse_cluster_spec(spec)


def node_spec(role: str = "server", address: str = "10.0.0.1", **changes: Any) -> RKE2NodeSpec:
    return parse_node_spec({"cluster": "prod", "role": role, "address": address, **changes})


def desired(
    role: str = "server",
    *,
    is_init: bool = False,
    cluster: RKE2ClusterSpec | None = None,
    node: RKE2NodeSpec | None = None,
    version: str | None = None,
) -> DesiredNode:
    return desired_node(
        cluster or cluster_spec(),
        node or node_spec(role),
        name="n1",
        token=TOKEN,
        is_init=is_init,
        join_address="rke2.example.com",
        version=version,
    )


def facts_output(
    *,
    version: str | None = V36,
    config_sha256: str | None = None,
    server: tuple[str, str] = ("enabled", "active"),
    agent: tuple[str, str] = ("disabled", "inactive"),
    running: str | None = "same",
    data_bin: str | None = None,
    restart_pending: bool = False,
    end: bool = True,
) -> str:
    """What FACTS_SCRIPT prints on a host (format of reconcile/facts.py).

    `running`: the version RKE2 last started (data/bin link); "same" as the installed one.
    """
    lines = [f"rke2_path={'/usr/local/bin/rke2' if version else ''}"]
    if version:
        lines.append(f"rke2_version=rke2 version {version} (0123456789abcdef0123456789abcdef01234567)")
    if config_sha256:
        lines.append(f"config_sha256={config_sha256}")
    for unit, (enabled, active) in (("rke2-server", server), ("rke2-agent", agent)):
        lines += [f"{unit}.ActiveState={active}", f"{unit}.UnitFileState={enabled}"]
    last_started = version if running == "same" else running
    if data_bin is None and last_started:
        data_bin = data_bin_link(last_started)
    lines += [f"data_bin={data_bin or ''}", "os=debian 12", "arch=x86_64"]
    if restart_pending:
        lines.append("restart_pending=yes")
    if end:
        lines.append("facts_end=1")
    return "\n".join(lines) + "\n"


def data_bin_link(version: str) -> str:
    """readlink of /var/lib/rancher/rke2/bin: the data dir tag uses '-' for '+' (reference §7)."""
    return f"/var/lib/rancher/rke2/data/{version.replace('+', '-')}-5c2f9e1ab0d3/bin"


def host_facts(**kwargs: Any) -> HostFacts:
    return parse_facts(facts_output(**kwargs))


def converged_facts(d: DesiredNode, **kwargs: Any) -> HostFacts:
    """A host that already is exactly `d` (unless kwargs say otherwise)."""
    units = {"server": ("disabled", "inactive"), "agent": ("disabled", "inactive")}
    units[d.role] = ("enabled", "active")
    args: dict[str, Any] = {
        "version": d.version,
        "config_sha256": d.config_sha256,
        "server": units["server"],
        "agent": units["agent"],
    }
    args.update(kwargs)
    return host_facts(**args)
