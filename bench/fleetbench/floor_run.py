"""The converge floor: the baseline's steps as bare SSH commands, with no operator logic.

Same inputs as the operator and Ansible (the Ansible inventory's per-host values: the same token,
the config.yaml bytes `rke2fleet.reconcile.desired.render_config` gives the operator, the same
installer URL and `INSTALL_RKE2_*`). One asyncssh connection per host, host keys pinned (the
sandbox's known_hosts), the sandbox's client key. Per host: one command installs RKE2 and writes
config.yaml (content on stdin, mode 0600), all hosts at once; then one blocking
`systemctl enable --now rke2-<role>` (returns when the `Type=notify` unit is active), in the join
order: the first server, the other servers one at a time, the agents together. Nothing polls,
nothing reads facts, nothing writes a status.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from dataclasses import dataclass
from typing import Any

import asyncssh

from rke2fleet_sandbox.world import Sandbox

CONFIG = "/etc/rancher/rke2/config.yaml"
COMMAND_TIMEOUT = 600.0


@dataclass(frozen=True)
class FloorRun:
    seconds: float  # connect → the last `enable --now` returned
    commands: int  # SSH commands it ran (2 per host)


def install_command(script_url: str, version: str, role: str) -> str:
    """The playbook's install task and config task as one shell command (config.yaml on stdin)."""
    return (
        "set -e\n"
        f"curl -sfL --connect-timeout 10 --max-time 120 {shlex.quote(script_url)} | "
        f"INSTALL_RKE2_VERSION={shlex.quote(version)} INSTALL_RKE2_TYPE={shlex.quote(role)} sh - >/dev/null\n"
        f"mkdir -p -m 0755 /etc/rancher/rke2\n"
        f"umask 077\ncat > {CONFIG}.tmp\nmv -f {CONFIG}.tmp {CONFIG}\n"
    )


async def _run(conn: asyncssh.SSHClientConnection, command: str, stdin: str | None, what: str) -> None:
    res = await conn.run(command, input=stdin, check=False, timeout=COMMAND_TIMEOUT)
    if res.exit_status != 0:
        raise RuntimeError(f"floor: {what} exited {res.exit_status}: {str(res.stderr)[-500:]}")


async def _converge(sandbox: Sandbox, inv: dict[str, Any]) -> int:
    allv = inv["all"]["vars"]
    groups = inv["all"]["children"]
    hostvars: dict[str, dict[str, Any]] = {}
    for group in ("first_server", "other_servers", "agents"):
        hostvars.update(groups[group]["hosts"])
    known = asyncssh.import_known_hosts(sandbox.known_hosts())
    key = asyncssh.read_private_key(str(sandbox.client_key_path))
    conns: dict[str, asyncssh.SSHClientConnection] = {}

    async def connect(name: str) -> None:
        hv = hostvars[name]
        if hv["ansible_user"] != "root":
            raise RuntimeError("floor: root logins only (the bench's hosts)")
        conns[name] = await asyncssh.connect(
            hv["ansible_host"], hv["ansible_port"], username="root", client_keys=[key], known_hosts=known,
            agent_path=None, connect_timeout=30,
        )  # fmt: skip

    try:
        await asyncio.gather(*(connect(n) for n in hostvars))
        url, version = allv["rke2_script_url"], allv["rke2_version"]
        staged = {
            n: asyncio.create_task(
                _run(
                    conns[n],
                    install_command(url, version, hv["rke2_role"]),
                    hv["rke2_config"],
                    f"{n}: install and config.yaml",
                )
            )
            for n, hv in hostvars.items()
        }

        async def start(name: str) -> None:
            await staged[name]
            unit = f"rke2-{hostvars[name]['rke2_role']}"
            await _run(conns[name], f"systemctl enable --now {unit}", None, f"{name}: enable --now {unit}")

        for name in groups["first_server"]["hosts"]:
            await start(name)
        for name in groups["other_servers"]["hosts"]:
            await start(name)
        await asyncio.gather(*(start(n) for n in groups["agents"]["hosts"]), *staged.values())
    finally:
        for conn in conns.values():
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in conns.values()), return_exceptions=True)
    return 2 * len(hostvars)


def run_floor(sandbox: Sandbox, inv: dict[str, Any]) -> FloorRun:
    """The floor on `sandbox` from the Ansible inventory `inv` (its values only, not Ansible)."""
    t0 = time.monotonic()
    commands = asyncio.run(_converge(sandbox, inv))
    return FloorRun(time.monotonic() - t0, commands)
