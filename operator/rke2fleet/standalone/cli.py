"""`rke2fleet plan | apply | export`: the engine without a management cluster."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# Light at import: building the command line must not load asyncssh or pydantic models.
if TYPE_CHECKING:
    from rke2fleet.standalone.manifests import Manifests


def default_state_dir(namespace: str, name: str) -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "rke2fleet" / f"{namespace}.{name}"


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    state_help = "state directory (default: $XDG_STATE_HOME/rke2fleet/NAMESPACE.CLUSTER, ~/.local/state if unset)"
    for name, text in (("plan", "show what apply would change on each host, changing nothing"),
                       ("apply", "bring the hosts to the manifests' desired state, without a management cluster")):
        p = sub.add_parser(name, help=text)
        p.add_argument("-f", "--file", action="append", required=True, help="manifest file ('-' for stdin)")
        p.add_argument("--state-dir", default=None, help=state_help)
        if name == "apply":
            p.add_argument("--timeout", default="30m", help="give up after this long (default 30m)")
        p.set_defaults(func=run_plan if name == "plan" else run_apply)
    p = sub.add_parser("export", help="print the Secrets the operator needs to take over a cluster built by apply")
    p.add_argument("--state-dir", required=True, help="the state directory apply used")
    p.add_argument("--kubeconfig", action="store_true", help="print the cluster's kubeconfig instead")
    p.set_defaults(func=run_export)


def _open(args: argparse.Namespace) -> tuple[Manifests, Path]:
    from rke2fleet.standalone.manifests import load

    manifests = load(args.file)
    root = Path(args.state_dir) if args.state_dir else default_state_dir(manifests.namespace, manifests.name)
    return manifests, root


def _fail(lines: list[str] | str) -> int:
    for line in [lines] if isinstance(lines, str) else lines:
        print(line, file=sys.stderr)
    return 1


def run_plan(args: argparse.Namespace) -> int:
    from rke2fleet.standalone.manifests import ManifestError
    from rke2fleet.standalone.plan import plan
    from rke2fleet.standalone.state import StateDir, StateError

    try:
        manifests, root = _open(args)
        # Nothing is written: a state directory that does not exist yet is read as empty.
        state = StateDir.open(root, manifests.namespace, manifests.name, create=False) if root.exists() else (
            StateDir(root, manifests.namespace, manifests.name))  # fmt: skip
        return asyncio.run(plan(manifests, state, print))
    except ManifestError as exc:
        return _fail([*exc.lines, f"{len(exc.lines)} error(s) found"])
    except StateError as exc:
        return _fail(str(exc))


def run_apply(args: argparse.Namespace) -> int:
    from rke2fleet.api import parse_duration
    from rke2fleet.standalone.apply import apply
    from rke2fleet.standalone.manifests import ManifestError
    from rke2fleet.standalone.progress import Progress
    from rke2fleet.standalone.state import StateDir, StateError

    try:
        manifests, root = _open(args)
        timeout = parse_duration(args.timeout)
        state = StateDir.open(root, manifests.namespace, manifests.name)
    except ManifestError as exc:
        return _fail([*exc.lines, f"{len(exc.lines)} error(s) found"])
    except (StateError, ValueError) as exc:
        return _fail(str(exc))
    progress = Progress(sys.stdout, live=sys.stdout.isatty())
    failure = asyncio.run(apply(manifests, state, progress, timeout=timeout))
    if failure:
        return _fail(f"apply failed: {failure}")
    print(f"RKE2Cluster {manifests.namespace}/{manifests.name} is Ready; state in {state.root}")
    print(f"kubeconfig: rke2fleet export --state-dir {state.root} --kubeconfig > {manifests.name}.kubeconfig")
    return 0


def run_export(args: argparse.Namespace) -> int:
    import json

    from rke2fleet.standalone.export import export
    from rke2fleet.standalone.state import StateDir, StateError

    root = Path(args.state_dir)
    try:
        info = json.loads((root / "state.json").read_text())
        namespace, _, name = str(info["cluster"]).partition("/")
        state = StateDir.open(root, namespace, name, create=False)
        sys.stdout.write(export(state, kubeconfig=args.kubeconfig))
    except (OSError, ValueError, KeyError) as exc:
        return _fail(f"{root} holds no rke2fleet state: {type(exc).__name__}")
    except (StateError, LookupError) as exc:
        return _fail(str(exc))
    return 0
