"""`rke2fleet sandbox up | status | down`: added to the operator's CLI through the
`rke2fleet.commands` entry point `sandbox` (see `rke2fleet.cli`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rke2fleet_sandbox.hosts import SandboxError
from rke2fleet_sandbox.network import NETWORKS
from rke2fleet_sandbox.state import DEFAULT_STATE_DIR
from rke2fleet_sandbox.world import Sandbox, hosts_table

if TYPE_CHECKING:
    from rke2fleet.cli import Subparsers


def register(subparsers: Subparsers) -> None:
    """The `rke2fleet.commands` entry point: adds `rke2fleet sandbox`."""
    p = subparsers.add_parser("sandbox", help="local sshd hosts with RKE2 stand-ins and a Kubernetes API emulator")
    add_sandbox_arguments(p)
    p.set_defaults(func=run_sandbox_command)


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sandbox_command", required=True)

    def with_state_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--state-dir",
            type=Path,
            default=DEFAULT_STATE_DIR,
            help=f"sandbox state directory (default: {DEFAULT_STATE_DIR})",
        )
        return p

    up = with_state_dir(sub.add_parser("up", help="start hosts, installer, load balancer and API emulator"))
    up.add_argument("--servers", type=int, default=3, help="hosts meant as servers (default 3)")
    up.add_argument("--agents", type=int, default=2, help="hosts meant as agents (default 2)")
    up.add_argument(
        "--sudo-hosts", type=int, default=0, help="how many hosts (the last ones) log in as a sudo user"
    )
    up.add_argument("--no-emulator", action="store_true", help="do not start the Kubernetes API emulator")
    up.add_argument("--no-installer", action="store_true", help="do not start the installer endpoint")
    up.add_argument("--no-load-balancer", action="store_true", help="do not start the load balancer")
    up.add_argument(
        "--network",
        choices=NETWORKS,
        default="shared",
        help="shared: the machine's network (default); isolated: an air-gapped site the machine reaches; "
        "bastion: an air-gapped site reached through an SSH bastion only",
    )
    up.add_argument(
        "--node-ready-delay",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds a Node stays NotReady after its rke2 unit is active (default 1.0)",
    )
    up.add_argument(
        "--learner-delay",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds before a joining server's etcd learner can be promoted (default 1.0)",
    )
    with_state_dir(sub.add_parser("status", help="show the running sandbox"))
    with_state_dir(sub.add_parser("down", help="stop everything and remove the state directory"))


def run_sandbox_command(args: argparse.Namespace) -> int:
    command: str = args.sandbox_command
    try:
        if command == "up":
            return _up(args)
        if command == "status":
            return _status(args)
        if command == "down":
            return _down(args)
    except (SandboxError, ValueError) as exc:
        print(f"sandbox {command}: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(command)


def _describe(sandbox: Sandbox) -> None:
    for line in hosts_table(sandbox.hosts):
        print(line)
    print(f"client key:    {sandbox.client_key_path}")
    print(f"installer URL: {sandbox.installer_url or '-'}")
    print(f"kubeconfig:    {sandbox.kubeconfig_path or '-'}")
    print(f"load balancer: {sandbox.load_balancer_address or '-'}")
    if sandbox.site is not None:
        print(f"network:       {sandbox.network} (site {sandbox.site.subnet})")
    if sandbox.bastion is not None:
        print(f"bastion:       {hosts_table([sandbox.bastion])[0]}")
    print(f"sandbox.json:  {sandbox.sandbox_json_path}")


def _up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    sandbox = Sandbox.up(
        args.state_dir,
        args.servers,
        args.agents,
        sudo_hosts=args.sudo_hosts,
        emulator=not args.no_emulator,
        installer=not args.no_installer,
        load_balancer=not args.no_load_balancer,
        node_ready_delay=args.node_ready_delay,
        learner_delay=args.learner_delay,
        network=args.network,
    )
    _describe(sandbox)
    elapsed = time.monotonic() - started
    print(f"up in {elapsed:.2f} s; `rke2fleet sandbox down --state-dir {args.state_dir}` ends it")
    return 0


def _status(args: argparse.Namespace) -> int:
    sandbox = Sandbox.load(args.state_dir)
    _describe(sandbox)
    down = [h.name for h in sandbox.hosts if not sandbox.host_pids(h)]
    no_sshd = [h.name for h in sandbox.hosts if h.sshd is None or not h.sshd.alive()]
    dead = [name for name, rec in sandbox.record.services.items() if not rec.alive()]
    for label, names in (("hosts gone", down), ("sshd not running", no_sshd), ("services down", dead)):
        if names:
            print(f"{label}: {', '.join(names)}")
    if not sandbox.running():
        print("not running")
        return 1
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        sandbox = Sandbox.load(args.state_dir)
    except SandboxError:
        print(f"no sandbox in {args.state_dir}")
        return 0
    left = sandbox.down()
    if left:
        print(f"processes that would not end: {left}", file=sys.stderr)
        return 1
    print(f"sandbox in {args.state_dir} is down")
    return 0
