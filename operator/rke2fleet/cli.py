"""Command line: `rke2fleet run | crds | validate | sandbox | demo`.

Each subcommand lives in the room it belongs to; this module only wires argparse
and imports lazily so that `rke2fleet validate` does not pay for Kopf's import.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Command = Callable[[argparse.Namespace], int]


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


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from rke2fleet.sandbox.cli import run_sandbox_command

    return run_sandbox_command(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from rke2fleet.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rke2fleet", description=__doc__.splitlines()[0] if __doc__ else None)
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
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("sandbox", help="local sshd hosts with RKE2 stand-ins and a Kubernetes API emulator")
    from rke2fleet.sandbox.cli import add_sandbox_arguments

    add_sandbox_arguments(p)
    p.set_defaults(func=_cmd_sandbox)

    p = sub.add_parser("demo", help="bring up a sandbox HA cluster end to end and show it converge")
    p.add_argument("--keep", action="store_true", help="leave the sandbox running at the end")
    p.add_argument("--state-dir", default=None, help="sandbox state directory")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
