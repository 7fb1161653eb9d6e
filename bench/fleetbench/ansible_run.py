"""The Ansible baseline: inventory and per-host variables generated from the sandbox and the very
cluster manifests the operator gets (config.yaml rendered by `rke2fleet.reconcile.desired`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rke2fleet.api import parse_cluster_spec, parse_node_spec
from rke2fleet.reconcile.desired import render_config
from rke2fleet_sandbox.world import Sandbox

PLAYBOOK = Path(__file__).resolve().parent.parent / "ansible" / "site.yml"


@dataclass(frozen=True)
class AnsibleRun:
    seconds: float
    returncode: int
    log: Path


def inventory(sandbox: Sandbox, docs: list[dict[str, Any]], token: str) -> dict[str, Any]:
    """A YAML/JSON inventory: groups first_server / other_servers / agents, per-host config.yaml.

    Holds the token: written 0600 into the bench's private work directory only.
    """
    cluster_doc = next(d for d in docs if d["kind"] == "RKE2Cluster")
    cluster = parse_cluster_spec(cluster_doc["spec"])
    nodes = {d["metadata"]["name"]: parse_node_spec(d["spec"]) for d in docs if d["kind"] == "RKE2Node"}
    servers = sorted(h.name for h in sandbox.servers)
    first = servers[0]  # the operator's choice too: no server has the registration address
    join = cluster.registration_address or sandbox.host(first).address
    hostvars: dict[str, Any] = {}
    for host in sandbox.hosts:
        node = nodes[host.name]
        config = render_config(
            cluster, node, node_name=host.name, token=token, is_init=host.name == first,
            join_address=None if host.name == first else join,
        )  # fmt: skip
        hostvars[host.name] = {
            "ansible_host": host.address,
            "ansible_port": host.port,
            "ansible_user": host.user,
            "rke2_role": node.role,
            "rke2_config": config.decode(),
        }
    return {
        "all": {
            "vars": {
                "rke2_script_url": cluster.install.script_url,
                "rke2_version": cluster.version,
                "ansible_python_interpreter": "/usr/bin/python3",
                # Private to each sandbox host: never the machine's own ~/.ansible.
                "ansible_remote_tmp": "/run/rke2fleet/.ansible-tmp",
            },
            "children": {
                "first_server": {"hosts": {first: hostvars[first]}},
                "other_servers": {"hosts": {n: hostvars[n] for n in servers[1:]}},
                "agents": {"hosts": {h.name: hostvars[h.name] for h in sandbox.agents}},
            },
        }
    }


def ansible_env(workdir: Path, sandbox: Sandbox, forks: int, control_dir: Path) -> dict[str, str]:
    """Ansible at its fastest, with pinned host keys; files in `workdir`, control sockets in
    `control_dir` (a unix socket path must stay under 108 bytes)."""
    home = workdir / "ansible-home"
    home.mkdir(parents=True, exist_ok=True)
    known = workdir / "ansible-known_hosts"
    known.write_text(sandbox.known_hosts())
    ssh_args = (
        "-o ControlMaster=auto -o ControlPersist=120s "
        f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
    )
    return {
        **os.environ,
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": ssh_args,
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_PRIVATE_KEY_FILE": str(sandbox.client_key_path),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }


def ansible_playbook() -> str:
    """The ansible-playbook of this interpreter's environment (the venv), else the one on PATH."""
    here = Path(sys.executable).parent / "ansible-playbook"
    found = str(here) if here.exists() else shutil.which("ansible-playbook")
    if not found:
        raise RuntimeError("ansible-playbook not found: pip install -e '.[bench]'")
    return found


def run_playbook(workdir: Path, label: str, sandbox: Sandbox, docs: list[dict[str, Any]], token: str) -> AnsibleRun:
    inv = workdir / f"inventory-{label}.json"
    fd = os.open(inv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(inventory(sandbox, docs, token), f)
    log = workdir / f"ansible-{label}.log"
    with tempfile.TemporaryDirectory(prefix="rfb-cp-", dir="/tmp") as control_dir:
        env = ansible_env(workdir, sandbox, len(sandbox.hosts), Path(control_dir))
        started = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.run(
                [ansible_playbook(), "-i", str(inv), str(PLAYBOOK)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, check=False,
            )  # fmt: skip
        seconds = time.monotonic() - started
        # ControlPersist masters outlive the playbook: end them, they hold the sandbox's sshds.
        for sock in Path(control_dir).iterdir():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, check=False)
    return AnsibleRun(seconds, proc.returncode, log)


