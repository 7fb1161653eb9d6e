"""Command line: `rke2fleet run | crds | validate | plan | apply | export`, plus plugin commands.

Each subcommand lives in the room it belongs to; this module only wires argparse
and imports lazily so that `rke2fleet validate` does not pay for Kopf's import.

Plugin contract: other distributions add subcommands through the entry point group
`rke2fleet.commands`. Each entry point names a function `register(subparsers) -> None`, which
gets the `add_subparsers()` object of the `rke2fleet` parser, adds its subparser(s) and gives
each `set_defaults(func=...)`, a `Command` (namespace -> exit status). `register` runs on every
invocation, so it and its module must stay cheap: import heavy things inside `func`.
The sandbox distribution (`rke2fleet-sandbox`) adds `sandbox` and `demo` this way; the
operator itself never imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import TypeAlias

Command = Callable[[argparse.Namespace], int]
# What a plugin's `register` gets: the value of `ArgumentParser.add_subparsers()`.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Register = Callable[[Subparsers], None]
COMMANDS_GROUP = "rke2fleet.commands"


def _cmd_crds(args: argparse.Namespace) -> int:
    from rke2fleet.api.crdgen import write_crds

    for path in write_crds(args.output):
        print(path)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from rke2fleet.api.manifests import validate_files

    errors = validate_files(args.file)
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        print(f"{len(errors)} error(s) found", file=sys.stderr)
        return 1
    print("ok: no errors found")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from rke2fleet.handlers.runner import run_operator

    return run_operator(args)


def _version() -> str:
    """The installed distribution's version (the package's own when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rke2fleet")
    except PackageNotFoundError:
        from rke2fleet import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rke2fleet", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"rke2fleet {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("crds", help="write the CustomResourceDefinitions generated from the API models")
    p.add_argument("--output", "-o", default="crds", help="directory to write into (default: crds)")
    p.set_defaults(func=_cmd_crds)

    p = sub.add_parser("validate", help="check manifests holding RKE2Cluster / RKE2Node documents")
    p.add_argument("-f", "--file", action="append", required=True, help="manifest file ('-' for stdin)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("run", help="run the operator")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="namespace to watch (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    p.add_argument("--metrics-port", type=int, default=8000, help="Prometheus metrics port (0 disables)")
    p.add_argument("--health-port", type=int, default=8080, help="liveness probe port (0 disables)")
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="json: one JSON object per line (for log collectors)")  # fmt: skip
    p.add_argument("--shard", default="0/1", metavar="INDEX/COUNT",
                   help="take only the clusters whose stable hash falls on INDEX of COUNT shards (with their "
                   "nodes, snapshots, restores); run one Deployment per INDEX")  # fmt: skip
    lease = p.add_argument_group("leader election (several replicas: only the leader acts)")
    lease.add_argument("--leader-elect", action="store_true", help="run only while holding the Lease")
    lease.add_argument("--lease-name", default="rke2fleet",
                       help="coordination.k8s.io Lease name (a shard's gets -shard-INDEX-of-COUNT)")  # fmt: skip
    lease.add_argument("--lease-namespace", default="", help="its namespace (default: $POD_NAMESPACE or default)")
    lease.add_argument("--lease-duration", type=float, default=15.0, help="seconds a standby waits on a silent leader")
    lease.add_argument("--renew-deadline", type=float, default=10.0, help="seconds the leader may fail to renew")
    lease.add_argument("--retry-period", type=float, default=2.0, help="seconds between renewals and tries")
    p.set_defaults(func=_cmd_run)

    from rke2fleet.standalone.cli import add_arguments

    add_arguments(sub)
    register_plugins(sub)
    return parser


def register_plugins(sub: Subparsers) -> list[str]:
    """Let every installed `rke2fleet.commands` entry point add its subcommands, in name order.

    A plugin that fails to load or register is reported on stderr and skipped: the operator's
    own commands keep working. Returns the names of the entry points registered.
    """
    registered = []
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name):
        try:
            register: Register = ep.load()
            register(sub)
        except Exception as exc:  # a broken plugin must not take `rke2fleet run` down with it
            print(f"rke2fleet: plugin {ep.name} ({ep.value}) skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        registered.append(ep.name)
    return registered


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
